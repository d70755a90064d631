-- Limits and budgets an admin stores for a whole team or user (`owner_kind` `team` or `user`,
-- `owner_id` its id), binding every request accounted to it, whatever key or token it comes
-- with. `limits` is the JSON of the identity crate's `KeyLimits` (requests and tokens per
-- minute, requests in flight, a budget in US dollars per day, week or month). A team's row is
-- deleted with the team; a user is only ever disabled, so its row stays.
CREATE TABLE owner_limits (
    owner_kind TEXT NOT NULL,
    owner_id   TEXT NOT NULL,
    limits     TEXT NOT NULL,
    PRIMARY KEY (owner_kind, owner_id)
);

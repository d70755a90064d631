-- Held tool calls waiting for (or given) an admin's decision. A call of an `approval` tool made
-- in a tainted context is recorded here, bound to its session, the caller's subject, the tool
-- and the SHA-256 of its arguments; the agent's repeat of that exact call passes once after an
-- admin approved it and before it expires. `status` moves from `pending` to `approved`,
-- `denied` or `expired` (and `approved` to `used` or `expired`) only through conditional
-- updates, so two replicas deciding at once yield one decision. `arguments` holds the call's
-- JSON text, at most 64 KiB of it (`arguments_truncated` set when cut; the digest is over the
-- whole text). `identity` is the caller as JSON (subject, auth method, user, team, key id,
-- role). Times are Unix milliseconds; ids (`apr_` + a UUIDv7) sort by creation.
CREATE TABLE approvals (
    id                  TEXT PRIMARY KEY,
    tool                TEXT NOT NULL,
    arguments           TEXT NOT NULL,
    arguments_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    arguments_sha256    TEXT NOT NULL,
    subject             TEXT NOT NULL,
    identity            TEXT NOT NULL,
    session             TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT NOT NULL,
    created_ms          BIGINT NOT NULL,
    expires_ms          BIGINT NOT NULL,
    decided_ms          BIGINT,
    decided_by          TEXT,
    used_ms             BIGINT
);
CREATE INDEX approvals_binding ON approvals (session, subject);
CREATE INDEX approvals_open ON approvals (status, expires_ms);
CREATE INDEX approvals_status_id ON approvals (status, id);

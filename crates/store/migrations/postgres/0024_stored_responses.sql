-- Answers of the Responses API (`POST /v1/responses` with `store` true), kept so that a later
-- request may continue the conversation (`previous_response_id`) and so that
-- `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}` find them. `owner` is the caller's
-- tenant (`team:…`, `user:…`, `key:…` or `subject:…`): every read names it, so a response is
-- only ever found by its own tenant. `input_items` and `output_items` are JSON arrays of
-- Responses items (this request's input, then the answer's output); `response` is the
-- `response` object as the client received it; `previous_id` links a conversation's responses,
-- newest to oldest. `created_ms` is Unix milliseconds.
CREATE TABLE stored_responses (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    previous_id   TEXT,
    created_ms    BIGINT NOT NULL,
    input_items   TEXT NOT NULL,
    output_items  TEXT NOT NULL,
    response      TEXT NOT NULL
);
CREATE INDEX stored_responses_owner ON stored_responses (owner, created_ms);
-- The retention's sweep deletes the oldest first, across owners.
CREATE INDEX stored_responses_created ON stored_responses (created_ms);

-- The request log: one row per request the gateway answered (or failed to).
CREATE TABLE request_logs (
    id              TEXT PRIMARY KEY,      -- UUIDv7, time-ordered
    ts_ms           INTEGER NOT NULL,      -- request start, Unix milliseconds
    subject         TEXT,
    auth_method     TEXT,
    user_id         TEXT,
    team_id         TEXT,
    key_id          TEXT,
    endpoint        TEXT NOT NULL,         -- chat_completions | messages | embeddings
    dialect         TEXT NOT NULL,         -- openai | anthropic
    route           TEXT,
    requested_model TEXT,
    provider        TEXT,
    model           TEXT,
    provider_key_id TEXT,
    attempts        INTEGER NOT NULL,
    status          INTEGER NOT NULL,
    error_type      TEXT,
    error_message   TEXT,
    stream          INTEGER NOT NULL,
    latency_us      INTEGER NOT NULL,
    ttft_us         INTEGER,
    input_tokens    INTEGER NOT NULL,
    output_tokens   INTEGER NOT NULL,
    cached_tokens   INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd        REAL,
    cache_status    TEXT,
    metadata        TEXT,                  -- flat JSON object from x-portcullis-metadata
    session_id      TEXT,
    agent           TEXT,
    request_body    TEXT,
    response_body   TEXT
);
CREATE INDEX request_logs_ts ON request_logs (ts_ms);
CREATE INDEX request_logs_model_ts ON request_logs (model, ts_ms);
CREATE INDEX request_logs_provider_ts ON request_logs (provider, ts_ms);

-- Gateway-wide settings (e.g. the generated master key's hash).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

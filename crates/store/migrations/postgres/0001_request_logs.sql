-- The request log: one row per request the gateway answered (or failed to).
CREATE TABLE request_logs (
    id              TEXT PRIMARY KEY,      -- UUIDv7, time-ordered
    ts_ms           BIGINT NOT NULL,       -- request start, Unix milliseconds
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
    attempts        BIGINT NOT NULL,
    status          BIGINT NOT NULL,
    error_type      TEXT,
    error_message   TEXT,
    stream          BOOLEAN NOT NULL,
    latency_us      BIGINT NOT NULL,
    ttft_us         BIGINT,
    input_tokens    BIGINT NOT NULL,
    output_tokens   BIGINT NOT NULL,
    cached_tokens   BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd        DOUBLE PRECISION,
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

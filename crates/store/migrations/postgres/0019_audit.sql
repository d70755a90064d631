-- The decision audit: one record per agent turn, append-only, hash-chained per writer.
-- Each gateway process writes its own chain (`audit_chains`, registered when it starts), so
-- replicas never need a common order. A record's `body` is its sealed canonical JSON (it holds
-- its chain, `seq`, the previous record's hash and id), `hash` = hex SHA-256 of
-- "portcullis-audit-v1\n" || body; `id`, `chain_id`, `seq`, `ts_ms`, `session` and `path`
-- repeat members of the body for indexing, and verification checks that they agree.
-- Checkpoints (a record's hash, stored apart) let retention drop a chain's records up to one of
-- them (`retained_seq`) while the rest still verifies from it.
CREATE TABLE audit_chains (
    chain_id     TEXT PRIMARY KEY,
    replica      TEXT NOT NULL,
    started_ms   BIGINT NOT NULL,
    retained_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit_records (
    id        TEXT PRIMARY KEY,
    chain_id  TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    ts_ms     BIGINT NOT NULL,
    session   TEXT,
    path      TEXT NOT NULL,
    body      TEXT NOT NULL,
    hash      TEXT NOT NULL,
    UNIQUE (chain_id, seq)
);

-- `GET /admin/audit`: newest first (ids are UUID v7), by session, by time.
CREATE INDEX audit_records_session ON audit_records (session, id);
CREATE INDEX audit_records_ts ON audit_records (ts_ms, id);

CREATE TABLE audit_checkpoints (
    chain_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    record_id  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

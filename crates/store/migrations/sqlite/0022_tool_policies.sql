-- Tool policies added through the admin API, applied after the configuration file's
-- `tool_policies`. Each row is one rule as the file would hold it, as JSON (`spec`); rules apply
-- in `position` order (then `id`, a UUIDv7 that sorts by creation). `created_by` is the admin
-- subject that added it; `created_ms` is Unix milliseconds. Every change bumps the tenancy
-- version in the same transaction, so every replica reloads the rules.
CREATE TABLE tool_policies (
    id          TEXT PRIMARY KEY,
    position    BIGINT NOT NULL,
    spec        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX tool_policies_position ON tool_policies (position, id);

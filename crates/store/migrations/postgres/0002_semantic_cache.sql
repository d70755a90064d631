-- The semantic response cache: one row per cached answer, with the embedding it is found by.
CREATE TABLE semantic_cache (
    id          TEXT PRIMARY KEY,      -- UUIDv7
    scope       BYTEA NOT NULL,        -- SHA-256 of what must match exactly (tenant, target, instructions, tools, settings)
    embedder_id TEXT NOT NULL,         -- rows of another embedder are never compared
    dimensions  BIGINT NOT NULL,
    embedding   BYTEA NOT NULL,        -- little-endian f32 × dimensions, unit length
    answer      BYTEA NOT NULL,        -- the cached answer, opaque
    created_ms  BIGINT NOT NULL,       -- Unix milliseconds
    expires_ms  BIGINT NOT NULL        -- Unix milliseconds
);
CREATE INDEX semantic_cache_embedder_created ON semantic_cache (embedder_id, created_ms);
CREATE INDEX semantic_cache_expires ON semantic_cache (expires_ms);

-- The OAuth 2.1 authorization server. Codes and tokens are random 256-bit values stored only
-- as SHA-256 digests; client secrets likewise. Times are Unix milliseconds.

-- Registered clients (dynamic registration or the admin API).
CREATE TABLE oauth_clients (
    client_id       TEXT PRIMARY KEY,
    secret_hash     BLOB,               -- SHA-256 of the secret; NULL for public clients
    name            TEXT,
    redirect_uris   TEXT NOT NULL,      -- JSON array of exact URIs
    grant_types     TEXT NOT NULL,      -- space-separated
    scopes          TEXT,               -- space-separated; NULL: any configured scope
    auth_method     TEXT NOT NULL,      -- client_secret_basic, client_secret_post or none
    service_account TEXT,               -- what client_credentials tokens act as
    created_ms      INTEGER NOT NULL
);

-- One authorization grant: the tokens issued from one authorization code and their rotations.
-- Revoking it revokes every token of the family.
CREATE TABLE oauth_grants (
    family_id  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    used_ms    INTEGER,                 -- last issuance
    revoked_ms INTEGER
);

-- Authorization codes, single use: redeemed by setting used_ms where it is NULL.
CREATE TABLE oauth_codes (
    code_hash      BLOB PRIMARY KEY,
    family_id      TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT,                -- as given in the authorization request, if it was
    code_challenge TEXT NOT NULL,       -- PKCE S256 challenge
    scope          TEXT NOT NULL,
    principal      TEXT NOT NULL,       -- JSON, opaque to the store
    created_ms     INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL,
    used_ms        INTEGER
);
CREATE INDEX oauth_codes_expires ON oauth_codes (expires_ms);

-- Refresh tokens: each use rotates (rotated_ms set, a successor inserted in the family).
CREATE TABLE oauth_refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    rotated_ms INTEGER,
    revoked_ms INTEGER
);
CREATE INDEX oauth_refresh_tokens_family ON oauth_refresh_tokens (family_id);
CREATE INDEX oauth_refresh_tokens_expires ON oauth_refresh_tokens (expires_ms);

-- Access tokens issued (JWTs are not stored), so a family's can be revoked by jti.
CREATE TABLE oauth_access_tokens (
    jti        TEXT PRIMARY KEY,
    family_id  TEXT,
    client_id  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX oauth_access_tokens_family ON oauth_access_tokens (family_id);
CREATE INDEX oauth_access_tokens_expires ON oauth_access_tokens (expires_ms);

-- Revoked access tokens until they expire; every replica keeps the set in memory.
CREATE TABLE oauth_revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER NOT NULL
);
CREATE INDEX oauth_revoked_tokens_expires ON oauth_revoked_tokens (expires_ms);

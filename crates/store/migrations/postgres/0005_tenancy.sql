-- Tenancy: teams, users and their memberships, service accounts, virtual keys (stored as
-- SHA-256 digests of their secrets, several secrets per key during a rotation), provider
-- credentials (encrypted), and a version counter bumped on every change so that replicas
-- drop their cached views within a poll interval.
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    metadata    TEXT,                  -- JSON object
    created_ms  BIGINT NOT NULL
);

CREATE TABLE users (
    id               TEXT PRIMARY KEY,
    email            TEXT,
    name             TEXT,
    role             TEXT NOT NULL,    -- admin | member | viewer
    password_hash    TEXT,             -- argon2id PHC string, for the local login
    issuer           TEXT,             -- set for users provisioned from an enterprise issuer
    external_subject TEXT,
    disabled_ms      BIGINT,
    created_ms       BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE UNIQUE INDEX users_external ON users (issuer, external_subject);

CREATE TABLE team_members (
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE service_accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    team_id     TEXT,
    role        TEXT NOT NULL,
    disabled_ms BIGINT,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE virtual_keys (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    prefix             TEXT NOT NULL,  -- the visible start of the current secret
    user_id            TEXT,
    team_id            TEXT,
    service_account_id TEXT,
    models             TEXT,           -- JSON array of allowed models/routes, NULL = any
    limits             TEXT,           -- JSON object: per-key rate limits and budget
    metadata           TEXT,           -- JSON object
    expires_ms         BIGINT,
    revoked_ms         BIGINT,
    created_ms         BIGINT NOT NULL
);

CREATE TABLE key_secrets (
    hash       TEXT PRIMARY KEY,       -- hex SHA-256 of the secret
    key_id     TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT                 -- set when a rotation retires this secret
);
CREATE INDEX key_secrets_key ON key_secrets (key_id);

CREATE TABLE provider_credentials (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    alias       TEXT NOT NULL,
    owner_kind  TEXT NOT NULL,         -- default | user | team
    owner_id    TEXT NOT NULL,         -- '' for default
    sealed      TEXT NOT NULL,         -- base64(nonce || AES-256-GCM ciphertext)
    hint        TEXT NOT NULL,         -- the last characters of the secret
    created_ms  BIGINT NOT NULL
);
CREATE UNIQUE INDEX provider_credentials_alias ON provider_credentials (provider, alias);

CREATE TABLE tenancy_version (
    id      INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO tenancy_version (id, version) VALUES (1, 0);

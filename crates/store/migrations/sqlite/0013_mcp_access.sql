-- Per-identity MCP routing.
--
-- Access rules added at run time (through /admin/mcp-access), joining the configuration's
-- `mcp.access`: globs over `<server>__<tool>` (JSON array), who the rule is about (JSON arrays
-- of user ids, team ids and roles; all empty = everyone) and its effect.
CREATE TABLE mcp_access_rules (
    id          TEXT PRIMARY KEY,
    tools       TEXT NOT NULL,         -- JSON array of globs
    users       TEXT NOT NULL,         -- JSON array of user ids
    teams       TEXT NOT NULL,         -- JSON array of team ids
    roles       TEXT NOT NULL,         -- JSON array of admin | member | viewer
    effect      TEXT NOT NULL,         -- allow | deny
    created_ms  INTEGER NOT NULL
);

-- A user's or team's own credentials for one MCP server: headers (HTTP servers) or
-- environment variables (stdio servers), a JSON object sealed under PORTCULLIS_SECRET_KEY.
CREATE TABLE mcp_credentials (
    id          TEXT PRIMARY KEY,
    server      TEXT NOT NULL,
    owner_kind  TEXT NOT NULL,         -- user | team
    owner_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,         -- headers | env
    sealed      TEXT NOT NULL,         -- base64(nonce || AES-256-GCM ciphertext) of a JSON object
    names       TEXT NOT NULL,         -- JSON array of the header or variable names (not secret)
    created_ms  INTEGER NOT NULL
);
CREATE UNIQUE INDEX mcp_credentials_owner ON mcp_credentials (server, owner_kind, owner_id);

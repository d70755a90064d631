-- MCP servers added through the admin API, next to those of the configuration file. `config`
-- is the entry as the file would hold it under `mcp.servers.<name>` (JSON), without the values
-- of `env` and `headers`: those are in `sealed`, encrypted under PORTCULLIS_SECRET_KEY
-- (base64(nonce || AES-256-GCM ciphertext) of a JSON object {"env": {..}, "headers": {..}},
-- bound to the server's name), NULL when the server has none. Every change bumps the tenancy
-- version, which replicas poll.
CREATE TABLE mcp_servers (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    sealed      TEXT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

-- Users' grants for MCP servers that need OAuth: the gateway is the server's OAuth client on
-- each user's behalf. `sealed` holds the access token, refresh token and expiry as JSON,
-- encrypted under PORTCULLIS_SECRET_KEY (base64(nonce || AES-256-GCM ciphertext), bound to the
-- user and the server, so a row copied onto another does not open); no token is ever stored in
-- clear. `expires_ms` (not secret) is the access token's expiry, NULL when the server gave none.
CREATE TABLE mcp_grants (
    user_id     TEXT NOT NULL,
    server      TEXT NOT NULL,
    sealed      TEXT NOT NULL,
    expires_ms  BIGINT,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (user_id, server)
);

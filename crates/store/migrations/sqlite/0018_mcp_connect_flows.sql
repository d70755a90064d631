-- Sign-ins of the connect flow for upstream MCP servers that need OAuth, pending between the
-- gateway's connect page and the authorization server's callback. The `state` parameter stays
-- sealed and self-describing (user, PKCE verifier, browser binding); this table holds only its
-- flow id, so that each callback is taken once, on whichever replica it lands: completing a
-- flow deletes its row, and a replayed callback finds none. Rows are purged once expired.
CREATE TABLE mcp_connect_flows (
    id          TEXT PRIMARY KEY,          -- random flow id, carried in the sealed state
    user_id     TEXT NOT NULL,
    server      TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX mcp_connect_flows_expiry ON mcp_connect_flows (expires_ms);

-- Tool pins of instances carrying a user's or team's own credential are keyed by what the
-- credential is for (`user:<id>` or `team:<id>`), no longer by the credential's row id, so that
-- rotating a credential keeps its owner's pins (a changed definition after a rotation is still
-- withheld). Existing credential scopes move to their owner's; pins of credentials deleted
-- before (no owner left) are dropped.
UPDATE mcp_tool_pins SET scope = (
    SELECT c.owner_kind || ':' || c.owner_id FROM mcp_credentials c
    WHERE c.id = mcp_tool_pins.scope AND c.server = mcp_tool_pins.server
)
WHERE scope <> '' AND scope NOT LIKE '%:%' AND EXISTS (
    SELECT 1 FROM mcp_credentials c
    WHERE c.id = mcp_tool_pins.scope AND c.server = mcp_tool_pins.server
);
DELETE FROM mcp_tool_pins WHERE scope <> '' AND scope NOT LIKE '%:%';

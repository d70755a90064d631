-- Tool pins per credential scope: a server's tools are pinned separately for its shared
-- connection (scope '') and for each instance of it that carries a credential of its own (scope
-- = the instance's identity key: a per-user or per-team credential's id), since an upstream may
-- legitimately list different definitions to different credentials. Existing pins become the
-- shared scope's. The table is rebuilt because the primary key changes.
ALTER TABLE mcp_tool_pins RENAME TO mcp_tool_pins_unscoped;
CREATE TABLE mcp_tool_pins (
    server              TEXT NOT NULL,
    scope               TEXT NOT NULL DEFAULT '', -- '' shared; else the instance's identity key
    tool                TEXT NOT NULL,            -- the server's own name of the tool
    pinned_fingerprint  TEXT NOT NULL,
    pinned_definition   TEXT NOT NULL,
    current_fingerprint TEXT NOT NULL,
    current_definition  TEXT NOT NULL,
    first_seen_ms       BIGINT NOT NULL,
    seen_ms             BIGINT NOT NULL,          -- last listed
    changed_ms          BIGINT,                   -- when it began to differ from the pin; NULL while equal
    approved_ms         BIGINT,                   -- last approval
    PRIMARY KEY (server, scope, tool)
);
INSERT INTO mcp_tool_pins (server, scope, tool, pinned_fingerprint, pinned_definition,
    current_fingerprint, current_definition, first_seen_ms, seen_ms, changed_ms, approved_ms)
SELECT server, '', tool, pinned_fingerprint, pinned_definition, current_fingerprint,
    current_definition, first_seen_ms, seen_ms, changed_ms, approved_ms
FROM mcp_tool_pins_unscoped;
DROP TABLE mcp_tool_pins_unscoped;

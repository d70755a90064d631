-- Tool pins per credential scope: a server's tools are pinned separately for its shared
-- connection (scope '') and for each instance of it that carries a credential of its own (scope
-- = the instance's identity key: a per-user or per-team credential's id), since an upstream may
-- legitimately list different definitions to different credentials. Existing pins become the
-- shared scope's.
ALTER TABLE mcp_tool_pins ADD COLUMN scope TEXT NOT NULL DEFAULT '';
ALTER TABLE mcp_tool_pins DROP CONSTRAINT mcp_tool_pins_pkey;
ALTER TABLE mcp_tool_pins ADD PRIMARY KEY (server, scope, tool);

-- A virtual key's MCP tool allow-list (JSON array of case-sensitive shell globs over
-- `<server>__<tool>`): on an MCP endpoint, a tool is visible and callable only when some glob
-- matches it. NULL allows every tool; an empty array allows none.
ALTER TABLE virtual_keys ADD COLUMN tools TEXT;

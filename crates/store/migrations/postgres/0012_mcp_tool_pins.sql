-- Tool pinning: for each tool an MCP server lists, the fingerprint of its definition when it was
-- first seen (or last approved) and the one the server lists now. Fingerprints are the hex
-- SHA-256 of the definition's canonical JSON (see `portcullis_mcp::pins`); definitions are the
-- JSON the server sent. A tool whose current fingerprint differs from its pinned one is withheld
-- from clients until an admin approves it. Times are Unix milliseconds.
CREATE TABLE mcp_tool_pins (
    server              TEXT NOT NULL,
    tool                TEXT NOT NULL,      -- the server's own name of the tool
    pinned_fingerprint  TEXT NOT NULL,
    pinned_definition   TEXT NOT NULL,
    current_fingerprint TEXT NOT NULL,
    current_definition  TEXT NOT NULL,
    first_seen_ms       BIGINT NOT NULL,
    seen_ms             BIGINT NOT NULL,    -- last listed
    changed_ms          BIGINT,             -- when it began to differ from the pin; NULL while equal
    approved_ms         BIGINT,             -- last approval
    PRIMARY KEY (server, tool)
);

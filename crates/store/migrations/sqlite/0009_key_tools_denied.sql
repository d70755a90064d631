-- A virtual key's own tool-call deny-list (JSON array of case-sensitive shell globs over the
-- tool name), joined with the route's: a call either denies is withheld.
ALTER TABLE virtual_keys ADD COLUMN tools_denied TEXT;

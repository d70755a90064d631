-- A virtual key's own cache, retry and timeout settings (JSON), between the route's and the
-- request's.
ALTER TABLE virtual_keys ADD COLUMN controls TEXT;

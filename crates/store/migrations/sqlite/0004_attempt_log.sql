-- Every upstream attempt of a request (retries and failovers): a JSON array of
-- {"target", "status", "error", "latency_ms"} objects, the serving attempt last.
ALTER TABLE request_logs ADD COLUMN attempt_log TEXT;

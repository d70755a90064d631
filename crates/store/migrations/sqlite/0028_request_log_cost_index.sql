-- The most expensive requests of a time range (`GET /admin/logs?sort=cost`): read from the top
-- of this index and filtered by time, rather than by sorting every record of the range.
CREATE INDEX request_logs_cost_ts ON request_logs (cost_usd, ts_ms);

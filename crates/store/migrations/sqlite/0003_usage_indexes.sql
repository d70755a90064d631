-- Usage analytics and budget recovery filter the request log by who was accounted and when
-- (`GET /admin/usage?key=…`, spend of a key, user or team since a time); model and provider
-- already have (column, ts_ms) indexes.
CREATE INDEX IF NOT EXISTS request_logs_key_ts ON request_logs (key_id, ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_user_ts ON request_logs (user_id, ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_team_ts ON request_logs (team_id, ts_ms);

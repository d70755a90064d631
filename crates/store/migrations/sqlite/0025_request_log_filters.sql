-- Reading the request log (`GET /admin/logs`): a page is the newest records by (ts_ms, id)
-- matching one filter, so each filter has a (column, ts_ms) index the page is read from in
-- order — a rare value without scanning the log, a common one without sorting all it matches.
-- model, provider, key_id, user_id and team_id have theirs (0001, 0003); these are the rest.
-- A status class (`5xx`) is read through the expression `status / 100`.
CREATE INDEX IF NOT EXISTS request_logs_requested_model_ts ON request_logs (requested_model, ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_route_ts ON request_logs (route, ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_status_ts ON request_logs (status, ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_status_class_ts ON request_logs ((status / 100), ts_ms);
CREATE INDEX IF NOT EXISTS request_logs_cache_ts ON request_logs (cache_status, ts_ms);

-- The metadata a record can be found by (`metadata.<key>=<value>`): one row per key of its
-- flat JSON object, written with the record; a string value as it is, a number or boolean as
-- its JSON text; null, nested values and keys or values over 256 bytes are left out.
CREATE TABLE IF NOT EXISTS request_log_metadata (
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    id    TEXT NOT NULL,                   -- request_logs.id
    PRIMARY KEY (key, value, ts_ms, id)
) WITHOUT ROWID;

-- The records written before this table.
INSERT OR IGNORE INTO request_log_metadata (key, value, ts_ms, id)
SELECT j.key,
       CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
                   ELSE CAST(j.value AS TEXT) END,
       r.ts_ms, r.id
FROM request_logs r,
     json_each(CASE WHEN json_valid(r.metadata)
                    THEN CASE WHEN json_type(r.metadata) = 'object' THEN r.metadata ELSE '{}' END
                    ELSE '{}' END) j
WHERE r.metadata IS NOT NULL
  AND j.type IN ('text', 'integer', 'real', 'true', 'false')
  AND length(CAST(j.key AS BLOB)) <= 256
  AND length(CAST(CAST(j.value AS TEXT) AS BLOB)) <= 256;

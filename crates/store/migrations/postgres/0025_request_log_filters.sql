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
    ts_ms BIGINT NOT NULL,
    id    TEXT NOT NULL,                   -- request_logs.id
    PRIMARY KEY (key, value, ts_ms, id)
);

-- The records written before this table: all at once, or — when some record's metadata is
-- not JSON PostgreSQL reads (a \u0000 in a string) — record by record, leaving those out.
DO $$
DECLARE
    rec RECORD;
BEGIN
    BEGIN
        INSERT INTO request_log_metadata (key, value, ts_ms, id)
        SELECT j.key, v.value, r.ts_ms, r.id
        FROM request_logs r
        CROSS JOIN LATERAL jsonb_each(r.metadata::jsonb) j
        CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(j.value)
                                       WHEN 'string' THEN j.value #>> '{}'
                                       ELSE j.value::text END AS value) v
        WHERE r.metadata LIKE '{%'
          AND jsonb_typeof(j.value) IN ('string', 'number', 'boolean')
          AND octet_length(j.key) <= 256
          AND octet_length(v.value) <= 256
        ON CONFLICT DO NOTHING;
    EXCEPTION WHEN others THEN
        FOR rec IN SELECT r.id, r.ts_ms, r.metadata FROM request_logs r
                   WHERE r.metadata LIKE '{%' LOOP
            BEGIN
                INSERT INTO request_log_metadata (key, value, ts_ms, id)
                SELECT j.key, v.value, rec.ts_ms, rec.id
                FROM jsonb_each(rec.metadata::jsonb) j
                CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(j.value)
                                               WHEN 'string' THEN j.value #>> '{}'
                                               ELSE j.value::text END AS value) v
                WHERE jsonb_typeof(j.value) IN ('string', 'number', 'boolean')
                  AND octet_length(j.key) <= 256
                  AND octet_length(v.value) <= 256
                ON CONFLICT DO NOTHING;
            EXCEPTION WHEN others THEN
                NULL;
            END;
        END LOOP;
    END;
END
$$;

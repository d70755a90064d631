-- Sessions of the web console. `id_digest` is the SHA-256 (hex) of the session token the
-- browser's cookie carries; the token itself is never stored. `kind` is `master` (signed in
-- with the master key; `master_digest` names which one, so a new master key ends the session)
-- or `user` (`user_id`, whose role and teams are read afresh on every use). `method` is how the
-- session began (`master_key`, `password`, `oauth`). A session ends at `expires_ms`, or when
-- unused since `last_seen_ms` for longer than the idle timeout; times are Unix milliseconds.
CREATE TABLE console_sessions (
    id_digest     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    user_id       TEXT,
    master_digest TEXT,
    method        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_ms);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

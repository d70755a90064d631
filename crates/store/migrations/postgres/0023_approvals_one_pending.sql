-- At most one pending approval per exact call: (session, caller subject, tool, SHA-256 of the
-- arguments). Replicas holding the same call at once insert with `ON CONFLICT DO NOTHING` on
-- this index and answer with the row that is there, so admins see the call once. Pending
-- duplicates recorded before this index existed are marked expired, the oldest kept. Rows
-- left past their expiry while still marked pending are expired by the next hold of the same
-- call before it inserts.
UPDATE approvals SET status = 'expired'
WHERE status = 'pending' AND EXISTS (
    SELECT 1 FROM approvals AS older
    WHERE older.status = 'pending'
      AND older.session = approvals.session
      AND older.subject = approvals.subject
      AND older.tool = approvals.tool
      AND older.arguments_sha256 = approvals.arguments_sha256
      AND older.id < approvals.id
);
CREATE UNIQUE INDEX approvals_one_pending
    ON approvals (session, subject, tool, arguments_sha256)
    WHERE status = 'pending';

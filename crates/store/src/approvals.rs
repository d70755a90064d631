//! Persistence of held tool calls and their decisions (`approvals`): one row per call held for
//! an admin's decision, bound to (session, caller subject, tool, SHA-256 of the arguments).
//! At most one row per such call is pending (a partial unique index, migration 0023): a hold
//! that finds one pending already answers with it, so replicas holding the same call at once
//! name the same approval. Every change of status is a conditional update (`WHERE status =
//! …`), so two replicas deciding the same approval at once yield one decision and one refusal,
//! and an approval is used at most once. Rows done with (used, denied, expired) are deleted
//! after a retention, in one statement. Pages are read newest first by id (ids sort by
//! creation). Both SQL backends run the same statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// Where a held call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved: the same call passes once, until it expires.
    Approved,
    /// Denied.
    Denied,
    /// Not decided, or not used, before its expiry.
    Expired,
    /// Approved and then passed.
    Used,
}

impl ApprovalStatus {
    /// Every status.
    pub const ALL: [ApprovalStatus; 5] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Denied,
        ApprovalStatus::Expired,
        ApprovalStatus::Used,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One held call.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApprovalRecord {
    /// `apr_` and a UUIDv7 (sorts by creation).
    pub id: String,
    /// The tool called.
    pub tool: String,
    /// The call's arguments as JSON text, cut to at most 64 KiB.
    pub arguments: String,
    /// Whether `arguments` was cut.
    pub arguments_truncated: bool,
    /// Hex SHA-256 of the whole arguments text.
    pub arguments_sha256: String,
    /// The caller's subject (half of the binding).
    pub subject: String,
    /// The caller as JSON.
    pub identity: String,
    /// The conversation's session.
    pub session: String,
    /// `pending`, `approved`, `denied`, `expired` or `used`.
    pub status: String,
    /// Why the call was held (the rule and what tainted the context).
    pub reason: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds after which it can no longer be decided or used.
    pub expires_ms: i64,
    /// When it was decided.
    pub decided_ms: Option<i64>,
    /// Who decided (the admin's subject).
    pub decided_by: Option<String>,
    /// When the approved call passed.
    pub used_ms: Option<i64>,
}

/// An open approval of one session and caller, as the request path reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenApproval {
    /// The id.
    pub id: String,
    /// The tool.
    pub tool: String,
    /// Hex SHA-256 of the arguments.
    pub arguments_sha256: String,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    /// Unix milliseconds.
    pub expires_ms: i64,
}

/// The pending approval a held call is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldApproval {
    /// The approval's id: the record's own, or that of the same call already pending.
    pub id: String,
    /// Unix milliseconds after which it can no longer be decided or used.
    pub expires_ms: i64,
    /// Whether the record was inserted (`false`: the same call was already pending).
    pub created: bool,
}

/// Which approvals a page reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalQuery {
    /// Only those with this status.
    pub status: Option<ApprovalStatus>,
    /// Only this session's.
    pub session: Option<String>,
    /// Only those older than this id (the page cursor).
    pub before_id: Option<String>,
    /// At most this many (1 to 1001).
    pub limit: u32,
}

/// Held calls and their decisions.
#[async_trait]
pub trait ApprovalStore: Send + Sync + std::fmt::Debug {
    /// Records a held call (`record`, pending, created at `record.created_ms`), unless the same
    /// call — session, subject, tool and arguments digest — is already pending and unexpired:
    /// then that approval is the answer and nothing is written. A pending row of that call
    /// past its expiry is marked expired first.
    async fn hold_approval(&self, record: &ApprovalRecord) -> Result<HeldApproval, StoreError>;
    /// The approval `id`.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Approvals matching `q`, newest first.
    async fn approvals(&self, q: &ApprovalQuery) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// The pending, approved and denied approvals of `session` for `subject` that have not
    /// expired at `now_ms`.
    async fn open_approvals(
        &self,
        session: &str,
        subject: &str,
        now_ms: i64,
    ) -> Result<Vec<OpenApproval>, StoreError>;
    /// Decides the approval `id` (`Approved` or `Denied`) by `by` at `now_ms`, only if it is
    /// still pending and unexpired; `false` otherwise.
    async fn decide_approval(
        &self,
        id: &str,
        decision: ApprovalStatus,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Marks the approval `id` used at `now_ms`, only if it is approved (once); `false`
    /// otherwise.
    async fn use_approval(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Marks pending and approved approvals whose expiry is past at `now_ms` expired; returns
    /// how many.
    async fn expire_approvals(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Deletes, in one statement, the approvals done with by `cutoff_ms` (at most `now_ms`):
    /// used by then, expired by then (whatever their status says), or denied by then and past
    /// their expiry at `now_ms` (until which a repeat of the call is withheld under their id).
    /// Pending and approved approvals that have not expired are never deleted. Returns how
    /// many.
    async fn delete_done_approvals(&self, cutoff_ms: i64, now_ms: i64) -> Result<u64, StoreError>;
}

/// Attempts of [`ApprovalStore::hold_approval`] when the pending row it conflicted with was
/// decided or expired before it could be read.
const HOLD_ATTEMPTS: usize = 3;

const COLUMNS: &str = "id, tool, arguments, arguments_truncated, arguments_sha256, subject, \
    identity, session, status, reason, created_ms, expires_ms, decided_ms, decided_by, used_ms";

macro_rules! approval_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl ApprovalStore for $store {
            async fn hold_approval(
                &self,
                r: &ApprovalRecord,
            ) -> Result<HeldApproval, StoreError> {
                for _ in 0..HOLD_ATTEMPTS {
                    let inserted = sqlx::query(&format!(
                        "INSERT INTO approvals ({COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                         ON CONFLICT (session, subject, tool, arguments_sha256) \
                         WHERE status = 'pending' DO NOTHING"
                    ))
                    .bind(&r.id)
                    .bind(&r.tool)
                    .bind(&r.arguments)
                    .bind(r.arguments_truncated)
                    .bind(&r.arguments_sha256)
                    .bind(&r.subject)
                    .bind(&r.identity)
                    .bind(&r.session)
                    .bind(&r.status)
                    .bind(&r.reason)
                    .bind(r.created_ms)
                    .bind(r.expires_ms)
                    .bind(r.decided_ms)
                    .bind(&r.decided_by)
                    .bind(r.used_ms)
                    .execute(self.pool())
                    .await?;
                    if inserted.rows_affected() == 1 {
                        return Ok(HeldApproval {
                            id: r.id.clone(),
                            expires_ms: r.expires_ms,
                            created: true,
                        });
                    }
                    let pending: Option<(String, i64)> = sqlx::query_as(
                        "SELECT id, expires_ms FROM approvals \
                         WHERE session = $1 AND subject = $2 AND tool = $3 \
                         AND arguments_sha256 = $4 AND status = 'pending'",
                    )
                    .bind(&r.session)
                    .bind(&r.subject)
                    .bind(&r.tool)
                    .bind(&r.arguments_sha256)
                    .fetch_optional(self.pool())
                    .await?;
                    match pending {
                        Some((id, expires_ms)) if expires_ms > r.created_ms => {
                            return Ok(HeldApproval {
                                id,
                                expires_ms,
                                created: false,
                            });
                        }
                        // Past its expiry, not swept yet: it no longer holds the call.
                        Some((id, _)) => {
                            sqlx::query(
                                "UPDATE approvals SET status = 'expired' \
                                 WHERE id = $1 AND status = 'pending'",
                            )
                            .bind(&id)
                            .execute(self.pool())
                            .await?;
                        }
                        // Decided since the insert: insert again.
                        None => {}
                    }
                }
                Err(StoreError::Contended(format!(
                    "the pending approval of the same call as {} kept changing",
                    r.id
                )))
            }

            async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
                Ok(
                    sqlx::query_as(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.pool())
                        .await?,
                )
            }

            async fn approvals(
                &self,
                q: &ApprovalQuery,
            ) -> Result<Vec<ApprovalRecord>, StoreError> {
                let mut qb: sqlx::QueryBuilder<'_, $db> =
                    sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM approvals WHERE 1=1"));
                if let Some(s) = q.status {
                    qb.push(" AND status = ").push_bind(s.as_str());
                }
                if let Some(s) = &q.session {
                    qb.push(" AND session = ").push_bind(s.clone());
                }
                if let Some(id) = &q.before_id {
                    qb.push(" AND id < ").push_bind(id.clone());
                }
                qb.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(q.limit.clamp(1, 1001)));
                Ok(qb.build_query_as().fetch_all(self.pool()).await?)
            }

            async fn open_approvals(
                &self,
                session: &str,
                subject: &str,
                now_ms: i64,
            ) -> Result<Vec<OpenApproval>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, tool, arguments_sha256, status, expires_ms FROM approvals \
                     WHERE session = $1 AND subject = $2 \
                     AND status IN ('pending', 'approved', 'denied') AND expires_ms > $3 \
                     ORDER BY id",
                )
                .bind(session)
                .bind(subject)
                .bind(now_ms)
                .fetch_all(self.pool())
                .await?)
            }

            async fn decide_approval(
                &self,
                id: &str,
                decision: ApprovalStatus,
                by: &str,
                now_ms: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE approvals SET status = $1, decided_ms = $2, decided_by = $3 \
                     WHERE id = $4 AND status = 'pending' AND expires_ms > $2",
                )
                .bind(decision.as_str())
                .bind(now_ms)
                .bind(by)
                .bind(id)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn use_approval(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE approvals SET status = 'used', used_ms = $1 \
                     WHERE id = $2 AND status = 'approved'",
                )
                .bind(now_ms)
                .bind(id)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn expire_approvals(&self, now_ms: i64) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE approvals SET status = 'expired' \
                     WHERE status IN ('pending', 'approved') AND expires_ms <= $1",
                )
                .bind(now_ms)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected())
            }

            async fn delete_done_approvals(
                &self,
                cutoff_ms: i64,
                now_ms: i64,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM approvals WHERE \
                     (status = 'used' AND used_ms <= $1) \
                     OR (status = 'denied' AND decided_ms <= $1 AND expires_ms <= $2) \
                     OR (status IN ('pending', 'approved', 'expired') AND expires_ms <= $1)",
                )
                .bind(cutoff_ms.min(now_ms))
                .bind(now_ms)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

approval_store!(SqliteStore, sqlx::Sqlite);
approval_store!(PostgresStore, sqlx::Postgres);

//! Persistence of the decision audit (`audit_chains`, `audit_records`, `audit_checkpoints`):
//! sealed records appended in batches (a batch and the checkpoint taken with it in one
//! transaction), read newest first with keyset pagination for the admin API, read chain by
//! chain in sequence order for verification, and dropped by retention only up to a checkpoint.
//! Both SQL backends run the same statements, implemented once by a macro. What the records
//! mean and how chains are verified is `portcullis-audit`'s.

use async_trait::async_trait;
use portcullis_audit::{
    BadRecord, ChainInfo, ChainSummary, ChainVerifier, Checkpoint, Sealed, StoredRecord,
};

use crate::{PostgresStore, SqliteStore, StoreError};

/// Which records `GET /admin/audit` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this session's.
    pub session: Option<String>,
    /// Only at or after this time, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Only before this time, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// Only records older than this id (the page cursor).
    pub before_id: Option<String>,
    /// At most this many (1 to 1000).
    pub limit: u32,
}

/// A record as the admin API reads it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// The id.
    pub id: String,
    /// The sealed body.
    pub body: String,
    /// Its hash.
    pub hash: String,
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    id: String,
    chain_id: String,
    seq: i64,
    ts_ms: i64,
    session: Option<String>,
    path: String,
    body: String,
    hash: String,
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    chain_id: String,
    seq: i64,
    record_id: String,
    hash: String,
    created_ms: i64,
}

#[derive(sqlx::FromRow)]
struct ChainRow {
    chain_id: String,
    replica: Option<String>,
    started_ms: Option<i64>,
    retained_seq: Option<i64>,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl From<CheckpointRow> for Checkpoint {
    fn from(r: CheckpointRow) -> Self {
        Checkpoint {
            chain: r.chain_id,
            seq: u(r.seq),
            record_id: r.record_id,
            hash: r.hash,
            created_ms: r.created_ms,
        }
    }
}

/// The decision audit's tables.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug {
    /// Registers a chain a writer starts.
    async fn start_audit_chain(&self, chain: &ChainInfo) -> Result<(), StoreError>;
    /// Stores sealed records of one chain, in order, and the checkpoint taken with them, in one
    /// transaction.
    async fn append_audit(
        &self,
        batch: &[Sealed],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError>;
    /// Stores a checkpoint of a record already stored.
    async fn put_audit_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Records matching `q`, newest first.
    async fn audit_records(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError>;
    /// Every chain that is registered or has records or checkpoints (those not registered
    /// with `retained_seq` 0), by id.
    async fn audit_chains(&self) -> Result<Vec<ChainInfo>, StoreError>;
    /// A chain's checkpoints.
    async fn audit_checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, StoreError>;
    /// Up to `limit` records of `chain` after sequence number `after`, in sequence order.
    async fn audit_chain_records(
        &self,
        chain: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
    /// Drops, in every chain, the records up to its newest checkpoint taken before `cutoff_ms`
    /// (and the checkpoints before that one); returns how many records were dropped.
    async fn apply_audit_retention(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}

const PUT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
    (chain_id, seq, record_id, hash, created_ms) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (chain_id, seq) DO NOTHING";

macro_rules! audit_store {
    ($store:ident, $db:ty) => {
        #[async_trait]
        impl AuditStore for $store {
            async fn start_audit_chain(&self, c: &ChainInfo) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_chains (chain_id, replica, started_ms, retained_seq) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&c.chain)
                .bind(&c.replica)
                .bind(c.started_ms)
                .bind(i(c.retained_seq))
                .execute(self.pool())
                .await?;
                Ok(())
            }

            async fn append_audit(
                &self,
                batch: &[Sealed],
                checkpoint: Option<&Checkpoint>,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool().begin().await?;
                for chunk in batch.chunks(64) {
                    let mut qb: sqlx::QueryBuilder<'_, $db> = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_records \
                         (id, chain_id, seq, ts_ms, session, path, body, hash) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(&r.id)
                            .push_bind(&r.chain)
                            .push_bind(i(r.seq))
                            .push_bind(r.ts_ms)
                            .push_bind(&r.session)
                            .push_bind(r.path)
                            .push_bind(&r.body)
                            .push_bind(&r.hash);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                if let Some(c) = checkpoint {
                    sqlx::query(PUT_CHECKPOINT)
                        .bind(&c.chain)
                        .bind(i(c.seq))
                        .bind(&c.record_id)
                        .bind(&c.hash)
                        .bind(c.created_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn put_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query(PUT_CHECKPOINT)
                    .bind(&c.chain)
                    .bind(i(c.seq))
                    .bind(&c.record_id)
                    .bind(&c.hash)
                    .bind(c.created_ms)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn audit_records(&self, q: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
                let mut qb: sqlx::QueryBuilder<'_, $db> =
                    sqlx::QueryBuilder::new("SELECT id, body, hash FROM audit_records WHERE 1=1");
                if let Some(s) = &q.session {
                    qb.push(" AND session = ").push_bind(s.clone());
                }
                if let Some(t) = q.since_ms {
                    qb.push(" AND ts_ms >= ").push_bind(t);
                }
                if let Some(t) = q.until_ms {
                    qb.push(" AND ts_ms < ").push_bind(t);
                }
                if let Some(id) = &q.before_id {
                    qb.push(" AND id < ").push_bind(id.clone());
                }
                qb.push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(q.limit.clamp(1, 1000)));
                Ok(qb.build_query_as().fetch_all(self.pool()).await?)
            }

            async fn audit_chains(&self) -> Result<Vec<ChainInfo>, StoreError> {
                let rows: Vec<ChainRow> = sqlx::query_as(
                    "SELECT ids.chain_id, c.replica, c.started_ms, c.retained_seq FROM ( \
                         SELECT chain_id FROM audit_chains \
                         UNION SELECT DISTINCT chain_id FROM audit_records \
                         UNION SELECT DISTINCT chain_id FROM audit_checkpoints \
                     ) ids LEFT JOIN audit_chains c ON c.chain_id = ids.chain_id \
                     ORDER BY ids.chain_id",
                )
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| ChainInfo {
                        chain: r.chain_id,
                        replica: r.replica.unwrap_or_default(),
                        started_ms: r.started_ms.unwrap_or(0),
                        retained_seq: r.retained_seq.map_or(0, u),
                    })
                    .collect())
            }

            async fn audit_checkpoints(&self, chain: &str) -> Result<Vec<Checkpoint>, StoreError> {
                let rows: Vec<CheckpointRow> = sqlx::query_as(
                    "SELECT chain_id, seq, record_id, hash, created_ms FROM audit_checkpoints \
                     WHERE chain_id = $1 ORDER BY seq",
                )
                .bind(chain)
                .fetch_all(self.pool())
                .await?;
                Ok(rows.into_iter().map(Checkpoint::from).collect())
            }

            async fn audit_chain_records(
                &self,
                chain: &str,
                after: u64,
                limit: u32,
            ) -> Result<Vec<StoredRecord>, StoreError> {
                let rows: Vec<RecordRow> = sqlx::query_as(
                    "SELECT id, chain_id, seq, ts_ms, session, path, body, hash \
                     FROM audit_records WHERE chain_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(chain)
                .bind(i(after))
                .bind(i64::from(limit.max(1)))
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| StoredRecord {
                        id: r.id,
                        chain: r.chain_id,
                        seq: u(r.seq),
                        ts_ms: r.ts_ms,
                        session: r.session,
                        path: r.path,
                        body: r.body,
                        hash: r.hash,
                    })
                    .collect())
            }

            async fn apply_audit_retention(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
                // The newest checkpoint of each chain taken before the cutoff, past what was
                // dropped already.
                let due: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT k.chain_id, MAX(k.seq) FROM audit_checkpoints k \
                     LEFT JOIN audit_chains c ON c.chain_id = k.chain_id \
                     WHERE k.created_ms < $1 AND k.seq > COALESCE(c.retained_seq, 0) \
                     GROUP BY k.chain_id",
                )
                .bind(cutoff_ms)
                .fetch_all(self.pool())
                .await?;
                let mut dropped = 0;
                for (chain, seq) in due {
                    let mut tx = self.pool().begin().await?;
                    let done =
                        sqlx::query("DELETE FROM audit_records WHERE chain_id = $1 AND seq <= $2")
                            .bind(&chain)
                            .bind(seq)
                            .execute(&mut *tx)
                            .await?;
                    dropped += done.rows_affected();
                    sqlx::query("DELETE FROM audit_checkpoints WHERE chain_id = $1 AND seq < $2")
                        .bind(&chain)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    // A chain whose row is gone (never registered) gets one, so what was
                    // dropped stays known.
                    sqlx::query(
                        "INSERT INTO audit_chains (chain_id, replica, started_ms, retained_seq) \
                         VALUES ($1, '', 0, $2) \
                         ON CONFLICT (chain_id) DO UPDATE SET retained_seq = excluded.retained_seq",
                    )
                    .bind(&chain)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                Ok(dropped)
            }
        }

    };
}

audit_store!(SqliteStore, sqlx::Sqlite);
audit_store!(PostgresStore, sqlx::Postgres);

/// What verifying every stored chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditVerification {
    /// The chains that verified.
    pub intact: Vec<ChainSummary>,
    /// Each broken chain's first bad record, earliest first.
    pub bad: Vec<BadRecord>,
}

impl AuditVerification {
    /// The earliest bad record of all chains.
    pub fn first_bad(&self) -> Option<&BadRecord> {
        self.bad.first()
    }
}

/// Records read at a time while verifying a chain.
const VERIFY_PAGE: u32 = 1000;

/// Verifies every chain in `store`, reading each in pages in sequence order.
pub async fn verify_audit(store: &dyn AuditStore) -> Result<AuditVerification, StoreError> {
    let mut out = AuditVerification::default();
    for chain in store.audit_chains().await? {
        let checkpoints = store.audit_checkpoints(&chain.chain).await?;
        let mut verifier = ChainVerifier::new(&chain, checkpoints);
        // Records at or below the retention point are read too: one left there is out of
        // place (the verifier names it).
        let mut after = 0;
        loop {
            let page = store
                .audit_chain_records(&chain.chain, after, VERIFY_PAGE)
                .await?;
            for r in &page {
                verifier.push(r);
            }
            match page.last() {
                Some(last) if page.len() == VERIFY_PAGE as usize && !verifier.failed() => {
                    after = last.seq;
                }
                _ => break,
            }
        }
        match verifier.finish() {
            Ok(summary) => out.intact.push(summary),
            Err(bad) => out.bad.push(bad),
        }
    }
    out.bad
        .sort_by(|a, b| (a.ts_ms, &a.id).cmp(&(b.ts_ms, &b.id)));
    Ok(out)
}

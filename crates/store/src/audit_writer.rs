//! The audit writer: a bounded queue between the gateway and the audit tables, and the one
//! task per process that seals records into this process's chain and stores them.
//!
//! **Nothing is lost silently.** [`AuditSink::submit`] never blocks the request path: it
//! queues the record at once when there is room; when the queue is full, the record waits for
//! room (in a task of its own) up to `max_wait`, and only then is it given up — counted in
//! [`AuditStats::lost`] (logged with the totals at shutdown) and reported as an
//! error in the server log with its id. [`AuditSink::send`] is the same wait for a caller that
//! can afford it, answering whether the record was queued.
//!
//! **Records are sealed only once stored.** The task takes whatever is queued (up to a batch,
//! never past the next checkpoint), and what arrives within [`LINGER`] of it, so a steady
//! trickle of records is written a transaction per batch rather than one per record; it seals
//! the batch after the chain's head and writes it in one transaction with the checkpoint due, if
//! any; the head moves only when the transaction commits. A write that fails because the
//! database is unreachable is retried with backoff (100 ms doubling to 5 s) for as long as the
//! gateway runs, so the chain never has a hole: meanwhile the queue fills and new records wait,
//! then are reported lost as above. A batch the database refuses (its values) is written
//! record by record; a record refused alone is reported lost and the chain goes on without it.
//!
//! **Checkpoints** are taken every `checkpoint_every` records, `checkpoint_interval` after the
//! first record since the last one, and on shutdown. **Retention**, when set, runs every half
//! of it (at least every second, at most every minute): records older than it are dropped a
//! checkpoint at a time ([`crate::AuditStore::apply_audit_retention`]), across every chain.
//! [`AuditWriter::shutdown`] stops intake, writes everything queued, and takes a checkpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use portcullis_audit::{AuditRecord, ChainHead, ChainInfo, Checkpoint, Sealed};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{AuditStore, StoreError};

/// Counters describing the audit writer's work.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records queued.
    pub accepted: AtomicU64,
    /// Records that had to wait for room in the queue.
    pub waited: AtomicU64,
    /// Records stored.
    pub written: AtomicU64,
    /// Records given up: the queue stayed full, the writer had stopped, or the database
    /// refused or stayed unreachable at shutdown.
    pub lost: AtomicU64,
    /// Checkpoints stored.
    pub checkpoints: AtomicU64,
}

/// The audit writer's settings.
#[derive(Debug, Clone)]
pub struct AuditWriterConfig {
    /// The process writing (shown with its chain).
    pub replica: String,
    /// Records the queue holds.
    pub queue_capacity: usize,
    /// Records per transaction.
    pub batch_size: usize,
    /// Records between checkpoints.
    pub checkpoint_every: u64,
    /// Longest time between checkpoints while records are written.
    pub checkpoint_interval: Duration,
    /// How long records are kept (`None`: for ever).
    pub retention: Option<Duration>,
    /// How long a record waits for room in a full queue.
    pub max_wait: Duration,
}

impl Default for AuditWriterConfig {
    fn default() -> Self {
        let s = portcullis_audit::AuditSettings::default();
        Self::from_settings(&s, "gateway")
    }
}

impl AuditWriterConfig {
    /// The writer's settings from the `audit:` block.
    pub fn from_settings(s: &portcullis_audit::AuditSettings, replica: &str) -> Self {
        Self {
            replica: replica.to_owned(),
            queue_capacity: s.queue_capacity,
            batch_size: s.batch_size,
            checkpoint_every: s.checkpoint_every,
            checkpoint_interval: s.checkpoint_interval,
            retention: s.retention,
            max_wait: s.max_wait,
        }
    }
}

/// Why a record was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditLost {
    /// The queue stayed full for `max_wait`.
    #[error("the audit queue stayed full")]
    QueueFull,
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Stopped,
}

/// Where the gateway hands audit records: cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditRecord>,
    stats: Arc<AuditStats>,
    max_wait: Duration,
}

impl AuditSink {
    /// Queues `record` without blocking: at once when there is room, else from a task that
    /// waits for room up to `max_wait`; a record given up is counted and reported.
    pub fn submit(&self, record: AuditRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(record)) => {
                self.stats.waited.fetch_add(1, Ordering::Relaxed);
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        let sink = self.clone();
                        runtime.spawn(async move {
                            let _ = sink.send(record).await;
                        });
                    }
                    Err(_) => self.lose(&record.id, &AuditLost::QueueFull),
                }
            }
            Err(mpsc::error::TrySendError::Closed(record)) => {
                self.lose(&record.id, &AuditLost::Stopped);
            }
        }
    }

    /// Queues `record`, waiting for room up to `max_wait`; a record given up is counted and
    /// reported, and the reason returned.
    pub async fn send(&self, record: AuditRecord) -> Result<(), AuditLost> {
        let id = record.id.clone();
        let outcome = match tokio::time::timeout(self.max_wait, self.tx.send(record)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(AuditLost::Stopped),
            Err(_) => Err(AuditLost::QueueFull),
        };
        match &outcome {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => self.lose(&id, why),
        }
        outcome
    }

    fn lose(&self, id: &str, why: &AuditLost) {
        let total = self.stats.lost.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(id, lost_total = total, "audit record lost: {why}");
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<AuditStats> {
        &self.stats
    }

    /// Records in the queue now, not yet taken by the writer (those waiting for room are not
    /// counted).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }
}

/// The background audit writer of this process.
#[derive(Debug)]
pub struct AuditWriter {
    handle: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    stopping: Arc<AtomicBool>,
    chain: String,
}

impl AuditWriter {
    /// Registers a new chain for this process in `store` and starts writing it.
    pub async fn spawn(
        store: Arc<dyn AuditStore>,
        config: AuditWriterConfig,
    ) -> Result<(AuditSink, AuditWriter), StoreError> {
        let chain = format!("{}-{}", config.replica, uuid::Uuid::now_v7());
        store
            .start_audit_chain(&ChainInfo {
                chain: chain.clone(),
                replica: config.replica.clone(),
                started_ms: jiff::Timestamp::now().as_millisecond(),
                retained_seq: 0,
            })
            .await?;
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(AuditStats::default());
        let (stop, stop_rx) = oneshot::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let task = Task {
            store,
            head: ChainHead::start(chain.clone()),
            since_checkpoint: 0,
            checkpointed_seq: 0,
            rx,
            stats: stats.clone(),
            stopping: stopping.clone(),
            config: config.clone(),
        };
        let handle = tokio::spawn(task.run(stop_rx));
        let sink = AuditSink {
            tx,
            stats,
            max_wait: config.max_wait,
        };
        Ok((
            sink,
            AuditWriter {
                handle,
                stop,
                stopping,
                chain,
            },
        ))
    }

    /// This process's chain.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Stops intake, writes everything queued, takes a checkpoint and waits for the task.
    pub async fn shutdown(self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.stop.send(());
        if let Err(e) = self.handle.await {
            tracing::error!("audit writer ended abnormally: {e}");
        }
    }
}

struct Task {
    store: Arc<dyn AuditStore>,
    head: ChainHead,
    /// Records stored since the last checkpoint.
    since_checkpoint: u64,
    checkpointed_seq: u64,
    rx: mpsc::Receiver<AuditRecord>,
    stats: Arc<AuditStats>,
    stopping: Arc<AtomicBool>,
    config: AuditWriterConfig,
}

/// Attempts of one write once shutdown began, before its records are given up.
const ATTEMPTS_AT_SHUTDOWN: u32 = 3;
/// How long the writer waits, once a record arrives, for more to write with it. Records reach
/// `GET /admin/audit` at most this much later; in exchange, a gateway answering one MCP call
/// after another spends a transaction per batch instead of one per call.
pub const LINGER: Duration = Duration::from_millis(20);

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let batch_size = self.config.batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let far = Duration::from_secs(86_400 * 365);
        let retention_every = self
            .config
            .retention
            .map(|r| (r / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)));
        let mut next_retention = retention_every.map(|e| Instant::now() + e);
        let mut checkpoint_at: Option<Instant> = None;
        loop {
            let checkpoint_sleep = checkpoint_at.unwrap_or_else(|| Instant::now() + far);
            let retention_sleep = next_retention.unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                biased;
                _ = &mut stop => break,
                n = self.rx.recv_many(&mut batch, self.room(batch_size)) => {
                    if n == 0 {
                        break;
                    }
                    // What arrives within the linger joins the batch, up to the next checkpoint:
                    // a batch never spans two checkpoints, so retention (a checkpoint at a time)
                    // sees the same records whatever the timing.
                    let until = Instant::now() + LINGER;
                    loop {
                        let room = self.room(batch_size).saturating_sub(batch.len());
                        if room == 0 {
                            break;
                        }
                        match tokio::time::timeout_at(until, self.rx.recv_many(&mut batch, room))
                            .await
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    self.write(&mut batch).await;
                    if self.since_checkpoint == 0 {
                        checkpoint_at = None;
                    } else if checkpoint_at.is_none() {
                        checkpoint_at = Some(Instant::now() + self.config.checkpoint_interval);
                    }
                }
                _ = tokio::time::sleep_until(checkpoint_sleep), if checkpoint_at.is_some() => {
                    self.checkpoint().await;
                    checkpoint_at = None;
                }
                _ = tokio::time::sleep_until(retention_sleep), if next_retention.is_some() => {
                    self.retain().await;
                    next_retention = retention_every.map(|e| Instant::now() + e);
                }
            }
        }
        // Shutdown: refuse new records, write what is queued, mark the chain's end.
        self.rx.close();
        while self.rx.recv_many(&mut batch, self.room(batch_size)).await > 0 {
            self.write(&mut batch).await;
        }
        self.checkpoint().await;
    }

    /// Records the next batch may hold: a batch, and never past the next checkpoint.
    fn room(&self, batch_size: usize) -> usize {
        let to_checkpoint = self
            .config
            .checkpoint_every
            .saturating_sub(self.since_checkpoint)
            .max(1);
        usize::try_from(to_checkpoint).map_or(batch_size, |n| n.min(batch_size))
    }

    /// Seals and stores `batch` (emptied), retrying while the database is unreachable.
    async fn write(&mut self, batch: &mut Vec<AuditRecord>) {
        if batch.is_empty() {
            return;
        }
        let records = std::mem::take(batch);
        let mut delay = Duration::from_millis(100);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (sealed, checkpoint) = self.seal(&records);
            match self.store.append_audit(&sealed, checkpoint.as_ref()).await {
                Ok(()) => {
                    self.stored(&sealed, checkpoint.is_some());
                    return;
                }
                Err(e) if e.is_refusal() => {
                    tracing::warn!(
                        records = records.len(),
                        "audit batch refused, writing its records one by one: {e}"
                    );
                    for record in &records {
                        self.write_alone(record).await;
                    }
                    return;
                }
                Err(e) => {
                    if self.stopping.load(Ordering::Relaxed) && attempts >= ATTEMPTS_AT_SHUTDOWN {
                        let n = records.len() as u64;
                        let total = self.stats.lost.fetch_add(n, Ordering::Relaxed) + n;
                        tracing::error!(
                            records = n,
                            lost_total = total,
                            "audit records lost: the database stayed unreachable at shutdown: {e}"
                        );
                        return;
                    }
                    if attempts.is_power_of_two() {
                        tracing::error!(
                            records = records.len(),
                            attempts,
                            "audit write failed, retrying (new records wait in the queue): {e}"
                        );
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Writes one record of a refused batch; a record refused alone is lost (reported).
    async fn write_alone(&mut self, record: &AuditRecord) {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=5u32 {
            let (sealed, checkpoint) = self.seal(std::slice::from_ref(record));
            match self.store.append_audit(&sealed, checkpoint.as_ref()).await {
                Ok(()) => {
                    self.stored(&sealed, checkpoint.is_some());
                    return;
                }
                Err(e) if e.is_refusal() || attempt == 5 => {
                    let total = self.stats.lost.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(id = %record.id, lost_total = total, "audit record lost: {e}");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// `records` sealed after the head, and the checkpoint due with them.
    fn seal(&self, records: &[AuditRecord]) -> (Vec<Sealed>, Option<Checkpoint>) {
        let mut head = self.head.clone();
        let mut sealed = Vec::with_capacity(records.len());
        for r in records {
            match head.seal(r) {
                Ok(s) => {
                    head.advance(&s);
                    sealed.push(s);
                }
                Err(e) => {
                    let total = self.stats.lost.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::error!(id = %r.id, lost_total = total, "audit record lost: {e}");
                }
            }
        }
        let due = self.since_checkpoint + sealed.len() as u64 >= self.config.checkpoint_every;
        let checkpoint = sealed.last().filter(|_| due).map(checkpoint_of);
        (sealed, checkpoint)
    }

    fn stored(&mut self, sealed: &[Sealed], checkpointed: bool) {
        if let Some(last) = sealed.last() {
            self.head.advance(last);
        }
        self.stats
            .written
            .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        if checkpointed {
            self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            self.since_checkpoint = 0;
            self.checkpointed_seq = self.head.seq;
        } else {
            self.since_checkpoint += sealed.len() as u64;
        }
    }

    /// A checkpoint of the head, unless it has one.
    async fn checkpoint(&mut self) {
        if self.head.seq == 0 || self.checkpointed_seq == self.head.seq {
            return;
        }
        let Some(id) = self.head.id.clone() else {
            return;
        };
        let c = Checkpoint {
            chain: self.head.chain.clone(),
            seq: self.head.seq,
            record_id: id,
            hash: self.head.hash.clone(),
            created_ms: jiff::Timestamp::now().as_millisecond(),
        };
        match self.store.put_audit_checkpoint(&c).await {
            Ok(()) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.since_checkpoint = 0;
                self.checkpointed_seq = c.seq;
            }
            // The next one covers it.
            Err(e) => tracing::warn!("audit checkpoint failed: {e}"),
        }
    }

    async fn retain(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = jiff::Timestamp::now().as_millisecond().saturating_sub(ms);
        match self.store.apply_audit_retention(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "audit retention dropped old records"),
            Err(e) => tracing::warn!("audit retention failed: {e}"),
        }
    }
}

fn checkpoint_of(last: &Sealed) -> Checkpoint {
    Checkpoint {
        chain: last.chain.clone(),
        seq: last.seq,
        record_id: last.id.clone(),
        hash: last.hash.clone(),
        created_ms: jiff::Timestamp::now().as_millisecond(),
    }
}

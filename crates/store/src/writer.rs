//! The request-log writer: a bounded queue between the request path and the database.
//!
//! The request path hands a record to [`LogSink::submit`], which never waits: it is a
//! non-blocking push onto a bounded channel. A background task drains the channel in batches
//! (whatever has accumulated, lingering up to `flush_interval` to fill a batch) and writes each
//! batch in one transaction. When a batch fails, its records are written one by one, so a
//! record the database refuses never takes other records with it; a record whose write fails
//! for any other reason (a lost connection, a restarting database) is retried with backoff.
//! Nothing is dropped silently: a record refused because the queue is full, refused by the
//! database, or lost after every retry failed, is counted in [`LogStats`] (exported as
//! metrics) and reported in the server log.
//! [`LogWriter::shutdown`] stops intake and flushes everything queued. The batch size and the
//! linger may change while the writer runs ([`LogSink::retune`]); the queue's capacity is fixed
//! when it starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::record::LogRecord;
use crate::{LogStore, StoreError};

/// Counters describing the writer's work.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Records accepted onto the queue.
    pub accepted: AtomicU64,
    /// Records written to the database.
    pub written: AtomicU64,
    /// Records refused because the queue was full.
    pub dropped: AtomicU64,
    /// Records lost because the database refused them or every write attempt failed.
    pub failed: AtomicU64,
}

impl LogStats {
    /// Records that were not stored, for any reason.
    pub fn lost(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// Writer tuning.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Records the queue holds.
    pub queue_capacity: usize,
    /// Records per database write.
    pub batch_size: usize,
    /// Longest a record lingers waiting for its batch to fill.
    pub flush_interval: Duration,
    /// Delay before the first retry of a failed write; later retries wait 5× and 20× longer.
    pub retry_base_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval: Duration::from_millis(100),
            retry_base_delay: Duration::from_millis(100),
        }
    }
}

/// The batch size and linger in force, read by the writer before each batch.
#[derive(Debug)]
struct Tuning {
    batch_size: AtomicUsize,
    flush_interval_us: AtomicU64,
}

impl Tuning {
    fn new(batch_size: usize, flush_interval: Duration) -> Self {
        let tuning = Self {
            batch_size: AtomicUsize::new(1),
            flush_interval_us: AtomicU64::new(0),
        };
        tuning.set(batch_size, flush_interval);
        tuning
    }

    fn set(&self, batch_size: usize, flush_interval: Duration) {
        self.batch_size.store(batch_size.max(1), Ordering::Relaxed);
        let us = u64::try_from(flush_interval.as_micros()).unwrap_or(u64::MAX);
        self.flush_interval_us.store(us, Ordering::Relaxed);
    }

    fn get(&self) -> (usize, Duration) {
        (
            self.batch_size.load(Ordering::Relaxed),
            Duration::from_micros(self.flush_interval_us.load(Ordering::Relaxed)),
        )
    }
}

/// The request path's handle: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogRecord>,
    stats: Arc<LogStats>,
    tuning: Arc<Tuning>,
}

impl LogSink {
    /// Queues a record for writing. Never waits; a full queue counts the record as dropped.
    pub fn submit(&self, record: LogRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // One line per power of two keeps a flood from flooding the log too.
                if n.is_power_of_two() {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => "the log queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the log writer has stopped",
                    };
                    tracing::error!(dropped_total = n, "request log record dropped: {reason}");
                }
            }
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<LogStats> {
        &self.stats
    }

    /// Changes the writer's batch size and linger; the next batch uses them.
    pub fn retune(&self, batch_size: usize, flush_interval: Duration) {
        self.tuning.set(batch_size, flush_interval);
    }
}

/// The background writer task.
#[derive(Debug)]
pub struct LogWriter {
    handle: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl LogWriter {
    /// Starts the writer over `store`.
    pub fn spawn(store: Arc<dyn LogStore>, config: WriterConfig) -> (LogSink, LogWriter) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(LogStats::default());
        let (stop, stop_rx) = oneshot::channel();
        let tuning = Arc::new(Tuning::new(config.batch_size, config.flush_interval));
        let task = WriterTask {
            store,
            rx,
            stats: stats.clone(),
            tuning: tuning.clone(),
            retry_base_delay: config.retry_base_delay,
        };
        let handle = tokio::spawn(task.run(stop_rx));
        (LogSink { tx, stats, tuning }, LogWriter { handle, stop })
    }

    /// Stops intake, writes everything queued, and waits for the task to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.handle.await {
            tracing::error!("request log writer ended abnormally: {e}");
        }
    }
}

struct WriterTask {
    store: Arc<dyn LogStore>,
    rx: mpsc::Receiver<LogRecord>,
    stats: Arc<LogStats>,
    tuning: Arc<Tuning>,
    retry_base_delay: Duration,
}

impl WriterTask {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut batch = Vec::with_capacity(self.tuning.get().0);
        let mut stopping = false;
        while !stopping {
            let batch_size = self.tuning.get().0;
            tokio::select! {
                biased;
                _ = &mut stop => stopping = true,
                n = self.rx.recv_many(&mut batch, batch_size) => stopping = n == 0,
            }
            // Linger so that a batch collects more than one record, without waking for each
            // record that arrives meanwhile; a stop signal ends the linger at once. The tuning
            // is read again now: it may have changed while the writer waited for this batch's
            // first record.
            let (batch_size, flush_interval) = self.tuning.get();
            if !stopping && batch.len() < batch_size && !flush_interval.is_zero() {
                tokio::select! {
                    biased;
                    _ = &mut stop => stopping = true,
                    _ = tokio::time::sleep(flush_interval) => {}
                }
                while batch.len() < batch_size {
                    match self.rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            self.write(&mut batch).await;
        }
        // Shutdown: refuse new records, then drain what is queued.
        self.rx.close();
        let batch_size = self.tuning.get().0;
        while self.rx.recv_many(&mut batch, batch_size).await > 0 {
            self.write(&mut batch).await;
        }
    }

    async fn write(&self, batch: &mut Vec<LogRecord>) {
        if batch.is_empty() {
            return;
        }
        match self.store.append(batch).await {
            Ok(()) => {
                self.stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) if batch.len() == 1 => {
                self.write_alone(&batch[0], e).await;
            }
            Err(e) => {
                // One record the database refuses must not take the others with it: write
                // them one by one, so that only a record that cannot be written is lost.
                tracing::warn!(
                    records = batch.len(),
                    "request log batch write failed, writing its records one by one: {e}"
                );
                for (i, record) in batch.iter().enumerate() {
                    let outcome = match self.store.append(std::slice::from_ref(record)).await {
                        Ok(()) => {
                            self.stats.written.fetch_add(1, Ordering::Relaxed);
                            Outcome::Written
                        }
                        Err(e) => self.write_alone(record, e).await,
                    };
                    if outcome == Outcome::Unreachable {
                        // The records left would only wait out the same retries one by one.
                        self.lose(batch.len() - i - 1);
                        break;
                    }
                }
            }
        }
        batch.clear();
    }

    /// Writes one record whose first write failed with `first`: retried with backoff unless
    /// the database refused its values; counted and reported when lost.
    async fn write_alone(&self, record: &LogRecord, first: StoreError) -> Outcome {
        let backoff = [
            self.retry_base_delay,
            self.retry_base_delay * 5,
            self.retry_base_delay * 20,
        ];
        let mut error = first;
        for delay in backoff {
            if error.is_refusal() {
                break;
            }
            tracing::warn!(id = %record.id, "request log write failed, retrying: {error}");
            tokio::time::sleep(delay).await;
            match self.store.append(std::slice::from_ref(record)).await {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Written;
                }
                Err(e) => error = e,
            }
        }
        let total = self.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            id = %record.id,
            failed_total = total,
            "request log record lost: {error}"
        );
        if error.is_refusal() {
            Outcome::Refused
        } else {
            Outcome::Unreachable
        }
    }

    /// Counts `n` records given up on, untried, because the database stayed unreachable.
    fn lose(&self, n: usize) {
        if n == 0 {
            return;
        }
        let n = n as u64;
        let total = self.stats.failed.fetch_add(n, Ordering::Relaxed) + n;
        tracing::error!(
            records = n,
            failed_total = total,
            "request log records lost: the database stayed unreachable"
        );
    }
}

/// What became of one record's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Stored.
    Written,
    /// Lost: the database refused its values.
    Refused,
    /// Lost: the database stayed unreachable through every retry.
    Unreachable,
}

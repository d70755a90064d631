//! The Responses API's stored answers on the request path. [`ResponseKeeper`] queues each
//! answer to keep for a writer task, so an answer never waits on the database: a full queue or
//! a write the database refuses (or keeps failing, after retries) is counted in
//! `portcullis_responses_stored_total{outcome}` and logged with the response's id, never
//! returned to the caller. It reads conversations back for `previous_response_id` and for
//! `GET`/`DELETE /v1/responses/{id}` — answers still queued included, so a conversation goes
//! on at once on the replica that answered (another replica sees it once written, within the
//! writer's batch). Every read names the owner (the caller's tenant).
//!
//! **Retention** (`responses.retention`, default 30 days): [`ResponseKeeper::spawn_retention`]
//! runs on every replica, every half of the retention (at least every second, at most every
//! minute), and deletes the responses created longer ago, oldest first, in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use portcullis_store::{ResponseStore, StoreError, StoredResponse};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Answers waiting to be written at most.
const QUEUE: usize = 4096;
/// Answers per write.
const BATCH: usize = 64;
/// Waits before each retry of a write that failed for a reason other than its values.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// Keeps Responses API answers and reads them back.
#[derive(Debug, Clone)]
pub struct ResponseKeeper {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ResponseStore>,
    metrics: Arc<Metrics>,
    /// Answers queued and not yet written, by id.
    pending: Mutex<HashMap<String, StoredResponse>>,
    /// The writer's queue of ids, started with the first answer kept.
    queue: OnceLock<mpsc::Sender<String>>,
    /// `responses.retention` in force, in milliseconds.
    retention_ms: AtomicU64,
}

impl ResponseKeeper {
    /// A keeper writing to `store`, counting in `metrics`.
    pub fn new(
        store: Arc<dyn ResponseStore>,
        metrics: Arc<Metrics>,
        settings: &portcullis_config::ResponsesConfig,
    ) -> Self {
        let keeper = Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                pending: Mutex::new(HashMap::new()),
                queue: OnceLock::new(),
                retention_ms: AtomicU64::new(0),
            }),
        };
        keeper.configure(settings);
        keeper
    }

    /// Applies `settings` (a reload): the retention from the next sweep on.
    pub fn configure(&self, settings: &portcullis_config::ResponsesConfig) {
        let ms = u64::try_from(settings.retention.as_millis()).unwrap_or(u64::MAX);
        self.inner.retention_ms.store(ms, Ordering::Relaxed);
    }

    /// Starts the retention sweep (see the module documentation); it ends with the keeper.
    pub fn spawn_retention(&self) {
        tokio::spawn(sweep_retention(Arc::downgrade(&self.inner)));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredResponse>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `response` to be written. Never waits.
    pub fn keep(&self, response: StoredResponse) {
        let queue = self.inner.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write(Arc::downgrade(&self.inner), rx));
            tx
        });
        let id = response.id.clone();
        self.pending().insert(id.clone(), response);
        if let Err(e) = queue.try_send(id) {
            let id = match e {
                mpsc::error::TrySendError::Full(id) | mpsc::error::TrySendError::Closed(id) => id,
            };
            self.pending().remove(&id);
            self.inner.metrics.observe_stored_responses("dropped", 1);
            tracing::error!(response_id = %id, "Responses API answer not kept: the queue is full");
        }
    }

    fn pending_of(&self, owner: &str, id: &str) -> Option<StoredResponse> {
        self.pending().get(id).filter(|r| r.owner == owner).cloned()
    }

    /// `owner`'s response `id`.
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(r) = self.pending_of(owner, id) {
            return Ok(Some(r));
        }
        self.inner.store.response(owner, id).await
    }

    /// The conversation `owner`'s response `id` ends, oldest first, at most `limit` responses
    /// (the newest); empty when `id` is not `owner`'s.
    pub async fn chain(
        &self,
        owner: &str,
        id: &str,
        limit: u32,
    ) -> Result<Vec<StoredResponse>, StoreError> {
        let mut newest_first: Vec<StoredResponse> = Vec::new();
        let mut next = Some(id.to_owned());
        while let Some(id) = next.take() {
            let taken = u32::try_from(newest_first.len()).unwrap_or(u32::MAX);
            if taken >= limit {
                break;
            }
            match self.pending_of(owner, &id) {
                Some(r) => {
                    next.clone_from(&r.previous_id);
                    newest_first.push(r);
                }
                None => {
                    let mut chain = self
                        .inner
                        .store
                        .response_chain(owner, &id, limit - taken)
                        .await?;
                    chain.extend(newest_first.into_iter().rev());
                    return Ok(chain);
                }
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Deletes `owner`'s response `id`, queued or written; `false` when there was none.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let queued = {
            let mut pending = self.pending();
            match pending.get(id) {
                Some(r) if r.owner == owner => pending.remove(id).is_some(),
                _ => false,
            }
        };
        let stored = self.inner.store.delete_response(owner, id).await?;
        Ok(queued || stored)
    }

    /// Waits (at most `within`) until every queued answer is written or given up, as the
    /// gateway shuts down.
    pub async fn flush(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.pending().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The writer: batches of queued answers, each written in one transaction, retried while the
/// failure is not about the values; a batch that still fails is written answer by answer, so
/// one refused answer never costs the others. Ends when the keeper is gone.
async fn write(keeper: Weak<Inner>, mut rx: mpsc::Receiver<String>) {
    let mut ids = Vec::with_capacity(BATCH);
    loop {
        ids.clear();
        if rx.recv_many(&mut ids, BATCH).await == 0 {
            return;
        }
        let Some(inner) = keeper.upgrade() else {
            return;
        };
        let keeper = ResponseKeeper { inner };
        let batch: Vec<StoredResponse> = {
            let pending = keeper.pending();
            ids.iter()
                .filter_map(|id| pending.get(id).cloned())
                .collect()
        };
        if batch.is_empty() {
            continue;
        }
        let store = &keeper.inner.store;
        match put_retrying(store.as_ref(), &batch).await {
            Ok(()) => keeper
                .inner
                .metrics
                .observe_stored_responses("written", batch.len() as u64),
            Err(_) => {
                for r in &batch {
                    match put_retrying(store.as_ref(), std::slice::from_ref(r)).await {
                        Ok(()) => keeper.inner.metrics.observe_stored_responses("written", 1),
                        Err(e) => {
                            keeper.inner.metrics.observe_stored_responses("failed", 1);
                            tracing::error!(response_id = %r.id, "Responses API answer not kept: {e}");
                        }
                    }
                }
            }
        }
        for r in &batch {
            let deleted_meanwhile = keeper.pending().remove(&r.id).is_none();
            if deleted_meanwhile && let Err(e) = store.delete_response(&r.owner, &r.id).await {
                tracing::error!(response_id = %r.id, "a deleted Responses API answer could not be deleted: {e}");
            }
        }
    }
}

async fn put_retrying(
    store: &dyn ResponseStore,
    batch: &[StoredResponse],
) -> Result<(), StoreError> {
    let mut waits = RETRIES.iter();
    loop {
        match store.put_responses(batch).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_refusal() => return Err(e),
            Err(e) => match waits.next() {
                Some(wait) => {
                    tracing::warn!("writing Responses API answers failed, retrying: {e}");
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(e),
            },
        }
    }
}

/// Responses deleted per statement of a sweep.
const SWEEP_BATCH: u32 = 1000;

/// Deletes the responses the retention no longer keeps, every half of the retention (from 1 s
/// to 1 min), for as long as the keeper exists.
async fn sweep_retention(inner: Weak<Inner>) {
    loop {
        let Some(retention_ms) = inner
            .upgrade()
            .map(|i| i.retention_ms.load(Ordering::Relaxed))
        else {
            return;
        };
        let period = (Duration::from_millis(retention_ms) / 2)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let retention_ms =
            i64::try_from(inner.retention_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let cutoff = crate::clock::now_ms().saturating_sub(retention_ms);
        loop {
            match inner
                .store
                .delete_responses_before(cutoff, SWEEP_BATCH)
                .await
            {
                Ok(n) if n >= u64::from(SWEEP_BATCH) => continue,
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(
                            deleted = n,
                            "stored responses past their retention deleted"
                        );
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete stored responses past their retention");
                    break;
                }
            }
        }
    }
}

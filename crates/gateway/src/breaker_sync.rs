//! Circuit breakers shared by the replicas on one Redis: a replica whose breaker for a target
//! opens publishes it (`ZADD portcullis:breakers <open-until, Unix ms> <target>`), and every
//! replica polls the set ([`POLL_INTERVAL`]) and opens its own breaker for what is left of that
//! period, so a failing upstream is shed by the whole deployment, not replica by replica.
//!
//! Neither step is on the request path: publishing is a spawned task, polling a background
//! one. A Redis outage only loses the sharing; each replica's breakers keep working on their
//! own. Half-open probing stays per replica (each lets one probe through when its copy of the
//! period ends).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::now_ms;
use parking_lot::Mutex;
use portcullis_failover::CircuitBreakers;
use redis::aio::ConnectionManager;

/// The sorted set of open breakers.
const KEY: &str = "portcullis:breakers";

/// How often the set is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Entries whose period ended longer ago than this are pruned.
const PRUNE_AFTER_MS: i64 = 10 * 60 * 1000;

/// Publishes this replica's breaker openings.
#[derive(Clone)]
pub struct BreakerSync {
    redis: ConnectionManager,
    /// The open-until each target was last opened for (here or from the set), so an entry is
    /// applied once: a probe that closed the breaker here is not undone by an old entry, and
    /// this replica's own entries are not applied back to it.
    applied: Arc<Mutex<HashMap<String, i64>>>,
}

impl std::fmt::Debug for BreakerSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerSync").finish_non_exhaustive()
    }
}

impl BreakerSync {
    /// Shares breakers through `redis`.
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            applied: Arc::default(),
        }
    }

    /// Tells the other replicas that `target`'s breaker opened here for `open_for`. Never
    /// waits: the write runs on a spawned task.
    pub fn publish(&self, target: &str, open_for: Duration) {
        let until = now_ms().saturating_add(i64::try_from(open_for.as_millis()).unwrap_or(0));
        self.applied.lock().insert(target.to_owned(), until);
        let mut redis = self.redis.clone();
        let target = target.to_owned();
        tokio::spawn(async move {
            // Keeps the later of two openings (GT), so a replica never shortens another's.
            let written: Result<i64, _> = redis::cmd("ZADD")
                .arg(KEY)
                .arg("GT")
                .arg(until)
                .arg(&target)
                .query_async(&mut redis)
                .await;
            if let Err(e) = written {
                tracing::warn!(%target, "could not share an open circuit breaker: {e}");
            }
        });
    }

    /// Polls the shared set every [`POLL_INTERVAL`] and opens this replica's breakers for the
    /// periods other replicas published; ends when the breakers are dropped.
    pub fn spawn_poller(&self, breakers: Weak<CircuitBreakers>) {
        let mut redis = self.redis.clone();
        let applied = self.applied.clone();
        tokio::spawn(async move {
            let mut polls: u64 = 0;
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let Some(breakers) = breakers.upgrade() else {
                    return;
                };
                let now = now_ms();
                let open: Result<Vec<(String, i64)>, _> = redis::cmd("ZRANGEBYSCORE")
                    .arg(KEY)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .query_async(&mut redis)
                    .await;
                match open {
                    Ok(open) => apply(&breakers, &mut applied.lock(), open, now),
                    Err(e) => tracing::debug!("could not read shared circuit breakers: {e}"),
                }
                polls += 1;
                if polls.is_multiple_of(240) {
                    let _: Result<i64, _> = redis::cmd("ZREMRANGEBYSCORE")
                        .arg(KEY)
                        .arg("-inf")
                        .arg(now - PRUNE_AFTER_MS)
                        .query_async(&mut redis)
                        .await;
                    applied.lock().retain(|_, until| *until > now);
                }
            }
        });
    }
}

/// Opens the breakers `open` names (target, open-until) that were not applied yet.
fn apply(
    breakers: &CircuitBreakers,
    applied: &mut HashMap<String, i64>,
    open: Vec<(String, i64)>,
    now: i64,
) {
    for (target, until) in open {
        if applied.get(&target).is_some_and(|seen| *seen >= until) {
            continue;
        }
        let remaining = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
        if breakers.open_elsewhere(&target, remaining) {
            tracing::info!(%target, "circuit breaker opened by another replica");
        }
        applied.insert(target, until);
    }
}

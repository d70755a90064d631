//! Request coalescing: identical requests in flight at the same time share one upstream call.
//!
//! The first request for a key becomes the *leader* and calls upstream; requests for the same
//! key arriving while it runs become *followers* and wait for the leader's entry instead of
//! calling upstream themselves. A leader that fails, or is dropped (its client went away, its
//! task was cancelled), releases its followers at once with nothing, and each proceeds on its
//! own. The map of keys in flight is locked only to look up, insert or remove one key — never
//! across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::key::CacheKey;

/// Where a key's leader stands, as its followers see it.
#[derive(Debug, Clone)]
enum Outcome {
    /// The leader is still calling upstream.
    Pending,
    /// The leader finished: with an entry, or without one (`None`).
    Done(Option<Bytes>),
}

/// The keys in flight, each with its leader's ticket and a receiver to hand to followers.
#[derive(Default)]
struct InFlight {
    leaders: HashMap<CacheKey, (u64, watch::Receiver<Outcome>)>,
    next_ticket: u64,
}

/// Tracks the requests in flight, by cache key. Cheap to clone; clones share the map.
#[derive(Clone, Default)]
pub struct Coalescer {
    in_flight: Arc<Mutex<InFlight>>,
}

/// The role a request plays for its key.
#[derive(Debug)]
pub enum Joined {
    /// Nobody else is computing this key: call upstream, then complete the guard.
    Leader(LeaderGuard),
    /// Another request is computing this key: wait for its entry.
    Follower(Follower),
}

/// Held by the request that calls upstream for a key. Completing it hands the entry to the
/// followers; dropping it without completing releases them with nothing.
pub struct LeaderGuard {
    key: CacheKey,
    in_flight: Arc<Mutex<InFlight>>,
    ticket: u64,
    sender: watch::Sender<Outcome>,
    released: bool,
}

/// Held by a request waiting for another's answer.
#[derive(Debug)]
pub struct Follower {
    receiver: watch::Receiver<Outcome>,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the requests in flight for `key`, as leader if there are none.
    pub fn join(&self, key: CacheKey) -> Joined {
        let mut in_flight = lock(&self.in_flight);
        if let Some((_, receiver)) = in_flight.leaders.get(&key) {
            return Joined::Follower(Follower {
                receiver: receiver.clone(),
            });
        }
        let (sender, receiver) = watch::channel(Outcome::Pending);
        let ticket = in_flight.next_ticket;
        in_flight.next_ticket = ticket.wrapping_add(1);
        in_flight.leaders.insert(key, (ticket, receiver));
        Joined::Leader(LeaderGuard {
            key,
            in_flight: Arc::clone(&self.in_flight),
            ticket,
            sender,
            released: false,
        })
    }

    /// How many keys have a leader in flight.
    pub fn in_flight(&self) -> usize {
        lock(&self.in_flight).leaders.len()
    }
}

impl fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl LeaderGuard {
    /// The key this leader computes.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Hands `entry` (an encoded cache entry) to every follower.
    pub fn complete(mut self, entry: Bytes) {
        self.release(Some(entry));
    }

    /// Releases the followers with nothing: the leader got no cacheable answer.
    pub fn fail(mut self) {
        self.release(None);
    }

    fn release(&mut self, entry: Option<Bytes>) {
        if self.released {
            return;
        }
        self.released = true;
        {
            let mut in_flight = lock(&self.in_flight);
            // The entry is ours: only a leader removes its key, and a new leader for the key
            // can only appear after that. Checked anyway, so a stray guard can never evict
            // another leader's entry.
            if in_flight
                .leaders
                .get(&self.key)
                .is_some_and(|(ticket, _)| *ticket == self.ticket)
            {
                in_flight.leaders.remove(&self.key);
            }
        }
        self.sender.send_replace(Outcome::Done(entry));
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.release(None);
    }
}

impl fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("key", &self.key)
            .field("released", &self.released)
            .finish()
    }
}

impl Follower {
    /// Waits up to `timeout` for the leader's entry. `None` if the leader failed, was dropped
    /// without completing, or did not finish in time: the follower then proceeds on its own.
    pub async fn wait(mut self, timeout: Duration) -> Option<Bytes> {
        let outcome = tokio::time::timeout(timeout, async {
            loop {
                if let Outcome::Done(entry) = &*self.receiver.borrow_and_update() {
                    return entry.clone();
                }
                if self.receiver.changed().await.is_err() {
                    // The sender is gone; whatever it last sent is final.
                    return match &*self.receiver.borrow() {
                        Outcome::Done(entry) => entry.clone(),
                        Outcome::Pending => None,
                    };
                }
            }
        })
        .await;
        outcome.ok().flatten()
    }
}

/// Locks the map, recovering from poisoning: the map stays consistent whatever panicked,
/// since every critical section is a single insert, lookup or removal.
fn lock(in_flight: &Mutex<InFlight>) -> MutexGuard<'_, InFlight> {
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

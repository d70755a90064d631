//! In-process counters: a sharded hash map of small states behind short-held mutexes.
//!
//! A request's charges are decided under the locks of every shard they touch, taken in shard
//! order (so two requests can never deadlock) and released before returning — never held across
//! an `.await`. Counter keys are 128-bit SipHash values keyed randomly per process, so lookups
//! allocate nothing and crafted scope values cannot collide on purpose.
//!
//! Memory stays bounded by the live counters: each counter records when it becomes equivalent
//! to an absent one (a GCRA bucket that refilled, a sliding window that passed, a budget window
//! that ended, a concurrency slot with nothing in flight) and a shard sweeps such counters out
//! at most once per second, when it is next used.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use smallvec::SmallVec;

use super::{
    AcquireOutcome, AcquireRequest, BackendError, ChargeOp, CounterKey, CounterState, LimitBackend,
    SettleOp, SettleRequest, Verdict,
};
use crate::algo;
use crate::clock::{Clock, SystemClock};

const SHARDS: usize = 64;
const SWEEP_EVERY_US: i64 = 1_000_000;

/// Counters in this process's memory. Cheap to clone handles to via `Arc`.
#[derive(Debug)]
pub struct MemoryBackend {
    shards: Box<[Mutex<Shard>]>,
    hash_high: RandomState,
    hash_low: RandomState,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Shard {
    slots: HashMap<u128, Slot, BuildHasherDefault<PassThroughHasher>>,
    next_sweep_us: i64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: SlotState,
    /// From this time on the slot is equivalent to an absent one and may be swept.
    idle_from_us: i64,
}

#[derive(Debug, Clone, Copy)]
enum SlotState {
    Gcra {
        tat: i64,
    },
    Sliding {
        index: i64,
        previous: u64,
        current: u64,
    },
    Concurrency {
        in_flight: u32,
    },
    Budget {
        spent: i64,
        reserved: i64,
    },
}

/// The keys are already uniformly distributed hashes: use their low bits as they are.
#[derive(Debug, Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// Counters on the system clock.
    pub fn new() -> MemoryBackend {
        MemoryBackend::with_clock(Arc::new(SystemClock))
    }

    /// Counters on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryBackend {
        MemoryBackend {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hash_high: RandomState::new(),
            hash_low: RandomState::new(),
            clock,
        }
    }

    /// Number of counters held (including idle ones not yet swept).
    pub fn counters(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).slots.len())
            .sum()
    }

    /// Removes every idle counter now (each shard also does this by itself, at most once a
    /// second, when used).
    pub fn sweep(&self) {
        let now = self.clock.now_micros();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.next_sweep_us = i64::MIN;
            shard.sweep(now);
        }
    }

    fn slot_id(&self, key: &CounterKey) -> u128 {
        match key {
            CounterKey::Hashed(hash) => *hash,
            CounterKey::Named(name) => self.hash(&("named", name.as_ref())),
        }
    }

    fn hash<T: std::hash::Hash>(&self, value: &T) -> u128 {
        let high = self.hash_high.hash_one(value);
        let low = self.hash_low.hash_one(value);
        (u128::from(high) << 64) | u128::from(low)
    }

    fn shard_of(id: u128) -> usize {
        ((id >> 64) as usize) % SHARDS
    }

    fn decide(&self, request: AcquireRequest<'_>) -> AcquireOutcome {
        let now = request.now_us;
        let ids: SmallVec<[u128; 8]> = request
            .charges
            .iter()
            .map(|charge| self.slot_id(&charge.key))
            .collect();
        let mut order: SmallVec<[usize; 8]> = ids.iter().map(|&id| Self::shard_of(id)).collect();
        order.sort_unstable();
        order.dedup();
        // Lock every shard involved, in ascending order.
        let mut guards: SmallVec<[(usize, MutexGuard<'_, Shard>); 8]> = order
            .iter()
            .map(|&index| (index, lock(&self.shards[index])))
            .collect();
        for (_, shard) in &mut guards {
            shard.sweep(now);
        }
        let mut verdicts: SmallVec<[Verdict; 8]> = SmallVec::new();
        let mut updates: SmallVec<[Option<Slot>; 8]> = SmallVec::new();
        let mut admitted = true;
        for (charge, &id) in request.charges.iter().zip(&ids) {
            let shard = shard_for(&mut guards, id);
            let stored = shard.slots.get(&id).copied();
            let (verdict, update) = evaluate(&charge.op, stored, now);
            admitted &= verdict.conforms;
            verdicts.push(verdict);
            updates.push(update);
        }
        if admitted {
            for (&id, update) in ids.iter().zip(updates) {
                if let Some(slot) = update {
                    shard_for(&mut guards, id).slots.insert(id, slot);
                }
            }
        }
        AcquireOutcome { admitted, verdicts }
    }

    fn apply(&self, now: i64, key: &CounterKey, op: &SettleOp) {
        let id = self.slot_id(key);
        let mut shard = lock(&self.shards[Self::shard_of(id)]);
        let Some(slot) = shard.slots.get_mut(&id) else {
            // Absent: the counter went idle (nothing to give back) or its budget window ended.
            if let SettleOp::Gcra { adjust_us } = op
                && *adjust_us > 0
            {
                let tat = now + adjust_us;
                shard.slots.insert(
                    id,
                    Slot {
                        state: SlotState::Gcra { tat },
                        idle_from_us: tat,
                    },
                );
            }
            return;
        };
        let mut remove = false;
        match (op, &mut slot.state) {
            (SettleOp::Gcra { adjust_us }, SlotState::Gcra { tat }) => {
                let new_tat = if *adjust_us > 0 {
                    (*tat).max(now) + adjust_us
                } else {
                    (*tat + adjust_us).max(now)
                };
                *tat = new_tat;
                slot.idle_from_us = new_tat;
                remove = new_tat <= now;
            }
            (
                SettleOp::SlidingWindow {
                    window_index,
                    adjust,
                    window_us,
                },
                SlotState::Sliding {
                    index,
                    previous,
                    current,
                },
            ) => {
                if *window_index > *index {
                    let (rolled, p, c) =
                        algo::sliding_roll(Some((*index, *previous, *current)), *window_index);
                    (*index, *previous, *current) = (rolled, p, c);
                    slot.idle_from_us = (rolled + 2).saturating_mul(*window_us);
                }
                if *window_index == *index {
                    *current = add_signed(*current, *adjust);
                } else if *window_index == *index - 1 {
                    *previous = add_signed(*previous, *adjust);
                }
            }
            (SettleOp::Release, SlotState::Concurrency { in_flight }) => {
                *in_flight = in_flight.saturating_sub(1);
                remove = *in_flight == 0;
            }
            (
                SettleOp::Budget {
                    reserved_micros,
                    actual_micros,
                },
                SlotState::Budget { spent, reserved },
            ) => {
                *reserved = (*reserved - reserved_micros).max(0);
                *spent += actual_micros;
            }
            _ => {}
        }
        if remove {
            shard.slots.remove(&id);
        }
    }
}

fn add_signed(value: u64, adjust: i64) -> u64 {
    if adjust >= 0 {
        value.saturating_add(adjust.unsigned_abs())
    } else {
        value.saturating_sub(adjust.unsigned_abs())
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave a counter half-written (every update is a
    // single insert), so a poisoned lock is safe to keep using.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_for<'g, 's>(
    guards: &'g mut SmallVec<[(usize, MutexGuard<'s, Shard>); 8]>,
    id: u128,
) -> &'g mut Shard {
    let wanted = MemoryBackend::shard_of(id);
    let position = guards
        .iter()
        .position(|(index, _)| *index == wanted)
        .unwrap_or_default();
    &mut guards[position].1
}

impl Shard {
    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep_us {
            return;
        }
        self.next_sweep_us = now + SWEEP_EVERY_US;
        self.slots.retain(|_, slot| slot.idle_from_us > now);
    }
}

/// Decides one charge: its verdict and, if it conforms, the slot to store.
fn evaluate(op: &ChargeOp, stored_slot: Option<Slot>, now: i64) -> (Verdict, Option<Slot>) {
    let stored = stored_slot.map(|slot| slot.state);
    match op {
        ChargeOp::Gcra {
            increment_us,
            window_us,
        } => {
            let stored_tat = match stored {
                Some(SlotState::Gcra { tat }) => Some(tat),
                _ => None,
            };
            let (conforms, tat) = algo::gcra_take(stored_tat, now, *increment_us, *window_us);
            let verdict = Verdict {
                conforms,
                state: CounterState::Gcra { tat_us: tat },
            };
            let slot = Slot {
                state: SlotState::Gcra { tat },
                idle_from_us: tat,
            };
            (verdict, conforms.then_some(slot))
        }
        ChargeOp::SlidingWindow {
            limit,
            amount,
            window_index,
            previous_weight,
            window_us,
        } => {
            let stored = match stored {
                Some(SlotState::Sliding {
                    index,
                    previous,
                    current,
                }) => Some((index, previous, current)),
                _ => None,
            };
            let (index, previous, current) = algo::sliding_roll(stored, *window_index);
            let conforms =
                algo::sliding_conforms(previous, current, *previous_weight, *amount, *limit);
            let current_after = if conforms { current + amount } else { current };
            let verdict = Verdict {
                conforms,
                state: CounterState::SlidingWindow {
                    previous,
                    current: current_after,
                },
            };
            let slot = Slot {
                state: SlotState::Sliding {
                    index,
                    previous,
                    current: current_after,
                },
                idle_from_us: (index + 2).saturating_mul(*window_us),
            };
            (verdict, conforms.then_some(slot))
        }
        ChargeOp::Concurrency { limit } => {
            let in_flight = match stored {
                Some(SlotState::Concurrency { in_flight }) => in_flight,
                _ => 0,
            };
            let conforms = in_flight < *limit;
            let after = if conforms { in_flight + 1 } else { in_flight };
            let verdict = Verdict {
                conforms,
                state: CounterState::Concurrency { in_flight: after },
            };
            let slot = Slot {
                state: SlotState::Concurrency { in_flight: after },
                idle_from_us: i64::MAX,
            };
            (verdict, conforms.then_some(slot))
        }
        ChargeOp::Budget {
            limit_micros,
            estimate_micros,
        } => {
            let Some(SlotState::Budget { spent, reserved }) = stored else {
                let verdict = Verdict {
                    conforms: false,
                    state: CounterState::Unseeded,
                };
                return (verdict, None);
            };
            let conforms = algo::budget_conforms(spent, reserved, *estimate_micros, *limit_micros);
            let reserved_after = if conforms {
                reserved + estimate_micros
            } else {
                reserved
            };
            let verdict = Verdict {
                conforms,
                state: CounterState::Budget {
                    spent_micros: spent,
                    reserved_micros: reserved_after,
                },
            };
            let slot = Slot {
                state: SlotState::Budget {
                    spent,
                    reserved: reserved_after,
                },
                // The budget window's end, set when the counter was seeded.
                idle_from_us: stored_slot.map_or(i64::MAX, |slot| slot.idle_from_us),
            };
            (verdict, conforms.then_some(slot))
        }
    }
}

#[async_trait]
impl LimitBackend for MemoryBackend {
    fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    fn counter_key(&self, rule_id: &str, window_start_us: Option<i64>, value: &str) -> CounterKey {
        CounterKey::Hashed(self.hash(&(rule_id, window_start_us, value)))
    }

    async fn acquire(&self, request: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        Ok(self.decide(request))
    }

    async fn budget_exists(&self, key: &CounterKey) -> Result<bool, BackendError> {
        let id = self.slot_id(key);
        let shard = lock(&self.shards[Self::shard_of(id)]);
        Ok(matches!(
            shard.slots.get(&id),
            Some(Slot {
                state: SlotState::Budget { .. },
                ..
            })
        ))
    }

    async fn seed_budget(
        &self,
        key: &CounterKey,
        spent_micros: i64,
        now_us: i64,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let id = self.slot_id(key);
        let mut shard = lock(&self.shards[Self::shard_of(id)]);
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        let idle_from_us = now_us.saturating_add(ttl_us);
        match shard.slots.get(&id) {
            Some(Slot {
                state: SlotState::Budget { .. },
                ..
            }) => {}
            _ => {
                shard.slots.insert(
                    id,
                    Slot {
                        state: SlotState::Budget {
                            spent: spent_micros,
                            reserved: 0,
                        },
                        idle_from_us,
                    },
                );
            }
        }
        Ok(())
    }

    fn settle(&self, request: SettleRequest) {
        for settlement in &request.settlements {
            self.apply(request.now_us, &settlement.key, &settlement.op);
        }
    }
}

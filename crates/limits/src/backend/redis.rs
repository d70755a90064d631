//! Counters in Redis, shared by every replica pointing at the same server.
//!
//! Each operation is one Lua script (`EVALSHA`, loaded on first use), so a request's
//! check-and-take over all its counters is atomic on the server and costs one round trip.
//! Time is the backend's [`Clock`], passed into every script as an argument rather than read
//! with `TIME`: budget windows and sliding-window indexes are computed by the caller from that
//! same clock, so one time source keeps them consistent, and tests can drive time on Redis
//! exactly as on the memory backend. Replicas therefore need synchronised clocks (NTP); a skew
//! of *d* shifts rate decisions by at most *d*. Key expiries are set relative to that clock
//! (`PEXPIRE`), never as absolute server times, and only bound memory: no decision depends on a
//! key having expired.
//!
//! Layout, under `key_prefix`:
//! - `{rule}:v:{value}` — GCRA arrival time (string) or sliding-window counts (hash `i p c`);
//!   values longer than 64 bytes are replaced by `h:{first 128 bits of SHA-256, hex}`.
//! - `{rule}:v:{value}` — concurrency leases (sorted set, score = lease expiry in µs).
//! - `{rule}@{window start, unix s}:v:{value}` — budget (hash `spent reserved`, micro-dollars);
//!   `{rule}@{window}:r:v:{value}` — its reservations (sorted set of `{lease}:{micros}`, score =
//!   expiry).
//!
//! Leases and reservations expire after `lease_ttl` unless renewed, so a crashed replica's
//! in-flight requests stop counting after at most that long; a live replica renews its own every
//! `lease_ttl / 3` from a background task.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{
    AcquireOutcome, AcquireRequest, BackendError, ChargeOp, CounterKey, CounterState, LimitBackend,
    SettleOp, SettleRequest, Verdict,
};
use crate::clock::{Clock, SystemClock};

/// Longest scope value kept readable in a key; longer ones are hashed.
const MAX_PLAIN_VALUE: usize = 64;

const ACQUIRE_LUA: &str = r"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local count = tonumber(ARGV[3])
-- Integers as text; never '-0', which Redis rejects as an integer.
local function int(n)
  if n == 0 then return '0' end
  return string.format('%.0f', n)
end
local function ms(us)
  local m = math.ceil(us / 1000)
  if m < 1 then m = 1 end
  return int(m)
end
local out = {1}
local writes = {}
local admitted = true
local k = 1
for i = 0, count - 1 do
  local at = 4 + i * 6
  local kind = ARGV[at]
  local a = tonumber(ARGV[at + 1])
  local b = tonumber(ARGV[at + 2])
  local c = tonumber(ARGV[at + 3])
  local d = tonumber(ARGV[at + 4])
  local e = tonumber(ARGV[at + 5])
  local key = KEYS[k]
  k = k + 1
  local ok, x, y = 1, 0, 0
  if kind == 'g' then
    -- a: increment, b: window
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local new_tat = tat + a
    if new_tat - b > now then
      ok = 0
      x = tat
    else
      x = new_tat
      writes[#writes + 1] = {'g', key, new_tat}
    end
  elseif kind == 's' then
    -- a: limit, b: amount, c: window index, d: previous weight, e: window
    local h = redis.call('HMGET', key, 'i', 'p', 'c')
    local index, previous, current = c, 0, 0
    local stored = tonumber(h[1])
    if stored ~= nil then
      local sp, sc = tonumber(h[2]) or 0, tonumber(h[3]) or 0
      if stored >= c then
        index, previous, current = stored, sp, sc
      elseif stored == c - 1 then
        previous = sc
      end
    end
    if previous * d + current + b <= a then
      x = previous
      y = current + b
      writes[#writes + 1] = {'s', key, index, previous, current + b, e}
    else
      ok = 0
      x = previous
      y = current
    end
  elseif kind == 'c' then
    -- a: limit, b: lease ttl
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
    local n = redis.call('ZCARD', key)
    if n < a then
      x = n + 1
      writes[#writes + 1] = {'c', key, now + b, b}
    else
      ok = 0
      x = n
    end
  elseif kind == 'b' then
    -- a: limit, b: estimate, c: lease ttl; next key: reservations
    local reservations = KEYS[k]
    k = k + 1
    if redis.call('EXISTS', key) == 0 then
      ok = 2
    else
      local expired = redis.call('ZRANGEBYSCORE', reservations, '-inf', int(now))
      if #expired > 0 then
        local total = 0
        for _, m in ipairs(expired) do
          total = total + (tonumber(string.match(m, ':(%d+)$')) or 0)
        end
        redis.call('ZREMRANGEBYSCORE', reservations, '-inf', int(now))
        redis.call('HINCRBY', key, 'reserved', int(-total))
      end
      local h = redis.call('HMGET', key, 'spent', 'reserved')
      local spent, reserved = tonumber(h[1]) or 0, tonumber(h[2]) or 0
      local committed = spent + reserved
      if committed < a and committed + b <= a then
        x = spent
        y = reserved + b
        writes[#writes + 1] = {'b', key, reservations, b, now + c, c}
      else
        ok = 0
        x = spent
        y = reserved
      end
    end
  end
  if ok ~= 1 then admitted = false end
  out[#out + 1] = ok
  out[#out + 1] = x
  out[#out + 1] = y
end
if admitted then
  for _, w in ipairs(writes) do
    if w[1] == 'g' then
      redis.call('SET', w[2], int(w[3]), 'PX', ms(w[3] - now))
    elseif w[1] == 's' then
      redis.call('HSET', w[2], 'i', int(w[3]), 'p', int(w[4]), 'c', int(w[5]))
      redis.call('PEXPIRE', w[2], ms((w[3] + 2) * w[6] - now))
    elseif w[1] == 'c' then
      redis.call('ZADD', w[2], int(w[3]), member)
      redis.call('PEXPIRE', w[2], ms(2 * w[4]))
    elseif w[1] == 'b' then
      redis.call('HINCRBY', w[2], 'reserved', int(w[4]))
      redis.call('ZADD', w[3], int(w[5]), member .. ':' .. int(w[4]))
      redis.call('PEXPIRE', w[3], ms(2 * w[6]))
    end
  end
else
  out[1] = 0
end
return out
";

const SETTLE_LUA: &str = r"
local now = tonumber(ARGV[1])
local member = ARGV[2]
local count = tonumber(ARGV[3])
-- Integers as text; never '-0', which Redis rejects as an integer.
local function int(n)
  if n == 0 then return '0' end
  return string.format('%.0f', n)
end
local function ms(us)
  local m = math.ceil(us / 1000)
  if m < 1 then m = 1 end
  return int(m)
end
local k = 1
for i = 0, count - 1 do
  local at = 4 + i * 4
  local kind = ARGV[at]
  local a = tonumber(ARGV[at + 1])
  local b = tonumber(ARGV[at + 2])
  local c = tonumber(ARGV[at + 3])
  local key = KEYS[k]
  k = k + 1
  if kind == 'g' then
    -- a: adjustment of the arrival time
    local tat = tonumber(redis.call('GET', key))
    local new_tat = nil
    if a > 0 then
      if tat == nil or tat < now then tat = now end
      new_tat = tat + a
    elseif tat ~= nil then
      new_tat = tat + a
    end
    if new_tat ~= nil then
      if new_tat > now then
        redis.call('SET', key, int(new_tat), 'PX', ms(new_tat - now))
      else
        redis.call('DEL', key)
      end
    end
  elseif kind == 's' then
    -- a: window index, b: adjustment, c: window
    local h = redis.call('HMGET', key, 'i', 'p', 'c')
    local stored = tonumber(h[1])
    if stored ~= nil then
      local previous, current = tonumber(h[2]) or 0, tonumber(h[3]) or 0
      if a > stored then
        if a == stored + 1 then
          previous = current
        else
          previous = 0
        end
        current = 0
        stored = a
      end
      if a == stored then
        current = math.max(0, current + b)
      elseif a == stored - 1 then
        previous = math.max(0, previous + b)
      end
      redis.call('HSET', key, 'i', int(stored), 'p', int(previous), 'c', int(current))
      redis.call('PEXPIRE', key, ms((stored + 2) * c - now))
    end
  elseif kind == 'r' then
    redis.call('ZREM', key, member)
  elseif kind == 'b' then
    -- a: reserved, b: actual; next key: reservations
    local reservations = KEYS[k]
    k = k + 1
    local removed = redis.call('ZREM', reservations, member .. ':' .. int(a))
    if redis.call('EXISTS', key) == 1 then
      if removed == 1 then
        redis.call('HINCRBY', key, 'reserved', int(-a))
      end
      redis.call('HINCRBY', key, 'spent', int(b))
    end
  end
end
return 1
";

const SEED_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// A request's leases and reservations: (sorted set, member) pairs.
type LeaseEntries = SmallVec<[(Box<str>, Box<str>); 2]>;

/// Settings of a [`RedisBackend`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prepended to every key (default `portcullis:limits:`).
    pub key_prefix: String,
    /// Longest wait for Redis per operation, connecting included (default 500 ms). Past it the
    /// operation fails and each rule's `fail_open` decides.
    pub operation_timeout: Duration,
    /// How long a concurrency lease or budget reservation lives unless renewed (default 60 s):
    /// the longest a crashed replica's requests keep counting.
    pub lease_ttl: Duration,
    /// Renew this process's leases every `lease_ttl / 3` (default true). Without renewal a
    /// request running longer than `lease_ttl` stops counting.
    pub renew_leases: bool,
    /// The clock decisions use.
    pub clock: Arc<dyn Clock>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            key_prefix: "portcullis:limits:".to_owned(),
            operation_timeout: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(60),
            renew_leases: true,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Counters in Redis. See the module documentation for the key layout.
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    connection: ConnectionManager,
    options: RedisOptions,
    lease_ttl_us: i64,
    /// Distinguishes this process's leases from other replicas'.
    nonce: String,
    acquire: redis::Script,
    settle: redis::Script,
    seed: redis::Script,
    /// Leases and reservations held by requests in flight: lease → (sorted set, member).
    leases: Mutex<HashMap<u64, LeaseEntries>>,
    runtime: Handle,
    settle_failures: AtomicU64,
    pending_settlements: AtomicUsize,
    settled: Notify,
    renewal: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("key_prefix", &self.shared.options.key_prefix)
            .field("operation_timeout", &self.shared.options.operation_timeout)
            .field("lease_ttl", &self.shared.options.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let renewal = self
            .renewal
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = renewal.take() {
            task.abort();
        }
    }
}

impl RedisBackend {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`, or `rediss://` when the
    /// client supports TLS) and checks the server answers. The connection reconnects on its own
    /// afterwards.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisBackend, BackendError> {
        let backend = Self::connect_lazy(url, options).await?;
        let mut connection = backend.shared.connection.clone();
        let ping = redis::cmd("PING");
        backend
            .shared
            .timed(ping.query_async::<()>(&mut connection))
            .await?;
        Ok(backend)
    }

    /// Prepares a connection to `url` without contacting the server: the first request connects,
    /// and until Redis answers each rule's `fail_open` applies.
    pub async fn connect_lazy(
        url: &str,
        options: RedisOptions,
    ) -> Result<RedisBackend, BackendError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.operation_timeout))
            .set_response_timeout(Some(options.operation_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let runtime =
            Handle::try_current().map_err(|error| BackendError::Runtime(error.to_string()))?;
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let lease_ttl_us = i64::try_from(options.lease_ttl.as_micros())
            .unwrap_or(i64::MAX)
            .max(1_000);
        let renew_every = (options.lease_ttl / 3).max(Duration::from_millis(10));
        let renew = options.renew_leases;
        let shared = Arc::new(Shared {
            connection,
            lease_ttl_us,
            nonce: format!("{:016x}", rand::random::<u64>()),
            acquire: redis::Script::new(ACQUIRE_LUA),
            settle: redis::Script::new(SETTLE_LUA),
            seed: redis::Script::new(SEED_LUA),
            leases: Mutex::new(HashMap::new()),
            runtime: runtime.clone(),
            settle_failures: AtomicU64::new(0),
            pending_settlements: AtomicUsize::new(0),
            settled: Notify::new(),
            renewal: Mutex::new(None),
            options,
        });
        if renew {
            let task = runtime.spawn(renew_leases(Arc::downgrade(&shared), renew_every));
            *shared
                .renewal
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        Ok(RedisBackend { shared })
    }

    /// Settlements that failed (Redis unreachable after the answer); each was logged.
    pub fn settle_failures(&self) -> u64 {
        self.shared.settle_failures.load(Ordering::Relaxed)
    }

    /// Renews this process's leases now (the background task does it every `lease_ttl / 3`).
    pub async fn renew_leases_now(&self) -> Result<(), BackendError> {
        self.shared.renew().await
    }
}

async fn renew_leases(shared: Weak<Shared>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = shared.renew().await {
            tracing::warn!(%error, "could not renew rate-limit leases in Redis");
        }
    }
}

impl Shared {
    async fn timed<T>(
        &self,
        operation: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.options.operation_timeout, operation).await {
            Ok(result) => result.map_err(BackendError::from),
            Err(_) => Err(BackendError::Timeout(self.options.operation_timeout)),
        }
    }

    fn member(&self, lease: u64) -> String {
        format!("{}:{lease}", self.nonce)
    }

    async fn renew(&self) -> Result<(), BackendError> {
        let entries: Vec<(Box<str>, Box<str>)> = {
            let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
            leases.values().flatten().cloned().collect()
        };
        if entries.is_empty() {
            return Ok(());
        }
        let now = self.options.clock.now_micros();
        let expiry = now.saturating_add(self.lease_ttl_us);
        let keep_ms = (2 * self.lease_ttl_us / 1_000).max(1);
        let mut pipe = redis::pipe();
        for (set, member) in &entries {
            pipe.cmd("ZADD")
                .arg(set.as_ref())
                .arg("XX")
                .arg(expiry)
                .arg(member.as_ref())
                .ignore();
            pipe.cmd("PEXPIRE").arg(set.as_ref()).arg(keep_ms).ignore();
        }
        let mut connection = self.connection.clone();
        self.timed(pipe.query_async::<()>(&mut connection)).await
    }

    async fn run_settle(&self, request: &SettleRequest) -> Result<(), BackendError> {
        let member = self.member(request.lease);
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .arg(request.now_us)
            .arg(&member)
            .arg(request.settlements.len());
        for settlement in &request.settlements {
            let key = named(&settlement.key);
            match &settlement.op {
                SettleOp::Gcra { adjust_us } => {
                    invocation
                        .key(key.as_ref())
                        .arg("g")
                        .arg(*adjust_us)
                        .arg(0)
                        .arg(0);
                }
                SettleOp::SlidingWindow {
                    window_index,
                    adjust,
                    window_us,
                } => {
                    invocation
                        .key(key.as_ref())
                        .arg("s")
                        .arg(*window_index)
                        .arg(*adjust)
                        .arg(*window_us);
                }
                SettleOp::Release => {
                    invocation.key(key.as_ref()).arg("r").arg(0).arg(0).arg(0);
                }
                SettleOp::Budget {
                    reserved_micros,
                    actual_micros,
                } => {
                    let reservations = self.reservations_key(&key);
                    invocation
                        .key(key.as_ref())
                        .key(reservations)
                        .arg("b")
                        .arg(*reserved_micros)
                        .arg(*actual_micros)
                        .arg(0);
                }
            }
        }
        let mut connection = self.connection.clone();
        self.timed(invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(drop)
    }

    /// `{prefix}{rule}@{window}:v:{value}` → `{prefix}{rule}@{window}:r:v:{value}`.
    fn reservations_key(&self, key: &str) -> String {
        let prefix_len = if key.starts_with(self.options.key_prefix.as_str()) {
            self.options.key_prefix.len()
        } else {
            0
        };
        let split = key[prefix_len..]
            .find(':')
            .map_or(key.len(), |at| prefix_len + at);
        let mut reservations = String::with_capacity(key.len() + 2);
        reservations.push_str(&key[..split]);
        reservations.push_str(":r");
        reservations.push_str(&key[split..]);
        reservations
    }

    fn forget_lease(&self, lease: u64) {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&lease);
    }
}

/// A settlement in flight; its drop wakes [`LimitBackend::drain`] when it was the last.
struct PendingSettlement(Arc<Shared>);

impl Drop for PendingSettlement {
    fn drop(&mut self) {
        if self.0.pending_settlements.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

/// The storage key of a counter key.
fn named(key: &CounterKey) -> std::borrow::Cow<'_, str> {
    match key {
        CounterKey::Named(name) => std::borrow::Cow::Borrowed(name.as_ref()),
        CounterKey::Hashed(hash) => std::borrow::Cow::Owned(format!("hashed:{hash:032x}")),
    }
}

fn protocol(what: &str) -> BackendError {
    BackendError::Protocol(what.to_owned())
}

#[async_trait]
impl LimitBackend for RedisBackend {
    fn clock(&self) -> &dyn Clock {
        self.shared.options.clock.as_ref()
    }

    fn counter_key(&self, rule_id: &str, window_start_us: Option<i64>, value: &str) -> CounterKey {
        let prefix = &self.shared.options.key_prefix;
        let mut key =
            String::with_capacity(prefix.len() + rule_id.len() + value.len().min(40) + 24);
        key.push_str(prefix);
        key.push_str(rule_id);
        if let Some(start) = window_start_us {
            let _ = write!(key, "@{}", start.div_euclid(1_000_000));
        }
        if value.len() <= MAX_PLAIN_VALUE {
            key.push_str(":v:");
            key.push_str(value);
        } else {
            let digest = Sha256::digest(value.as_bytes());
            key.push_str(":h:");
            key.push_str(&hex::encode(&digest[..16]));
        }
        CounterKey::Named(key.into_boxed_str())
    }

    async fn acquire(&self, request: AcquireRequest<'_>) -> Result<AcquireOutcome, BackendError> {
        let shared = &self.shared;
        let member = shared.member(request.lease);
        let mut invocation = shared.acquire.prepare_invoke();
        invocation
            .arg(request.now_us)
            .arg(&member)
            .arg(request.charges.len());
        let mut held = LeaseEntries::new();
        for charge in request.charges {
            let key = named(&charge.key);
            match &charge.op {
                ChargeOp::Gcra {
                    increment_us,
                    window_us,
                } => {
                    invocation
                        .key(key.as_ref())
                        .arg("g")
                        .arg(*increment_us)
                        .arg(*window_us)
                        .arg(0)
                        .arg(0)
                        .arg(0);
                }
                ChargeOp::SlidingWindow {
                    limit,
                    amount,
                    window_index,
                    previous_weight,
                    window_us,
                } => {
                    // `{:?}` prints the shortest text that parses back to the same f64.
                    invocation
                        .key(key.as_ref())
                        .arg("s")
                        .arg(*limit)
                        .arg(*amount)
                        .arg(*window_index)
                        .arg(format!("{previous_weight:?}"))
                        .arg(*window_us);
                }
                ChargeOp::Concurrency { limit } => {
                    invocation
                        .key(key.as_ref())
                        .arg("c")
                        .arg(*limit)
                        .arg(shared.lease_ttl_us)
                        .arg(0)
                        .arg(0)
                        .arg(0);
                    held.push((key.as_ref().into(), member.as_str().into()));
                }
                ChargeOp::Budget {
                    limit_micros,
                    estimate_micros,
                } => {
                    let reservations = shared.reservations_key(&key);
                    invocation
                        .key(key.as_ref())
                        .key(&reservations)
                        .arg("b")
                        .arg(*limit_micros)
                        .arg(*estimate_micros)
                        .arg(shared.lease_ttl_us)
                        .arg(0)
                        .arg(0);
                    held.push((
                        reservations.into_boxed_str(),
                        format!("{member}:{estimate_micros}").into_boxed_str(),
                    ));
                }
            }
        }
        let mut connection = shared.connection.clone();
        let reply: Vec<i64> = shared
            .timed(invocation.invoke_async(&mut connection))
            .await?;
        let (&admitted, rest) = reply
            .split_first()
            .ok_or_else(|| protocol("empty acquire reply"))?;
        if rest.len() != 3 * request.charges.len() {
            return Err(protocol("acquire reply has the wrong length"));
        }
        let mut verdicts = SmallVec::new();
        for (charge, triple) in request.charges.iter().zip(rest.chunks_exact(3)) {
            let (status, x, y) = (triple[0], triple[1], triple[2]);
            let state = match charge.op {
                _ if status == 2 => CounterState::Unseeded,
                ChargeOp::Gcra { .. } => CounterState::Gcra { tat_us: x },
                ChargeOp::SlidingWindow { .. } => CounterState::SlidingWindow {
                    previous: x.max(0).unsigned_abs(),
                    current: y.max(0).unsigned_abs(),
                },
                ChargeOp::Concurrency { .. } => CounterState::Concurrency {
                    in_flight: u32::try_from(x.max(0)).unwrap_or(u32::MAX),
                },
                ChargeOp::Budget { .. } => CounterState::Budget {
                    spent_micros: x,
                    reserved_micros: y,
                },
            };
            verdicts.push(Verdict {
                conforms: status == 1,
                state,
            });
        }
        let admitted = admitted == 1;
        if admitted && !held.is_empty() {
            shared
                .leases
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(request.lease, held);
        }
        Ok(AcquireOutcome { admitted, verdicts })
    }

    async fn budget_exists(&self, key: &CounterKey) -> Result<bool, BackendError> {
        let mut connection = self.shared.connection.clone();
        let mut exists = redis::cmd("EXISTS");
        exists.arg(named(key).as_ref());
        let count: i64 = self
            .shared
            .timed(exists.query_async(&mut connection))
            .await?;
        Ok(count > 0)
    }

    async fn seed_budget(
        &self,
        key: &CounterKey,
        spent_micros: i64,
        _now_us: i64,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.shared.connection.clone();
        let mut invocation = self.shared.seed.prepare_invoke();
        invocation
            .key(named(key).as_ref())
            .arg(spent_micros)
            .arg(ttl_ms);
        self.shared
            .timed(invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(drop)
    }

    fn settle(&self, request: SettleRequest) {
        let shared = Arc::clone(&self.shared);
        shared.forget_lease(request.lease);
        if request.settlements.is_empty() {
            return;
        }
        shared.pending_settlements.fetch_add(1, Ordering::SeqCst);
        let runtime = shared.runtime.clone();
        // Counted as done even if the task never runs (runtime shutting down): the guard is
        // dropped with the future.
        let pending = PendingSettlement(shared);
        runtime.spawn(async move {
            let shared = &pending.0;
            if let Err(error) = shared.run_settle(&request).await {
                shared.settle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "could not settle rate-limit counters in Redis");
            }
            drop(pending);
        });
    }

    async fn drain(&self) {
        loop {
            let notified = self.shared.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.pending_settlements.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

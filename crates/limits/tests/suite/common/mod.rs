//! Shared fixtures: a counter store on either backend, driven by a manual clock.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use portcullis_limits::{
    Admission, Estimate, LimitBackend, LimitRules, Limiter, ManualClock, MemoryBackend,
    RedisBackend, RedisOptions, Refusal, Rule, ScopeKind, SeedError, SpendSeed, Subjects,
};

pub fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test:limits:{:x}:{}:",
        rand::random::<u64>(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Monday 2025-03-10 12:00:00 UTC: a whole minute, mid-day, mid-week, mid-month.
pub fn start_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_utc(2025, 3, 10, 12, 0, 0))
}

pub enum Kind {
    Memory(Arc<MemoryBackend>),
    Redis { prefix: String },
}

/// Where counters live. Every `replica()` on Redis is a separate connection sharing the same
/// keys, as separate gateway processes would; on memory it is the one shared backend.
pub struct Store {
    pub clock: Arc<ManualClock>,
    pub kind: Kind,
}

impl Store {
    pub fn memory() -> Store {
        let clock = start_clock();
        let backend = Arc::new(MemoryBackend::with_clock(clock.clone()));
        Store {
            clock,
            kind: Kind::Memory(backend),
        }
    }

    pub fn redis() -> Store {
        Store {
            clock: start_clock(),
            kind: Kind::Redis {
                prefix: unique_prefix(),
            },
        }
    }

    pub fn is_redis(&self) -> bool {
        matches!(self.kind, Kind::Redis { .. })
    }

    pub fn redis_options(&self) -> RedisOptions {
        let prefix = match &self.kind {
            Kind::Redis { prefix } => prefix.clone(),
            Kind::Memory(_) => unique_prefix(),
        };
        RedisOptions {
            key_prefix: prefix,
            operation_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            renew_leases: false,
            clock: self.clock.clone(),
        }
    }

    pub async fn replica(&self) -> Arc<dyn LimitBackend> {
        match &self.kind {
            Kind::Memory(backend) => backend.clone(),
            Kind::Redis { .. } => self.redis_replica().await,
        }
    }

    /// A new connection to the shared Redis counters.
    pub async fn redis_replica(&self) -> Arc<RedisBackend> {
        Arc::new(
            RedisBackend::connect(&redis_url(), self.redis_options())
                .await
                .expect("Redis is running (start it with redis-server --daemonize yes)"),
        )
    }

    /// A limiter on a fresh replica.
    pub async fn limiter(&self, rules: Vec<Rule>) -> Limiter {
        self.limiter_with_seed(rules, None).await
    }

    pub async fn limiter_with_seed(
        &self,
        rules: Vec<Rule>,
        seed: Option<Arc<dyn SpendSeed>>,
    ) -> Limiter {
        let rules = LimitRules::new(rules).unwrap();
        Limiter::new(rules, self.replica().await, seed)
    }
}

/// Runs one test body against the memory backend and against Redis.
#[macro_export]
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name($crate::common::Store::memory()).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name($crate::common::Store::redis()).await;
                }
            }
        )*
    };
}

pub fn user(name: &str) -> Subjects<'_> {
    Subjects {
        user: Some(name),
        ..Subjects::default()
    }
}

pub fn team(name: &str) -> Subjects<'_> {
    Subjects {
        team: Some(name),
        ..Subjects::default()
    }
}

pub fn requests() -> Estimate {
    Estimate::default()
}

pub fn tokens(tokens: u64) -> Estimate {
    Estimate {
        tokens,
        cost_usd: 0.0,
    }
}

pub fn cost(cost_usd: f64) -> Estimate {
    Estimate {
        tokens: 1,
        cost_usd,
    }
}

pub fn admitted(result: Result<Admission, Refusal>) -> Admission {
    match result {
        Ok(admission) => admission,
        Err(refusal) => panic!("expected an admission, got: {refusal}"),
    }
}

pub fn refused(result: Result<Admission, Refusal>) -> Refusal {
    match result {
        Ok(admission) => panic!("expected a refusal, got {admission:?}"),
        Err(refusal) => refusal,
    }
}

/// A spend seed that answers a fixed amount and records its calls.
#[derive(Debug, Default)]
pub struct RecordingSeed {
    pub usd: f64,
    pub calls: std::sync::Mutex<Vec<(ScopeKind, String, i64)>>,
    pub fail: bool,
}

impl RecordingSeed {
    pub fn new(usd: f64) -> Arc<RecordingSeed> {
        Arc::new(RecordingSeed {
            usd,
            ..RecordingSeed::default()
        })
    }

    pub fn calls(&self) -> Vec<(ScopeKind, String, i64)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl SpendSeed for RecordingSeed {
    async fn spent_since(
        &self,
        scope: ScopeKind,
        value: &str,
        since_unix_ms: i64,
    ) -> Result<f64, SeedError> {
        self.calls
            .lock()
            .unwrap()
            .push((scope, value.to_owned(), since_unix_ms));
        if self.fail {
            return Err(SeedError::new("request log unavailable"));
        }
        Ok(self.usd)
    }
}

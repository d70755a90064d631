//! Behaviour only Redis has: replicas that crash with leases held, lease renewal, an
//! unreachable server, and the key layout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Store, admitted, redis_url, refused, requests, user};
use portcullis_limits::{
    Estimate, LimitBackend, LimitRules, Limiter, Period, RedisBackend, RedisOptions, RefusalKind,
    Rule, ScopeKind, Subjects,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const LEASE_TTL: Duration = Duration::from_secs(30);

fn key(id: &str) -> Subjects<'_> {
    Subjects {
        key: Some(id),
        ..Subjects::default()
    }
}

fn limiter(rules: Vec<Rule>, backend: Arc<dyn LimitBackend>) -> Limiter {
    Limiter::new(LimitRules::new(rules).unwrap(), backend, None)
}

#[tokio::test]
async fn a_crashed_replicas_lease_and_reservation_expire() {
    let store = Store::redis();
    let rules = vec![
        Rule::concurrency("one-at-a-time", ScopeKind::Key, 1),
        Rule::budget("daily", ScopeKind::Key, 1.0, Period::Daily),
    ];
    let crashed = limiter(rules.clone(), store.redis_replica().await);
    let held = admitted(
        crashed
            .admit(
                &key("k1"),
                Estimate {
                    tokens: 1,
                    cost_usd: 0.8,
                },
            )
            .await,
    );
    // The process dies mid-request: nothing is released, nothing renewed.
    std::mem::forget(held);

    let survivor = limiter(rules, store.redis_replica().await);
    let half = Estimate {
        tokens: 1,
        cost_usd: 0.5,
    };
    let refusal = refused(survivor.admit(&key("k1"), half).await);
    assert_eq!(refusal.kind, RefusalKind::Budget);
    assert!(
        refusal
            .message
            .contains("$0.80 reserved by requests in flight"),
        "{}",
        refusal.message
    );
    store.clock.advance(LEASE_TTL - Duration::from_micros(1));
    refused(survivor.admit(&key("k1"), half).await);
    // At the lease's expiry both the slot and the $0.80 come back.
    store.clock.advance(Duration::from_micros(1));
    let admission = admitted(survivor.admit(&key("k1"), half).await);
    admission.settle(1, 0.5);
    survivor.drain().await;
    let more = Estimate {
        tokens: 1,
        cost_usd: 0.6,
    };
    let refusal = refused(survivor.admit(&key("k1"), more).await);
    assert!(
        refusal.message.contains("($0.50 spent)"),
        "{}",
        refusal.message
    );
}

#[tokio::test]
async fn a_live_replica_keeps_its_leases_by_renewing_them() {
    let store = Store::redis();
    let rules = vec![Rule::concurrency("one-at-a-time", ScopeKind::Key, 1)];
    let holder_backend = store.redis_replica().await;
    let holder = limiter(rules.clone(), holder_backend.clone());
    let other = limiter(rules, store.redis_replica().await);
    let long_request = admitted(holder.admit(&key("k1"), requests()).await);

    store.clock.advance(Duration::from_secs(20));
    holder_backend.renew_leases_now().await.unwrap();
    // Past the original expiry, the renewed lease still holds the slot.
    store.clock.advance(Duration::from_secs(20));
    refused(other.admit(&key("k1"), requests()).await);
    // Once released, it is gone at once, and no longer renewed.
    drop(long_request);
    holder.drain().await;
    let _next = admitted(other.admit(&key("k1"), requests()).await);
    holder_backend.renew_leases_now().await.unwrap();
    refused(holder.admit(&key("k1"), requests()).await);
}

#[tokio::test]
async fn long_scope_values_are_hashed_and_short_ones_stay_readable() {
    let store = Store::redis();
    let backend = store.redis_replica().await;
    let limiter = limiter(
        vec![Rule::requests(
            "per-user",
            ScopeKind::User,
            1,
            Duration::from_secs(60),
        )],
        backend,
    );
    let long_a = format!("{}a", "x".repeat(100));
    let long_b = format!("{}b", "x".repeat(100));
    let _ = admitted(limiter.admit(&user(&long_a), requests()).await);
    refused(limiter.admit(&user(&long_a), requests()).await);
    let _ = admitted(limiter.admit(&user(&long_b), requests()).await);
    let _ = admitted(limiter.admit(&user("alice"), requests()).await);

    let prefix = store.redis_options().key_prefix;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys.contains(&format!("{prefix}per-user:v:alice")),
        "{keys:?}"
    );
    let hashed: Vec<&String> = keys.iter().filter(|k| k.contains(":h:")).collect();
    assert_eq!(hashed.len(), 2, "{keys:?}");
    assert!(
        hashed
            .iter()
            .all(|k| k.len() == prefix.len() + "per-user:h:".len() + 32)
    );
}

/// A TCP proxy in front of Redis that can be cut, to make Redis unreachable mid-flight.
struct Proxy {
    url: String,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let url = redis_url();
        let rest = url.strip_prefix("redis://").expect("a redis:// URL");
        let (auth, host_and_path) = match rest.rsplit_once('@') {
            Some((auth, host)) => (format!("{auth}@"), host),
            None => (String::new(), rest),
        };
        let (target, path) = match host_and_path.split_once('/') {
            Some((host, path)) => (host.to_owned(), format!("/{path}")),
            None => (host_and_path.to_owned(), String::new()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let relay = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                tracked.lock().unwrap().push(relay);
            }
        });
        Proxy {
            url: format!("redis://{auth}{address}{path}"),
            accept,
            connections,
        }
    }

    /// Closes the listening port and every relayed connection.
    async fn cut(&self) {
        self.accept.abort();
        let relays: Vec<JoinHandle<()>> = self.connections.lock().unwrap().drain(..).collect();
        for relay in relays {
            relay.abort();
            let _ = relay.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_open_for_rates_and_closed_for_budgets() {
    let store = Store::redis();
    let proxy = Proxy::start().await;
    let options = RedisOptions {
        operation_timeout: Duration::from_millis(300),
        ..store.redis_options()
    };
    let backend = Arc::new(RedisBackend::connect(&proxy.url, options).await.unwrap());
    let minute = Duration::from_secs(60);
    let rates = limiter(
        vec![
            Rule::requests("rpm", ScopeKind::User, 1, minute),
            Rule::concurrency("concurrency", ScopeKind::User, 5),
        ],
        backend.clone(),
    );
    let budget = limiter(
        vec![Rule::budget("daily", ScopeKind::User, 10.0, Period::Daily)],
        backend.clone(),
    );
    let budget_open = limiter(
        vec![Rule::budget("daily-open", ScopeKind::User, 10.0, Period::Daily).with_fail_open(true)],
        backend.clone(),
    );
    let rate_closed = limiter(
        vec![Rule::requests("rpm-closed", ScopeKind::User, 100, minute).with_fail_open(false)],
        backend.clone(),
    );
    // While Redis answers, limits hold.
    let in_flight = admitted(rates.admit(&user("alice"), requests()).await);
    refused(rates.admit(&user("alice"), requests()).await);
    let _ = admitted(budget.admit(&user("alice"), requests()).await);
    assert_eq!(rates.stats().backend_errors, 0);
    budget.drain().await;
    assert_eq!(backend.settle_failures(), 0);

    proxy.cut().await;

    // Rate and concurrency rules fail open: over the limit, yet admitted, and counted.
    for _ in 0..3 {
        let _ = admitted(rates.admit(&user("alice"), requests()).await);
    }
    let stats = rates.stats();
    assert_eq!((stats.backend_errors, stats.fail_open_admissions), (3, 3));
    // Budgets fail closed with a 503-style refusal.
    let refusal = refused(budget.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.kind, RefusalKind::Unavailable);
    assert_eq!(refusal.status(), 503);
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    assert_eq!(
        refusal.message,
        "Limit `daily` for user `alice` cannot be checked right now (limits backend unavailable); retry in 1s"
    );
    assert_eq!(budget.stats().fail_closed_refusals, 1);
    // Each rule's `fail_open` overrides its kind's default.
    let _ = admitted(budget_open.admit(&user("alice"), requests()).await);
    let refusal = refused(rate_closed.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.kind, RefusalKind::Unavailable);
    // A settlement that cannot reach Redis is counted, not lost silently.
    in_flight.settle(1, 0.0);
    rates.drain().await;
    assert_eq!(backend.settle_failures(), 1);
}

#[tokio::test]
async fn connect_reports_an_unreachable_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let options = RedisOptions {
        operation_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let error = RedisBackend::connect(&format!("redis://{address}"), options)
        .await
        .unwrap_err();
    assert!(!error.to_string().is_empty());
    // A lazy backend starts anyway; rules decide while the server is away.
    let lazy = RedisBackend::connect_lazy(
        &format!("redis://{address}"),
        RedisOptions {
            operation_timeout: Duration::from_millis(300),
            ..RedisOptions::default()
        },
    )
    .await
    .unwrap();
    let limiter = limiter(
        vec![Rule::requests(
            "rpm",
            ScopeKind::User,
            1,
            Duration::from_secs(60),
        )],
        Arc::new(lazy),
    );
    let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(limiter.stats().fail_open_admissions, 1);
}

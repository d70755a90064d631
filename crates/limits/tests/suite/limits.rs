//! Every rule kind, run with the same test body on the memory backend and on a real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use crate::common::{RecordingSeed, Store, admitted, cost, refused, requests, team, tokens, user};
use portcullis_limits::{
    Algorithm, Clock, Estimate, LimitRules, Limiter, MemoryBackend, Period, RateUnit, RefusalKind,
    Rule, ScopeKind, SpendSeed, Subjects,
};

const MINUTE: Duration = Duration::from_secs(60);

on_both_backends!(
    gcra_admits_the_limit_then_refuses_with_exact_retry_after,
    sliding_window_weights_the_previous_window,
    token_settlement_refunds_and_overcharges_gcra,
    token_settlement_refunds_and_overcharges_sliding_window,
    refused_request_consumes_nothing_from_other_rules,
    refusal_reports_the_longest_wait,
    concurrency_leases_are_released_on_drop_and_settle,
    budget_reserves_settles_and_refuses_with_spend,
    budget_overshoot_is_bounded_by_in_flight_misestimates,
    budget_windows_roll_over_at_utc_boundaries,
    spend_seed_is_consulted_once_per_window,
    hundred_racing_requests_admit_exactly_ten,
    rules_apply_only_to_their_scope_and_match,
);

async fn gcra_admits_the_limit_then_refuses_with_exact_retry_after(store: Store) {
    let limiter = store
        .limiter(vec![Rule::requests(
            "per-user",
            ScopeKind::User,
            10,
            MINUTE,
        )])
        .await;
    let first = admitted(limiter.admit(&user("alice"), requests()).await);
    let status = first.rate_limit().unwrap();
    assert_eq!(
        (status.limit, status.remaining, status.reset),
        (10, 9, Duration::from_secs(6))
    );
    for _ in 1..10 {
        let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    }
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.kind, RefusalKind::Requests);
    assert_eq!(refusal.status(), 429);
    assert_eq!(&*refusal.rule_id, "per-user");
    assert_eq!(refusal.scope, ScopeKind::User);
    assert_eq!(refusal.scope_value.as_deref(), Some("alice"));
    assert_eq!((refusal.limit, refusal.remaining), (10, 0));
    // 10 per minute: one every 6 s; a full bucket was just emptied.
    assert_eq!(refusal.retry_after, Duration::from_secs(6));
    assert_eq!(refusal.reset, MINUTE);
    assert_eq!(
        refusal.message,
        "Rate limit of 10 requests per 1m for user `alice` exceeded; retry in 6s"
    );
    // Other users have their own counters.
    let _ = admitted(limiter.admit(&user("bob"), requests()).await);

    store.clock.advance(Duration::from_micros(5_999_999));
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.retry_after, Duration::from_micros(1));
    store.clock.advance(Duration::from_micros(1));
    let admission = admitted(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(admission.rate_limit().unwrap().remaining, 0);
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.retry_after, Duration::from_secs(6));
    // After a full window the whole burst is available again.
    store.clock.advance(MINUTE);
    for _ in 0..10 {
        let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    }
    refused(limiter.admit(&user("alice"), requests()).await);
}

async fn sliding_window_weights_the_previous_window(store: Store) {
    let rule = Rule::requests("sliding", ScopeKind::User, 10, MINUTE)
        .with_algorithm(Algorithm::SlidingWindow);
    let limiter = store.limiter(vec![rule]).await;
    // The clock starts exactly on a window boundary.
    for remaining in (0..10).rev() {
        let admission = admitted(limiter.admit(&user("alice"), requests()).await);
        assert_eq!(admission.rate_limit().unwrap().remaining, remaining);
    }
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    // The next window opens in 60 s, then the 10 requests of this one must decay to 9: 6 s more.
    assert_eq!(refusal.retry_after, Duration::from_secs(66));
    assert_eq!(refusal.reset, MINUTE);

    // Start of the next window: the previous one still weighs fully.
    store.clock.advance(MINUTE);
    refused(limiter.admit(&user("alice"), requests()).await);
    // Half-way: it weighs 5, leaving room for exactly 5.
    store.clock.advance(Duration::from_secs(30));
    for _ in 0..5 {
        let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    }
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(refusal.kind, RefusalKind::Requests);
    // 5 * (30 - d) / 60 + 5 + 1 <= 10 once d >= 6 s.
    assert_eq!(refusal.retry_after, Duration::from_secs(6));
    store.clock.advance(Duration::from_secs(6));
    let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    refused(limiter.admit(&user("alice"), requests()).await);
}

fn gpt4o() -> Subjects<'static> {
    Subjects {
        model: Some("gpt-4o"),
        ..Subjects::default()
    }
}

async fn token_settlement_refunds_and_overcharges_gcra(store: Store) {
    let rule = Rule::tokens("tpm", ScopeKind::Model, 1_000, MINUTE).matching("gpt-4o");
    let limiter = store.limiter(vec![rule]).await;
    let first = admitted(limiter.admit(&gpt4o(), tokens(600)).await);
    let status = first.rate_limit().unwrap();
    assert_eq!((status.unit, status.remaining), (RateUnit::Tokens, 400));
    let refusal = refused(limiter.admit(&gpt4o(), tokens(600)).await);
    assert_eq!(refusal.kind, RefusalKind::Tokens);
    assert_eq!(refusal.remaining, 400);
    // 200 more tokens must drain at 1000 per minute: 12 s.
    assert_eq!(refusal.retry_after, Duration::from_secs(12));
    assert_eq!(
        refusal.message,
        "Rate limit of 1000 tokens per 1m for model `gpt-4o` exceeded; retry in 12s"
    );

    // The call used only 100: 500 come back.
    first.settle(100, 0.0);
    limiter.drain().await;
    let second = admitted(limiter.admit(&gpt4o(), tokens(600)).await);
    assert_eq!(second.rate_limit().unwrap().remaining, 300);
    // It used 1500: the extra 900 is charged without refusing, overdrawing the bucket.
    second.settle(1_500, 0.0);
    limiter.drain().await;
    let refusal = refused(limiter.admit(&gpt4o(), tokens(1)).await);
    assert_eq!(refusal.remaining, 0);
    // 100 + 1500 = 1600 used: 600 over the bucket, plus the token asked for.
    assert_eq!(refusal.retry_after, Duration::from_micros(36_060_000));
    // Dropping an admission unsettled refunds its estimate.
    store.clock.advance(Duration::from_secs(120));
    let dropped = admitted(limiter.admit(&gpt4o(), tokens(1_000)).await);
    refused(limiter.admit(&gpt4o(), tokens(1)).await);
    drop(dropped);
    limiter.drain().await;
    let full = admitted(limiter.admit(&gpt4o(), tokens(1_000)).await);
    assert_eq!(full.rate_limit().unwrap().remaining, 0);
    // An estimate above the limit is charged as the whole bucket, not refused forever.
    store.clock.advance(Duration::from_secs(60));
    let _ = admitted(limiter.admit(&gpt4o(), tokens(5_000)).await);
    // Other models are not limited by this rule.
    let mini = Subjects {
        model: Some("gpt-4o-mini"),
        ..Subjects::default()
    };
    let other = admitted(limiter.admit(&mini, tokens(1_000_000)).await);
    assert!(other.rate_limit().is_none());
}

async fn token_settlement_refunds_and_overcharges_sliding_window(store: Store) {
    let rule = Rule::tokens("tpm", ScopeKind::Model, 1_000, MINUTE)
        .with_algorithm(Algorithm::SlidingWindow);
    let limiter = store.limiter(vec![rule]).await;
    let first = admitted(limiter.admit(&gpt4o(), tokens(800)).await);
    refused(limiter.admit(&gpt4o(), tokens(300)).await);
    first.settle(200, 0.0);
    limiter.drain().await;
    let second = admitted(limiter.admit(&gpt4o(), tokens(300)).await);
    assert_eq!(second.rate_limit().unwrap().remaining, 500);
    second.settle(1_300, 0.0);
    limiter.drain().await;
    // 200 + 1300 = 1500 counted in this window.
    let refusal = refused(limiter.admit(&gpt4o(), tokens(1)).await);
    assert_eq!(refusal.remaining, 0);
    // The next window must come, and 1500 * (1 - e / 60 s) + 1 <= 1000 needs e >= 20.04 s.
    assert_eq!(
        refusal.retry_after,
        Duration::from_micros(60_000_000 + 20_040_000)
    );
}

async fn refused_request_consumes_nothing_from_other_rules(store: Store) {
    let rules = vec![
        Rule::requests("user-rpm", ScopeKind::User, 2, MINUTE),
        Rule::concurrency("team-concurrency", ScopeKind::Team, 2),
        Rule::budget("team-daily", ScopeKind::Team, 1.0, Period::Daily),
        Rule::tokens("model-tpm", ScopeKind::Model, 1_000, MINUTE),
    ];
    let limiter = store.limiter(rules).await;
    let who = Subjects {
        user: Some("alice"),
        team: Some("search"),
        model: Some("gpt-4o"),
        ..Subjects::default()
    };
    let estimate = |tokens| Estimate {
        tokens,
        cost_usd: 0.5,
    };
    let _a = admitted(limiter.admit(&who, estimate(900)).await);
    // Refused by the token rule alone.
    let refusal = refused(limiter.admit(&who, estimate(200)).await);
    assert_eq!(&*refusal.rule_id, "model-tpm");
    // Had the refused request taken a request, a lease or $0.50, this one would be refused.
    let _c = admitted(limiter.admit(&who, estimate(100)).await);
    // Now every rule refuses; the one asking for the longest wait is reported.
    let refusal = refused(limiter.admit(&who, estimate(0)).await);
    assert_eq!(&*refusal.rule_id, "team-daily");
    assert_eq!(refusal.retry_after, Duration::from_secs(12 * 3_600));
}

async fn refusal_reports_the_longest_wait(store: Store) {
    let rules = vec![
        Rule::requests("per-second", ScopeKind::User, 1, Duration::from_secs(1)),
        Rule::requests("per-hour", ScopeKind::User, 1, Duration::from_secs(3_600)),
    ];
    let limiter = store.limiter(rules).await;
    let _ = admitted(limiter.admit(&user("alice"), requests()).await);
    let refusal = refused(limiter.admit(&user("alice"), requests()).await);
    assert_eq!(&*refusal.rule_id, "per-hour");
    assert_eq!(refusal.retry_after, Duration::from_secs(3_600));
    assert_eq!(
        refusal.message,
        "Rate limit of 1 requests per 1h for user `alice` exceeded; retry in 1h 0m"
    );
}

async fn concurrency_leases_are_released_on_drop_and_settle(store: Store) {
    let limiter = store
        .limiter(vec![Rule::concurrency("per-key", ScopeKind::Key, 2)])
        .await;
    let key = |k| Subjects {
        key: Some(k),
        ..Subjects::default()
    };
    let a = admitted(limiter.admit(&key("k1"), requests()).await);
    let b = admitted(limiter.admit(&key("k1"), requests()).await);
    assert!(a.rate_limit().is_none());
    let refusal = refused(limiter.admit(&key("k1"), requests()).await);
    assert_eq!(refusal.kind, RefusalKind::Concurrency);
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    assert_eq!((refusal.limit, refusal.remaining), (2, 0));
    assert_eq!(
        refusal.message,
        "Concurrency limit of 2 in-flight requests for key `k1` reached; retry in 1s"
    );
    // Another key is independent.
    let _other = admitted(limiter.admit(&key("k2"), requests()).await);

    drop(a);
    limiter.drain().await;
    let c = admitted(limiter.admit(&key("k1"), requests()).await);
    refused(limiter.admit(&key("k1"), requests()).await);
    b.settle(10, 0.01);
    limiter.drain().await;
    let _d = admitted(limiter.admit(&key("k1"), requests()).await);
    refused(limiter.admit(&key("k1"), requests()).await);
    drop(c);
    limiter.drain().await;
    let _e = admitted(limiter.admit(&key("k1"), requests()).await);
}

async fn budget_reserves_settles_and_refuses_with_spend(store: Store) {
    let limiter = store
        .limiter(vec![Rule::budget(
            "team-daily",
            ScopeKind::Team,
            5.0,
            Period::Daily,
        )])
        .await;
    let a = admitted(limiter.admit(&team("search"), cost(2.0)).await);
    let b = admitted(limiter.admit(&team("search"), cost(2.0)).await);
    let refusal = refused(limiter.admit(&team("search"), cost(2.0)).await);
    assert_eq!(refusal.kind, RefusalKind::Budget);
    assert_eq!((refusal.limit, refusal.remaining), (5_000_000, 1_000_000));
    assert_eq!(
        refusal.message,
        "Daily budget of $5.00 for team `search` has $1.00 left, less than this request's \
         estimated $2.00 ($0.00 spent, $4.00 reserved by requests in flight); resets in 12h 0m"
    );
    // A cheaper request still fits.
    let c = admitted(limiter.admit(&team("search"), cost(0.5)).await);
    drop(c); // never settled: its reservation is released, nothing spent
    a.settle(100, 3.02);
    b.settle(100, 2.0);
    limiter.drain().await;
    let refusal = refused(limiter.admit(&team("search"), cost(0.0)).await);
    assert_eq!(refusal.remaining, 0);
    assert_eq!(refusal.retry_after, Duration::from_secs(12 * 3_600));
    assert_eq!(refusal.reset, Duration::from_secs(12 * 3_600));
    assert_eq!(
        refusal.message,
        "Daily budget of $5.00 for team `search` exhausted ($5.02 spent); resets in 12h 0m"
    );
    // Other teams have their own budget.
    let _ = admitted(limiter.admit(&team("ads"), cost(4.0)).await);
}

async fn budget_overshoot_is_bounded_by_in_flight_misestimates(store: Store) {
    let rules = vec![Rule::budget(
        "team-daily",
        ScopeKind::Team,
        1.0,
        Period::Daily,
    )];
    let limiter = store.limiter(rules).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            limiter.admit(&team("search"), cost(0.10)).await.ok()
        }));
    }
    let mut held = Vec::new();
    for task in tasks {
        held.extend(task.await.unwrap());
    }
    // Reservations alone stop admissions at the limit.
    assert_eq!(held.len(), 10);
    // Each call cost more than estimated; nothing refuses after the fact.
    for admission in held {
        admission.settle(100, 0.15);
    }
    limiter.drain().await;
    let refusal = refused(limiter.admit(&team("search"), cost(0.0)).await);
    // Overshoot = sum of (actual - estimate) of the requests that were in flight: 10 * $0.05.
    assert_eq!(
        refusal.message,
        "Daily budget of $1.00 for team `search` exhausted ($1.50 spent); resets in 12h 0m"
    );
}

async fn budget_windows_roll_over_at_utc_boundaries(store: Store) {
    let rules = vec![
        Rule::budget("daily", ScopeKind::User, 1.0, Period::Daily),
        Rule::budget("weekly", ScopeKind::Team, 1.0, Period::Weekly),
        Rule::budget("monthly", ScopeKind::Key, 1.0, Period::Monthly),
    ];
    let limiter = store.limiter(rules).await;
    let spend = |who: Subjects<'static>| {
        let limiter = limiter.clone();
        async move {
            let result = limiter
                .admit(&who, cost(1.0))
                .await
                .map(|a| a.settle(0, 1.0));
            limiter.drain().await;
            result
        }
    };
    let daily = user("alice");
    let weekly = team("search");
    let monthly = Subjects {
        key: Some("k1"),
        ..Subjects::default()
    };
    // Wednesday 2024-01-31 23:59:59 UTC (a leap year).
    store
        .clock
        .set(portcullis_limits::ManualClock::at_utc(2024, 1, 31, 23, 59, 59).now_micros());
    for who in [daily, weekly, monthly] {
        spend(who).await.unwrap();
        let refusal = spend(who).await.unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Budget);
    }
    let refusal = spend(daily).await.unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    // Thursday 2024-02-01 00:00:00: a new day and a new month, the same week.
    store.clock.advance(Duration::from_secs(1));
    spend(daily).await.unwrap();
    spend(monthly).await.unwrap();
    let refusal = spend(weekly).await.unwrap_err();
    // Until Monday 2024-02-05 00:00 UTC.
    assert_eq!(refusal.retry_after, Duration::from_secs(4 * 86_400));
    // Sunday 2024-02-04 23:59:59, then Monday.
    store.clock.advance(Duration::from_secs(4 * 86_400 - 1));
    spend(weekly).await.unwrap_err();
    store.clock.advance(Duration::from_secs(1));
    spend(weekly).await.unwrap();
    // Still February (29 days in 2024): the monthly budget stays spent until March.
    store
        .clock
        .set(portcullis_limits::ManualClock::at_utc(2024, 2, 29, 23, 59, 59).now_micros());
    let refusal = spend(monthly).await.unwrap_err();
    assert_eq!(refusal.retry_after, Duration::from_secs(1));
    store.clock.advance(Duration::from_secs(1));
    spend(monthly).await.unwrap();
}

async fn spend_seed_is_consulted_once_per_window(store: Store) {
    let seed = RecordingSeed::new(4.0);
    let rules = vec![Rule::budget(
        "team-daily",
        ScopeKind::Team,
        5.0,
        Period::Daily,
    )];
    let limiter = store
        .limiter_with_seed(rules.clone(), Some(seed.clone() as Arc<dyn SpendSeed>))
        .await;
    // $4 already spent today according to the request log: $0.60 more does not fit.
    let refusal = refused(limiter.admit(&team("search"), cost(1.5)).await);
    assert!(
        refusal.message.contains("($4.00 spent)"),
        "{}",
        refusal.message
    );
    let a = admitted(limiter.admit(&team("search"), cost(0.6)).await);
    a.settle(1, 0.6);
    limiter.drain().await;
    refused(limiter.admit(&team("search"), cost(0.6)).await);
    let midnight =
        portcullis_limits::ManualClock::at_utc(2025, 3, 10, 0, 0, 0).now_micros() / 1_000;
    assert_eq!(
        seed.calls(),
        vec![(ScopeKind::Team, "search".to_owned(), midnight)]
    );

    // Another replica (or, on Redis, another process) finds the counter already there.
    let other = store
        .limiter_with_seed(rules.clone(), Some(seed.clone() as Arc<dyn SpendSeed>))
        .await;
    let refusal = refused(other.admit(&team("search"), cost(0.5)).await);
    assert!(
        refusal.message.contains("($4.60 spent)"),
        "{}",
        refusal.message
    );
    assert_eq!(seed.calls().len(), 1);

    // The next day is a new window: seeded once more, from its own midnight.
    store.clock.advance(Duration::from_secs(12 * 3_600));
    let _first = admitted(limiter.admit(&team("search"), cost(0.5)).await);
    let _second = admitted(limiter.admit(&team("search"), cost(0.4)).await);
    let calls = seed.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].2, midnight + 86_400_000);
}

async fn hundred_racing_requests_admit_exactly_ten(store: Store) {
    let cases: Vec<(Rule, Estimate)> = vec![
        (
            Rule::requests("gcra", ScopeKind::User, 10, MINUTE),
            requests(),
        ),
        (
            Rule::requests("sliding", ScopeKind::User, 10, MINUTE)
                .with_algorithm(Algorithm::SlidingWindow),
            requests(),
        ),
        (
            Rule::tokens("tokens", ScopeKind::User, 1_000, MINUTE),
            tokens(100),
        ),
        (
            Rule::concurrency("concurrency", ScopeKind::User, 10),
            requests(),
        ),
        (
            Rule::budget("budget", ScopeKind::User, 1.0, Period::Daily),
            cost(0.1),
        ),
    ];
    for (rule, estimate) in cases {
        let id = rule.id.clone();
        // Four replicas share the counters.
        let mut replicas = Vec::new();
        for _ in 0..4 {
            replicas.push(store.limiter(vec![rule.clone()]).await);
        }
        let mut tasks = Vec::new();
        for i in 0..100 {
            let limiter = replicas[i % replicas.len()].clone();
            tasks.push(tokio::spawn(async move {
                limiter.admit(&user("alice"), estimate).await.ok()
            }));
        }
        let mut held = Vec::new();
        for task in tasks {
            held.extend(task.await.unwrap());
        }
        assert_eq!(held.len(), 10, "rule {id}");
    }
}

async fn rules_apply_only_to_their_scope_and_match(store: Store) {
    let rules = vec![
        Rule::requests("global", ScopeKind::Global, 3, MINUTE),
        Rule::requests("tool", ScopeKind::Tool, 1, MINUTE).matching("search"),
    ];
    let limiter = store.limiter(rules).await;
    assert!(!limiter.is_empty());
    let with_tool = |tool| Subjects {
        tool: Some(tool),
        ..Subjects::default()
    };
    let _ = admitted(limiter.admit(&with_tool("search"), requests()).await);
    let refusal = refused(limiter.admit(&with_tool("search"), requests()).await);
    assert_eq!(&*refusal.rule_id, "tool");
    // Other tools, and requests without a tool, only meet the global rule.
    let _ = admitted(limiter.admit(&with_tool("browse"), requests()).await);
    let _ = admitted(limiter.admit(&Subjects::default(), requests()).await);
    let refusal = refused(limiter.admit(&Subjects::default(), requests()).await);
    assert_eq!(&*refusal.rule_id, "global");
    assert_eq!(refusal.scope_value, None);
    assert!(
        refusal.message.contains("for all requests"),
        "{}",
        refusal.message
    );
}

#[tokio::test]
async fn no_rules_admits_everything_without_a_backend_call() {
    let limiter = Limiter::new(LimitRules::empty(), Arc::new(MemoryBackend::new()), None);
    assert!(limiter.is_empty());
    for _ in 0..1_000 {
        let admission = admitted(limiter.admit(&user("alice"), requests()).await);
        assert!(admission.rate_limit().is_none());
    }
}

#[tokio::test]
async fn budgets_survive_a_restart_through_the_spend_seed() {
    let seed = RecordingSeed::new(0.0);
    let clock = crate::common::start_clock();
    let rules = LimitRules::new(vec![Rule::budget(
        "daily",
        ScopeKind::Team,
        5.0,
        Period::Daily,
    )])
    .unwrap();
    let before = Limiter::new(
        rules.clone(),
        Arc::new(MemoryBackend::with_clock(clock.clone())),
        Some(seed.clone()),
    );
    admitted(before.admit(&team("search"), cost(1.0)).await).settle(1, 4.5);
    drop(before);
    // The request log now says $4.50; a restarted process starts from it, not from zero.
    let seed = RecordingSeed::new(4.5);
    let after = Limiter::new(
        rules,
        Arc::new(MemoryBackend::with_clock(clock)),
        Some(seed.clone()),
    );
    let refusal = refused(after.admit(&team("search"), cost(1.0)).await);
    assert!(
        refusal.message.contains("($4.50 spent)"),
        "{}",
        refusal.message
    );
    assert_eq!(seed.calls().len(), 1);
}

#[tokio::test]
async fn seed_failure_fails_budgets_closed_and_is_retried() {
    let seed = Arc::new(RecordingSeed {
        fail: true,
        ..RecordingSeed::default()
    });
    let clock = crate::common::start_clock();
    let rules = LimitRules::new(vec![
        Rule::requests("rpm", ScopeKind::Team, 100, MINUTE),
        Rule::budget("daily", ScopeKind::Team, 5.0, Period::Daily),
    ])
    .unwrap();
    let limiter = Limiter::new(
        rules,
        Arc::new(MemoryBackend::with_clock(clock)),
        Some(seed.clone()),
    );
    let refusal = refused(limiter.admit(&team("search"), cost(1.0)).await);
    assert_eq!(refusal.kind, RefusalKind::Unavailable);
    assert_eq!(refusal.status(), 503);
    assert_eq!(&*refusal.rule_id, "daily");
    refused(limiter.admit(&team("search"), cost(1.0)).await);
    assert_eq!(seed.calls().len(), 2);
    let stats = limiter.stats();
    assert_eq!((stats.backend_errors, stats.fail_closed_refusals), (2, 2));
}

#[test]
fn handles_cross_threads_and_admit_is_a_send_future() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Limiter>();
    send_sync::<portcullis_limits::Admission>();
    send_sync::<portcullis_limits::Refusal>();
    let limiter = Limiter::new(LimitRules::empty(), Arc::new(MemoryBackend::new()), None);
    let who = user("alice");
    let future = limiter.admit(&who, requests());
    send(&future);
}

#[tokio::test]
async fn memory_forgets_idle_counters() {
    let clock = crate::common::start_clock();
    let backend = Arc::new(MemoryBackend::with_clock(clock.clone()));
    let rules = LimitRules::new(vec![
        Rule::requests("rpm", ScopeKind::User, 10, MINUTE),
        Rule::concurrency("concurrency", ScopeKind::Key, 5),
        Rule::budget("daily", ScopeKind::Team, 5.0, Period::Daily),
    ])
    .unwrap();
    let limiter = Limiter::new(rules, backend.clone(), None);
    let names: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
    for name in &names {
        let _ = admitted(limiter.admit(&user(name), requests()).await);
    }
    let who = Subjects {
        key: Some("k1"),
        team: Some("search"),
        ..Subjects::default()
    };
    let in_flight = admitted(limiter.admit(&who, cost(1.0)).await);
    assert_eq!(backend.counters(), 102);
    // Each user's bucket refills within 6 s; then it is indistinguishable from no counter.
    clock.advance(Duration::from_secs(6));
    backend.sweep();
    assert_eq!(backend.counters(), 2);
    // The lease stays while in flight; the budget until its day (plus an hour) is over.
    in_flight.settle(1, 1.0);
    backend.sweep();
    assert_eq!(backend.counters(), 1);
    clock.advance(Duration::from_secs(12 * 3_600 + 3_600 - 7));
    backend.sweep();
    assert_eq!(backend.counters(), 1);
    clock.advance(Duration::from_secs(1));
    backend.sweep();
    assert_eq!(backend.counters(), 0);
}

//! The `limits:`/`budgets:`/`limits_redis:` YAML sections and their validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_limits::config::{
    RawBudgetRule, RawLimitRule, RawLimitsRedis, validate, validate_redis,
};
use portcullis_limits::{
    Algorithm, BudgetRule, Period, RateRule, RateUnit, Rule, RuleKind, ScopeKind,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    limits: Vec<RawLimitRule>,
    #[serde(default)]
    budgets: Vec<RawBudgetRule>,
    #[serde(default)]
    limits_redis: Option<RawLimitsRedis>,
}

fn parse(yaml: &str) -> File {
    serde_saphyr::from_str(yaml).unwrap()
}

fn issues(yaml: &str) -> Vec<String> {
    let file = parse(yaml);
    validate(&file.limits, &file.budgets)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_documented_example_validates() {
    let file = parse(
        r#"
limits:
  - id: per-user-rpm
    scope: user
    match: alice
    requests: 60
    window: 1m
    algorithm: gcra
  - scope: model
    match: gpt-4o
    tokens: 100000
    window: 1m
    algorithm: sliding_window
  - scope: key
    concurrent: 10
  - scope: team
    match: 42
    requests: 5
    window: 500ms
    fail_open: false
budgets:
  - scope: team
    usd: 50
    period: monthly
  - id: global-daily
    scope: global
    usd: 0.25
    period: daily
    fail_open: true
limits_redis:
  url: redis://127.0.0.1:6379/2
  key_prefix: "gw:"
  timeout: 250ms
  lease_ttl: 2m
"#,
    );
    let rules = validate(&file.limits, &file.budgets).unwrap();
    let rules = rules.rules();
    assert_eq!(rules.len(), 6);
    assert_eq!(
        rules[0],
        Rule {
            id: "per-user-rpm".into(),
            scope: ScopeKind::User,
            matches: Some("alice".into()),
            kind: RuleKind::Rate(RateRule {
                unit: RateUnit::Requests,
                limit: 60,
                window: Duration::from_secs(60),
                algorithm: Algorithm::Gcra,
            }),
            fail_open: true,
        }
    );
    assert_eq!(&*rules[1].id, "limit-1");
    assert!(matches!(
        &rules[1].kind,
        RuleKind::Rate(RateRule {
            unit: RateUnit::Tokens,
            limit: 100_000,
            algorithm: Algorithm::SlidingWindow,
            ..
        })
    ));
    assert_eq!(rules[2].kind, RuleKind::Concurrency { max_in_flight: 10 });
    assert!(rules[2].fail_open);
    // A number is a fine scope value.
    assert_eq!(rules[3].matches.as_deref(), Some("42"));
    assert!(!rules[3].fail_open);
    assert_eq!(
        rules[4],
        Rule::budget("budget-0", ScopeKind::Team, 50.0, Period::Monthly)
    );
    assert!(!rules[4].fail_open, "budgets fail closed by default");
    assert_eq!(
        rules[5].kind,
        RuleKind::Budget(BudgetRule {
            limit_micros: 250_000,
            period: Period::Daily,
        })
    );
    assert!(rules[5].fail_open);

    let redis = validate_redis("limits_redis", file.limits_redis.as_ref().unwrap()).unwrap();
    assert_eq!(redis.url, "redis://127.0.0.1:6379/2");
    assert_eq!(redis.options.key_prefix, "gw:");
    assert_eq!(redis.options.operation_timeout, Duration::from_millis(250));
    assert_eq!(redis.options.lease_ttl, Duration::from_secs(120));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let found = issues(
        r#"
limits:
  - scope: user
    requests: 60
    window: 60
  - scope: usr
    requests: 10
    window: 1m
  - scope: user
    requests: 10
    tokens: 100
    window: 1m
  - scope: key
    concurrent: 5
    window: 1m
    algorithm: gcra
  - scope: user
    requests: 10
  - scope: user
    requests: 0
    window: 1m
    algorithm: leaky
  - scope: global
    match: alice
    requests: 1
    window: 1m
  - id: "bad id!"
    scope: user
    concurrent: 1
  - id: dup
    scope: user
    concurrent: 1
  - scope: user
    requests: 1000000
    window: 1ms
  - scope: user
    requests: 1
    window: 40d
budgets:
  - id: dup
    scope: team
    usd: -5
    period: yearly
  - scope: team
    usd: 5
    period: daily
    match: ""
"#,
    );
    let expected = [
        "limits[0].window: `60`: expected a duration like 60s, 1m, 1h (a unit is required)",
        "limits[1].scope: unknown scope `usr`; expected one of global, key, user, team, model, provider, route, tool, server",
        "limits[2]: exactly one of `requests`, `tokens` or `concurrent` is required (found requests and tokens)",
        "limits[3].window: a concurrency rule has no window",
        "limits[3].algorithm: a concurrency rule has no algorithm",
        "limits[4].window: required for a requests or tokens rule: expected a duration like 60s, 1m, 1h",
        "limits[5].algorithm: unknown algorithm `leaky`; expected gcra or sliding_window",
        "limits[6].match: a global rule cannot match a value",
        "limits[7].id: `bad id!` may contain only letters, digits, `_`, `-` and `.`",
        "limits[9].requests: more than one request per microsecond cannot be limited",
        "limits[10].window: must be between 1ms and 31d",
        "budgets[0].period: unknown period `yearly`; expected daily, weekly or monthly",
        "budgets[0].usd: must be a positive amount of US dollars",
        "budgets[1].match: must not be empty",
    ];
    for line in expected {
        assert!(
            found.iter().any(|f| f == line),
            "missing `{line}` in {found:#?}"
        );
    }
    // `requests: 0` is reported once the rest of the rule is valid.
    let zero = issues("limits:\n  - scope: user\n    requests: 0\n    window: 1m\n");
    assert_eq!(zero, ["limits[0].requests: must be at least 1"]);
    let duplicate = issues(
        "limits:\n  - id: dup\n    scope: user\n    concurrent: 1\nbudgets:\n  - id: dup\n    scope: team\n    usd: 5\n    period: daily\n",
    );
    assert_eq!(
        duplicate,
        ["budgets[0].id: duplicate rule id `dup` (also used by limits[0])"]
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let error = serde_saphyr::from_str::<File>(
        "limits:\n  - scope: user\n    requests: 1\n    windows: 1m\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("windows"), "{error}");
    let error = serde_saphyr::from_str::<File>(
        "budgets:\n  - scope: team\n    usd: 5\n    period: daily\n    limit: 3\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("limit"), "{error}");
}

#[test]
fn redis_settings_are_checked() {
    let raw = RawLimitsRedis {
        url: "http://localhost".to_owned(),
        key_prefix: None,
        timeout: Some("soon".to_owned()),
        lease_ttl: Some("500ms".to_owned()),
    };
    let found: Vec<String> = validate_redis("limits_redis", &raw)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "limits_redis.url: must start with `redis://`, `rediss://` or `unix://`",
            "limits_redis.timeout: `soon`: expected a duration like 60s, 1m, 1h",
            "limits_redis.lease_ttl: must be at least 1s",
        ]
    );
}

#[test]
fn programmatic_rules_are_validated_too() {
    let problems = portcullis_limits::LimitRules::new(vec![
        Rule::requests("a", ScopeKind::User, 0, Duration::from_secs(1)),
        Rule::budget("a", ScopeKind::Team, f64::NAN, Period::Daily),
        Rule::concurrency("c", ScopeKind::Global, 1).matching("x"),
    ])
    .unwrap_err();
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "rules[0].requests: must be at least 1",
            "rules[1].usd: must be a positive amount",
            "rules[1].id: duplicate rule id `a`",
            "rules[2].match: a global rule cannot match a value",
        ]
    );
}

#[test]
fn redis_credentials_never_print() {
    let raw = RawLimitsRedis {
        url: "redis://user:hunter2@cache.internal:6379/0".to_owned(),
        ..RawLimitsRedis::default()
    };
    let settings = validate_redis("limits_redis", &raw).unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("redis://***@cache.internal:6379/0"),
        "{debug}"
    );
    assert_eq!(
        portcullis_limits::config::redacted_url("redis://127.0.0.1:6379"),
        "redis://127.0.0.1:6379"
    );
}

#[test]
fn the_limits_block_reports_a_bad_value_at_its_path() {
    use portcullis_core::config::Block;
    use portcullis_limits::LimitRules;
    use portcullis_limits::config::RawLimitsBlock;

    let file = parse(
        "limits:\n  - scope: user\n    requests: 60\n    window: 1m\n  - scope: usr\n    requests: 10\n    window: 1m\n",
    );
    let raw = RawLimitsBlock {
        limits: file.limits,
        budgets: file.budgets,
    };
    let found: Vec<String> = LimitRules::validate(raw, "")
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("limits[1].scope: "), "{found:?}");
}

//! The dispatcher on its own — no database, no gateway state, only the upstream client,
//! breakers and latency averages — on tokio's paused clock: retries wait exactly the backoff or
//! the upstream's `Retry-After`, a first-byte timeout fails over to the next target after
//! exactly the timeout, and a target whose breaker opened is skipped without being called.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_config::{Config, Source};
use portcullis_core::{Dialect, GatewayError, Identity};
use portcullis_failover::{CircuitBreakers, LatencyTracker};
use portcullis_gateway::dispatch::{AttemptLog, Dispatch, Dispatcher, KeyChoice};
use portcullis_gateway::upstream::{ClientConfig, UpstreamClient};
use portcullis_providers::provider::{Credential, ForwardedHeaders};
use portcullis_providers::{Provider, UpstreamRequest};
use portcullis_test_support::{MockUpstream, Reply};
use serde_json::json;
use tokio::time::Instant;

fn config(yaml: &str) -> Config {
    portcullis_config::from_yaml(yaml, Source::Environment, &HashMap::<String, String>::new())
        .unwrap_or_else(|e| panic!("test config is valid: {e}\n{yaml}"))
}

fn dispatcher(config: &Config) -> Dispatcher {
    Dispatcher {
        client: UpstreamClient::new(ClientConfig {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(600),
            max_idle_per_host: 8,
        })
        .unwrap()
        .into(),
        breakers: Arc::new(CircuitBreakers::new(config.failover.breaker)),
        latency: LatencyTracker::default(),
        directory: None,
        breaker_sync: OnceLock::new(),
        upstream_auth: Default::default(),
    }
}

fn openai_error(status: u16, retry_after: Option<&str>) -> Reply {
    let body = json!({"error": {"message": "try later", "type": "server_error", "param": null, "code": null}});
    match retry_after {
        Some(after) => Reply::Json {
            status,
            headers: vec![("retry-after".into(), after.into())],
            body,
        },
        None => Reply::json(status, body),
    }
}

/// Sends one chat request for `model` through `dispatcher` under `config`'s policy for it:
/// the target that answered (`provider/model`), the attempts, and the time it took.
async fn send(
    dispatcher: &Dispatcher,
    config: &Config,
    model: &str,
) -> (Result<String, GatewayError>, AttemptLog, Duration) {
    let registry = config.registry().unwrap();
    let resolution = registry.resolve(model).unwrap();
    let policy = *config.failover.policy(resolution.route.as_deref());
    let request = portcullis_dialects::decode_request(
        Dialect::OpenAi,
        json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let build = |provider: &Provider,
                 model: &str,
                 credential: Option<&Credential>|
     -> Result<UpstreamRequest, GatewayError> {
        provider.chat_request(
            &request,
            model,
            credential,
            ForwardedHeaders {
                anthropic_beta: None,
            },
        )
    };
    let caller = Identity::master();
    let plan = Dispatch {
        targets: &resolution.targets,
        policy: &policy,
        keys: KeyChoice {
            identity: &caller,
            alias: None,
        },
        gate: None,
        deadline: None,
        build: &build,
    };
    let mut tried = AttemptLog::default();
    let started = Instant::now();
    let served = dispatcher
        .send(&plan, &mut tried, &mut ())
        .await
        .map(|s| s.target.key.to_string());
    (served, tried, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn retries_wait_exactly_the_backoff_or_the_upstreams_retry_after() {
    let mock = MockUpstream::start().await;
    mock.push_reply(openai_error(503, None));
    mock.push_reply(openai_error(429, Some("7")));
    mock.push_reply(openai_error(500, None));
    let config = config(&format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
routes:
  patient:
    targets: [openai/gpt-4o-mini]
    retry: {{max_attempts: 4, delay: 2s, backoff: exponential, jitter: false}}
"#,
        url = mock.openai_base_url()
    ));
    let dispatcher = dispatcher(&config);

    let (served, tried, took) = send(&dispatcher, &config, "patient").await;

    assert_eq!(served.unwrap(), "openai/gpt-4o-mini");
    let statuses: Vec<u16> = tried.attempts.iter().map(|a| a.status).collect();
    // The upstream's 500 is a bad gateway to the caller.
    assert_eq!(statuses, [503, 429, 502, 200]);
    assert_eq!(tried.sent(), 4);
    assert_eq!(mock.hits(), 4);
    // 2 s before the second attempt, the 7 s the upstream asked for before the third, then
    // 2 s × 2² before the fourth — nothing more, nothing less.
    assert_eq!(took, Duration::from_secs(2 + 7 + 8), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_first_byte_timeout_fails_over_after_exactly_the_timeout() {
    let slow = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    let config = config(&format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {slow}}}
  anthropic: {{api_key: sk-ant-mock, base_url: {good}}}
routes:
  quick:
    timeouts: {{first_byte: 10s}}
    targets: [openai/mock-slow-60000, anthropic/claude-haiku-4-5]
"#,
        slow = slow.openai_base_url(),
        good = good.anthropic_base_url(),
    ));
    let dispatcher = dispatcher(&config);

    let (served, tried, took) = send(&dispatcher, &config, "quick").await;

    assert_eq!(served.unwrap(), "anthropic/claude-haiku-4-5");
    assert_eq!(tried.attempts.len(), 2);
    assert_eq!(&*tried.attempts[0].target, "openai/mock-slow-60000");
    assert_eq!(tried.attempts[0].status, 504);
    assert_eq!(took, Duration::from_secs(10), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_target_whose_breaker_opened_is_skipped_without_a_call() {
    let bad = MockUpstream::start().await;
    let good = MockUpstream::start().await;
    let config = config(&format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {bad}}}
  anthropic: {{api_key: sk-ant-mock, base_url: {good}}}
routes:
  sturdy:
    targets: [openai/mock-error-503, anthropic/claude-haiku-4-5]
circuit_breaker: {{failures: 2, open_for: 30s}}
"#,
        bad = bad.openai_base_url(),
        good = good.anthropic_base_url(),
    ));
    let dispatcher = dispatcher(&config);

    // Two requests fail on the primary (opening its breaker) and are served by the second.
    for _ in 0..2 {
        let (served, _, _) = send(&dispatcher, &config, "sturdy").await;
        assert_eq!(served.unwrap(), "anthropic/claude-haiku-4-5");
    }
    let calls = bad.hits();
    let (served, tried, _) = send(&dispatcher, &config, "sturdy").await;
    assert_eq!(served.unwrap(), "anthropic/claude-haiku-4-5");
    assert_eq!(tried.attempts[0].status, 0, "the open target is skipped");
    assert_eq!(bad.hits(), calls, "and never called");

    // Once it has been open for its time, the target is tried again.
    tokio::time::advance(Duration::from_secs(31)).await;
    let (_, tried, _) = send(&dispatcher, &config, "sturdy").await;
    assert_eq!(tried.attempts[0].status, 503);
    assert_eq!(bad.hits(), calls + 1);
}

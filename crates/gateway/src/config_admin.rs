//! The configuration in force as the admin API shows it (admin only, read-only):
//!
//! | route | does |
//! |---|---|
//! | `GET /admin/providers` | every configured provider, in resolution order: `name`, `kind`, the `host` of its base URL, the models (and Azure deployments) it serves, the names of its configured upstream headers, whether it has a credential and of which sort (and whether its kind needs one), the routes that target it |
//! | `GET /admin/routes` | every route with its targets in order (primary first, weights), its balancing strategy, retries and time limits, tool deny-list and aliases; the default policy of requests that name no route; the aliases; the circuit breakers' settings |
//!
//! Both read the configuration the last reload applied. No secret is ever shown: not an API
//! key, a token, an AWS secret, an Entra client secret nor a header's value (only header
//! names); of a Vertex AI service account, neither its file's path nor its contents; of a base
//! URL, only its host (a user name, password, path or query it carries is left out).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, Uri};
use portcullis_config::Config;
use portcullis_failover::{RetryPolicy, RoutePolicy, Timeouts};
use portcullis_providers::{ProviderKind, ProviderSpec};
use serde_json::{Value, json};

use crate::admin::admin_json;
use crate::state::AppState;

/// `GET /admin/providers`.
pub async fn providers(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let runtime = state.runtime();
        let data = state
            .with_config(|config| {
                config
                    .providers
                    .iter()
                    .map(|spec| {
                        let root = runtime
                            .registry
                            .provider(&spec.name)
                            .map(|p| p.native_root().to_owned());
                        provider_view(config, spec, root.as_deref())
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        Ok(json!({ "data": data }))
    })
    .await
}

/// `GET /admin/routes`.
pub async fn routes(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        Ok(state.with_config(routes_view).await)
    })
    .await
}

/// A provider as the API shows it: no secret, only whether there is one.
fn provider_view(config: &Config, spec: &ProviderSpec, effective_base: Option<&str>) -> Value {
    let base = spec
        .base_url
        .as_deref()
        .or(effective_base)
        .or(spec.kind.preset().base_url);
    let (credential, method) = credential(spec);
    let routes: Vec<&str> = config
        .routes
        .iter()
        .filter(|r| r.targets.iter().any(|t| t.provider == spec.name))
        .map(|r| r.name.as_str())
        .collect();
    let mut v = json!({
        "name": spec.name,
        "kind": spec.kind.id(),
        "host": base.and_then(host),
        "base_url_configured": spec.base_url.is_some(),
        "models": spec.models,
        "responses_models": spec.responses_models,
        "headers": spec.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "has_credentials": credential,
        "credential_type": method,
        "credentials_optional": spec.kind.preset().key_optional,
        "default_max_tokens": spec.default_max_tokens,
        "routes": routes,
    });
    if let Some(map) = v.as_object_mut() {
        if let Some(azure) = &spec.azure {
            map.insert(
                "deployments".to_owned(),
                azure
                    .deployments
                    .iter()
                    .map(|(model, deployment)| json!({"model": model, "deployment": deployment}))
                    .collect(),
            );
            map.insert("api_version".to_owned(), json!(azure.api_version));
        }
        if let Some(aws) = &spec.aws {
            map.insert("region".to_owned(), json!(aws.region));
        }
        if let Some(vertex) = &spec.vertex {
            map.insert("project".to_owned(), json!(vertex.project));
            map.insert("location".to_owned(), json!(vertex.location));
        }
        if let Some(cf) = &spec.cloudflare {
            map.insert("cloudflare_upstream".to_owned(), json!(cf.upstream));
        }
    }
    v
}

/// Whether `spec` holds a credential, and its sort (`api_key`, `entra_id`, `service_account`,
/// `aws`, `cloudflare_token`, or `none`).
fn credential(spec: &ProviderSpec) -> (bool, &'static str) {
    let set = |s: &Option<portcullis_providers::Secret>| {
        s.as_ref().is_some_and(|s| !s.expose().is_empty())
    };
    match spec.kind {
        ProviderKind::Bedrock => {
            let aws = spec.aws.as_ref();
            let has = aws.is_some_and(|a| {
                a.access_key_id.as_deref().is_some_and(|k| !k.is_empty())
                    && set(&a.secret_access_key)
            });
            (has, if has { "aws" } else { "none" })
        }
        ProviderKind::Vertex => {
            let has = spec
                .vertex
                .as_ref()
                .is_some_and(|v| v.credentials.is_some());
            (has, if has { "service_account" } else { "none" })
        }
        _ if set(&spec.api_key) => (true, "api_key"),
        _ if spec.azure.as_ref().is_some_and(|a| a.entra.is_some()) => (true, "entra_id"),
        _ if spec.cloudflare.as_ref().is_some_and(|c| set(&c.token)) => (true, "cloudflare_token"),
        _ => (false, "none"),
    }
}

/// The host (and port, when one is written) of `url`; nothing else of it.
fn host(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let authority = uri.authority()?;
    Some(match authority.port() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn retry_view(r: &RetryPolicy) -> Value {
    json!({
        "max_attempts": r.max_attempts,
        "delay_ms": ms(r.delay),
        "backoff": r.backoff.as_str(),
        "max_delay_ms": ms(r.max_delay),
        "jitter": r.jitter,
    })
}

fn timeouts_view(t: &Timeouts) -> Value {
    json!({
        "first_byte_ms": t.first_byte.map(ms),
        "total_ms": t.total.map(ms),
    })
}

fn policy_view(p: &RoutePolicy) -> Value {
    json!({
        "strategy": p.strategy.as_str(),
        "retry": retry_view(&p.retry),
        "timeouts": timeouts_view(&p.timeouts),
    })
}

/// Every route with its policy, the default policy, the aliases and the breakers' settings.
fn routes_view(config: &Config) -> Value {
    let data: Vec<Value> = config
        .routes
        .iter()
        .map(|route| {
            let targets: Vec<Value> = route
                .targets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!({
                        "provider": t.provider,
                        "model": t.model,
                        "weight": t.weight,
                        "role": if i == 0 { "primary" } else { "fallback" },
                    })
                })
                .collect();
            let denied = config
                .tools_denied
                .iter()
                .find(|(name, _)| *name == route.name)
                .map(|(_, globs)| globs.patterns().to_vec())
                .unwrap_or_default();
            let aliases: Vec<&str> = config
                .aliases
                .iter()
                .filter(|(_, target)| *target == route.name)
                .map(|(alias, _)| alias.as_str())
                .collect();
            let mut v = policy_view(config.failover.policy(Some(&route.name)));
            if let Some(map) = v.as_object_mut() {
                map.insert("name".to_owned(), json!(route.name));
                map.insert("targets".to_owned(), Value::Array(targets));
                map.insert("tools_denied".to_owned(), json!(denied));
                map.insert("aliases".to_owned(), json!(aliases));
            }
            v
        })
        .collect();
    let breaker = config.failover.breaker;
    json!({
        "data": data,
        "default": policy_view(&config.failover.default),
        "aliases": config
            .aliases
            .iter()
            .map(|(alias, target)| json!({"alias": alias, "target": target}))
            .collect::<Vec<_>>(),
        "circuit_breaker": {
            "failure_threshold": breaker.failure_threshold,
            "open_for_ms": ms(breaker.open_for),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::host;

    #[test]
    fn host_leaves_out_credentials_path_and_query() {
        assert_eq!(
            host("https://user:secret@api.example.com:8443/v1?key=abc").as_deref(),
            Some("api.example.com:8443")
        );
        assert_eq!(
            host("https://api.openai.com/v1").as_deref(),
            Some("api.openai.com")
        );
        assert_eq!(host("not a url"), None);
    }
}

//! The dispatch stage: the [`Dispatcher`] sends a request to a route's targets until one
//! answers.
//!
//! The dispatcher owns only what dispatching needs — the upstream client, the circuit breakers
//! (shared with the other replicas through [`BreakerSync`]), the latency averages and the
//! provider-key directory — so the loop can run, and be tested, without the rest of the
//! gateway. What is sent is built per target by the caller ([`BuildUpstream`]): chat and
//! embeddings share the loop.
//!
//! Targets are tried in the order the route's [`Strategy`](portcullis_failover::Strategy)
//! gives; a target whose circuit breaker is open is skipped. Each target is tried up to the
//! policy's `max_attempts` times while the failure may pass (connect errors, timeouts, 408,
//! 409, 429 and 5xx — read from [`GatewayError::retryable`] and [`GatewayError::blame`], never
//! from status codes), waiting the backoff delay or the upstream's `Retry-After` in between;
//! then the next target is tried, translated into its own dialect. An error that is the
//! caller's fault (400, 404, 413…) ends the loop at once.
//!
//! The loop ends when response headers arrive, so nothing is ever retried once the first byte
//! of an answer has gone to the client. Each attempt is kept for the request's log record.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use portcullis_config::RoutePolicy;
use portcullis_core::{Blame, ErrorKind, GatewayError, Identity};
use portcullis_cost::{CustomCost, PriceBook};
use portcullis_failover::{
    CircuitBreakers, LatencyTracker, Passage, should_fail_over, should_retry,
};
use portcullis_identity::{AliasError, Directory};
use portcullis_limits::{Admission, Limiter, Refusal};
use portcullis_providers::provider::Credential;
use portcullis_providers::{Provider, Target, UpstreamRequest};
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::breaker_sync::BreakerSync;
use crate::limits::Demand;
use crate::upstream::{ClientSlot, read_body, retry_after};
use crate::upstream_auth::UpstreamAuth;

/// What dispatching needs, and nothing else of the gateway.
#[derive(Debug)]
pub struct Dispatcher {
    /// The upstream HTTP client in force (a reload may replace it).
    pub client: ClientSlot,
    /// Per-target circuit breakers.
    pub breakers: Arc<CircuitBreakers>,
    /// Per-target latency averages, for latency-aware routes.
    pub latency: LatencyTracker,
    /// Provider keys per identity (the vault), when the database holds any.
    pub directory: Option<Directory>,
    /// Shares breaker openings with the other replicas, when Redis is configured.
    pub breaker_sync: OnceLock<BreakerSync>,
    /// Signs requests and runs token sources, as each provider's authentication says.
    pub upstream_auth: Arc<UpstreamAuth>,
}

/// Builds the upstream request for one target: the provider, the model at the provider and
/// the credential to send.
pub type BuildUpstream<'a> = dyn Fn(&Provider, &str, Option<&Credential>) -> Result<UpstreamRequest, GatewayError>
    + Sync
    + 'a;

/// Follows the attempt in progress: the request's log record does, so that a request the
/// client abandons mid-attempt is logged against the target it was waiting on.
pub trait FollowAttempt {
    /// An attempt at `provider`'s `model` with the credential `credential_id` is about to be
    /// sent.
    fn attempt(&mut self, provider: &str, model: &Arc<str>, credential_id: Option<&str>);
}

/// Follows nothing.
impl FollowAttempt for () {
    fn attempt(&mut self, _: &str, _: &Arc<str>, _: Option<&str>) {}
}

/// One upstream attempt, as the log records it.
#[derive(Debug, Serialize)]
pub struct AttemptRecord {
    /// `provider/model`.
    pub target: Arc<str>,
    /// The upstream's status, or the status the failure maps to (0: skipped).
    pub status: u16,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time to the response headers or the failure, in milliseconds.
    pub latency_ms: f64,
}

/// What the loop ends with on success.
pub struct Served<'t> {
    /// The upstream's successful response (headers received, body unread).
    pub response: http::Response<Incoming>,
    /// The target that answered.
    pub target: &'t Target,
    /// The id of the provider key used.
    pub credential_id: Option<String>,
    /// The target's admission under the model- and provider-scoped limits.
    pub admission: Option<Admission>,
    /// Upstream requests sent (retries and failovers included).
    pub attempts: u32,
}

/// Admits a request to each target it is sent to under the model- and provider-scoped
/// limits; a target whose limits refuse is passed over like one whose breaker is open.
#[derive(Debug, Clone, Copy)]
pub struct TargetGate<'a> {
    /// The limiter.
    pub limiter: &'a Limiter,
    /// Model prices.
    pub prices: &'a PriceBook,
    /// The caller's own prices, if it sent them.
    pub custom_cost: Option<&'a CustomCost>,
    /// What the request is expected to consume.
    pub demand: Demand,
}

/// Whose provider keys a request uses: the caller's identity and the alias it asked for.
#[derive(Debug, Clone, Copy)]
pub struct KeyChoice<'a> {
    /// The caller.
    pub identity: &'a Identity,
    /// `x-portcullis-provider-key`, when sent.
    pub alias: Option<&'a str>,
}

/// The credential an attempt sends: the provider's configured one, or one from the vault
/// (built into its header once and shared by every request that resolves to it).
#[derive(Debug, Clone)]
pub enum CredentialRef<'p> {
    /// The provider's configured key.
    Configured(&'p Credential),
    /// A stored (vault) key.
    Stored(Arc<Credential>),
}

impl std::ops::Deref for CredentialRef<'_> {
    type Target = Credential;

    fn deref(&self) -> &Credential {
        match self {
            CredentialRef::Configured(c) => c,
            CredentialRef::Stored(c) => c,
        }
    }
}

impl Dispatcher {
    /// The credential a target is called with: the caller's own (user, then team, then stored
    /// default, or the alias asked for) when the vault holds keys for the provider, else the
    /// provider's configured key.
    pub fn credential_for<'p>(
        &self,
        provider: &'p Provider,
        keys: &KeyChoice<'_>,
    ) -> Result<Option<CredentialRef<'p>>, GatewayError> {
        let Some(directory) = &self.directory else {
            return Ok(default_credential(provider));
        };
        if keys.alias.is_none() && !directory.has_credentials(provider.name()) {
            return Ok(default_credential(provider));
        }
        match directory.provider_credential(keys.identity, provider.name(), keys.alias) {
            Ok(Some(found)) => {
                if let Some(ready) = found.prepared.get() {
                    return Ok(Some(CredentialRef::Stored(ready.clone())));
                }
                let built = provider
                    .credential(found.id.to_string(), &found.secret)
                    .map_err(|e| {
                        GatewayError::internal("A stored provider key could not be used")
                            .with_detail(format!("provider key `{}`: {e}", found.id))
                    })?;
                // Whoever sets it first wins; both built the same header.
                let ready = found.prepared.get_or_init(|| Arc::new(built)).clone();
                Ok(Some(CredentialRef::Stored(ready)))
            }
            Ok(None) => Ok(default_credential(provider)),
            // One answer whether the alias does not exist or belongs to someone else, so that
            // aliases cannot be enumerated.
            Err(AliasError::Unknown { alias, .. } | AliasError::NotAllowed { alias }) => {
                Err(GatewayError::invalid_request(format!(
                    "No provider key with alias `{alias}` is available to this caller"
                ))
                .with_param("x-portcullis-provider-key")
                .with_code("unknown_provider_key"))
            }
        }
    }
}

fn default_credential(provider: &Provider) -> Option<CredentialRef<'_>> {
    provider.default_credential().map(CredentialRef::Configured)
}

/// Every attempt made for one request.
#[derive(Debug, Default)]
pub struct AttemptLog {
    /// The attempts, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The last refusal by a target's limits, if any.
    pub refusal: Option<Refusal>,
}

impl AttemptLog {
    /// Upstream requests actually sent.
    pub fn sent(&self) -> u32 {
        u32::try_from(self.attempts.iter().filter(|a| a.status != 0).count()).unwrap_or(u32::MAX)
    }

    /// The attempts as JSON, when there was more than one to tell.
    pub fn to_json(&self) -> Option<String> {
        (self.attempts.len() > 1)
            .then(|| serde_json::to_string(&self.attempts).ok())
            .flatten()
    }

    fn push(
        &mut self,
        target: &Arc<str>,
        status: u16,
        error: Option<&GatewayError>,
        took: Duration,
    ) {
        self.attempts.push(AttemptRecord {
            target: target.clone(),
            status,
            error: error.map(|e| e.message().to_owned()),
            latency_ms: took.as_secs_f64() * 1e3,
        });
    }
}

/// One dispatch: where to send, under which policy, on whose keys.
pub struct Dispatch<'a, 't> {
    /// The route's targets, primary first.
    pub targets: &'t [Target],
    /// Retry, timeout and balancing policy.
    pub policy: &'a RoutePolicy,
    /// Whose provider keys to use.
    pub keys: KeyChoice<'a>,
    /// The model- and provider-scoped limits, when any apply.
    pub gate: Option<TargetGate<'a>>,
    /// The request's total time limit.
    pub deadline: Option<Instant>,
    /// Builds each target's upstream request.
    pub build: &'a BuildUpstream<'a>,
}

impl Dispatcher {
    /// Sends to `dispatch`'s targets under its policy until one answers with a success status.
    ///
    /// On failure, the last target's error is returned (or 503 when every target's breaker was
    /// open). Every attempt is kept in `tried`; `follow` (the request's log record) follows the
    /// attempt in progress.
    pub async fn send<'t>(
        &self,
        dispatch: &Dispatch<'_, 't>,
        tried: &mut AttemptLog,
        follow: &mut (dyn FollowAttempt + Send),
    ) -> Result<Served<'t>, GatewayError> {
        let Dispatch {
            targets,
            policy,
            keys,
            gate,
            deadline,
            build,
        } = *dispatch;
        let log = tried;
        // Every attempt of this request goes through the client in force now.
        let client = self.client.current();
        let weights: Vec<(&str, u32)> = targets.iter().map(|t| (&*t.key, t.weight)).collect();
        let order = policy.strategy.order(&weights, &self.latency);
        let mut last_error: Option<GatewayError> = None;
        let mut shortest_wait: Option<Duration> = None;

        'targets: for index in order {
            let Some(target) = targets.get(index) else {
                continue;
            };
            if let Passage::Open { retry_in } = self.breakers.pass(&target.key) {
                log.push(&target.key, 0, None, Duration::ZERO);
                shortest_wait = Some(shortest_wait.map_or(retry_in, |w| w.min(retry_in)));
                continue;
            }
            let provider = &target.provider;
            let admission = match gate {
                Some(gate) => {
                    let price = gate.prices.target_price(target, gate.custom_cost);
                    let estimate = gate.demand.estimate(price.as_ref());
                    match gate
                        .limiter
                        .admit_target(&target.model, provider.name(), estimate)
                        .await
                    {
                        Ok(admission) => Some(admission),
                        Err(refusal) => {
                            let error = crate::limits::refusal_error(&refusal);
                            log.push(&target.key, 0, Some(&error), Duration::ZERO);
                            log.refusal = Some(refusal);
                            last_error = Some(error);
                            continue;
                        }
                    }
                }
                None => None,
            };
            let credential = self.credential_for(provider, &keys)?;
            let mut upstream = Some(build(provider, &target.model, credential.as_deref())?);
            let max_attempts = policy.retry.max_attempts.max(1);
            for attempt in 1..=max_attempts {
                let first_byte = remaining(deadline, policy.timeouts.first_byte)?;
                // Only a request that may be retried is copied.
                let this = if attempt == max_attempts {
                    upstream.take()
                } else {
                    upstream.clone()
                };
                let Some(mut this) = this else {
                    continue 'targets;
                };
                // Recorded before sending, so a request the client abandons mid-attempt is
                // logged against the target it was waiting on.
                follow.attempt(
                    provider.name(),
                    &target.model,
                    credential.as_ref().map(|c| c.id.as_str()),
                );
                let sent = Instant::now();
                let span = crate::trace::attempt_span(provider.name(), &target.model);
                let sending = async {
                    self.upstream_auth
                        .authenticate(provider, &mut this, &client)
                        .await?;
                    client.send(this, provider.name(), first_byte).await
                };
                let outcome = match sending.instrument(span.clone()).await {
                    Ok(resp) if resp.status().is_success() => Ok(resp),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        crate::trace::record_attempt_status(&span, status);
                        let after = retry_after(resp.headers());
                        let body = read_body(resp.into_body(), provider.name()).await?;
                        Err(provider.decode_error(status, after, &body))
                    }
                    Err(e) => {
                        crate::trace::record_error(&span, &e);
                        Err(e)
                    }
                };
                let took = sent.elapsed();
                let error = match outcome {
                    Ok(response) => {
                        crate::trace::record_attempt_status(&span, response.status().as_u16());
                        self.breakers.record_success(&target.key);
                        self.latency.record(&target.key, took);
                        log.push(&target.key, response.status().as_u16(), None, took);
                        return Ok(Served {
                            response,
                            target,
                            credential_id: credential.map(|c| c.id.clone()),
                            admission,
                            attempts: log.sent(),
                        });
                    }
                    Err(e) => e,
                };
                log.push(&target.key, error.status().as_u16(), Some(&error), took);
                let opened =
                    error.blame() == Blame::Upstream && self.breakers.record_failure(&target.key);
                if opened {
                    tracing::warn!(target = %target.key, "circuit breaker opened");
                    if let Some(sync) = self.breaker_sync.get() {
                        sync.publish(&target.key, self.breakers.settings().open_for);
                    }
                }
                if !should_fail_over(&error) {
                    return Err(error);
                }
                let wait = (should_retry(&error) && !opened)
                    .then(|| policy.retry.delay_before(attempt, error.retry_after()))
                    .flatten();
                last_error = Some(error);
                match wait {
                    Some(wait) if fits(deadline, wait) => tokio::time::sleep(wait).await,
                    _ => continue 'targets,
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
        let e = GatewayError::new(
            ErrorKind::Unavailable,
            "Every target of this model is failing and temporarily out of rotation; try again shortly",
        )
        .with_code("no_healthy_target");
        match shortest_wait {
            Some(w) => e.with_retry_after(w.max(Duration::from_secs(1))),
            None => e,
        }
    }))
    }
}

/// The first-byte timeout of the next attempt: the policy's, shortened to what is left of the
/// total time limit. A deadline already passed is a timeout.
fn remaining(
    deadline: Option<Instant>,
    first_byte: Option<Duration>,
) -> Result<Option<Duration>, GatewayError> {
    let Some(deadline) = deadline else {
        return Ok(first_byte);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(GatewayError::total_timeout());
    }
    Ok(Some(first_byte.map_or(left, |f| f.min(left))))
}

fn fits(deadline: Option<Instant>, wait: Duration) -> bool {
    deadline.is_none_or(|d| Instant::now() + wait < d)
}

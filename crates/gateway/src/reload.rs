//! Hot reload of the configuration. [`Runtime`] is what a configuration decides that may change
//! while the gateway runs — the provider registry (routes, aliases, tool deny-lists), failover
//! policies, prices, the exact and semantic cache settings, limit rules, `log.bodies`,
//! `log.access`, the request-body size limit and the `server:` block's connection settings. The
//! state holds it in an `ArcSwap`; every request loads it once when it begins and keeps that
//! snapshot to its end, so a request in flight finishes on the configuration it started with.
//!
//! [`next_runtime`] builds the runtime of a new configuration over what outlives
//! configurations ([`Kept`]): the limiter's backend (counters, budgets), the exact cache's
//! store, the circuit breakers, and the semantic caches when their settings are unchanged. A
//! semantic cache whose settings changed is rebuilt here (loading its model), before the swap,
//! never on a request's path. What lives outside the runtime and a reload also changes is
//! prepared here too and put in force by [`Reloaded::put_in_force`], each part swapped whole:
//!
//! - `master_key` and `identity.issuers`: the authenticator's trust (master digest, issuers'
//!   verifier), one value swapped at once, so a request is checked against the old key or the
//!   new one, never a mix. A `master_key` removed from the file falls back to the digest a
//!   first start stored; when there is none, the key in force stays (a restart generates one
//!   and shows it) and the summary says so.
//! - `upstream`: a new client, built before the swap; a dispatch sends all its attempts through
//!   the client in force when it started, and an answer already streaming finishes on its
//!   connection.
//! - `failover.circuit_breaker`: the breakers take the new threshold and `open_for` and keep
//!   their state (an open breaker stays open for the period it opened for).
//! - `server`: the body limits apply to the next request read; timeouts, HTTP/2 settings and
//!   the connection cap to connections accepted from then on; the grace period to the next
//!   drain.
//! - `log.batch_size` and `log.flush_interval`: the request-log writer's next batch.
//! - `identity.poll_interval`: the directory's watcher polls at the new interval from now on.
//! - `mcp`: servers whose entry is unchanged keep their connections (and their lists); new or
//!   changed entries are connected; removed ones are stopped; session ids stay valid.
//!
//! What cannot change while running is named in [`ReloadSummary::needs_restart`] and left as it
//! was:
//!
//! - `listen` (the socket is bound once) and `database` (every store, the directory and the
//!   request-log writer hold its pool).
//! - `redis`: the limiter's counters, the exact cache and the breaker sharing live there;
//!   another server would start them empty, so the counters would not survive.
//! - `secret_key`: the vault's key; the provider keys sealed under the old one could no longer
//!   be opened, and the OAuth signing key derived from it would change under issued tokens.
//! - `telemetry`: the exporter is installed once as the process's tracing layer.
//! - `log.queue_capacity`: the writer's bounded queue is made with it when the process starts
//!   (records queued in it cannot move to another).
//! - `identity.oauth` (its routes, signing key and sign-in providers are fixed when the router
//!   is built), and `identity.issuers` while the OAuth server runs (it signs users in through
//!   them).
//! - the exact cache's store backend and size (the store carries its entries over).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_config::{AccessLog, Config, FailoverConfig, ServerConfig};
use portcullis_cost::PriceBook;
use portcullis_failover::{BreakerSettings, CircuitBreakers};
use portcullis_limits::{LimitBackend, Limiter, SpendSeed};
use portcullis_providers::Registry;
use portcullis_store::{LogSink, SemanticStore, SettingsStore, StoreError};

use crate::auth::{Authenticator, MasterDigest};
use crate::body::BodyBudget;
use crate::dispatch::Dispatcher;
use crate::response_cache::ResponseCache;
use crate::semantic::{SemanticLayer, SemanticSetupError};
use crate::upstream::{ClientConfig, UpstreamClient};

/// What a configuration decides that a reload may change; one snapshot per request.
#[derive(Debug)]
pub struct Runtime {
    /// Providers, routes (with their tool deny-lists) and aliases.
    pub registry: Arc<Registry>,
    /// Retry, timeout and balancing policies per route.
    pub failover: FailoverConfig,
    /// Model prices.
    pub prices: PriceBook,
    /// The exact response cache, when any route uses it.
    pub cache: Option<Arc<ResponseCache>>,
    /// The semantic cache, when any route uses it.
    pub semantic: Option<Arc<SemanticLayer>>,
    /// Rate, concurrency and budget rules.
    pub limiter: Option<Limiter>,
    /// Whether request and response bodies are logged by default (`log.bodies`).
    pub log_bodies: bool,
    /// Which requests get an access-log line (`log.access`).
    pub access_log: AccessLog,
    /// Largest accepted request body (`server.max_request_body_bytes`).
    pub max_request_body_bytes: usize,
    /// The `server:` block: connections accepted from now on get its limits.
    pub server: ServerConfig,
    /// The agent guardrails' `tool_policies`.
    pub tool_policies: Arc<portcullis_policy::ToolPolicies>,
    /// The quarantine model and its answers (`quarantine`), when configured.
    pub quarantine: Option<Arc<crate::quarantine_answers::Quarantiner>>,
}

/// What outlives configurations and every runtime is built over.
pub struct Kept<'a> {
    /// The limiter's counters and budgets.
    pub limit_backend: &'a Arc<dyn LimitBackend>,
    /// Where budgets are seeded from.
    pub spend_seed: &'a Arc<dyn SpendSeed>,
    /// Where the semantic caches persist.
    pub semantic_store: &'a Arc<dyn SemanticStore>,
    /// The circuit breakers, whose state outlives their settings.
    pub breakers: &'a CircuitBreakers,
    /// Where a generated master key's digest is stored.
    pub settings: &'a dyn SettingsStore,
    /// The authenticator, whose master key and issuers are in force.
    pub auth: &'a Authenticator,
}

/// What a reload changed, and what it left as it was because it needs a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The parts of the configuration now in force that differ from before.
    pub applied: Vec<&'static str>,
    /// The parts that changed in the file but need a restart; the old values stay in force.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadSummary {
    /// Whether the new configuration is the one already in force.
    pub fn is_unchanged(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            f.write_str("nothing changed")?;
        } else {
            write!(f, "changed: {}", self.applied.join(", "))?;
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                "; not applied, needs a restart: {}",
                self.needs_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Why a new configuration could not be applied (the old one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Providers, routes or aliases are inconsistent.
    #[error("providers: {0}")]
    Registry(#[from] portcullis_providers::RegistryError),
    /// The semantic cache could not be set up.
    #[error("{0}")]
    Semantic(#[from] SemanticSetupError),
    /// The new upstream client could not be set up.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The enterprise issuers could not be set up.
    #[error("identity: {0}")]
    Identity(String),
    /// The stored master key could not be read.
    #[error("master_key: the stored master key could not be read: {0}")]
    Settings(#[from] StoreError),
}

/// A new configuration, ready to be put in force.
#[derive(Debug)]
pub struct Reloaded {
    runtime: Runtime,
    /// The configuration in force once applied (what needs a restart keeps its old value).
    in_force: Config,
    summary: ReloadSummary,
    /// The master key and issuers to trust, when either changes.
    trust: Option<(MasterDigest, Option<Issuers>)>,
    /// The new upstream client, when its settings changed.
    client: Option<UpstreamClient>,
    breaker: BreakerSettings,
    max_body_bytes_in_flight: usize,
    log_batch: (usize, std::time::Duration),
    /// The directory's new poll interval, when it changed.
    poll_interval: Option<std::time::Duration>,
}

/// Enterprise issuers: their verifier and their settings.
#[derive(Debug)]
struct Issuers {
    verifier: portcullis_oidc::Verifier,
    settings: Vec<portcullis_oidc::IssuerConfig>,
}

impl Reloaded {
    /// Puts every part in force, each swapped whole, the runtime last; returns the configuration
    /// now in force and what changed.
    pub fn put_in_force(
        self,
        runtime: &ArcSwap<Runtime>,
        auth: &Authenticator,
        dispatcher: &Dispatcher,
        body_budget: &BodyBudget,
        log: &LogSink,
    ) -> (Config, ReloadSummary) {
        if let Some((master, issuers)) = &self.trust {
            auth.retrust(
                *master,
                issuers
                    .as_ref()
                    .map(|i| (i.verifier.clone(), i.settings.as_slice())),
            );
        }
        if let Some(client) = self.client {
            dispatcher.client.replace(client);
        }
        dispatcher.breakers.reconfigure(self.breaker);
        body_budget.set_limit(self.max_body_bytes_in_flight);
        log.retune(self.log_batch.0, self.log_batch.1);
        if let (Some(interval), Some(directory)) = (self.poll_interval, auth.directory()) {
            directory.set_poll_interval(interval);
        }
        runtime.store(Arc::new(self.runtime));
        (self.in_force, self.summary)
    }
}

/// The upstream client settings of `config`.
pub fn client_config(config: &Config) -> ClientConfig {
    ClientConfig {
        connect_timeout: config.upstream.connect_timeout,
        first_byte_timeout: config.upstream.first_byte_timeout,
        max_idle_per_host: config.upstream.max_idle_per_host,
    }
}

/// The runtime `next` describes, built over `kept` and reusing what `current` (built from
/// `applied`) already has where the settings are the same; and what changed.
pub async fn next_runtime(
    current: &Runtime,
    applied: &Config,
    next: &Config,
    kept: Kept<'_>,
) -> Result<Reloaded, ReloadError> {
    let mut summary = ReloadSummary {
        applied: Vec::new(),
        needs_restart: needs_restart(applied, next),
    };
    // Decided before anything is built: whether a removed master key can fall back.
    let master = if applied.master_key == next.master_key {
        None
    } else {
        match &next.master_key {
            Some(key) => Some(MasterDigest::of(key)),
            None => MasterDigest::stored(kept.settings).await?,
        }
    };
    if master.is_none() && applied.master_key != next.master_key {
        summary.needs_restart.push("master_key");
    }
    let mut in_force = in_force(applied, next);
    if master.is_none() {
        in_force.master_key = applied.master_key.clone();
    }
    let mut changed = |name: &'static str, differs: bool| {
        if differs {
            summary.applied.push(name);
        }
    };
    let providers_changed = format!("{:?}", applied.providers) != format!("{:?}", next.providers)
        || provider_secrets(applied) != provider_secrets(next);
    let routes_changed = applied.routes != next.routes
        || format!("{:?}", applied.tools_denied) != format!("{:?}", next.tools_denied);
    let aliases_changed = applied.aliases != next.aliases;
    changed("providers", providers_changed);
    changed("routes", routes_changed);
    changed("aliases", aliases_changed);
    changed(
        "failover",
        policies(&applied.failover) != policies(&next.failover),
    );
    changed("prices", applied.prices != next.prices);
    changed("cache", applied.cache != next.cache);
    changed("semantic_cache", applied.semantic != next.semantic);
    changed("limits", applied.limits != next.limits);
    changed("tool_policies", applied.tool_policies != next.tool_policies);
    changed("quarantine", applied.quarantine != next.quarantine);
    changed("log.bodies", applied.log.bodies != next.log.bodies);
    changed("log.access", applied.log.access != next.log.access);
    changed(
        "log.batch_size",
        applied.log.batch_size != next.log.batch_size,
    );
    changed(
        "log.flush_interval",
        applied.log.flush_interval != next.log.flush_interval,
    );
    changed("server", applied.server != next.server);
    changed("upstream", applied.upstream != next.upstream);
    changed(
        "failover.circuit_breaker",
        applied.failover.breaker != next.failover.breaker,
    );
    changed("master_key", master.is_some());
    let issuers_changed = in_force.identity.issuers != applied.identity.issuers;
    changed("identity.issuers", issuers_changed);
    let poll_interval = (applied.identity.poll_interval != next.identity.poll_interval)
        .then_some(next.identity.poll_interval);
    changed("identity.poll_interval", poll_interval.is_some());
    // Applied by the state once the rest is in force (`AppState::reload`).
    changed("mcp", applied.mcp != next.mcp);

    let registry = Arc::new(next.registry()?);
    let cache = match &current.cache {
        Some(cache) if applied.cache == next.cache => Some(cache.clone()),
        Some(cache) => Some(Arc::new(cache.reconfigured(&next.cache))),
        None => None,
    };
    // An embeddings model is resolved per request, through the registry in force.
    let semantic = match &current.semantic {
        Some(layer) if applied.semantic == next.semantic => Some(layer.clone()),
        _ if applied.semantic == next.semantic && current.semantic.is_none() => None,
        _ => SemanticLayer::build(&next.semantic, kept.semantic_store.clone())
            .await?
            .map(Arc::new),
    };
    // Counters and budgets carry over: the same backend, seed and failure counts (which
    // `/metrics` reads), the new rules.
    let limiter = Some(match &current.limiter {
        Some(limiter) => limiter.reconfigured(next.limits.clone()),
        None => Limiter::new(
            next.limits.clone(),
            kept.limit_backend.clone(),
            Some(kept.spend_seed.clone()),
        ),
    });
    let client = if applied.upstream == next.upstream {
        None
    } else {
        // Reading the host's CA certificates blocks.
        let settings = client_config(next);
        let built = tokio::task::spawn_blocking(move || UpstreamClient::new(settings)).await;
        match built {
            Ok(Ok(client)) => Some(client),
            Ok(Err(e)) => return Err(ReloadError::Upstream(format!("TLS: {e}"))),
            Err(e) => return Err(ReloadError::Upstream(e.to_string())),
        }
    };
    let issuers = if issuers_changed {
        match in_force.identity.issuers.as_slice() {
            [] => Some(None),
            issuers => {
                let verifier = portcullis_oidc::Verifier::new(issuers.to_vec())
                    .map_err(|e| ReloadError::Identity(e.to_string()))?;
                Some(Some(Issuers {
                    verifier,
                    settings: issuers.to_vec(),
                }))
            }
        }
    } else {
        None
    };
    let trust = match (master, issuers) {
        (None, None) => None,
        (master, issuers) => {
            let master = master.unwrap_or_else(|| kept.auth.master_digest());
            // Unchanged issuers keep their verifier (and the keys it has fetched).
            let issuers = issuers.unwrap_or_else(|| {
                kept.auth.verifier().map(|verifier| Issuers {
                    verifier,
                    settings: applied.identity.issuers.clone(),
                })
            });
            Some((master, issuers))
        }
    };
    let runtime = Runtime {
        registry,
        failover: next.failover.clone(),
        prices: PriceBook::new(next.prices.clone()),
        cache,
        semantic,
        limiter,
        log_bodies: next.log.bodies,
        access_log: next.log.access,
        max_request_body_bytes: next.server.max_request_body_bytes,
        server: next.server.clone(),
        tool_policies: Arc::new(next.tool_policies.clone()),
        quarantine: crate::quarantine_answers::Quarantiner::from_config(next.quarantine.as_ref()),
    };
    Ok(Reloaded {
        runtime,
        in_force,
        summary,
        trust,
        client,
        breaker: next.failover.breaker,
        max_body_bytes_in_flight: next.server.max_body_bytes_in_flight,
        log_batch: (next.log.batch_size, next.log.flush_interval),
        poll_interval,
    })
}

/// The failover settings a reload applies: everything but the breakers'.
fn policies(failover: &FailoverConfig) -> FailoverConfig {
    FailoverConfig {
        breaker: Default::default(),
        ..failover.clone()
    }
}

/// Providers' keys, which their `Debug` form hides, compared apart.
fn provider_secrets(config: &Config) -> Vec<Option<&str>> {
    config
        .providers
        .iter()
        .flat_map(|p| {
            let headers = p.headers.iter().map(|(_, v)| Some(v.expose()));
            std::iter::once(p.api_key.as_ref().map(|k| k.expose())).chain(headers)
        })
        .collect()
}

/// What differs between `applied` and `next` that the running process cannot take on (see the
/// module doc for why).
fn needs_restart(applied: &Config, next: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("listen", applied.listen != next.listen);
    check("database", applied.database != next.database);
    check(
        "log.queue_capacity",
        applied.log.queue_capacity != next.log.queue_capacity,
    );
    check("redis", applied.redis_url != next.redis_url);
    check("secret_key", applied.secret_key != next.secret_key);
    check(
        "telemetry",
        format!("{:?}", applied.telemetry) != format!("{:?}", next.telemetry),
    );
    check(
        "identity.oauth",
        applied.identity.oauth != next.identity.oauth,
    );
    check(
        "identity.issuers (with identity.oauth)",
        applied.identity.oauth.is_some() && applied.identity.issuers != next.identity.issuers,
    );
    check(
        "cache (store backend and size)",
        store_shape(applied) != store_shape(next),
    );
    out
}

/// The exact cache store's backend and size.
fn store_shape(config: &Config) -> String {
    let d = &config.cache.default;
    format!("{:?} {:?} {:?}", d.backend, d.max_bytes, d.max_entry_bytes)
}

/// The configuration in force after applying `next` over `applied`: `next`, except what needs a
/// restart, which keeps `applied`'s values (so the next reload still names it).
fn in_force(applied: &Config, next: &Config) -> Config {
    let mut config = next.clone();
    config.listen = applied.listen;
    config.database = applied.database.clone();
    config.log.queue_capacity = applied.log.queue_capacity;
    config.redis_url = applied.redis_url.clone();
    config.secret_key = applied.secret_key.clone();
    config.telemetry = applied.telemetry.clone();
    config.identity.oauth = applied.identity.oauth.clone();
    if applied.identity.oauth.is_some() {
        config.identity.issuers = applied.identity.issuers.clone();
    }
    let store = &applied.cache.default;
    config.cache.default.backend = store.backend;
    config.cache.default.max_bytes = store.max_bytes;
    config.cache.default.max_entry_bytes = store.max_entry_bytes;
    config
}

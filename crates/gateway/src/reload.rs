//! Hot reload of the configuration. [`Runtime`] is what a configuration decides that may change
//! while the gateway runs — the provider registry (routes, aliases, tool deny-lists), failover
//! policies, prices, the exact and semantic cache settings, limit rules, `log.bodies`,
//! `log.access` and the request-body size limit. The state holds it in an `ArcSwap`; every
//! request loads it once when it begins and keeps that snapshot to its end, so a request in
//! flight finishes on the configuration it started with.
//!
//! [`next_runtime`] builds the runtime of a new configuration over what outlives
//! configurations ([`Kept`]): the limiter's backend (counters, budgets), the exact cache's
//! store, and the semantic caches when their settings are unchanged. A
//! semantic cache whose settings changed is rebuilt here (loading its model), before the swap,
//! never on a request's path. What cannot change while running (`listen`, `database`, and the
//! few settings taken when the process starts) is named in [`ReloadSummary::needs_restart`]
//! and left as it was.

use std::fmt;
use std::sync::Arc;

use portcullis_config::{AccessLog, Config, FailoverConfig};
use portcullis_cost::PriceBook;
use portcullis_failover::CircuitBreakers;
use portcullis_limits::{LimitBackend, Limiter, SpendSeed};
use portcullis_providers::Registry;
use portcullis_store::SemanticStore;

use crate::response_cache::ResponseCache;
use crate::semantic::{SemanticLayer, SemanticSetupError};

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
}

/// What outlives configurations and every runtime is built over.
pub struct Kept<'a> {
    /// The limiter's counters and budgets.
    pub limit_backend: &'a Arc<dyn LimitBackend>,
    /// Where budgets are seeded from.
    pub spend_seed: &'a Arc<dyn SpendSeed>,
    /// Where the semantic caches persist.
    pub semantic_store: &'a Arc<dyn SemanticStore>,
    /// The circuit breakers (their settings are fixed when the process starts).
    pub breakers: &'a CircuitBreakers,
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
}

/// The runtime `next` describes, built over `kept` and reusing what `current` (built from
/// `applied`) already has where the settings are the same; and what changed.
pub async fn next_runtime(
    current: &Runtime,
    applied: &Config,
    next: &Config,
    kept: Kept<'_>,
) -> Result<(Runtime, ReloadSummary), ReloadError> {
    let mut summary = ReloadSummary {
        applied: Vec::new(),
        needs_restart: needs_restart(applied, next, kept.breakers),
    };
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
    changed("log.bodies", applied.log.bodies != next.log.bodies);
    changed("log.access", applied.log.access != next.log.access);
    changed(
        "server.max_request_body_bytes",
        applied.server.max_request_body_bytes != next.server.max_request_body_bytes,
    );

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
    let limiter = Some(Limiter::new(
        next.limits.clone(),
        kept.limit_backend.clone(),
        Some(kept.spend_seed.clone()),
    ));
    let runtime = Runtime {
        registry,
        // The breakers keep the settings they started with (see `needs_restart`).
        failover: FailoverConfig {
            breaker: applied.failover.breaker,
            ..next.failover.clone()
        },
        prices: PriceBook::new(next.prices.clone()),
        cache,
        semantic,
        limiter,
        log_bodies: next.log.bodies,
        access_log: next.log.access,
        max_request_body_bytes: next.server.max_request_body_bytes,
    };
    Ok((runtime, summary))
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

/// What differs between `applied` and `next` that the running process cannot take on.
fn needs_restart(applied: &Config, next: &Config, breakers: &CircuitBreakers) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("listen", applied.listen != next.listen);
    check("database", applied.database != next.database);
    let server_rest = |c: &Config| portcullis_config::ServerConfig {
        max_request_body_bytes: 0,
        ..c.server.clone()
    };
    check("server", server_rest(applied) != server_rest(next));
    let log_rest = |c: &Config| portcullis_config::LogConfig {
        bodies: false,
        access: AccessLog::OFF,
        ..c.log.clone()
    };
    check("log (writer settings)", log_rest(applied) != log_rest(next));
    check("upstream", applied.upstream != next.upstream);
    check("redis", applied.redis_url != next.redis_url);
    check("master_key", applied.master_key != next.master_key);
    check("secret_key", applied.secret_key != next.secret_key);
    check(
        "identity",
        format!("{:?}", applied.identity) != format!("{:?}", next.identity),
    );
    check(
        "telemetry",
        format!("{:?}", applied.telemetry) != format!("{:?}", next.telemetry),
    );
    check(
        "failover.circuit_breaker",
        next.failover.breaker != breakers.settings(),
    );
    let store_shape = |c: &Config| {
        let d = &c.cache.default;
        format!("{:?} {:?} {:?}", d.backend, d.max_bytes, d.max_entry_bytes)
    };
    check(
        "cache (store backend and size)",
        store_shape(applied) != store_shape(next),
    );
    out
}

/// The configuration in force after applying `next` over `applied`: `next`, except what needs a
/// restart, which keeps `applied`'s values (so the next reload still names it).
pub fn in_force(applied: &Config, next: &Config) -> Config {
    let mut config = next.clone();
    config.listen = applied.listen;
    config.database = applied.database.clone();
    config.server = portcullis_config::ServerConfig {
        max_request_body_bytes: next.server.max_request_body_bytes,
        ..applied.server.clone()
    };
    config.log = portcullis_config::LogConfig {
        bodies: next.log.bodies,
        access: next.log.access,
        ..applied.log.clone()
    };
    config.upstream = applied.upstream.clone();
    config.redis_url = applied.redis_url.clone();
    config.master_key = applied.master_key.clone();
    config.secret_key = applied.secret_key.clone();
    config.identity = applied.identity.clone();
    config.telemetry = applied.telemetry.clone();
    config.failover.breaker = applied.failover.breaker;
    let store = &applied.cache.default;
    config.cache.default.backend = store.backend;
    config.cache.default.max_bytes = store.max_bytes;
    config.cache.default.max_entry_bytes = store.max_entry_bytes;
    config
}

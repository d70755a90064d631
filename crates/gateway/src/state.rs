//! [`AppState`]: what every handler shares — the provider registry, the authenticator, the
//! dispatcher (upstream client, breakers, latency, provider keys), the request-log sink, the
//! stores and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use portcullis_config::FailoverConfig;
use portcullis_core::Dialect;
use portcullis_cost::PriceBook;
use portcullis_failover::{CircuitBreakers, LatencyTracker};
use portcullis_limits::Limiter;
use portcullis_providers::Registry;
use portcullis_store::{LogRecord, LogSink, Stores};
use std::sync::OnceLock;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::request_log::RequestLog;
use crate::response_cache::ResponseCache;
use crate::semantic::SemanticLayer;
use crate::upstream::UpstreamClient;

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct AppState {
    /// Providers, routes and aliases.
    pub registry: Arc<Registry>,
    /// Caller authentication.
    pub auth: Authenticator,
    /// Sends requests upstream: client, breakers, latency, provider keys.
    pub dispatcher: Dispatcher,
    /// Where request-log records go.
    pub log: LogSink,
    /// Durable stores.
    pub stores: Stores,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body.
    pub max_request_body_bytes: usize,
    /// Whether request and response bodies are logged by default.
    pub log_bodies: bool,
    /// Retry, timeout and balancing policies per route.
    pub failover: FailoverConfig,
    /// The exact response cache, when any route uses it.
    pub cache: Option<ResponseCache>,
    /// Model prices.
    pub prices: PriceBook,
    /// Rate, concurrency and budget rules, when any are configured.
    pub limiter: Option<Limiter>,
    /// The semantic cache, when any route uses it.
    pub semantic: Option<SemanticLayer>,
    /// The budget of request-body bytes held at once (`server.max_body_bytes_in_flight`).
    pub body_budget: Arc<crate::body::BodyBudget>,
    /// Which requests get an access-log line (`log.access`).
    pub access_log: portcullis_config::AccessLog,
    draining: AtomicBool,
}

impl AppState {
    /// Assembles the state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Arc<Registry>,
        auth: Authenticator,
        client: UpstreamClient,
        log: LogSink,
        stores: Stores,
        metrics: Arc<Metrics>,
        max_request_body_bytes: usize,
        log_bodies: bool,
        failover: FailoverConfig,
        cache: Option<ResponseCache>,
        prices: PriceBook,
        limiter: Option<Limiter>,
        semantic: Option<SemanticLayer>,
    ) -> Self {
        let dispatcher = Dispatcher {
            client,
            breakers: Arc::new(CircuitBreakers::new(failover.breaker)),
            latency: LatencyTracker::default(),
            directory: auth.directory().cloned(),
            breaker_sync: OnceLock::new(),
        };
        Self {
            failover,
            dispatcher,
            cache,
            registry,
            auth,
            log,
            stores,
            metrics,
            max_request_body_bytes,
            log_bodies,
            prices,
            limiter,
            semantic,
            body_budget: crate::body::BodyBudget::new(usize::MAX),
            access_log: portcullis_config::AccessLog::OFF,
            draining: AtomicBool::new(false),
        }
    }

    /// Starts the log record of a request.
    pub fn request_log(
        &self,
        id: Uuid,
        endpoint: &'static str,
        dialect: Dialect,
        started: Instant,
    ) -> RequestLog {
        let ts_ms = jiff::Timestamp::now().as_millisecond();
        RequestLog::new(
            LogRecord::new(id, ts_ms, endpoint, dialect.as_str()),
            started,
            self.log.clone(),
            self.metrics.clone(),
        )
        .with_access(self.access_log)
    }

    /// Marks the gateway as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the gateway is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

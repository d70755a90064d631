//! [`AppState`]: what every handler shares — the authenticator, the dispatcher (upstream
//! client, breakers, latency, provider keys), the request-log sink, the stores, the metrics —
//! and the configuration's [`Runtime`] snapshot, swapped whole by [`AppState::reload`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use portcullis_config::Config;
use portcullis_core::Dialect;
use portcullis_failover::{CircuitBreakers, LatencyTracker};
use portcullis_limits::{LimitBackend, SpendSeed};
use portcullis_store::{LogRecord, LogSink, StoreError, Stores};
use std::sync::OnceLock;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::reload::{Kept, ReloadError, ReloadSummary, Runtime};
use crate::request_log::RequestLog;
use crate::upstream::UpstreamClient;

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct AppState {
    /// What the configuration decides that a reload may change; a request loads it once.
    runtime: ArcSwap<Runtime>,
    /// The configuration in force (what needs a restart keeps its starting value); held while a
    /// reload runs, so reloads apply one at a time.
    applied: tokio::sync::Mutex<Config>,
    /// The limiter's counters and budgets, kept across reloads.
    limit_backend: Arc<dyn LimitBackend>,
    /// Where budgets are seeded from.
    spend_seed: SeedSource,
    /// Caller authentication.
    pub auth: Authenticator,
    /// Sends requests upstream: client, breakers, latency, provider keys.
    pub dispatcher: Dispatcher,
    /// Where request-log records go.
    pub log: LogSink,
    /// Durable stores.
    pub stores: Stores,
    /// The MCP tool pins (kept across reloads, followed from the database).
    pub mcp_pins: Arc<portcullis_mcp::pins::Pins>,
    /// Users' opened OAuth grants for upstream MCP servers, briefly kept in memory.
    pub mcp_grants: crate::mcp_grants::GrantCache,
    /// What this gateway keeps as the OAuth client of upstream MCP servers (endpoints, refresh
    /// locks, exchanged tokens, its HTTP client).
    pub mcp_oauth: crate::mcp_grants::OAuthClientMemory,
    /// Where decision-audit records go (none when `audit.enabled` is false).
    pub audit: Option<portcullis_store::AuditSink>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The Responses API's stored answers, written in the background.
    pub responses: crate::stored_responses::ResponseKeeper,
    /// Each provider's last good model list, for `GET /v1/models` (kept across reloads).
    pub model_catalog: crate::model_catalog::ModelCatalog,
    /// Tool calls held for an admin's decision (kept across reloads; a reload changes their
    /// expiry and webhook).
    pub approvals: Arc<crate::approvals::Approvals>,
    /// MCP sessions' trust (in memory, or shared through Redis).
    pub mcp_trust: crate::mcp_trust::SessionTrust,
    /// The budget of request-body bytes held at once (`server.max_body_bytes_in_flight`).
    pub body_budget: Arc<crate::body::BodyBudget>,
    /// The MCP endpoints, when servers are configured; a reload replaces them (a request keeps
    /// the one it loaded).
    pub mcp: arc_swap::ArcSwapOption<crate::mcp_endpoint::McpEndpoint>,
    /// The MCP servers added through the admin API, as last read from the database (those
    /// whose names the file also uses included: the file's win).
    mcp_admin: ArcSwap<Vec<portcullis_mcp::ServerSpec>>,
    /// The tool policies in force: the file's, then those added through the admin API,
    /// compiled together (`crate::stored_tool_policies`); one load per request.
    tool_policies: ArcSwap<portcullis_policy::ToolPolicies>,
    /// The tool policies added through the admin API, as last read from the database.
    stored_tool_policies: ArcSwap<Vec<portcullis_store::ToolPolicyRecord>>,
    draining: AtomicBool,
}

impl AppState {
    /// Assembles the state: `runtime` is what `config` decides, built over `limit_backend` and
    /// `spend_seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Runtime,
        config: &Config,
        auth: Authenticator,
        client: UpstreamClient,
        log: LogSink,
        stores: Stores,
        metrics: Arc<Metrics>,
        limit_backend: Arc<dyn LimitBackend>,
        spend_seed: Arc<dyn SpendSeed>,
    ) -> Self {
        let dispatcher = Dispatcher {
            client: client.into(),
            breakers: Arc::new(CircuitBreakers::new(config.failover.breaker)),
            latency: LatencyTracker::default(),
            directory: auth.directory().cloned(),
            breaker_sync: OnceLock::new(),
            upstream_auth: Default::default(),
        };
        let mcp_pins = crate::mcp_pins::pins(stores.mcp_pins.clone(), auth.directory());
        let approvals = Arc::new(crate::approvals::Approvals::new(
            stores.approvals.clone(),
            metrics.clone(),
            &config.approvals,
        ));
        let counted = metrics.clone();
        mcp_pins.on_withheld(move |server| counted.observe_mcp_tool_definition_change(server));
        let tool_policies = ArcSwap::from_pointee((*runtime.tool_policies).clone());
        Self {
            tool_policies,
            stored_tool_policies: ArcSwap::from_pointee(Vec::new()),
            runtime: ArcSwap::from_pointee(runtime),
            mcp_pins,
            mcp_grants: crate::mcp_grants::GrantCache::default(),
            mcp_oauth: crate::mcp_grants::OAuthClientMemory::default(),
            applied: tokio::sync::Mutex::new(config.clone()),
            limit_backend,
            spend_seed: SeedSource(spend_seed),
            dispatcher,
            auth,
            log,
            responses: crate::stored_responses::ResponseKeeper::new(
                stores.responses.clone(),
                metrics.clone(),
                &config.responses,
            ),
            stores,
            metrics,
            model_catalog: crate::model_catalog::ModelCatalog::default(),
            approvals,
            audit: None,
            body_budget: crate::body::BodyBudget::new(usize::MAX),
            mcp_trust: crate::mcp_trust::SessionTrust::default(),
            mcp: arc_swap::ArcSwapOption::empty(),
            mcp_admin: ArcSwap::from_pointee(Vec::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// The configuration's runtime in force now (a request keeps the one it began with).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Which requests get an access-log line now (`log.access`).
    pub fn access_log(&self) -> portcullis_config::AccessLog {
        self.runtime.load().access_log
    }

    /// Applies `next`: builds its runtime over what outlives configurations (counters, stores,
    /// breakers), and the master key, issuers and client it changes, then swaps each in;
    /// requests already running keep the old ones. What needs a restart is named in the
    /// summary and keeps its value. On error nothing changes.
    pub async fn reload(&self, next: &Config) -> Result<ReloadSummary, ReloadError> {
        let mut applied = self.applied.lock().await;
        let current = self.runtime.load_full();
        let reloaded = crate::reload::next_runtime(
            &current,
            &applied,
            next,
            Kept {
                limit_backend: &self.limit_backend,
                spend_seed: &self.spend_seed.0,
                semantic_store: &self.stores.semantic,
                breakers: &self.dispatcher.breakers,
                settings: self.stores.settings.as_ref(),
                auth: &self.auth,
            },
        )
        .await?;
        let mcp_changed = applied.mcp != next.mcp;
        if mcp_changed {
            // The file's defaults apply to the servers added through the admin API too.
            self.read_mcp_admin(&next.mcp).await;
        }
        let (in_force, summary) = reloaded.put_in_force(
            &self.runtime,
            &self.auth,
            &self.dispatcher,
            &self.body_budget,
            &self.log,
        );
        if mcp_changed {
            self.reconfigure_mcp(&in_force).await?;
        }
        self.approvals.configure(&in_force.approvals);
        self.responses.configure(&in_force.responses);
        self.put_tool_policies_in_force(&in_force);
        *applied = in_force;
        Ok(summary)
    }

    /// The tool policies in force now: the file's, then those added through the admin API.
    pub fn tool_policies(&self) -> Arc<portcullis_policy::ToolPolicies> {
        self.tool_policies.load_full()
    }

    /// Whether the file in force configures the quarantine model (`output: quarantine` needs it).
    pub async fn quarantine_configured(&self) -> bool {
        self.applied.lock().await.quarantine.is_some()
    }

    /// The tool policies added through the admin API, as last read.
    pub fn stored_tool_policies(&self) -> Arc<Vec<portcullis_store::ToolPolicyRecord>> {
        self.stored_tool_policies.load_full()
    }

    /// Reads the tool policies added through the admin API again and puts them in force after
    /// the file's (at start, after a change made here, and whenever the tenancy version
    /// moves). A database that does not answer leaves the rules in force.
    pub async fn refresh_tool_policies(&self) -> Result<(), StoreError> {
        let applied = self.applied.lock().await;
        let stored = self.stores.tool_policies.tool_policies().await?;
        self.stored_tool_policies.store(Arc::new(stored));
        self.put_tool_policies_in_force(&applied);
        Ok(())
    }

    /// Compiles the file's rules of `config` with the stored ones and swaps them in.
    fn put_tool_policies_in_force(&self, config: &Config) {
        let effective = crate::stored_tool_policies::effective(
            &config.tool_policies,
            &self.stored_tool_policies.load(),
            config.quarantine.is_some(),
        );
        self.tool_policies.store(Arc::new(effective));
    }

    /// Reads the MCP servers added through the admin API again and puts them in force next to
    /// the file's, when they changed (at start, after a change made here, and whenever the
    /// tenancy version moves). A database that does not answer leaves the servers in force.
    pub async fn refresh_mcp_servers(&self) -> Result<(), StoreError> {
        let applied = self.applied.lock().await;
        let before = self.mcp_admin.load_full();
        self.read_mcp_admin(&applied.mcp).await;
        if self.mcp.load().is_none() || *before != **self.mcp_admin.load() {
            self.reconfigure_mcp(&applied).await?;
        }
        Ok(())
    }

    /// The `mcp:` block of the configuration file in force.
    pub async fn mcp_file(&self) -> portcullis_mcp::McpConfig {
        self.applied.lock().await.mcp.clone()
    }

    /// Reads the configuration in force (the one the last reload applied) with `f`; a reload
    /// under way is waited for.
    pub async fn with_config<T>(&self, f: impl FnOnce(&Config) -> T) -> T {
        let config = self.applied.lock().await;
        f(&config)
    }

    /// The MCP servers added through the admin API, as last read (the file's may shadow some).
    pub fn mcp_admin_servers(&self) -> Arc<Vec<portcullis_mcp::ServerSpec>> {
        self.mcp_admin.load_full()
    }

    /// Reads the servers added through the admin API under `block`'s defaults; on a database
    /// failure the previous ones stay.
    async fn read_mcp_admin(&self, block: &portcullis_mcp::McpConfig) {
        let vault = self.auth.directory().and_then(|d| d.vault());
        match crate::mcp_servers::load(self.stores.mcp_servers.as_ref(), vault, block).await {
            Ok(specs) => self.mcp_admin.store(Arc::new(specs)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the MCP servers added through the admin API")
            }
        }
    }

    /// Puts the MCP servers of `config` and those added through the admin API in force:
    /// unchanged servers keep their connections and sessions stay valid; new ones are
    /// connected; removed ones are stopped once no new request can reach them.
    async fn reconfigure_mcp(&self, config: &Config) -> Result<(), StoreError> {
        let block = crate::mcp_servers::merged(&config.mcp, &self.mcp_admin.load());
        let current = self.mcp.load_full();
        let (next, gone) = match (&current, block.servers.is_empty()) {
            (Some(endpoint), _) => {
                let (next, gone) = endpoint.reconfigured(block);
                (Some(Arc::new(next)), gone)
            }
            (None, true) => (None, Vec::new()),
            (None, false) => {
                let hub = Arc::new(
                    portcullis_mcp::hub::Hub::new(&block, &portcullis_mcp::hub::connect)
                        .with_pins(self.mcp_pins.clone()),
                );
                let endpoint = crate::mcp_endpoint::McpEndpoint::new(
                    hub,
                    block,
                    config.listen,
                    crate::mcp_endpoint::session_key(self.stores.settings.as_ref()).await?,
                    config
                        .identity
                        .oauth
                        .as_ref()
                        .and_then(|o| o.issuer.clone()),
                );
                // With Redis, answers to relayed server requests reach this replica from the
                // others (`crate::mcp_relay`).
                if let Some(url) = &config.redis_url
                    && let Err(e) = endpoint.relays().connect(url.expose()).await
                {
                    tracing::warn!("MCP answers cannot reach this replica through Redis: {e}");
                }
                (Some(Arc::new(endpoint)), Vec::new())
            }
        };
        self.mcp.store(next);
        for server in gone {
            tokio::spawn(async move { server.upstream.shutdown().await });
        }
        Ok(())
    }

    /// Starts the log record of a request, with the access-log setting of `runtime`.
    pub fn open_log(
        &self,
        runtime: &Runtime,
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
        .with_access(runtime.access_log)
        .with_audit(self.audit.clone())
    }

    /// Starts the log record of a request, with the access-log setting in force.
    pub fn request_log(
        &self,
        id: Uuid,
        endpoint: &'static str,
        dialect: Dialect,
        started: Instant,
    ) -> RequestLog {
        self.open_log(&self.runtime.load(), id, endpoint, dialect, started)
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

/// The limiter's spend seed, kept for the limiters reloads build.
struct SeedSource(Arc<dyn SpendSeed>);

impl std::fmt::Debug for SeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeedSource")
    }
}

//! The Portcullis gateway server.
//!
//! [`Gateway::build`] turns a validated [`Config`] into a running gateway's parts (database,
//! master key, provider registry, upstream client, request-log writer); [`Gateway::serve`]
//! serves it on an injected listener until an injected shutdown signal, then drains: stops
//! accepting, lets in-flight requests finish (bounded by the grace period) and flushes the
//! request log. [`router`] is the HTTP surface:
//!
//! | route | module |
//! |---|---|
//! | `POST /v1/chat/completions`, `POST /v1/messages` | [`chat`] (streaming in [`relay`]) |
//! | `POST /v1/embeddings` | [`embeddings`] |
//! | `POST /v1/messages/count_tokens` | [`count_tokens`] |
//! | `/{provider}/…` (no other route matching) | [`passthrough`] |
//! | `POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` | [`responses`] (kept in [`stored_responses`]) |
//! | `GET /v1/models`, `GET /v1/models/{model}` | [`models`] (providers' lists: [`model_catalog`]) |
//! | `GET /admin/logs`, `GET /admin/usage` | [`admin`] |
//! | `GET /admin/approvals`, `GET`/`POST /admin/approvals/{id}` | [`approvals_admin`] (the service: [`approvals`]) |
//! | `/admin/teams`, `/admin/users`, `/admin/service-accounts`, `/admin/keys`, `/admin/provider-keys`, `GET /admin/openapi.json` | [`tenancy`] |
//! | `GET /admin/providers`, `GET /admin/routes` (the configuration in force, no secrets) | [`config_admin`] |
//! | `GET /admin/audit`, `GET /admin/audit/export`, `POST /admin/audit/verify` | [`audit`] |
//! | `/ui/…` (the web console: pages, sign-in, session; the admin API accepts its session) | [`console`] (files and session rules: `portcullis_console`) |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | [`health`] |
//!
//! Supporting modules: [`auth`] (who is calling), [`headers`] (per-request options and
//! response headers), [`request_log`] (one log record per request), [`respond`] (responses and
//! dialect errors), [`upstream`] (the HTTP client), [`server`] (connections: cap, timeouts,
//! HTTP/2 flood guard, draining), [`body`] (request bodies: size, pace, in-flight budget),
//! [`metrics`], [`state`].

pub mod admin;
mod admin_scope;
pub mod approvals;
pub mod approvals_admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod breaker_sync;
pub mod breakers;
pub mod chat;
pub mod clock;
pub mod config_admin;
pub mod console;
pub mod console_oauth;
pub mod console_session;
pub mod count_tokens;
pub mod dispatch;
pub mod embeddings;
pub mod guardrails;
pub mod headers;
pub mod health;
pub mod limits;
pub mod mcp;
pub mod mcp_access;
pub mod mcp_admin;
pub mod mcp_connect;
pub mod mcp_credentials;
pub mod mcp_endpoint;
pub mod mcp_grants;
pub mod mcp_guard;
pub mod mcp_handoff;
pub mod mcp_pins;
pub mod mcp_quarantine;
pub mod mcp_relay;
pub mod mcp_servers;
pub mod mcp_streams;
pub mod mcp_tools;
pub mod mcp_trust;
pub mod mcp_upstream_oauth;
pub mod metrics;
pub mod model_catalog;
pub mod models;
pub mod oauth;
pub mod passthrough;
pub mod pipeline;
pub mod quarantine;
pub mod quarantine_answers;
pub mod relay;
pub mod reload;
pub mod request_log;
pub mod respond;
pub mod response_cache;
pub mod responses;
pub mod semantic;
pub mod server;
pub mod settle;
pub mod state;
pub mod stored_responses;
pub mod stored_tool_policies;
pub mod stream_filter;
pub mod tenancy;
pub mod tool_calls;
pub mod tool_policies_admin;
pub mod trace;
pub mod upstream;
pub mod upstream_auth;
pub mod upstream_tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{delete, get, post};
use portcullis_config::Config;
use portcullis_core::GatewayError;
use portcullis_store::{LogWriter, StoreError, WriterConfig};
use tokio::net::TcpListener;
use uuid::Uuid;

pub use auth::{Authenticator, MasterKeyOrigin};
pub use reload::{ReloadError, ReloadSummary, Runtime};
pub use state::AppState;

use crate::metrics::Metrics;
use crate::response_cache::ResponseCache;
use crate::upstream::UpstreamClient;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// Providers, routes or aliases are inconsistent.
    #[error("providers: {0}")]
    Registry(#[from] portcullis_providers::RegistryError),
    /// The TLS client could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Redis could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The limits store could not be reached.
    #[error("limits: {0}")]
    Limits(#[from] portcullis_limits::BackendError),
    /// The response cache could not be set up.
    #[error("{0}")]
    Cache(#[from] response_cache::CacheSetupError),
    /// The semantic cache could not be set up.
    #[error("{0}")]
    Semantic(#[from] semantic::SemanticSetupError),
    /// Enterprise issuers or the OAuth server could not be set up.
    #[error("identity: {0}")]
    Identity(String),
    /// The vault's key is unusable.
    #[error("secret key: {0}")]
    Vault(#[from] portcullis_identity::VaultError),
}

/// Connects to the shared Redis; the connection manager reconnects on its own afterwards.
async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    redis::aio::ConnectionManager::new(client).await
}

/// A gateway ready to serve.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<AppState>,
    writer: LogWriter,
    audit_writer: Option<portcullis_store::AuditWriter>,
    limits: server::ConnectionLimits,
    master_key: MasterKeyOrigin,
}

impl Gateway {
    /// Opens the database, sets up the master key and builds every part of the gateway.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let stores = portcullis_store::connect(
            config.database.url.expose(),
            config.database.max_connections,
        )
        .await?;
        let (auth, master_key) =
            Authenticator::bootstrap(config.master_key.as_ref(), stores.settings.as_ref()).await?;
        let vault = match &config.secret_key {
            Some(k) => Some(portcullis_identity::Vault::from_key_text(k.expose())?),
            None => None,
        };
        let directory = portcullis_identity::Directory::new(
            stores.tenancy.clone(),
            vault,
            portcullis_identity::DirectoryOptions {
                poll_interval: config.identity.poll_interval,
                ..Default::default()
            },
        )
        .await?;
        directory.spawn_watcher();
        let mut auth = auth.with_directory(directory.clone());
        let verifier = if config.identity.issuers.is_empty() {
            None
        } else {
            let verifier = portcullis_oidc::Verifier::new(config.identity.issuers.clone())
                .map_err(|e| StartError::Identity(e.to_string()))?;
            auth = auth.with_issuers(verifier.clone(), &config.identity.issuers);
            Some(verifier)
        };
        if let (Some(oauth), Some(vault)) = (&config.identity.oauth, directory.vault()) {
            let server = portcullis_oauth::OAuthServer::new(
                oauth,
                &format!("http://{}", config.listen),
                &vault.derive("oauth-signing-key"),
                stores.oauth.clone(),
                Arc::new(oauth::OAuthDirectory::new(
                    directory.clone(),
                    &config.identity.issuers,
                )),
                verifier,
            )
            .await
            .map_err(|e| StartError::Identity(e.to_string()))?;
            auth = auth.with_oauth(server);
        }
        let registry = Arc::new(config.registry()?);
        let redis = match &config.redis_url {
            Some(url) => Some(connect_redis(url.expose()).await?),
            None => None,
        };
        let cache = ResponseCache::build(&config.cache, redis.as_ref()).await?;
        // Always present: virtual keys may carry their own limits even when the file sets none.
        // The backend (counters, budgets) and the seed outlive reloads.
        let limit_backend: Arc<dyn portcullis_limits::LimitBackend> = match &config.redis_url {
            Some(url) => Arc::new(
                portcullis_limits::RedisBackend::connect(
                    url.expose(),
                    portcullis_limits::RedisOptions::default(),
                )
                .await?,
            ),
            None => Arc::new(portcullis_limits::MemoryBackend::new()),
        };
        let spend_seed: Arc<dyn portcullis_limits::SpendSeed> =
            Arc::new(limits::LogSpendSeed(stores.usage.clone()));
        let limiter = Some(portcullis_limits::Limiter::new(
            config.limits.clone(),
            limit_backend.clone(),
            Some(spend_seed.clone()),
        ));
        let client = UpstreamClient::new(reload::client_config(config))?;
        let semantic =
            semantic::SemanticLayer::build(&config.semantic, stores.semantic.clone()).await?;
        let (sink, writer) = LogWriter::spawn(
            stores.logs.clone(),
            WriterConfig {
                queue_capacity: config.log.queue_capacity,
                batch_size: config.log.batch_size,
                flush_interval: config.log.flush_interval,
                ..WriterConfig::default()
            },
        );
        // The decision audit: this process's own chain, written in the background.
        let (audit_sink, audit_writer) = if config.audit.enabled {
            let replica = std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| config.listen.to_string());
            let (sink, writer) = portcullis_store::AuditWriter::spawn(
                stores.audit.clone(),
                portcullis_store::AuditWriterConfig::from_settings(&config.audit, &replica),
            )
            .await?;
            (Some(sink), Some(writer))
        } else {
            (None, None)
        };
        let metrics = Arc::new(Metrics::new(
            sink.stats().clone(),
            audit_sink.clone(),
            cache.as_ref().map(|c| c.store().clone()),
            limiter.clone(),
        ));
        let runtime = Runtime {
            registry,
            failover: config.failover.clone(),
            prices: portcullis_cost::PriceBook::new(config.prices.clone()),
            cache: cache.map(Arc::new),
            semantic: semantic.map(Arc::new),
            limiter,
            log_bodies: config.log.bodies,
            access_log: config.log.access,
            max_request_body_bytes: config.server.max_request_body_bytes,
            server: config.server.clone(),
            tool_policies: Arc::new(config.tool_policies.clone()),
            quarantine: quarantine_answers::Quarantiner::from_config(config.quarantine.as_ref()),
        };
        let mut state = AppState::new(
            runtime,
            config,
            auth,
            client,
            sink,
            stores,
            metrics,
            limit_backend,
            spend_seed,
        );
        state.body_budget = body::BodyBudget::new(config.server.max_body_bytes_in_flight);
        state.audit = audit_sink;
        let state = Arc::new(state);
        // Approvals used, denied or expired longer ago than their retention are deleted.
        state.approvals.spawn_retention();
        // Stored Responses API answers older than their retention are deleted.
        state.responses.spawn_retention();
        if let Some(oauth) = state.auth.oauth() {
            // Tokens may also be asked for the MCP endpoints (RFC 8707 `resource`).
            oauth.set_resources(Arc::new(oauth::McpResources::new(Arc::downgrade(&state))));
        }
        if let Some(redis) = redis {
            // MCP sessions' trust, shared by the replicas.
            state.mcp_trust.share(redis.clone());
            let sync = breaker_sync::BreakerSync::new(redis);
            sync.spawn_poller(Arc::downgrade(&state.dispatcher.breakers));
            let _ = state.dispatcher.breaker_sync.set(sync);
        }
        // The file's MCP servers and those added through the admin API, followed as the
        // tenancy version moves.
        state.refresh_mcp_servers().await?;
        mcp_admin::follow(&state, directory.versions());
        // The tool policies added through the admin API, after the file's, followed likewise.
        state.refresh_tool_policies().await?;
        tool_policies_admin::follow(&state, directory.versions());
        Ok(Self {
            state,
            writer,
            audit_writer,
            limits: server::ConnectionLimits::from(&config.server),
            master_key,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Applies a new configuration while serving (see [`AppState::reload`]): requests in flight
    /// finish on the configuration they started with; `listen`, `database` and the other
    /// settings the process takes when it starts are named in the summary and keep their values.
    pub async fn reload(&self, config: &Config) -> Result<ReloadSummary, ReloadError> {
        self.state.reload(config).await
    }

    /// How the master key was obtained (a generated one is shown once by the caller).
    pub fn master_key(&self) -> &MasterKeyOrigin {
        &self.master_key
    }

    /// Serves on `listener` until `shutdown` resolves, then drains: stops accepting, lets
    /// in-flight requests finish within the grace period, aborts the connections still open
    /// after it (their requests are logged as 499), and flushes the request log.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let state = self.state.clone();
        let app = router(state.clone());
        server::serve(listener, app, state.clone(), self.limits, shutdown).await;
        if let Some(mcp) = state.mcp.load_full() {
            // Stdio servers' process groups are killed, HTTP sessions ended.
            mcp.hub.shutdown().await;
            mcp.credentialed.shutdown().await;
        }
        // Answers of the Responses API still queued are written before the request log closes.
        state
            .responses
            .flush(std::time::Duration::from_secs(5))
            .await;
        self.writer.shutdown().await;
        if let Some(audit) = self.audit_writer {
            audit.shutdown().await;
            if let Some(sink) = &state.audit {
                let stats = sink.stats();
                tracing::info!(
                    written = stats.written.load(std::sync::atomic::Ordering::Relaxed),
                    lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed),
                    "audit flushed"
                );
            }
        }
        let stats = state.log.stats();
        tracing::info!(
            written = stats.written.load(std::sync::atomic::Ordering::Relaxed),
            lost = stats.lost(),
            "request log flushed"
        );
        Ok(())
    }
}

/// The gateway's HTTP routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(chat::messages))
        .route(
            "/v1/messages/count_tokens",
            post(count_tokens::count_tokens),
        )
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{*model}", get(models::get_model))
        .merge(admin_routes())
        .merge(
            console::routes().route_layer(axum::middleware::from_fn(console_session::csrf_guard)),
        )
        .route(
            "/mcp",
            post(mcp::aggregated)
                .get(mcp::aggregated)
                .delete(mcp::aggregated),
        )
        .route(
            "/mcp/{server}",
            post(mcp::one_server)
                .get(mcp::one_server)
                .delete(mcp::one_server),
        )
        .route(
            "/mcp/connect/{server}",
            get(mcp_connect::connect_page).post(mcp_connect::connect),
        )
        .route("/mcp/connect/{server}/callback", get(mcp_connect::callback))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(mcp::resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(mcp::server_resource_metadata),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(
            state
                .auth
                .oauth()
                .map(|o| o.router())
                .unwrap_or_default()
                .with_state(()),
        )
        // Paths no route takes: a provider's native API (`/{provider}/…`), else 404.
        .fallback(passthrough::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .with_state(state.clone());
    // `log.access` as the configuration in force says (a reload may turn it on or off).
    app.layer(axum::middleware::from_fn_with_state(
        state,
        |axum::extract::State(state): axum::extract::State<Arc<AppState>>,
         req: axum::extract::Request,
         next: axum::middleware::Next| async move {
            let access = state.access_log();
            if access.is_off() {
                return next.run(req).await;
            }
            request_log::access_line_for_other_routes(axum::extract::State(access), req, next).await
        },
    ))
}

/// The admin API's routes (`/admin/…`). They accept the console's session as well as keys and
/// tokens, so a state-changing request that relies on the session passes
/// [`console_session::csrf_guard`] first.
fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/approvals", get(approvals_admin::list))
        .route(
            "/admin/approvals/{id}",
            get(approvals_admin::get).post(approvals_admin::decide),
        )
        .route("/admin/audit", get(audit::list))
        .route("/admin/audit/export", get(audit::export))
        .route("/admin/audit/verify", post(audit::verify))
        .route("/admin/logs", get(admin::logs))
        .route("/admin/logs/{id}", get(admin::log))
        .route("/admin/usage", get(admin::usage))
        .route("/admin/circuit-breakers", get(breakers::list))
        .route("/admin/providers", get(config_admin::providers))
        .route("/admin/routes", get(config_admin::routes))
        .route(
            "/admin/mcp-servers",
            get(mcp_admin::list).post(mcp_admin::create),
        )
        .route(
            "/admin/mcp-access",
            get(mcp_access::list_rules).post(mcp_access::create),
        )
        .route("/admin/mcp-access/{id}", delete(mcp_access::delete))
        .route(
            "/admin/tool-policies",
            get(tool_policies_admin::list)
                .post(tool_policies_admin::create)
                .put(tool_policies_admin::replace),
        )
        .route(
            "/admin/tool-policies/{id}",
            delete(tool_policies_admin::delete),
        )
        .route(
            "/admin/mcp-servers/{name}/credentials",
            get(mcp_credentials::list).post(mcp_credentials::put),
        )
        .route(
            "/admin/mcp-servers/{name}/credentials/{id}",
            delete(mcp_credentials::delete),
        )
        .route(
            "/admin/mcp-servers/{name}/grants",
            get(mcp_connect::list_grants),
        )
        .route(
            "/admin/mcp-servers/{name}/grants/{user}",
            delete(mcp_connect::delete_grant),
        )
        .route(
            "/admin/mcp-servers/{name}",
            get(mcp_admin::get)
                .put(mcp_admin::replace)
                .delete(mcp_admin::delete),
        )
        .route("/admin/openapi.json", get(tenancy::openapi))
        .route(
            "/admin/teams",
            post(tenancy::create_team).get(tenancy::list_teams),
        )
        .route(
            "/admin/teams/{id}",
            get(tenancy::get_team)
                .patch(tenancy::patch_team)
                .delete(tenancy::delete_team),
        )
        .route("/admin/teams/{id}/members", post(tenancy::add_member))
        .route(
            "/admin/teams/{id}/members/{user}",
            delete(tenancy::remove_member),
        )
        .route(
            "/admin/users",
            post(tenancy::create_user).get(tenancy::list_users),
        )
        .route(
            "/admin/users/{id}",
            get(tenancy::get_user)
                .patch(tenancy::patch_user)
                .delete(tenancy::disable_user),
        )
        .route(
            "/admin/service-accounts",
            post(tenancy::create_service_account).get(tenancy::list_service_accounts),
        )
        .route(
            "/admin/service-accounts/{id}",
            delete(tenancy::disable_service_account),
        )
        .route(
            "/admin/service-accounts/{id}/clients",
            post(tenancy::create_client).get(tenancy::list_clients),
        )
        .route(
            "/admin/service-accounts/{id}/clients/{client_id}",
            delete(tenancy::delete_client),
        )
        .route(
            "/admin/keys",
            post(tenancy::create_key).get(tenancy::list_keys),
        )
        .route(
            "/admin/keys/{id}",
            get(tenancy::get_key)
                .patch(tenancy::patch_key)
                .delete(tenancy::revoke_key),
        )
        .route("/admin/keys/{id}/rotate", post(tenancy::rotate_key))
        .route(
            "/admin/provider-keys",
            post(tenancy::create_provider_key).get(tenancy::list_provider_keys),
        )
        .route(
            "/admin/provider-keys/{id}",
            delete(tenancy::delete_provider_key),
        )
        .route(
            "/admin/provider-keys/{id}/rotate",
            post(tenancy::rotate_provider_key),
        )
        .route("/admin/mcp-tools", get(mcp_tools::list))
        .route(
            "/admin/mcp-tools/{server}/{tool}/approve",
            post(mcp_tools::approve),
        )
        .route_layer(axum::middleware::from_fn(console_session::csrf_guard))
}

async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let e =
        GatewayError::invalid_request(format!("Method {method} is not allowed on {}", uri.path()))
            .with_status(http::StatusCode::METHOD_NOT_ALLOWED)
            .with_code("method_not_allowed");
    respond::error(models::dialect_of(&headers), &e, &Uuid::now_v7())
}

/// The address a listener is bound to, for logs.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

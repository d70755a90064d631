//! Configuration of the gateway.
//!
//! Two sources, one result ([`Config`]):
//! - **a YAML file** (`portcullis serve --config FILE`, or `PORTCULLIS_CONFIG`), where
//!   `${VAR}`, `${VAR:-default}` and the other Compose forms are interpolated from the
//!   environment in any scalar; an unset `${VAR}` standing alone is null (the setting is
//!   absent). Unknown keys are errors.
//! - **the environment alone** when there is no file: `PORTCULLIS_LISTEN`,
//!   `PORTCULLIS_MASTER_KEY`, `PORTCULLIS_DATABASE_URL`, and every provider whose conventional
//!   variables are set (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `GROQ_API_KEY`, …).
//!
//! With a file, settings the file leaves out fall back to the same environment variables, and
//! the environment's providers are used only when the file has no `providers` section.
//!
//! Each block is validated by the crate that uses it, from its raw form into its settings
//! ([`portcullis_core::config::Block`]): `providers` and route targets by portcullis-providers,
//! `retry`/`timeouts`/`circuit_breaker` and route strategies by portcullis-failover, `cache` by
//! portcullis-cache, `prices` by portcullis-cost, `limits`/`budgets` by portcullis-limits,
//! `semantic_cache` by portcullis-semantic, `identity` and `secret_key` by portcullis-identity
//! (its issuers by portcullis-oidc), `oauth` by portcullis-oauth, and the process's own blocks
//! (`listen`, `database`, `server`, `log`, `upstream`, `redis`, `approvals`, `responses`) by [`blocks`],
//! `tool_policies` and `quarantine` by portcullis-policy. Those crates are
//! used without their runtime (`default-features = false`), so this crate links no model
//! runtime, HTTP client, store or cryptography. This crate reads the file ([`raw`]), hands each
//! block its part, checks what spans blocks, and reports every problem found as one
//! [`Issue`] list naming each key (`providers.openai.api_key: …`), all at once.
//! [`load_file`] is that whole path for a file: what `portcullis check` prints and what a
//! reload refuses a new file with.

pub mod blocks;
pub mod raw;
mod tree;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use portcullis_cache::CacheConfig;
use portcullis_cache::RawCaches;
pub use portcullis_core::config::{Block, Issue, Issues};
use portcullis_cost::{PriceOverrides, RawPriceBlock};
pub use portcullis_failover::{FailoverConfig, RoutePolicy};
use portcullis_failover::{RawFailover, RawRoutePolicy};
use portcullis_identity::config::IdentitySettings;
use portcullis_limits::LimitRules;
use portcullis_limits::config::RawLimitsBlock;
use portcullis_policy::ToolGlobs;
use portcullis_providers::AwsSpec;
use portcullis_providers::config::{ProvidersBlock, RoutesBlock, provider_issues};
use portcullis_providers::{
    AzureSpec, CloudflareSpec, EntraSpec, Provider, ProviderKind, ProviderSpec, Registry,
    RouteSpec, Secret, VertexSpec,
};
use portcullis_semantic::RawSemanticCaches;
pub use portcullis_semantic::SemanticConfig;

pub use crate::blocks::{
    AccessLog, ApprovalsConfig, DEFAULT_DATABASE_URL, DEFAULT_LISTEN, DatabaseConfig, LogConfig,
    ResponsesConfig, ServerConfig, UpstreamConfig, WebhookConfig,
};
use crate::raw::RawConfig;

/// Where environment variables come from (the process, or a map in tests).
pub trait Environment {
    /// The variable's value, if set and not empty.
    fn var(&self, key: &str) -> Option<String>;
    /// Every variable, for `${…}` interpolation.
    fn all(&self) -> HashMap<String, String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn all(&self) -> HashMap<String, String> {
        std::env::vars().collect()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).filter(|v| !v.is_empty()).cloned()
    }
    fn all(&self) -> HashMap<String, String> {
        self.clone()
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from.
    pub source: Source,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The master key, when configured (otherwise one is generated on first start).
    pub master_key: Option<Secret>,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Server settings.
    pub server: ServerConfig,
    /// Request log settings.
    pub log: LogConfig,
    /// The decision audit (`audit:`).
    pub audit: portcullis_audit::AuditSettings,
    /// Upstream HTTP client settings.
    pub upstream: UpstreamConfig,
    /// Providers, in resolution order.
    pub providers: Vec<ProviderSpec>,
    /// Routes.
    pub routes: Vec<RouteSpec>,
    /// Each route's tool-call deny-list (`routes.<name>.tools_denied`), by route name.
    pub tools_denied: Vec<(String, std::sync::Arc<ToolGlobs>)>,
    /// Aliases.
    pub aliases: Vec<(String, String)>,
    /// Retries, timeouts, balancing and circuit breakers.
    pub failover: FailoverConfig,
    /// The shared Redis (`redis.url` or `PORTCULLIS_REDIS_URL`), when configured.
    pub redis_url: Option<Secret>,
    /// The exact response cache.
    pub cache: CacheConfig,
    /// Prices that replace or extend the built-in price table.
    pub prices: PriceOverrides,
    /// Rate, concurrency and budget rules (shared through Redis when `redis_url` is set).
    pub limits: LimitRules,
    /// The semantic cache.
    pub semantic: SemanticConfig,
    /// The vault's key-encryption key (`secret_key` or `PORTCULLIS_SECRET_KEY`).
    pub secret_key: Option<Secret>,
    /// Identity settings.
    pub identity: IdentityConfig,
    /// OpenTelemetry traces, when an endpoint is configured (`None`: off).
    pub telemetry: Option<portcullis_telemetry::TelemetrySettings>,
    /// The MCP gateway (no servers: `/mcp` serves nothing).
    pub mcp: portcullis_mcp::McpConfig,
    /// Agent guardrails: the `tool_policies` rules (empty: the defaults alone).
    pub tool_policies: portcullis_policy::ToolPolicies,
    /// The model that reads quarantined tool output, when configured.
    pub quarantine: Option<portcullis_policy::Quarantine>,
    /// Held tool calls: their expiry and webhook.
    pub approvals: ApprovalsConfig,
    /// The Responses API's stored answers: their retention.
    pub responses: ResponsesConfig,
}

/// `identity:` and `oauth:` validated.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// How often each replica polls for tenancy changes.
    pub poll_interval: std::time::Duration,
    /// Enterprise token issuers.
    pub issuers: Vec<portcullis_oidc::IssuerConfig>,
    /// The OAuth server, when configured (it needs the vault's secret key).
    pub oauth: Option<portcullis_oauth::OAuthConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let settings = IdentitySettings::default();
        Self {
            poll_interval: settings.poll_interval,
            issuers: settings.issuers,
            oauth: None,
        }
    }
}

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file.
    File(PathBuf),
    /// The environment alone.
    Environment,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{0}")]
    Parse(String),
    /// The values are invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The problems found, one per line, each naming its key.
    pub fn issues(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    /// The problems found as issues; a file that cannot be read or parsed is one issue with
    /// no key.
    pub fn into_issues(self) -> Vec<Issue> {
        match self {
            ConfigError::Invalid(issues) => issues,
            other => vec![Issue::new("", other.to_string())],
        }
    }
}

/// Loads the configuration: from `path` when given, else from the environment alone.
pub fn load(path: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
    match path {
        Some(p) => {
            let text = read_text(p)?;
            from_yaml(&text, Source::File(p.to_owned()), env)
        }
        None => validate(RawConfig::default(), Source::Environment, env, false, false)
            .map_err(|issues| ConfigError::Invalid(issues.into_vec())),
    }
}

/// Parses and validates YAML text.
///
/// Every problem is reported, each with its key: a value of the wrong type is reported and left
/// out, and the rest of the file is still read and validated. No message shows a value taken
/// from the environment: it shows the `${VAR}` reference the file wrote instead.
pub fn from_yaml(text: &str, source: Source, env: &dyn Environment) -> Result<Config, ConfigError> {
    parse(text, source, env, false)
}

/// Reads and validates the file at `path`, and in the same run checks what `serve` would trip
/// over ([`Config::preflight`]): every problem at once, each an [`Issue`] naming its key (a file
/// that cannot be read or parsed is one issue with no key). `portcullis check` prints exactly
/// these, and a reload of the configuration refuses a new file with them.
pub fn load_file(path: &Path, env: &dyn Environment) -> Result<Config, Vec<Issue>> {
    read_text(path)
        .and_then(|text| parse(&text, Source::File(path.to_owned()), env, true))
        .map_err(ConfigError::into_issues)
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse(
    text: &str,
    source: Source,
    env: &dyn Environment,
    preflight: bool,
) -> Result<Config, ConfigError> {
    let mut tree = tree::read(text, &env.all()).map_err(ConfigError::Parse)?;
    let mut issues: Vec<Issue> = std::mem::take(&mut tree.issues)
        .into_iter()
        .map(|(k, m)| Issue::new(k, m))
        .collect();
    let (raw, found) = tree.deserialize_all::<RawConfig>();
    issues.extend(found.into_iter().map(|(k, m)| Issue::new(k, m)));
    let unreadable = !issues.is_empty();
    match validate(raw.unwrap_or_default(), source, env, unreadable, preflight) {
        Ok(config) if issues.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::Invalid(issues)),
        Err(more) => {
            issues.extend(more.into_iter().map(|i| {
                let message = tree.redact(&i.path, &i.message);
                Issue::new(i.path, message)
            }));
            Err(ConfigError::Invalid(issues))
        }
    }
}

/// Validates a raw configuration block by block, then what spans blocks, reporting every
/// problem. `incomplete` says that parts of the file could not be read (and were reported), so
/// checks across blocks, which would report their absence, are skipped; `preflight` adds what
/// serving would trip over ([`Config::preflight`]).
fn validate(
    raw: RawConfig,
    source: Source,
    env: &dyn Environment,
    incomplete: bool,
    preflight: bool,
) -> Result<Config, Issues> {
    // Blocks sit at the top level of the file.
    const AT: &str = "";
    let mut issues = Issues::new();

    let listen_text = raw
        .listen
        .or_else(|| env.var("PORTCULLIS_LISTEN"))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = issues.take(blocks::listen(&listen_text, AT));
    let master_key = raw
        .master_key
        .filter(|k| !k.is_empty())
        .or_else(|| env.var("PORTCULLIS_MASTER_KEY"));
    let master_key = issues.take(blocks::master_key(master_key, AT));

    let secret_key = raw
        .secret_key
        .filter(|k| !k.is_empty())
        .or_else(|| env.var("PORTCULLIS_SECRET_KEY"));
    if let Some(k) = &secret_key {
        issues.take(portcullis_identity::config::validate_secret_key(k, AT));
    }
    let secret_key = secret_key.map(Secret::new);
    let raw_identity = raw.identity.unwrap_or_default();
    let issuers: Vec<String> = raw_identity
        .issuers
        .iter()
        .map(|i| i.issuer.clone())
        .collect();
    let identity = issues.take(IdentitySettings::validate(raw_identity, AT));
    let oauth = raw.oauth.inspect(|oauth| {
        issues.take(<portcullis_oauth::OAuthConfig as Block>::validate(
            oauth.clone(),
            AT,
        ));
        if secret_key.is_none() {
            issues.push(
                "oauth",
                "the OAuth server signs tokens with a key derived from `secret_key` (PORTCULLIS_SECRET_KEY); set it",
            );
        }
        if let Some(oidc) = &oauth.sign_in.oidc
            && !issuers.contains(&oidc.issuer)
        {
            issues.push(
                "oauth.sign_in.oidc.issuer",
                format!(
                    "`{}` must also be listed under identity.issuers (its keys and claim mapping are used for the ID tokens)",
                    oidc.issuer
                ),
            );
        }
    });

    let mut raw_database = raw.database.unwrap_or_default();
    raw_database.url = raw_database
        .url
        .or_else(|| env.var("PORTCULLIS_DATABASE_URL"));
    let database = issues.take(DatabaseConfig::validate(raw_database, AT));
    let server = issues.take(ServerConfig::validate(raw.server.unwrap_or_default(), AT));
    let log = issues.take(LogConfig::validate(raw.log.unwrap_or_default(), AT));
    let upstream = issues.take(UpstreamConfig::validate(
        raw.upstream.unwrap_or_default(),
        AT,
    ));

    let (providers, provider_names) = match raw.providers {
        Some(mut map) => {
            // A relative credentials file is relative to the config file's directory.
            if let Source::File(file) = &source
                && let Some(dir) = file.parent()
            {
                for p in map.values_mut() {
                    if let Some(c) = p.credentials.as_mut()
                        && Path::new(c.as_str()).is_relative()
                    {
                        *c = dir.join(c.as_str()).display().to_string();
                    }
                }
            }
            for (name, p) in map.iter_mut() {
                aws_from_env(name, p, env);
            }
            let names: Vec<String> = map.keys().cloned().collect();
            (
                issues.take(ProvidersBlock::validate(map.into_iter().collect(), AT)),
                names,
            )
        }
        None => {
            let specs = providers_from_env(env);
            issues.extend(provider_issues(&specs, "providers"));
            let names = specs.iter().map(|s| s.name.clone()).collect();
            (Some(specs), names)
        }
    };

    let redis_url = raw
        .redis
        .and_then(|r| r.url)
        .filter(|u| !u.is_empty())
        .or_else(|| env.var("PORTCULLIS_REDIS_URL"));
    let redis_configured = redis_url.is_some();
    let redis_url = issues.take(blocks::redis_url(redis_url, AT));

    // Each route's keys go to the crates that own them.
    let mut route_targets = Vec::new();
    let mut route_policies = Vec::new();
    let mut route_caches = Vec::new();
    let mut route_semantic = Vec::new();
    let mut route_tools_denied = Vec::new();
    for (name, route) in raw.routes.unwrap_or_default() {
        route_policies.push((
            name.clone(),
            RawRoutePolicy {
                strategy: route.strategy,
                retry: route.retry,
                timeouts: route.timeouts,
            },
        ));
        if let Some(cache) = route.cache {
            route_caches.push((name.clone(), cache));
        }
        if let Some(semantic) = route.semantic_cache {
            route_semantic.push((name.clone(), semantic));
        }
        if let Some(globs) = route.tools_denied {
            match ToolGlobs::new(&globs) {
                Ok(list) => route_tools_denied.push((name.clone(), std::sync::Arc::new(list))),
                Err(found) => {
                    for i in found {
                        let path = format!("routes.{name}.tools_denied[{}]", i.index);
                        issues.push(path, i.to_string());
                    }
                }
            }
        }
        route_targets.push((name, route.targets));
    }
    let failover = issues.take(FailoverConfig::validate(
        RawFailover {
            retry: raw.retry,
            timeouts: raw.timeouts,
            circuit_breaker: raw.circuit_breaker,
            default_first_byte: upstream.as_ref().map(|u| u.first_byte_timeout),
            routes: route_policies,
        },
        AT,
    ));
    let cache = issues.take(CacheConfig::validate(
        RawCaches {
            top: raw.cache,
            routes: route_caches,
            redis_configured,
        },
        AT,
    ));
    let semantic = issues.take(SemanticConfig::validate(
        RawSemanticCaches {
            top: raw.semantic_cache,
            routes: route_semantic,
        },
        AT,
    ));
    let routes = issues.take(RoutesBlock::validate(route_targets, AT));
    let aliases: Vec<(String, String)> = raw.aliases.unwrap_or_default().into_iter().collect();
    let prices = match raw.prices {
        Some(prices) => issues.take(PriceOverrides::validate(
            RawPriceBlock {
                prices,
                providers: provider_names,
            },
            AT,
        )),
        None => Some(PriceOverrides::none()),
    };
    let audit = issues.take(<portcullis_audit::AuditSettings as Block>::validate(
        raw.audit.clone(),
        AT,
    ));
    let limits = issues.take(LimitRules::validate(
        RawLimitsBlock {
            limits: raw.limits.unwrap_or_default(),
            budgets: raw.budgets.unwrap_or_default(),
        },
        AT,
    ));
    let telemetry = issues.take(portcullis_telemetry::resolve(
        raw.telemetry.as_ref(),
        "telemetry",
        &|name| env.var(name),
    ));
    let mcp = issues.take(<portcullis_mcp::McpConfig as Block>::validate(
        raw.mcp.unwrap_or_default(),
        "mcp",
    ));
    let guardrails = issues.take(<portcullis_policy::Guardrails as Block>::validate(
        portcullis_policy::RawGuardrails {
            tool_policies: raw.tool_policies,
            quarantine: raw.quarantine,
        },
        AT,
    ));
    let approvals = issues.take(ApprovalsConfig::validate(
        raw.approvals.unwrap_or_default(),
        AT,
    ));
    let responses = issues.take(ResponsesConfig::validate(
        raw.responses.unwrap_or_default(),
        AT,
    ));

    if issues.is_empty()
        && !incomplete
        && let (Some(providers), Some(routes)) = (&providers, &routes)
    {
        issues.take(portcullis_providers::config::registry(
            providers, routes, &aliases, AT,
        ));
    }
    if preflight {
        if let Some(database) = &database {
            issues.extend(database.preflight(AT));
        }
        if let Some(semantic) = &semantic {
            issues.extend(semantic.preflight(AT));
        }
    }

    let (
        Some(listen),
        Some(master_key),
        Some(identity),
        Some(database),
        Some(server),
        Some(log),
        Some(upstream),
        Some(providers),
        Some(redis_url),
        Some(failover),
        Some(cache),
        Some(semantic),
        Some(routes),
        Some(prices),
        Some(limits),
    ) = (
        listen, master_key, identity, database, server, log, upstream, providers, redis_url,
        failover, cache, semantic, routes, prices, limits,
    )
    else {
        return Err(issues);
    };
    let guardrails = guardrails.unwrap_or_default();
    issues.finish(Config {
        source,
        listen,
        master_key,
        database,
        server,
        log,
        audit: audit.unwrap_or_default(),
        upstream,
        providers,
        routes,
        tools_denied: route_tools_denied,
        aliases,
        failover,
        redis_url,
        cache,
        prices,
        limits,
        semantic,
        secret_key,
        identity: IdentityConfig {
            poll_interval: identity.poll_interval,
            issuers: identity.issuers,
            oauth,
        },
        telemetry: telemetry.flatten(),
        mcp: mcp.unwrap_or_default(),
        tool_policies: guardrails.tool_policies,
        quarantine: guardrails.quarantine,
        approvals: approvals.unwrap_or_default(),
        responses: responses.unwrap_or_default(),
    })
}

impl Config {
    /// What `serve` would trip over that the file's values alone do not show: a local
    /// embedding model directory that is missing or lacks its files, a SQLite database in a
    /// directory that does not exist. Checked by `portcullis check` and before serving.
    pub fn preflight(&self) -> Vec<Issue> {
        let mut issues = self.database.preflight("");
        issues.extend(self.semantic.preflight(""));
        issues.into_vec()
    }

    /// Builds the provider registry this configuration describes.
    pub fn registry(&self) -> Result<Registry, portcullis_providers::RegistryError> {
        let providers = self
            .providers
            .iter()
            .filter_map(|s| Provider::new(s.clone()).ok())
            .collect();
        Registry::new(providers, self.routes.clone(), self.aliases.clone())
            .map(|r| r.with_tools_denied(self.tools_denied.iter().map(|(n, l)| (n.as_str(), l))))
    }
}

/// A Bedrock provider's AWS settings the file leaves out, from the variables AWS's SDKs read:
/// the region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), the endpoint from
/// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (and the control plane's, for the model list, from
/// `AWS_ENDPOINT_URL_BEDROCK`), and the credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` — all three together, only when the file
/// gives neither key, so a configured key is never paired with another's secret or token.
fn aws_from_env(
    name: &str,
    p: &mut portcullis_providers::config::RawProvider,
    env: &dyn Environment,
) {
    if p.kind.as_deref().unwrap_or(name) != ProviderKind::Bedrock.id() {
        return;
    }
    if p.region.is_none() {
        p.region = aws_region(env);
    }
    if p.base_url.is_none() {
        p.base_url = env.var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME");
    }
    if p.control_plane_url.is_none() {
        p.control_plane_url = env.var("AWS_ENDPOINT_URL_BEDROCK");
    }
    if p.access_key_id.is_none() && p.secret_access_key.is_none() {
        p.access_key_id = env.var("AWS_ACCESS_KEY_ID");
        p.secret_access_key = env.var("AWS_SECRET_ACCESS_KEY");
        if p.session_token.is_none() {
            p.session_token = env.var("AWS_SESSION_TOKEN");
        }
    }
}

fn aws_region(env: &dyn Environment) -> Option<String> {
    env.var("AWS_REGION")
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
}

/// Providers enabled by their conventional environment variables.
pub fn providers_from_env(env: &dyn Environment) -> Vec<ProviderSpec> {
    let mut out = Vec::new();
    for kind in ProviderKind::ALL {
        let preset = kind.preset();
        let key = preset.key_env.iter().find_map(|k| env.var(k));
        let base_url = preset.base_url_env.and_then(|k| env.var(k));
        let mut spec = ProviderSpec::new(preset.id, kind);
        spec.api_key = key.clone().map(Secret::new);
        spec.base_url = base_url.clone();
        let enabled = match kind {
            ProviderKind::Custom => false,
            ProviderKind::Cloudflare => {
                match (
                    env.var("CLOUDFLARE_ACCOUNT_ID"),
                    env.var("CLOUDFLARE_GATEWAY_ID"),
                ) {
                    (Some(account_id), Some(gateway_id)) => {
                        spec.cloudflare = Some(CloudflareSpec {
                            account_id,
                            gateway_id,
                            upstream: env
                                .var("CLOUDFLARE_AIG_UPSTREAM")
                                .unwrap_or_else(|| "compat".to_owned()),
                            token: env.var("CLOUDFLARE_AIG_TOKEN").map(Secret::new),
                        });
                        true
                    }
                    _ => false,
                }
            }
            // The resource endpoint is the account's own: it and a credential are needed.
            // `OPENAI_API_VERSION` (as OpenAI's `AzureOpenAI` client reads it) picks the
            // deployments form; without it, the v1 form. Without a key, an Entra ID
            // application from the variables Azure's SDKs read (`AZURE_TENANT_ID`,
            // `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`).
            ProviderKind::Azure => {
                let entra = match (
                    env.var("AZURE_TENANT_ID"),
                    env.var("AZURE_CLIENT_ID"),
                    env.var("AZURE_CLIENT_SECRET"),
                ) {
                    (Some(tenant_id), Some(client_id), Some(secret)) if key.is_none() => {
                        Some(EntraSpec {
                            tenant_id,
                            client_id,
                            client_secret: Secret::new(secret),
                            authority: env.var("AZURE_AUTHORITY_HOST"),
                        })
                    }
                    _ => None,
                };
                let credential = key.is_some() || entra.is_some();
                spec.azure = Some(AzureSpec {
                    api_version: env.var("OPENAI_API_VERSION"),
                    deployments: Vec::new(),
                    entra,
                });
                credential && base_url.is_some()
            }
            // The location says which endpoint (and where the data goes): the credentials
            // alone, set for other Google tools, enable nothing.
            ProviderKind::Vertex => {
                let credentials = env.var("GOOGLE_APPLICATION_CREDENTIALS");
                let location = env.var("GOOGLE_CLOUD_LOCATION");
                let enabled = credentials.is_some() && location.is_some();
                spec.vertex = Some(VertexSpec {
                    project: env.var("GOOGLE_CLOUD_PROJECT"),
                    location,
                    credentials: credentials.map(PathBuf::from),
                });
                enabled
            }
            // Signed with the AWS credentials of the environment, in its region.
            ProviderKind::Bedrock => {
                let aws = AwsSpec {
                    region: aws_region(env),
                    access_key_id: env.var("AWS_ACCESS_KEY_ID"),
                    secret_access_key: env.var("AWS_SECRET_ACCESS_KEY").map(Secret::new),
                    session_token: env.var("AWS_SESSION_TOKEN").map(Secret::new),
                    // The control plane (the model list), as AWS's SDKs read it.
                    control_plane_url: env.var("AWS_ENDPOINT_URL_BEDROCK"),
                };
                let enabled = aws.region.is_some()
                    && aws.access_key_id.is_some()
                    && aws.secret_access_key.is_some();
                spec.aws = Some(aws);
                enabled
            }
            _ if preset.key_optional => base_url.is_some(),
            _ => key.is_some(),
        };
        if enabled {
            out.push(spec);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use portcullis_failover::Strategy;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn zero_config_enables_providers_from_the_environment() {
        let e = env(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("GEMINI_API_KEY", "AIza-1"),
            ("GEMINI_BASE_URL", "http://127.0.0.1:8"),
            ("GROQ_API_KEY", "gsk"),
            ("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("PORTCULLIS_LISTEN", "127.0.0.1:9999"),
        ]);
        let c = load(None, &e).unwrap();
        let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["openai", "anthropic", "gemini", "groq", "ollama"]
        );
        assert_eq!(
            c.providers[2].base_url.as_deref(),
            Some("http://127.0.0.1:8")
        );
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert_eq!(c.database.url.expose(), DEFAULT_DATABASE_URL);
        assert!(c.master_key.is_none());
    }

    #[test]
    fn zero_config_enables_azure_with_its_key_endpoint_and_version() {
        let e = env(&[
            ("AZURE_OPENAI_API_KEY", "az-key"),
            ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com/"),
            ("OPENAI_API_VERSION", "2024-10-21"),
        ]);
        let c = load(None, &e).unwrap();
        assert_eq!(c.providers.len(), 1);
        let azure = &c.providers[0];
        assert_eq!(azure.name, "azure");
        assert_eq!(azure.kind, ProviderKind::Azure);
        assert_eq!(
            azure.base_url.as_deref(),
            Some("https://res.openai.azure.com/")
        );
        assert_eq!(
            azure.azure.as_ref().and_then(|a| a.api_version.as_deref()),
            Some("2024-10-21")
        );
        // The key alone names no resource: nothing is enabled.
        let c = load(None, &env(&[("AZURE_OPENAI_API_KEY", "az-key")])).unwrap();
        assert!(c.providers.is_empty());
        // Without a key, an Entra ID application from Azure's SDK variables.
        let c = load(
            None,
            &env(&[
                ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com"),
                ("AZURE_TENANT_ID", "tenant"),
                ("AZURE_CLIENT_ID", "client"),
                ("AZURE_CLIENT_SECRET", "secret"),
            ]),
        )
        .unwrap();
        let entra = c.providers[0].azure.as_ref().and_then(|a| a.entra.as_ref());
        assert_eq!(entra.map(|e| e.client_id.as_str()), Some("client"));
        assert!(c.providers[0].api_key.is_none());
    }

    #[test]
    fn yaml_with_interpolation_routes_and_aliases() {
        let yaml = r#"
listen: 127.0.0.1:8811
master_key: ${MASTER}
database:
  url: ${DB:-sqlite://x.db}
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    base_url: "http://127.0.0.1:${PORT}/v1"
  claude:
    kind: anthropic
    api_key: ${ANTHROPIC_API_KEY}
  edge:
    kind: cloudflare
    account_id: acct
    gateway_id: gw
    upstream: openai
    gateway_token: ${CF_TOKEN}
    api_key: ${OPENAI_API_KEY}
routes:
  smart:
    targets:
      - claude/claude-sonnet-4-5
      - model: openai/gpt-4o
        weight: 3
aliases:
  fast: openai/gpt-4o-mini
"#;
        let e = env(&[
            ("MASTER", "a-very-long-master-key"),
            ("OPENAI_API_KEY", "sk-1"),
            ("ANTHROPIC_API_KEY", "sk-2"),
            ("PORT", "4000"),
            ("CF_TOKEN", "cft"),
        ]);
        let c = from_yaml(yaml, Source::Environment, &e).unwrap();
        assert_eq!(
            c.master_key.as_ref().unwrap().expose(),
            "a-very-long-master-key"
        );
        assert_eq!(c.database.url.expose(), "sqlite://x.db");
        assert_eq!(
            c.providers[0].base_url.as_deref(),
            Some("http://127.0.0.1:4000/v1")
        );
        assert_eq!(c.providers[1].kind, ProviderKind::Anthropic);
        assert_eq!(c.routes[0].targets[1].weight, 3);
        let reg = c.registry().unwrap();
        assert_eq!(
            reg.resolve("fast")
                .unwrap()
                .primary()
                .unwrap()
                .model
                .as_ref(),
            "gpt-4o-mini"
        );
    }

    #[test]
    fn bedrock_takes_the_aws_variables_with_no_file_and_where_the_file_says_nothing() {
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
            ("AWS_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:7"),
            ("AWS_ENDPOINT_URL_BEDROCK", "http://127.0.0.1:8"),
        ]);
        let c = load(None, &e).unwrap();
        let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bedrock"]);
        let bedrock = &c.providers[0];
        assert_eq!(bedrock.base_url.as_deref(), Some("http://127.0.0.1:7"));
        let aws = bedrock.aws.as_ref().unwrap();
        assert_eq!(aws.region.as_deref(), Some("eu-west-3"));
        assert_eq!(aws.control_plane_url.as_deref(), Some("http://127.0.0.1:8"));
        assert_eq!(aws.access_key_id.as_deref(), Some("AKIAENV"));
        assert_eq!(
            aws.session_token.as_ref().map(Secret::expose),
            Some("env-token")
        );
        assert!(!format!("{bedrock:?}").contains("env-secret"));
        // Without a region nothing is enabled: AWS's SDKs would not know where to go either.
        let no_region = env(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "s")]);
        assert!(load(None, &no_region).unwrap().providers.is_empty());

        // The file's own key is never paired with the environment's token.
        let c = from_yaml(
            "providers:\n  aws:\n    kind: bedrock\n    region: us-west-2\n    access_key_id: AKIAFILE\n    secret_access_key: file-secret\n",
            Source::Environment,
            &e,
        )
        .unwrap();
        let aws = c.providers[0].aws.as_ref().unwrap();
        assert_eq!(aws.region.as_deref(), Some("us-west-2"));
        assert_eq!(aws.access_key_id.as_deref(), Some("AKIAFILE"));
        assert!(aws.session_token.is_none());
        let c = from_yaml("providers:\n  bedrock: {}\n", Source::Environment, &e).unwrap();
        let aws = c.providers[0].aws.as_ref().unwrap();
        assert_eq!(aws.access_key_id.as_deref(), Some("AKIAENV"));
        assert_eq!(aws.control_plane_url.as_deref(), Some("http://127.0.0.1:8"));
        assert!(c.registry().is_ok());

        let err = from_yaml(
            "providers:\n  bedrock: {}\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers.bedrock"), "{err}");
        assert!(err.contains("region"), "{err}");
        let err = from_yaml(
            "providers:\n  openai:\n    api_key: k\n    region: us-east-1\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("apply only to kind `bedrock`"), "{err}");
    }

    #[test]
    fn delegated_sign_in_needs_a_configured_issuer_and_a_secret_key() {
        let e = env(&[("OIDC_SECRET", "from-the-environment")]);
        let yaml = |issuers: &str| {
            format!(
                concat!(
                    "secret_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n{}",
                    "oauth:\n  sign_in:\n    local: false\n    oidc:\n",
                    "      issuer: https://idp.example\n      client_id: gw\n",
                    "      client_secret: ${{OIDC_SECRET}}\n",
                    "providers:\n  openai:\n    api_key: k\n"
                ),
                issuers
            )
        };
        let config = from_yaml(
            &yaml("identity:\n  issuers:\n    - issuer: https://idp.example\n      audience: gw\n"),
            Source::Environment,
            &e,
        )
        .unwrap();
        let oidc = config.identity.oauth.unwrap().sign_in.oidc.unwrap();
        assert_eq!(oidc.client_secret.as_deref(), Some("from-the-environment"));
        assert!(!format!("{oidc:?}").contains("from-the-environment"));

        let err = from_yaml(&yaml(""), Source::Environment, &e).unwrap_err();
        assert!(
            err.issues()
                .iter()
                .any(|i| i.starts_with("oauth.sign_in.oidc.issuer:")),
            "{err}"
        );
        let err = from_yaml(
            "oauth:\n  sign_in:\n    local: false\nproviders:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &e,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`oidc` must be set"), "{err}");
    }

    #[test]
    fn errors_name_the_offending_key() {
        let e = env(&[]);
        let err = from_yaml(
            "providers:\n  openai:\n    kindd: openai\n",
            Source::Environment,
            &e,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers.openai"), "{err}");
        assert!(err.contains("kindd"), "{err}");

        let err = from_yaml("listen: nowhere\nproviders:\n  openai: {}\n  x:\n    kind: martian\nroutes:\n  r:\n    targets: [gpt-4o]\n", Source::Environment, &e).unwrap_err();
        let issues = err.issues();
        assert!(
            issues.iter().any(|i| i.starts_with("listen:")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.openai: an API key is required")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.x.kind: unknown provider kind `martian`")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("routes.r.targets[0]")),
            "{issues:?}"
        );

        let err = from_yaml(
            "providers:\n  openai:\n    api_key: k\nroutes:\n  r:\n    targets: [nope/m]\n",
            Source::Environment,
            &e,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("routes.r:"), "{err}");

        let err = from_yaml("listen: [1, 2\n", Source::Environment, &e).unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
    }

    #[test]
    fn failover_blocks_layer_global_then_route() {
        let yaml = r#"
providers:
  openai: {api_key: k}
  anthropic: {api_key: k}
retry: {max_attempts: 3, delay: 100ms}
timeouts: {first_byte: 20s}
circuit_breaker: {failures: 2, open_for: 1m}
routes:
  smart:
    strategy: latency
    targets: [anthropic/claude-sonnet-4-5, openai/gpt-4o]
    retry: {backoff: constant}
    timeouts: {total: 2m}
"#;
        let c = from_yaml(yaml, Source::Environment, &env(&[])).unwrap();
        let d = c.failover.policy(None);
        assert_eq!(d.retry.max_attempts, 3);
        assert_eq!(d.timeouts.first_byte, Some(Duration::from_secs(20)));
        let r = c.failover.policy(Some("smart"));
        assert_eq!(r.strategy, Strategy::Latency);
        assert_eq!(r.retry.max_attempts, 3, "inherited from the global block");
        assert_eq!(r.retry.backoff, portcullis_failover::Backoff::Constant);
        assert_eq!(r.timeouts.first_byte, Some(Duration::from_secs(20)));
        assert_eq!(r.timeouts.total, Some(Duration::from_secs(120)));
        assert_eq!(c.failover.breaker.failure_threshold, 2);
        assert_eq!(c.failover.policy(Some("other")), d);

        let err = from_yaml(
            "providers:\n  openai: {api_key: k}\nretry: {max_attempts: 99}\nroutes:\n  r:\n    strategy: random\n    targets: [openai/gpt-4o]\n    timeouts: {first_byte: soon}\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err();
        let issues = err.issues();
        for key in [
            "retry.max_attempts:",
            "routes.r.strategy:",
            "routes.r.timeouts.first_byte:",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:?}"
            );
        }
    }

    #[test]
    fn interpolated_values_never_appear_in_any_message() {
        let secret = "corp-s3cr3t-9f8e7d";
        let e = env(&[
            ("CORP_KEY", secret),
            ("SHORT", "x1"),
            ("PORTCULLIS_MASTER_KEY_IN_FILE", "abc"),
        ]);
        // A URL the provider refuses, a type error, an unknown key and a short master key,
        // all in a file that interpolates.
        let yaml = concat!(
            "master_key: ${PORTCULLIS_MASTER_KEY_IN_FILE}\n",
            "providers:\n",
            "  corp:\n",
            "    kind: openai\n",
            "    api_key: ${CORP_KEY}\n",
            "    base_url: svc:${CORP_KEY}@corp.example/v1\n",
            "  other:\n",
            "    kind: openai\n",
            "    api_key: ${CORP_KEY}\n",
            "    default_max_tokens: ${CORP_KEY}\n",
            "    modles: [a]\n",
            "log:\n",
            "  bodies: ${SHORT}\n",
            "database:\n",
            "  url: mysql://u:${CORP_KEY}@db/x\n",
        );
        let err = from_yaml(yaml, Source::Environment, &e).unwrap_err();
        let issues = err.issues();
        let all = issues.join("\n");
        assert!(!all.contains(secret), "{all}");
        assert!(!all.contains("x1"), "{all}");
        assert!(!all.contains("abc"), "{all}");
        assert!(!all.contains("invalid interpolated"), "{all}");
        for key in [
            "master_key:",
            "providers.corp:",
            "providers.other.default_max_tokens:",
            "providers.other:",
            "log.bodies:",
            "database.url:",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:#?}"
            );
        }
        assert!(all.contains("${CORP_KEY}"), "{all}");
        assert!(all.contains("modles"), "{all}");
    }

    #[test]
    fn tool_policies_and_quarantine_are_validated_into_the_config() {
        let e = env(&[]);
        let yaml = concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"read_*\", output: untrusted}\n",
            "  - match: send_money\n",
            "    call: approval\n",
            "    args: {iban: {in: [DE89370400440532013000]}, amount: {max: 5000}}\n",
            "  - {match: \"web__*\", output: quarantine}\n",
            "quarantine: {model: openai/gpt-4o-mini}\n",
        );
        let c = from_yaml(yaml, Source::Environment, &e).unwrap();
        assert_eq!(c.tool_policies.specs().len(), 3);
        assert_eq!(c.tool_policies.rule_index("send_money"), Some(1));
        assert_eq!(c.quarantine.unwrap().model, "openai/gpt-4o-mini");
        let none = from_yaml(
            "providers:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &e,
        )
        .unwrap();
        assert!(none.tool_policies.is_empty() && none.quarantine.is_none());

        let bad = concat!(
            "providers:\n  openai:\n    api_key: k\n",
            "tool_policies:\n",
            "  - {match: \"a[\", call: sometimes}\n",
            "  - {match: b, args: {x: {pattern: \"(\"}}, tyop: 1}\n",
            "  - {match: c, output: quarantine}\n",
        );
        let issues = from_yaml(bad, Source::Environment, &e)
            .unwrap_err()
            .issues();
        for key in [
            "tool_policies[0].match: `a[` is not a valid glob",
            "tool_policies[0].call: unknown value `sometimes`",
            "tool_policies[1]: unknown field `tyop`",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:#?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_in_one_run() {
        let yaml = concat!(
            "listen: nowhere\n",
            "server:\n  max_request_body_bytes: lots\n",
            "log:\n  batch_size: -1\n  bodies: maybe\n",
            "providers:\n  openai:\n    api_key: k\n    kindd: x\n",
            "routes:\n  r:\n    targets: [gpt-4o]\n  s:\n    strategy: 5\n",
            "retry: {max_attempts: 99}\n",
            "typo_block: {}\n",
        );
        let err = from_yaml(yaml, Source::Environment, &env(&[])).unwrap_err();
        let issues = err.issues();
        for key in [
            "listen:",
            "server.max_request_body_bytes:",
            "log.batch_size:",
            "log.bodies:",
            "providers.openai: unknown field `kindd`",
            "routes.r.targets[0]:",
            "routes.s: missing field `targets`",
            "retry.max_attempts:",
            "(top level): unknown field `typo_block`",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(key)),
                "{key} in {issues:#?}"
            );
        }
    }

    #[test]
    fn unset_variables_are_named() {
        let yaml = concat!(
            "providers:\n",
            "  openai:\n",
            "    api_key: ${OPENAI_API_KEY}\n",
            "  corp:\n",
            "    kind: openai\n",
            "    api_key: k\n",
            "    base_url: https://svc:${CORP_KEY}@corp.example/v1\n",
            "  required:\n",
            "    kind: openai\n",
            "    api_key: ${REQUIRED_KEY:?set it to the vendor key}\n",
        );
        let err = from_yaml(yaml, Source::Environment, &env(&[])).unwrap_err();
        let issues = err.issues();
        let all = issues.join("\n");
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.corp.base_url: `${CORP_KEY}` is not set")),
            "{all}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("providers.openai: an API key")
                    && i.contains("`${OPENAI_API_KEY}` is not set")),
            "{all}"
        );
        assert!(
            all.contains("`${REQUIRED_KEY}` is not set: set it to the vendor key"),
            "{all}"
        );

        // Where the setting is required, the issue names the variable.
        let err = from_yaml(
            "providers:\n  openai:\n    api_key: k\nroutes:\n  r:\n    targets: ${TARGETS}\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("routes.r.targets: ") && err.contains("(`${TARGETS}` is not set)"),
            "{err}"
        );

        // A sole unset reference leaves the setting out, which is fine where it is optional.
        let c = from_yaml(
            "master_key: ${PORTCULLIS_MASTER_KEY}\nproviders:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap();
        assert!(c.master_key.is_none());
    }

    #[test]
    fn yaml_typing_follows_the_target() {
        let yaml = concat!(
            "master_key: ${NUMERIC_KEY}\n",
            "database:\n  max_connections: ${CONNS}\n",
            "providers:\n  openai:\n    api_key: 12345\n    models: [\"1.0\", 2]\n",
            "base: &base {max_attempts: 2}\n",
        );
        let e = env(&[("NUMERIC_KEY", "12345678901234567890"), ("CONNS", "3")]);
        let err = from_yaml(yaml, Source::Environment, &e).unwrap_err();
        assert!(err.to_string().contains("unknown field `base`"), "{err}");
        let c = from_yaml(
            &yaml.replace(
                "base: &base {max_attempts: 2}\n",
                "retry: {max_attempts: 0x2}\n",
            ),
            Source::Environment,
            &e,
        )
        .unwrap();
        assert_eq!(c.master_key.unwrap().expose(), "12345678901234567890");
        assert_eq!(c.database.max_connections, 3);
        assert_eq!(c.providers[0].models, vec!["1.0", "2"]);
        assert_eq!(c.failover.default.retry.max_attempts, 2);
    }

    #[test]
    fn access_log_is_off_on_or_a_share() {
        let access = |v: &str| {
            from_yaml(
                &format!("log:\n  access: {v}\nproviders:\n  openai:\n    api_key: k\n"),
                Source::Environment,
                &env(&[]),
            )
            .map(|c| c.log.access)
        };
        assert_eq!(access("off").unwrap(), AccessLog::OFF);
        assert_eq!(access("false").unwrap(), AccessLog::OFF);
        assert_eq!(access("on").unwrap(), AccessLog::ON);
        assert_eq!(access("true").unwrap(), AccessLog::ON);
        assert_eq!(access("1").unwrap(), AccessLog::ON);
        let tenth = access("0.1").unwrap();
        let sampled = (0..100_000u64)
            .filter(|i| tenth.samples(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .count();
        assert!((9_000..11_000).contains(&sampled), "{sampled}");
        for bad in ["sometimes", "1.5", "-0.1"] {
            let err = access(bad).unwrap_err().to_string();
            assert!(err.starts_with("log.access:"), "{bad}: {err}");
        }
        let c = from_yaml(
            "providers:\n  openai:\n    api_key: k\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap();
        assert!(c.log.access.is_off(), "off by default");
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        let e = env(&[("OPENAI_API_KEY", "sk-super-secret")]);
        let err = from_yaml(
            "providers:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n    base_url: 5\n",
            Source::Environment,
            &e,
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(!err.contains("sk-super-secret"), "{err}");
        let c = from_yaml(
            "providers:\n  openai:\n    api_key: ${OPENAI_API_KEY}\n",
            Source::Environment,
            &e,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sk-super-secret"));
    }

    /// A Vertex AI service account's key file, for the tests below.
    fn vertex_key_file(dir: &Path, name: &str, private_key: &str) -> PathBuf {
        let path = dir.join(name);
        let file = serde_json::json!({
            "type": "service_account", "project_id": "from-file",
            "private_key_id": "kid", "private_key": private_key,
            "client_email": "sa@from-file.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    const VERTEX_TEST_KEY: &str =
        include_str!("../../test-support/keys/vertex-test-service-account.pem");

    #[test]
    fn vertex_reads_its_credentials_relative_to_the_file_and_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        vertex_key_file(dir.path(), "sa.json", VERTEX_TEST_KEY);
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(
            &path,
            "providers:\n  gcp:\n    kind: vertex\n    location: us-east5\n    credentials: sa.json\n",
        )
        .unwrap();
        let c = load_file(&path, &env(&[])).unwrap();
        let spec = c.providers[0].vertex.as_ref().unwrap();
        assert_eq!(
            spec.credentials.as_deref(),
            Some(dir.path().join("sa.json").as_path())
        );
        let registry = c.registry().unwrap();
        assert!(registry.provider("gcp").is_some());

        // Zero config: the three variables; the location is needed.
        let sa = dir.path().join("sa.json").display().to_string();
        let e = env(&[
            ("GOOGLE_APPLICATION_CREDENTIALS", sa.as_str()),
            ("GOOGLE_CLOUD_PROJECT", "my-project"),
            ("GOOGLE_CLOUD_LOCATION", "global"),
        ]);
        let c = load(None, &e).unwrap();
        assert_eq!(c.providers[0].name, "vertex");
        assert_eq!(
            c.providers[0].vertex.as_ref().unwrap().project.as_deref(),
            Some("my-project")
        );
        let only_credentials = env(&[("GOOGLE_APPLICATION_CREDENTIALS", sa.as_str())]);
        assert!(load(None, &only_credentials).unwrap().providers.is_empty());
    }

    #[test]
    fn a_bad_vertex_credentials_file_is_reported_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        // A key that is not one, and a file that is not JSON but holds a key.
        let broken = VERTEX_TEST_KEY.replace("MII", "XYZ");
        vertex_key_file(dir.path(), "broken.json", &broken);
        std::fs::write(dir.path().join("raw.pem"), VERTEX_TEST_KEY).unwrap();
        for file in ["broken.json", "raw.pem", "missing.json"] {
            let path = dir.path().join("portcullis.yaml");
            std::fs::write(
                &path,
                format!("providers:\n  gcp:\n    kind: vertex\n    location: global\n    credentials: {file}\n"),
            )
            .unwrap();
            let issues = load_file(&path, &env(&[])).unwrap_err();
            let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
            assert_eq!(shown.len(), 1, "{shown:?}");
            assert!(shown[0].starts_with("providers.gcp"), "{shown:?}");
            assert!(shown[0].contains(file), "{shown:?}");
            assert!(
                !shown[0].contains("PRIVATE KEY") && !shown[0].contains(&VERTEX_TEST_KEY[40..80]),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn problems_in_several_blocks_are_all_reported_by_load_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(
            &path,
            concat!(
                "providers:\n  openai:\n    api_key: k\n  x:\n    kind: martian\n",
                "cache:\n  ttl: soon\n",
                "limits:\n  - scope: usr\n    requests: 1\n    window: 1m\n",
                "routes:\n  smart:\n    strategy: random\n    targets: [openai/gpt-4o]\n",
            ),
        )
        .unwrap();
        let issues = load_file(&path, &env(&[])).unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers.x.kind",
                "routes.smart.strategy",
                "cache.ttl",
                "limits[0].scope"
            ],
            "{issues:#?}"
        );

        std::fs::write(
            &path,
            "providers:\n  openai:\n    api_key: k\nroutes:\n  smart:\n    targets: [openai/gpt-4o]\n",
        )
        .unwrap();
        let config = load_file(&path, &env(&[])).unwrap();
        assert_eq!(config.source, Source::File(path.clone()));
        assert_eq!(config.routes.len(), 1);

        let missing = load_file(&dir.path().join("absent.yaml"), &env(&[])).unwrap_err();
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(missing[0].path.is_empty());
        assert!(
            missing[0].to_string().starts_with("cannot read "),
            "{missing:?}"
        );
    }

    #[test]
    fn a_routes_tools_denied_reaches_its_resolution_and_bad_globs_are_named() {
        let c = from_yaml(
            "providers:\n  openai: {api_key: k}\nroutes:\n  r:\n    targets: [openai/gpt-4o]\n    tools_denied: [\"shell_*\", delete_file]\n  s:\n    targets: [openai/gpt-4o]\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap();
        let registry = c.registry().unwrap();
        let denied = registry.resolve("r").unwrap().tools_denied.unwrap();
        assert!(denied.matches("shell_exec") && denied.matches("delete_file"));
        assert!(!denied.matches("Shell_exec"));
        assert!(registry.resolve("s").unwrap().tools_denied.is_none());

        let err = from_yaml(
            "providers:\n  openai: {api_key: k}\nroutes:\n  r:\n    targets: [openai/gpt-4o]\n    tools_denied: [ok, \"[unclosed\"]\n",
            Source::Environment,
            &env(&[]),
        )
        .unwrap_err();
        let issues = err.issues();
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("routes.r.tools_denied[1]: `[unclosed` is not a valid glob")),
            "{issues:?}"
        );
    }
}

//! The `mcp:` configuration block, as written ([`RawMcp`]) and as validated ([`McpConfig`]).
//!
//! ```yaml
//! mcp:
//!   public_url: https://gateway.example.com   # the gateway's URL as clients see it (behind a proxy)
//!   allowed_hosts: [gateway.example.com]      # `Host` values accepted besides loopback names
//!   allowed_origins: [https://app.example.com] # browser origins accepted besides the gateway's own
//!   timeout: 30s                              # each upstream call; default 30s
//!   list_ttl: 5m                              # how long a server's lists are kept without a
//!                                             # `list_changed`; 0s fetches on every request
//!   page_size: 100                            # entries per page of the lists clients get
//!   runtime_stdio: sandboxed                  # stdio servers the admin API may add: sandboxed
//!                                             # (default), any (also `sandbox: false`) or none
//!   servers:
//!     files:                                  # lowercase letters, digits and `-`, at most 32
//!       command: npx                          # a stdio server the gateway starts …
//!       args: [-y, "@modelcontextprotocol/server-filesystem", /srv/data]
//!       env: {LOG_LEVEL: info}                # the only variables it gets besides PATH, HOME, LANG, LC_*, TMPDIR
//!       cwd: /srv/data                        # its working directory (default: a private one)
//!       network: false                        # no network at all (default: true)
//!       sandbox: true                         # default: true; `false` runs it unconfined
//!       limits: {memory: 512MiB, cpu_seconds: 600, processes: 64, open_files: 256}
//!       read_paths: [/srv/reference]          # more it may read in the sandbox, besides the system's
//!       write_paths: [/srv/out]               # more it may write, besides its working directory
//!     github:
//!       url: https://mcp.example.com/mcp      # … or a remote server
//!       transport: streamable_http            # or `sse` (the older HTTP+SSE transport)
//!       headers: {Authorization: "Bearer ${GITHUB_TOKEN}"}
//!       timeout: 60s
//!       pin_tools: false                      # this server's tool definitions are not pinned
//!   pin_tools: true                           # pin each tool's definition when first seen and
//!                                             # withhold changed ones until approved (default)
//!   access:                                   # who may use which tools (see `crate::access`)
//!     - {tools: ["github__*"], teams: [platform], allow: true}
//! ```
//!
//! Header values and environment values are secrets as far as messages go: no validation
//! message ever quotes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::config::{Block, Issues, key};
use portcullis_core::parse_duration;
use serde::Deserialize;

/// Upstream call timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server's lists are kept when nothing says they changed, unless configured.
pub const DEFAULT_LIST_TTL: Duration = Duration::from_secs(300);
/// Entries per page of the lists the gateway answers, unless configured.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Most entries per page one may configure.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// Longest server name: with `__` and a tool name it must fit the 64 characters clients accept.
pub const MAX_SERVER_NAME: usize = 32;

/// `mcp:` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    /// The gateway's public base URL.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Extra accepted `Host` values.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Default upstream call timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Default time a server's lists are kept.
    #[serde(default)]
    pub list_ttl: Option<String>,
    /// Whether tool definitions are pinned (`crate::pins`); default true.
    #[serde(default)]
    pub pin_tools: Option<bool>,
    /// Entries per page of the lists clients get.
    #[serde(default)]
    pub page_size: Option<usize>,
    /// Which stdio servers the admin API may add: `sandboxed` (default), `any` or `none`.
    #[serde(default)]
    pub runtime_stdio: Option<String>,
    /// The servers, by name.
    #[serde(default)]
    pub servers: BTreeMap<String, RawServer>,
    /// Access rules by user, team and role.
    #[serde(default)]
    pub access: Vec<crate::access::RawAccessRule>,
}

/// `mcp.servers.<name>` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// The program of a stdio server.
    #[serde(default)]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment (on top of the basics).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Whether it may use the network.
    #[serde(default)]
    pub network: Option<bool>,
    /// Whether it runs in the sandbox.
    #[serde(default)]
    pub sandbox: Option<bool>,
    /// Its resource limits.
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// More paths it may read in the sandbox.
    #[serde(default)]
    pub read_paths: Vec<String>,
    /// More paths it may read and write in the sandbox.
    #[serde(default)]
    pub write_paths: Vec<String>,
    /// The URL of a remote server.
    #[serde(default)]
    pub url: Option<String>,
    /// `streamable_http` (default) or `sse`.
    #[serde(default)]
    pub transport: Option<String>,
    /// Headers sent to a remote server.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// This server's call timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// How long this server's lists are kept.
    #[serde(default)]
    pub list_ttl: Option<String>,
    /// Whether this server's tool definitions are pinned.
    #[serde(default)]
    pub pin_tools: Option<bool>,
    /// How the gateway gets each caller an OAuth token for an HTTP server that needs one.
    #[serde(default)]
    pub oauth: Option<RawOAuth>,
}

/// `oauth:` of an HTTP server as written.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// The gateway's client id at the server's authorization server.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its client secret (a secret), if it is a confidential client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The authorization endpoint; discovered from the server's metadata when left out.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint; discovered from the server's metadata when left out.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The scopes asked for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `user_grant` (default) or `token_exchange`.
    #[serde(default)]
    pub mode: Option<String>,
    /// How the gateway authenticates at the token endpoint: `client_secret_basic` or
    /// `client_secret_post`; chosen from the authorization server's metadata when left out.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
}

impl std::fmt::Debug for RawOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawOAuth")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("scopes", &self.scopes)
            .field("mode", &self.mode)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .finish()
    }
}

/// How the gateway gets a token for an upstream server that needs OAuth.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthSpec {
    /// The gateway's client id.
    pub client_id: String,
    /// Its client secret, if any (never shown).
    pub client_secret: Option<String>,
    /// The authorization endpoint, when configured.
    pub authorization_endpoint: Option<String>,
    /// The token endpoint, when configured.
    pub token_endpoint: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// How tokens are obtained.
    pub mode: OAuthMode,
    /// How the gateway authenticates at the token endpoint, when configured; otherwise chosen
    /// from the authorization server's `token_endpoint_auth_methods_supported`.
    pub token_endpoint_auth: Option<TokenEndpointAuth>,
}

/// How a confidential client authenticates at a token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the form-encoded client id and secret (what every server must accept).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

impl TokenEndpointAuth {
    /// Its name in RFC 8414 metadata and in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuth::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost => "client_secret_post",
        }
    }

    /// The method named `name`, if it is one of these.
    pub fn parse(name: &str) -> Option<TokenEndpointAuth> {
        match name {
            "client_secret_basic" => Some(TokenEndpointAuth::ClientSecretBasic),
            "client_secret_post" => Some(TokenEndpointAuth::ClientSecretPost),
            _ => None,
        }
    }
}

impl std::fmt::Debug for OAuthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthSpec")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("scopes", &self.scopes)
            .field("mode", &self.mode)
            .field("token_endpoint_auth", &self.token_endpoint_auth)
            .finish()
    }
}

/// How the gateway gets an upstream token for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthMode {
    /// Each user consents once (authorization code with PKCE); the grant is kept sealed.
    UserGrant,
    /// The caller's token is exchanged for one of the server's (RFC 8693).
    TokenExchange,
}

/// `limits:` of a stdio server as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Memory, such as `512MiB`, `2GiB` or a number of bytes.
    #[serde(default)]
    pub memory: Option<RawBytes>,
    /// CPU seconds.
    #[serde(default)]
    pub cpu_seconds: Option<u64>,
    /// Processes (and threads).
    #[serde(default)]
    pub processes: Option<u64>,
    /// Open files.
    #[serde(default)]
    pub open_files: Option<u64>,
}

/// A size as written: a number of bytes or text with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawBytes {
    /// Bytes.
    Bytes(u64),
    /// `512MiB`, `1GiB`, `64KiB`, `100MB`, …
    Text(String),
}

/// The validated `mcp:` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// The gateway's public base URL, without a trailing slash.
    pub public_url: Option<String>,
    /// Extra accepted `Host` values (lowercase, with or without a port).
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values.
    pub allowed_origins: Vec<String>,
    /// The servers, by name, in name order.
    pub servers: Vec<ServerSpec>,
    /// Access rules by user, team and role (`crate::access`).
    pub access: portcullis_policy::AccessRules,
    /// The call timeout of a server that sets none (`timeout`).
    pub timeout: Duration,
    /// How long the lists of a server that sets nothing are kept (`list_ttl`).
    pub list_ttl: Duration,
    /// Whether the tools of a server that sets nothing are pinned (`pin_tools`).
    pub pin_tools: bool,
    /// Entries per page of the lists clients get (`page_size`; 0 in a block built by hand
    /// means the default).
    pub page_size: usize,
    /// Which stdio servers the admin API may add (`runtime_stdio`).
    pub runtime_stdio: RuntimeStdio,
}

/// Which stdio servers may be added through the admin API: a program the gateway starts is
/// code run on its host, so an admin credential alone may start only sandboxed ones unless
/// the file says otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RuntimeStdio {
    /// None: runtime servers are remote (HTTP) only.
    None,
    /// Only servers that run in the sandbox (the default).
    #[default]
    Sandboxed,
    /// Any, including `sandbox: false`.
    Any,
}

impl RuntimeStdio {
    /// Why the admin API may not add `spec`, if it may not.
    pub fn refuses(self, spec: &ServerSpec) -> Option<&'static str> {
        let Transport::Stdio(stdio) = &spec.transport else {
            return None;
        };
        match self {
            RuntimeStdio::None => Some(
                "stdio servers cannot be added through the admin API here \
                 (`mcp.runtime_stdio: none`); add it in the configuration file",
            ),
            RuntimeStdio::Sandboxed if !stdio.sandbox => Some(
                "an unsandboxed stdio server cannot be added through the admin API unless the \
                 configuration file sets `mcp.runtime_stdio: any`",
            ),
            RuntimeStdio::Sandboxed | RuntimeStdio::Any => None,
        }
    }
}

impl McpConfig {
    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// One configured MCP server.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Its name: the prefix of its tools and its path under `/mcp/`.
    pub name: String,
    /// How it is reached.
    pub transport: Transport,
    /// How long each call may take.
    pub timeout: Duration,
    /// How long its lists are kept without a `list_changed` (zero: not kept).
    pub list_ttl: Duration,
    /// Whether its tools' definitions are pinned (`crate::pins`).
    pub pin_tools: bool,
    /// How callers get a token for it, when it needs OAuth (HTTP servers only).
    pub oauth: Option<OAuthSpec>,
}

impl std::fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .field("list_ttl", &self.list_ttl)
            .field("pin_tools", &self.pin_tools)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// How a server is reached.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// A program the gateway starts, speaking JSON-RPC on its standard input and output.
    Stdio(StdioSpec),
    /// A remote server over Streamable HTTP.
    StreamableHttp(HttpSpec),
    /// A remote server over the older HTTP+SSE transport.
    Sse(HttpSpec),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Stdio(s) => f.debug_tuple("Stdio").field(s).finish(),
            Transport::StreamableHttp(h) => f.debug_tuple("StreamableHttp").field(h).finish(),
            Transport::Sse(h) => f.debug_tuple("Sse").field(h).finish(),
        }
    }
}

/// A stdio server.
#[derive(Clone, PartialEq, Eq)]
pub struct StdioSpec {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The environment it gets on top of the basics (values are secrets).
    pub env: BTreeMap<String, String>,
    /// Its working directory; `None`: a private directory the gateway makes.
    pub cwd: Option<PathBuf>,
    /// Whether it may use the network.
    pub network: bool,
    /// Whether it runs in the sandbox.
    pub sandbox: bool,
    /// Its resource limits.
    pub limits: Limits,
    /// Absolute paths it may also read (and execute) in the sandbox.
    pub read_paths: Vec<PathBuf>,
    /// Absolute paths it may also read and write in the sandbox.
    pub write_paths: Vec<PathBuf>,
}

impl std::fmt::Debug for StdioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioSpec")
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("network", &self.network)
            .field("sandbox", &self.sandbox)
            .field("limits", &self.limits)
            .field("read_paths", &self.read_paths)
            .field("write_paths", &self.write_paths)
            .finish()
    }
}

/// Resource limits of a stdio server, applied by its sandbox (none with `sandbox: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory, in bytes: private writable memory of each process (`RLIMIT_DATA`).
    pub memory_bytes: Option<u64>,
    /// CPU time of each process, in seconds.
    pub cpu_seconds: Option<u64>,
    /// Processes and threads of the gateway's user (`RLIMIT_NPROC`). Not applied when the
    /// gateway runs as root: the kernel ignores the limit for root, and the server runs
    /// without it (the log says so when the sandbox is first probed).
    pub processes: Option<u64>,
    /// Open files.
    pub open_files: Option<u64>,
}

impl Default for Limits {
    /// What a stdio server gets when its entry sets nothing: 1 GiB of memory, 256 processes
    /// and threads, 1024 open files, and no bound on CPU time (a server lives as long as the
    /// gateway).
    fn default() -> Self {
        Self {
            memory_bytes: Some(1 << 30),
            cpu_seconds: None,
            processes: Some(256),
            open_files: Some(1024),
        }
    }
}

/// A remote server.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSpec {
    /// Its URL.
    pub url: String,
    /// Headers sent with every request (values are secrets).
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSpec")
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether `name` is a valid server name: lowercase letters, digits and `-`, 1 to 32 long.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SERVER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Validates one server entry as if it were `mcp.servers.<name>` of `block`, with the same
/// rules and messages as the file's (paths under `at`, `name` for the name) and `block`'s
/// defaults for what it leaves out: how the servers added through the admin API are checked.
pub fn validate_entry(
    name: &str,
    raw: RawServer,
    at: &str,
    block: &McpConfig,
) -> Result<ServerSpec, Issues> {
    let mut issues = Issues::new();
    if !valid_server_name(name) {
        issues.at(
            at,
            "name",
            "a server name is 1 to 32 lowercase letters, digits and `-`",
        );
    }
    let defaults = ServerDefaults {
        timeout: block.timeout,
        list_ttl: block.list_ttl,
        pin_tools: block.pin_tools,
    };
    let spec = validate_server(name.to_owned(), raw, at, defaults, &mut issues);
    match spec {
        Some(spec) if issues.is_empty() => Ok(spec),
        _ => {
            if issues.is_empty() {
                issues.push(at, "is not a valid server entry");
            }
            Err(issues)
        }
    }
}

impl Block for McpConfig {
    type Raw = RawMcp;
    type Valid = McpConfig;

    fn validate(raw: RawMcp, at: &str) -> Result<McpConfig, Issues> {
        let mut issues = Issues::new();
        let public_url = raw.public_url.as_deref().and_then(|u| {
            let trimmed = u.trim_end_matches('/');
            if http_url(trimmed) {
                Some(trimmed.to_owned())
            } else {
                issues.at(at, "public_url", "must be an http:// or https:// URL");
                None
            }
        });
        let default_timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => duration(t, &key(at, "timeout"), &mut issues).unwrap_or(DEFAULT_TIMEOUT),
        };
        let defaults = ServerDefaults {
            timeout: default_timeout,
            list_ttl: match &raw.list_ttl {
                None => DEFAULT_LIST_TTL,
                Some(t) => {
                    list_ttl(t, &key(at, "list_ttl"), &mut issues).unwrap_or(DEFAULT_LIST_TTL)
                }
            },
            pin_tools: raw.pin_tools.unwrap_or(true),
        };
        for (i, host) in raw.allowed_hosts.iter().enumerate() {
            if host.is_empty() || host.contains(['/', ' ']) {
                issues.push(
                    portcullis_core::config::index(&key(at, "allowed_hosts"), i),
                    "must be a host name, with an optional `:port`",
                );
            }
        }
        for (i, origin) in raw.allowed_origins.iter().enumerate() {
            if !http_url(origin) {
                issues.push(
                    portcullis_core::config::index(&key(at, "allowed_origins"), i),
                    "must be an origin such as https://app.example.com",
                );
            }
        }
        let page_size = match raw.page_size {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            Some(_) => {
                issues.at(at, "page_size", "must be between 1 and 10000");
                DEFAULT_PAGE_SIZE
            }
        };
        let runtime_stdio = match raw.runtime_stdio.as_deref() {
            None | Some("sandboxed") => RuntimeStdio::Sandboxed,
            Some("any") => RuntimeStdio::Any,
            Some("none") => RuntimeStdio::None,
            Some(other) => {
                issues.at(
                    at,
                    "runtime_stdio",
                    format!("`{other}` is not `sandboxed`, `any` or `none`"),
                );
                RuntimeStdio::Sandboxed
            }
        };
        let access = crate::access::validate(raw.access, &key(at, "access"), &mut issues);
        let servers_at = key(at, "servers");
        let mut servers = Vec::with_capacity(raw.servers.len());
        for (name, server) in raw.servers {
            let here = key(&servers_at, &name);
            if !valid_server_name(&name) {
                issues.push(
                    here.clone(),
                    "a server name is 1 to 32 lowercase letters, digits and `-`",
                );
            }
            if let Some(spec) = validate_server(name, server, &here, defaults, &mut issues) {
                servers.push(spec);
            }
        }
        issues.finish(McpConfig {
            access,
            public_url,
            allowed_hosts: raw
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allowed_origins: raw
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            servers,
            timeout: defaults.timeout,
            list_ttl: defaults.list_ttl,
            pin_tools: defaults.pin_tools,
            page_size,
            runtime_stdio,
        })
    }
}

fn validate_server(
    name: String,
    raw: RawServer,
    at: &str,
    defaults: ServerDefaults,
    issues: &mut Issues,
) -> Option<ServerSpec> {
    let timeout = match &raw.timeout {
        None => defaults.timeout,
        Some(t) => duration(t, &key(at, "timeout"), issues)?,
    };
    let list_ttl = match &raw.list_ttl {
        None => defaults.list_ttl,
        Some(t) => self::list_ttl(t, &key(at, "list_ttl"), issues)?,
    };
    let mut oauth = None;
    let transport = match (&raw.command, &raw.url) {
        (Some(_), Some(_)) => {
            issues.push(at, "set either `command` (stdio) or `url` (HTTP), not both");
            return None;
        }
        (None, None) => {
            issues.push(
                at,
                "needs `command` (a stdio server) or `url` (an HTTP server)",
            );
            return None;
        }
        (Some(command), None) => {
            for field in ["url", "transport", "headers", "oauth"] {
                let set = match field {
                    "url" => raw.url.is_some(),
                    "transport" => raw.transport.is_some(),
                    "oauth" => raw.oauth.is_some(),
                    _ => !raw.headers.is_empty(),
                };
                if set {
                    issues.at(at, field, "applies to HTTP servers only");
                }
            }
            if command.trim().is_empty() {
                issues.at(at, "command", "must not be empty");
            }
            for name in raw.env.keys() {
                if name.is_empty() || name.contains(['=', '\0']) {
                    issues.at(at, "env", "variable names must be non-empty, without `=`");
                }
            }
            let limits = raw
                .limits
                .as_ref()
                .map(|l| limits(l, &key(at, "limits"), issues))
                .unwrap_or_default();
            let read_paths = absolute_paths(&raw.read_paths, &key(at, "read_paths"), issues);
            let write_paths = absolute_paths(&raw.write_paths, &key(at, "write_paths"), issues);
            Transport::Stdio(StdioSpec {
                command: command.clone(),
                args: raw.args,
                env: raw.env,
                cwd: raw.cwd.map(PathBuf::from),
                network: raw.network.unwrap_or(true),
                sandbox: raw.sandbox.unwrap_or(true),
                limits,
                read_paths,
                write_paths,
            })
        }
        (None, Some(url)) => {
            for (field, set) in [
                ("args", !raw.args.is_empty()),
                ("env", !raw.env.is_empty()),
                ("cwd", raw.cwd.is_some()),
                ("network", raw.network.is_some()),
                ("sandbox", raw.sandbox.is_some()),
                ("limits", raw.limits.is_some()),
                ("read_paths", !raw.read_paths.is_empty()),
                ("write_paths", !raw.write_paths.is_empty()),
            ] {
                if set {
                    issues.at(at, field, "applies to stdio servers only");
                }
            }
            if !http_url(url) {
                issues.at(at, "url", "must be an http:// or https:// URL");
            }
            for name in raw.headers.keys() {
                if http_header_name(name).is_none() {
                    issues.at(at, "headers", format!("`{name}` is not a header name"));
                }
            }
            oauth = raw
                .oauth
                .as_ref()
                .and_then(|o| validate_oauth(o, &key(at, "oauth"), issues));
            let spec = HttpSpec {
                url: url.clone(),
                headers: raw.headers,
            };
            match raw.transport.as_deref() {
                None | Some("streamable_http") => Transport::StreamableHttp(spec),
                Some("sse") => Transport::Sse(spec),
                Some(other) => {
                    issues.at(
                        at,
                        "transport",
                        format!("`{other}` is not `streamable_http` or `sse`"),
                    );
                    return None;
                }
            }
        }
    };
    Some(ServerSpec {
        name,
        transport,
        timeout,
        list_ttl,
        pin_tools: raw.pin_tools.unwrap_or(defaults.pin_tools),
        oauth,
    })
}

/// An HTTP server's `oauth:` block (messages name fields, never values).
fn validate_oauth(raw: &RawOAuth, at: &str, issues: &mut Issues) -> Option<OAuthSpec> {
    let client_id = match raw.client_id.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            issues.at(at, "client_id", "is required");
            return None;
        }
    };
    for (field, value) in [
        ("authorization_endpoint", &raw.authorization_endpoint),
        ("token_endpoint", &raw.token_endpoint),
    ] {
        if value.as_deref().is_some_and(|u| !http_url(u)) {
            issues.at(at, field, "must be an http:// or https:// URL");
        }
    }
    if raw.client_secret.as_deref().is_some_and(str::is_empty) {
        issues.at(at, "client_secret", "must not be empty");
    }
    if raw
        .scopes
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        issues.at(
            at,
            "scopes",
            "each scope is a non-empty word without spaces",
        );
    }
    let mode = match raw.mode.as_deref() {
        None | Some("user_grant") => OAuthMode::UserGrant,
        Some("token_exchange") => OAuthMode::TokenExchange,
        Some(other) => {
            issues.at(
                at,
                "mode",
                format!("`{other}` is not `user_grant` or `token_exchange`"),
            );
            return None;
        }
    };
    let token_endpoint_auth = match raw.token_endpoint_auth_method.as_deref() {
        None => None,
        Some(name) => match TokenEndpointAuth::parse(name) {
            Some(method) => Some(method),
            None => {
                issues.at(
                    at,
                    "token_endpoint_auth_method",
                    format!("`{name}` is not `client_secret_basic` or `client_secret_post`"),
                );
                return None;
            }
        },
    };
    if token_endpoint_auth.is_some() && raw.client_secret.is_none() {
        issues.at(
            at,
            "token_endpoint_auth_method",
            "needs a `client_secret` to authenticate with",
        );
    }
    Some(OAuthSpec {
        client_id,
        client_secret: raw.client_secret.clone(),
        authorization_endpoint: raw.authorization_endpoint.clone(),
        token_endpoint: raw.token_endpoint.clone(),
        scopes: raw.scopes.clone(),
        mode,
        token_endpoint_auth,
    })
}

/// What a server entry takes from the block when it does not say.
#[derive(Debug, Clone, Copy)]
struct ServerDefaults {
    timeout: Duration,
    list_ttl: Duration,
    pin_tools: bool,
}

/// A list lifetime: a duration, where `0s` (no caching) is allowed.
fn list_ttl(text: &str, at: &str, issues: &mut Issues) -> Option<Duration> {
    parse_duration(text)
        .map_err(|e| issues.push(at, e.to_string()))
        .ok()
}

fn limits(raw: &RawLimits, at: &str, issues: &mut Issues) -> Limits {
    let defaults = Limits::default();
    let positive = |v: Option<u64>, field: &str, issues: &mut Issues| match v {
        Some(0) => {
            issues.at(at, field, "must be at least 1");
            None
        }
        other => other,
    };
    Limits {
        memory_bytes: match &raw.memory {
            None => defaults.memory_bytes,
            Some(m) => match bytes(m) {
                Some(b) if b >= 16 << 20 => Some(b),
                Some(_) => {
                    issues.at(at, "memory", "must be at least 16MiB");
                    None
                }
                None => {
                    issues.at(at, "memory", "is not a size (e.g. 512MiB, 2GiB, 1048576)");
                    None
                }
            },
        },
        cpu_seconds: positive(raw.cpu_seconds, "cpu_seconds", issues),
        processes: positive(raw.processes, "processes", issues).or(defaults.processes),
        open_files: positive(raw.open_files, "open_files", issues).or(defaults.open_files),
    }
}

/// The paths of `read_paths:` or `write_paths:`: each absolute, without `..` (what the
/// sandbox allows must be plain to read in the configuration).
fn absolute_paths(raw: &[String], at: &str, issues: &mut Issues) -> Vec<PathBuf> {
    let mut paths = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        let path = std::path::Path::new(text);
        let plain = path.is_absolute()
            && !text.contains('\0')
            && path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
        if plain {
            paths.push(path.to_path_buf());
        } else {
            issues.push(
                portcullis_core::config::index(at, i),
                "must be an absolute path without `..`",
            );
        }
    }
    paths
}

/// A size in bytes: a number, or a number with `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`.
fn bytes(raw: &RawBytes) -> Option<u64> {
    let text = match raw {
        RawBytes::Bytes(b) => return Some(*b),
        RawBytes::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn duration(text: &str, at: &str, issues: &mut Issues) -> Option<Duration> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            issues.push(at, "must be longer than zero");
            None
        }
        Err(e) => {
            issues.push(at, e.to_string());
            None
        }
    }
}

fn http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// `name` when it is a valid HTTP header name (RFC 9110 token characters).
fn http_header_name(name: &str) -> Option<&str> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!name.is_empty() && name.bytes().all(token)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(yaml: &str) -> Result<McpConfig, Vec<String>> {
        let raw: RawMcp = serde_saphyr::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        McpConfig::validate(raw, "mcp").map_err(|i| i.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn stdio_and_http_servers_validate_with_defaults() {
        let c = validate(
            r#"
public_url: https://gw.example.com/
servers:
  files:
    command: npx
    args: [-y, server]
    env: {TOKEN: s3cret}
    network: false
    limits: {memory: 256MiB, cpu_seconds: 60}
    read_paths: [/srv/reference, /etc/app.conf]
    write_paths: [/srv/out]
  remote:
    url: https://mcp.example.com/mcp
    headers: {Authorization: Bearer s3cret}
    timeout: 5s
  old:
    url: http://127.0.0.1:9000/sse
    transport: sse
"#,
        )
        .unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://gw.example.com"));
        let names: Vec<&str> = c.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["files", "old", "remote"]);
        let files = c.server("files").unwrap();
        assert_eq!(files.timeout, DEFAULT_TIMEOUT);
        let Transport::Stdio(stdio) = &files.transport else {
            panic!("stdio")
        };
        assert!(!stdio.network && stdio.sandbox);
        assert_eq!(stdio.limits.memory_bytes, Some(256 << 20));
        assert_eq!(stdio.limits.cpu_seconds, Some(60));
        assert_eq!(stdio.limits.processes, Limits::default().processes);
        assert_eq!(
            stdio.read_paths,
            [
                PathBuf::from("/srv/reference"),
                PathBuf::from("/etc/app.conf")
            ]
        );
        assert_eq!(stdio.write_paths, [PathBuf::from("/srv/out")]);
        assert!(matches!(
            c.server("old").unwrap().transport,
            Transport::Sse(_)
        ));
        assert_eq!(c.server("remote").unwrap().timeout, Duration::from_secs(5));
        // Secrets never show in debug output.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn tools_are_pinned_unless_the_block_or_the_server_says_not() {
        let c = validate(
            "servers:\n  a: {url: \"http://a\"}\n  b: {url: \"http://b\", pin_tools: false}\n",
        )
        .unwrap();
        assert!(c.server("a").unwrap().pin_tools);
        assert!(!c.server("b").unwrap().pin_tools);
        let c = validate("pin_tools: false\nservers:\n  a: {url: \"http://a\"}\n  b: {url: \"http://b\", pin_tools: true}\n")
            .unwrap();
        assert!(!c.server("a").unwrap().pin_tools);
        assert!(c.server("b").unwrap().pin_tools);
    }

    #[test]
    fn lists_come_in_pages_of_a_hundred_unless_configured() {
        assert_eq!(
            validate("servers: {}\n").unwrap().page_size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            validate("page_size: 500\nservers: {}\n").unwrap().page_size,
            500
        );
        for bad in ["0", "10001"] {
            let errors = validate(&format!("page_size: {bad}\nservers: {{}}\n")).unwrap_err();
            assert!(
                errors
                    .join("\n")
                    .contains("mcp.page_size: must be between 1 and 10000"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn an_oauth_block_is_checked_by_field_and_never_shows_its_secret() {
        let c = validate(
            "servers:\n  gh:\n    url: \"https://gh.example/mcp\"\n    oauth: {client_id: gw, \
             client_secret: s3cret, scopes: [repo, read]}\n",
        )
        .unwrap();
        let oauth = c.server("gh").unwrap().oauth.clone().unwrap();
        assert_eq!(oauth.mode, OAuthMode::UserGrant);
        assert_eq!(oauth.scopes, ["repo", "read"]);
        assert_eq!(oauth.client_secret.as_deref(), Some("s3cret"));
        assert!(!format!("{:?}", c.server("gh").unwrap()).contains("s3cret"));
        let errors = validate(
            "servers:\n  gh:\n    url: \"https://gh.example/mcp\"\n    oauth: {client_secret: \
             s3cret, token_endpoint: \"ftp://x\", mode: magic}\n  \
             local: {command: x, oauth: {client_id: gw}}\n",
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("mcp.servers.gh.oauth.client_id: is required"),
            "{all}"
        );
        assert!(
            all.contains("mcp.servers.local.oauth: applies to HTTP servers only"),
            "{all}"
        );
        assert!(!all.contains("s3cret"), "{all}");
        let errors = validate(
            "servers:\n  gh:\n    url: \"https://gh.example/mcp\"\n    oauth: {client_id: gw, \
             token_endpoint: \"ftp://x\", mode: magic}\n",
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("mcp.servers.gh.oauth.token_endpoint: must be an http:// or https:// URL"),
            "{all}"
        );
        assert!(
            all.contains(
                "mcp.servers.gh.oauth.mode: `magic` is not `user_grant` or `token_exchange`"
            ),
            "{all}"
        );
    }

    #[test]
    fn list_lifetimes_default_to_five_minutes_and_zero_keeps_nothing() {
        let c = validate(
            "list_ttl: 0s\nservers:\n  a: {url: \"http://a\"}\n  b: {url: \"http://b\", list_ttl: 1m}\n",
        )
        .unwrap();
        assert_eq!(c.server("a").unwrap().list_ttl, Duration::ZERO);
        assert_eq!(c.server("b").unwrap().list_ttl, Duration::from_secs(60));
        let c = validate("servers:\n  a: {url: \"http://a\"}\n").unwrap();
        assert_eq!(c.server("a").unwrap().list_ttl, DEFAULT_LIST_TTL);
        let errors = validate("list_ttl: later\nservers: {}\n").unwrap_err();
        assert!(
            errors
                .join("\n")
                .contains("mcp.list_ttl: `later` is not a duration")
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path_and_no_secret() {
        let errors = validate(
            r#"
timeout: soon
servers:
  Bad_Name: {command: x}
  both: {command: x, url: "http://a"}
  neither: {args: [a]}
  remote: {url: "ftp://x", headers: {"bad header": s3cret}, transport: ws, env: {A: s3cret}}
  local: {command: x, headers: {A: s3cret}, limits: {memory: 1KiB, processes: 0}}
  paths: {command: x, read_paths: [relative/dir, /ok], write_paths: [/srv/../etc]}
  remote-paths: {url: "http://a", read_paths: [/srv], write_paths: [/tmp]}
"#,
        )
        .unwrap_err();
        let text = errors.join("\n");
        assert!(!text.contains("s3cret"), "{text}");
        for expected in [
            "mcp.timeout: `soon` is not a duration",
            "mcp.servers.Bad_Name: a server name is",
            "mcp.servers.both: set either `command`",
            "mcp.servers.neither: needs `command`",
            "mcp.servers.remote.url: must be an http",
            "mcp.servers.remote.headers: `bad header` is not a header name",
            "mcp.servers.remote.env: applies to stdio servers only",
            "mcp.servers.remote.transport: `ws` is not",
            "mcp.servers.local.headers: applies to HTTP servers only",
            "mcp.servers.local.limits.memory: must be at least 16MiB",
            "mcp.servers.local.limits.processes: must be at least 1",
            "mcp.servers.paths.read_paths[0]: must be an absolute path without `..`",
            "mcp.servers.paths.write_paths[0]: must be an absolute path without `..`",
            "mcp.servers.remote-paths.read_paths: applies to stdio servers only",
            "mcp.servers.remote-paths.write_paths: applies to stdio servers only",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }

    #[test]
    fn an_entry_outside_the_file_has_the_files_rules_and_the_blocks_defaults() {
        let block = validate("timeout: 7s\nlist_ttl: 1m\nservers: {}\n").unwrap();
        let raw: RawServer = serde_saphyr::from_str("{url: \"http://a\"}").unwrap();
        let spec = validate_entry("remote", raw, "", &block).unwrap();
        assert_eq!(spec.timeout, Duration::from_secs(7));
        assert_eq!(spec.list_ttl, Duration::from_secs(60));
        let raw: RawServer =
            serde_saphyr::from_str("{command: x, limits: {memory: 1KiB}, headers: {A: s3cret}}")
                .unwrap();
        let issues = validate_entry("Bad_Name", raw, "", &block).unwrap_err();
        let text = issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!text.contains("s3cret"), "{text}");
        for expected in [
            "name: a server name is",
            "limits.memory: must be at least 16MiB",
            "headers: applies to HTTP servers only",
        ] {
            assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes(&RawBytes::Text("512MiB".into())), Some(512 << 20));
        assert_eq!(bytes(&RawBytes::Text("2 GiB".into())), Some(2 << 30));
        assert_eq!(bytes(&RawBytes::Text("100MB".into())), Some(100_000_000));
        assert_eq!(bytes(&RawBytes::Bytes(7)), Some(7));
        assert_eq!(bytes(&RawBytes::Text("lots".into())), None);
        assert_eq!(bytes(&RawBytes::Text("99999999999999GiB".into())), None);
    }
}

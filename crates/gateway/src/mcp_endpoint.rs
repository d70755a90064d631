//! [`McpEndpoint`]: what the MCP endpoints (`crate::mcp`) share — the servers, the endpoint
//! settings, the DNS-rebinding guard (`Host` and `Origin`), and the key that signs session ids,
//! kept in the database so every replica and every restart verifies the ids any issued.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::{HOST, ORIGIN};
use portcullis_mcp::McpConfig;
use portcullis_mcp::hub::{Hub, Server};
use portcullis_mcp::jsonrpc::{Id, Request};
use sha2::Sha256;

/// What the MCP endpoints share.
#[derive(Debug)]
pub struct McpEndpoint {
    /// The servers.
    pub hub: Arc<Hub>,
    config: McpConfig,
    /// The gateway's listen address, an accepted `Host`.
    listen: std::net::SocketAddr,
    /// Signs session ids.
    session_key: [u8; 32],
    /// `oauth.issuer`, for the protected resource metadata.
    pub issuer: Option<String>,
    /// Requests servers made of clients (sampling, elicitation, roots), relayed and waiting for
    /// the client's answer (the same across reloads; `crate::mcp_relay`).
    relays: Arc<crate::mcp_relay::Relays>,
    /// The SSE streams of this replica, kept for resumption (the same across reloads).
    pub streams: Arc<crate::mcp_streams::Streams>,
    /// The servers' instances carrying users' or teams' own credentials (the same across
    /// reloads; an instance of a server whose configuration changed is replaced on next use).
    pub credentialed: Arc<portcullis_mcp::credentials::Credentialed>,
}

pub use crate::mcp_relay::Relayed;

impl McpEndpoint {
    /// The endpoints over `hub`, configured by `config`; `session_key` signs session ids.
    pub fn new(
        hub: Arc<Hub>,
        config: McpConfig,
        listen: std::net::SocketAddr,
        session_key: [u8; 32],
        issuer: Option<String>,
    ) -> Self {
        // Stream ids and request states name the replica as relay ids do.
        let relays = Arc::new(crate::mcp_relay::Relays::default());
        let streams = Arc::new(crate::mcp_streams::Streams::new(relays.replica()));
        Self {
            hub,
            config,
            listen,
            session_key,
            issuer,
            relays,
            streams,
            credentialed: Arc::default(),
        }
    }

    /// The same endpoint over the servers of `config` (see `Hub::reconfigured`): unchanged
    /// servers keep their connections, sessions stay valid. Also returns the servers no longer
    /// in use, to be shut down.
    pub fn reconfigured(
        &self,
        config: McpConfig,
    ) -> (McpEndpoint, Vec<Arc<portcullis_mcp::hub::Server>>) {
        let (hub, gone) = self
            .hub
            .reconfigured(&config, &portcullis_mcp::hub::connect);
        let mut next = McpEndpoint::new(
            Arc::new(hub),
            config,
            self.listen,
            self.session_key,
            self.issuer.clone(),
        );
        // Streams begun before the reload can still be resumed.
        next.streams = self.streams.clone();
        next.credentialed = self.credentialed.clone();
        // Requests relayed before the reload can still be answered.
        next.relays = self.relays.clone();
        (next, gone)
    }

    /// Gives `request`, which `server` made, an id of the gateway's own, so that the client's
    /// answer finds its way back ([`McpEndpoint::answered`]) whichever server asked, over
    /// `upstream`, the connection it asked over (see `crate::mcp_relay`).
    pub fn relay(
        &self,
        server: &Arc<Server>,
        upstream: &Arc<dyn portcullis_mcp::upstream::Upstream>,
        request: &mut Request,
    ) {
        self.relays.relay(server, upstream, request);
    }

    /// This replica's relayed requests.
    pub fn relays(&self) -> &Arc<crate::mcp_relay::Relays> {
        &self.relays
    }

    /// The instance of `server` carrying `who`'s own credential (or their team's), started
    /// if need be; `None` when they have none and the server's shared connection serves them.
    pub fn own_instance(
        &self,
        directory: Option<&portcullis_identity::Directory>,
        who: &portcullis_core::Identity,
        server: &Server,
    ) -> Option<Result<Arc<Server>, portcullis_mcp::jsonrpc::ErrorObject>> {
        use portcullis_identity::mcp_credentials::McpSecretKind;
        use portcullis_mcp::credentials::Overlay;
        let set = directory?.mcp_credential(who, server.name())?;
        let overlay = match set.kind {
            McpSecretKind::Headers => Overlay::Headers(&set.values),
            McpSecretKind::Env => Overlay::Env(&set.values),
        };
        Some(
            self.credentialed
                // Pinned under its owner, so a rotated credential keeps the owner's pins.
                .instance_in(server, &set.id, &set.scope, overlay)
                .map_err(|e| {
                    portcullis_mcp::jsonrpc::ErrorObject::new(
                        portcullis_mcp::jsonrpc::UPSTREAM_ERROR,
                        e.to_string(),
                    )
                }),
        )
    }

    /// `who`'s own instance of `server` if one is running now (never started here).
    pub fn running_own_instance(
        &self,
        directory: Option<&portcullis_identity::Directory>,
        who: &portcullis_core::Identity,
        server: &Server,
    ) -> Option<Arc<Server>> {
        let set = directory?.mcp_credential(who, server.name())?;
        self.credentialed.running_instance(server.name(), &set.id)
    }

    /// The connection of `who`'s own instance of `server` (see [`McpEndpoint::own_instance`]).
    pub fn own_upstream(
        &self,
        directory: Option<&portcullis_identity::Directory>,
        who: &portcullis_core::Identity,
        server: &Server,
    ) -> Option<
        Result<Arc<dyn portcullis_mcp::upstream::Upstream>, portcullis_mcp::jsonrpc::ErrorObject>,
    > {
        self.own_instance(directory, who, server)
            .map(|r| r.map(|instance| instance.upstream.clone()))
    }

    /// `who`'s own instances, for the router (lists, names and pins through them).
    pub fn instances_of<'a>(
        &'a self,
        directory: Option<&'a portcullis_identity::Directory>,
        who: &'a portcullis_core::Identity,
    ) -> CallerInstances<'a> {
        CallerInstances {
            endpoint: self,
            directory,
            who,
            oauth: None,
        }
    }

    /// The configuration's access rules by user, team and role (`mcp.access`).
    pub fn access(&self) -> &portcullis_policy::AccessRules {
        &self.config.access
    }

    /// Entries per page of the lists the endpoints answer.
    pub fn page_size(&self) -> usize {
        match self.config.page_size {
            0 => portcullis_mcp::pages::DEFAULT_PAGE_SIZE,
            n => n,
        }
    }

    /// The relayed request a client's answer with `id` is for, if any.
    pub fn answered(&self, id: &Id) -> Option<Relayed> {
        self.relays.answered(id)
    }
}

/// One caller's own instances of servers (`portcullis_mcp::credentials`), as the router
/// reaches them.
pub struct CallerInstances<'a> {
    endpoint: &'a McpEndpoint,
    directory: Option<&'a portcullis_identity::Directory>,
    who: &'a portcullis_core::Identity,
    /// Their instances of servers that need OAuth (made by the gateway's `mcp_upstream_oauth`).
    oauth: Option<&'a OAuthInstances>,
}

/// A caller's instances of the servers that need OAuth, by server name.
pub type OAuthInstances =
    std::collections::HashMap<String, Result<Arc<Server>, portcullis_mcp::jsonrpc::ErrorObject>>;

impl<'a> CallerInstances<'a> {
    /// With the caller's instances of the servers that need OAuth.
    pub fn with_oauth(mut self, oauth: &'a OAuthInstances) -> Self {
        self.oauth = Some(oauth);
        self
    }
}

impl std::fmt::Debug for CallerInstances<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerInstances").finish_non_exhaustive()
    }
}

impl portcullis_mcp::router::Instances for CallerInstances<'_> {
    fn of(
        &self,
        server: &Server,
    ) -> Option<Result<Arc<Server>, portcullis_mcp::jsonrpc::ErrorObject>> {
        if let Some(found) = self.oauth.and_then(|o| o.get(server.name())) {
            return Some(found.clone());
        }
        self.endpoint.own_instance(self.directory, self.who, server)
    }
}

/// The setting that holds the key MCP session ids are signed with.
const SESSION_KEY_SETTING: &str = "mcp_session_key";

/// The key session ids are signed with: made once, kept in the database, so every replica —
/// and the gateway after a restart — verifies the ids any of them issued.
pub async fn session_key(
    settings: &dyn portcullis_store::SettingsStore,
) -> Result<[u8; 32], portcullis_store::StoreError> {
    let fresh: [u8; 32] = rand::random();
    let stored = settings
        .put_if_absent(SESSION_KEY_SETTING, &hex::encode(fresh))
        .await?;
    hex::decode(stored.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            portcullis_store::StoreError::Migration("the stored MCP session key is corrupt".into())
        })
}

impl McpEndpoint {
    /// The gateway's base URL as clients see it: `mcp.public_url`, else the request's host.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.clone();
        }
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// Whether `Host` and `Origin` are the gateway's own (DNS-rebinding protection).
    pub fn guard(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(host) = &host
            && !self.host_allowed(host)
        {
            return Err("the Host header is not this gateway's");
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            let own = host
                .as_deref()
                .is_some_and(|h| origin_host(&origin) == Some(h));
            let public = self
                .config
                .public_url
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&origin));
            if !(own || public || self.config.allowed_origins.contains(&origin)) {
                return Err("the Origin is not allowed");
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if matches!(name, "localhost" | "127.0.0.1" | "[::1]" | "::1") {
            return true;
        }
        let listen_ip = self.listen.ip();
        if !listen_ip.is_unspecified() && name.trim_matches(['[', ']']) == listen_ip.to_string() {
            return true;
        }
        if let Some(url) = &self.config.public_url
            && origin_host(&url.to_ascii_lowercase()).is_some_and(|h| host_name(h) == name)
        {
            return true;
        }
        self.config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == host || allowed == name)
    }

    /// A new session id: a time-ordered id and its signature.
    pub fn new_session(&self) -> String {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let tag = self.tag(&id);
        format!("{id}.{tag}")
    }

    /// Whether `session` is an id some replica of this gateway issued.
    pub fn session_valid(&self, session: &str) -> bool {
        let Some((id, tag)) = session.split_once('.') else {
            return false;
        };
        let Ok(expected) = hex::decode(tag) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.session_key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.verify_truncated_left(&expected).is_ok() && expected.len() == 16
    }

    fn tag(&self, id: &str) -> String {
        match Hmac::<Sha256>::new_from_slice(&self.session_key) {
            Ok(mut mac) => {
                mac.update(id.as_bytes());
                hex::encode(&mac.finalize().into_bytes()[..16])
            }
            Err(_) => String::new(),
        }
    }
}

/// The host of an origin or URL (`scheme://host[:port]`), with its port.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// A `Host` value without its port.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

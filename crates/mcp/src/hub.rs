//! The servers behind the gateway and what they list: tools, prompts, resources and resource
//! templates, fetched page by page, kept until the server says its list changed
//! (`notifications/*/list_changed`) or its `list_ttl` has passed (`mcp.list_ttl`, 5 minutes
//! unless configured; zero keeps nothing), and fetched again at most once at a time.
//!
//! Each entry is kept twice, as JSON ready to send: as the server wrote it (for
//! `/mcp/<server>`) and with its name or URI made public (for `/mcp`, see [`crate::names`]),
//! so that answering a list is filtering and concatenating, never parsing. A server whose list
//! cannot be fetched lists nothing on the aggregated endpoint; the other servers are
//! unaffected.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use portcullis_policy::ToolHints;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::{McpConfig, ServerSpec};
use crate::jsonrpc::{ErrorObject, Message, UPSTREAM_ERROR};
use crate::names::{self, ServerNames};
use crate::upstream::{Reply, Status, Upstream, UpstreamError};

/// Most pages read of one list.
const MAX_PAGES: usize = 100;

/// What a server lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    Templates,
}

impl ListKind {
    /// Every kind.
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The member of the result that holds the entries.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The member of an entry that names it.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }

    /// The kind a `list_changed` notification invalidates.
    pub fn changed_by(method: &str) -> &'static [ListKind] {
        match method {
            "notifications/tools/list_changed" => &[ListKind::Tools],
            "notifications/prompts/list_changed" => &[ListKind::Prompts],
            "notifications/resources/list_changed" => &[ListKind::Resources, ListKind::Templates],
            _ => &[],
        }
    }

    fn index(self) -> usize {
        match self {
            ListKind::Tools => 0,
            ListKind::Prompts => 1,
            ListKind::Resources => 2,
            ListKind::Templates => 3,
        }
    }
}

/// One listed entry.
#[derive(Debug)]
pub struct Entry {
    /// Its name or URI as the server lists it.
    pub own: String,
    /// Its name or URI on the aggregated endpoint.
    pub public: String,
    /// The entry as the server wrote it.
    pub direct: Box<RawValue>,
    /// The entry with its public name or URI.
    pub aggregated: Box<RawValue>,
    /// A tool's `annotations` hints (`destructiveHint`, `readOnlyHint`); none for other kinds.
    pub hints: ToolHints,
}

/// One server's list of one kind.
#[derive(Debug)]
pub struct Listing {
    /// The entries, in the server's order.
    pub entries: Vec<Entry>,
    names: ServerNames,
    /// When it was fetched.
    pub fetched: Instant,
    /// Its tools' fingerprints, once recorded in the pins (`crate::pins`).
    pub(crate) fingerprints: tokio::sync::OnceCell<crate::pins::Fingerprints>,
}

impl Listing {
    /// The server's own name behind a public tool or prompt name.
    pub fn own_name(&self, public: &str) -> Option<&str> {
        self.names.own(public)
    }

    /// The entry whose own name or URI is `own`.
    pub fn entry(&self, own: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.own == own)
    }
}

/// Why a list could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListError {
    /// The server failed or did not answer.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The server answered the list request with an error.
    #[error("MCP server `{server}` refused `{method}`: {message}")]
    Refused {
        /// The server.
        server: String,
        /// The list method.
        method: &'static str,
        /// The server's error message.
        message: String,
        /// The server's error code.
        code: i64,
    },
    /// The server's answer is not a list.
    #[error("MCP server `{server}` answered `{method}` with something that is not a list")]
    Invalid {
        /// The server.
        server: String,
        /// The list method.
        method: &'static str,
    },
}

impl ListError {
    /// The JSON-RPC error a client gets.
    pub fn to_error_object(&self) -> ErrorObject {
        match self {
            ListError::Refused { code, message, .. } => ErrorObject::new(*code, message.clone()),
            ListError::Upstream(_) | ListError::Invalid { .. } => {
                ErrorObject::new(UPSTREAM_ERROR, self.to_string())
            }
        }
    }
}

/// One server behind the gateway.
#[derive(Debug)]
pub struct Server {
    /// How it is configured.
    pub spec: ServerSpec,
    /// The connection.
    pub upstream: Arc<dyn Upstream>,
    /// Whose credential its connection carries: `""` for the shared connection, else the
    /// instance's identity key (`crate::credentials`); its tools are pinned in that scope
    /// (`crate::pins`).
    pub scope: Arc<str>,
    lists: [tokio::sync::Mutex<Option<Arc<Listing>>>; 4],
}

impl Server {
    /// A server over `upstream`, configured by `spec`, its lists dropped when it says they
    /// changed.
    pub(crate) fn start(spec: ServerSpec, upstream: Arc<dyn Upstream>) -> Arc<Server> {
        Self::start_in(spec, upstream, Arc::from(""))
    }

    /// [`Server::start`] for an instance carrying the credential whose identity key is
    /// `scope`.
    pub(crate) fn start_in(
        spec: ServerSpec,
        upstream: Arc<dyn Upstream>,
        scope: Arc<str>,
    ) -> Arc<Server> {
        let server = Arc::new(Server {
            spec,
            upstream,
            scope,
            lists: Default::default(),
        });
        watch_list_changes(&server);
        server
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its state.
    pub fn status(&self) -> Status {
        self.upstream.status()
    }

    /// Its list of `kind`: the one kept, or fetched now (one fetch at a time; callers
    /// arriving meanwhile get its result).
    pub async fn list(&self, kind: ListKind) -> Result<Arc<Listing>, ListError> {
        let mut slot = self.lists[kind.index()].lock().await;
        if let Some(listing) = slot.as_ref()
            && listing.fetched.elapsed() < self.spec.list_ttl
        {
            return Ok(listing.clone());
        }
        let listing = Arc::new(self.fetch(kind).await?);
        *slot = Some(listing.clone());
        Ok(listing)
    }

    /// Forgets the list of `kind`; the next request fetches it again.
    pub async fn invalidate(&self, kind: ListKind) {
        *self.lists[kind.index()].lock().await = None;
    }

    async fn fetch(&self, kind: ListKind) -> Result<Listing, ListError> {
        let server = self.name();
        let method = kind.method();
        let mut raw_entries: Vec<Box<RawValue>> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor
                .as_ref()
                .map(|c| crate::jsonrpc::raw(&serde_json::json!({ "cursor": c })));
            let reply = self
                .upstream
                .request(method, params.as_deref(), None, self.spec.timeout)
                .await?;
            let result = match reply {
                Reply::Result(r) => r,
                Reply::Error(e) if e.code == crate::jsonrpc::METHOD_NOT_FOUND => {
                    // A server without prompts or resources lists none.
                    break;
                }
                Reply::Error(e) => {
                    return Err(ListError::Refused {
                        server: server.to_owned(),
                        method,
                        message: e.message,
                        code: e.code,
                    });
                }
            };
            let mut page: Map<String, Value> =
                serde_json::from_str(result.get()).map_err(|_| ListError::Invalid {
                    server: server.to_owned(),
                    method,
                })?;
            match page.remove(kind.field()) {
                Some(Value::Array(items)) => {
                    for item in items {
                        raw_entries.push(crate::jsonrpc::raw(&item));
                    }
                }
                Some(_) => {
                    return Err(ListError::Invalid {
                        server: server.to_owned(),
                        method,
                    });
                }
                None => {}
            }
            cursor = match page.remove("nextCursor") {
                Some(Value::String(c)) if !c.is_empty() => Some(c),
                _ => None,
            };
            if cursor.is_none() {
                break;
            }
        }
        Ok(build_listing(server, kind, raw_entries))
    }
}

#[derive(Deserialize)]
struct Keyed<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "uriTemplate")]
    uri_template: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    annotations: Option<&'a RawValue>,
}

pub(crate) fn build_listing(
    server: &str,
    kind: ListKind,
    raw_entries: Vec<Box<RawValue>>,
) -> Listing {
    let mut owned: Vec<(String, Box<RawValue>, ToolHints)> = Vec::with_capacity(raw_entries.len());
    for raw in raw_entries {
        let Ok(keyed) = serde_json::from_str::<Keyed<'_>>(raw.get()) else {
            continue;
        };
        // Hints of another type than a boolean count as absent.
        let hints = match (kind, keyed.annotations) {
            (ListKind::Tools, Some(a)) => {
                let annotations = serde_json::from_str::<Value>(a.get()).ok();
                ToolHints::from_annotations(annotations.as_ref())
            }
            _ => ToolHints::NONE,
        };
        let own = match kind {
            ListKind::Tools | ListKind::Prompts => keyed.name,
            ListKind::Resources => keyed.uri,
            ListKind::Templates => keyed.uri_template,
        };
        // An entry without its key cannot be addressed: it is left out.
        if let Some(own) = own.filter(|o| !o.is_empty()) {
            owned.push((own.into_owned(), raw, hints));
        }
    }
    let names = match kind {
        ListKind::Tools | ListKind::Prompts => {
            ServerNames::new(server, owned.iter().map(|(o, _, _)| o.as_str()))
        }
        ListKind::Resources | ListKind::Templates => ServerNames::default(),
    };
    let entries = owned
        .into_iter()
        .filter_map(|(own, direct, hints)| {
            let public = match kind {
                ListKind::Tools | ListKind::Prompts => names.public(&own)?.to_owned(),
                ListKind::Resources | ListKind::Templates => names::public_uri(server, &own),
            };
            let aggregated = with_member(&direct, kind.key(), &public);
            Some(Entry {
                own,
                public,
                direct,
                aggregated,
                hints,
            })
        })
        .collect();
    Listing {
        entries,
        names,
        fetched: Instant::now(),
        fingerprints: tokio::sync::OnceCell::new(),
    }
}

/// `object` with member `key` set to `value`.
fn with_member(object: &RawValue, key: &str, value: &str) -> Box<RawValue> {
    match serde_json::from_str::<Map<String, Value>>(object.get()) {
        Ok(mut map) => {
            map.insert(key.to_owned(), Value::String(value.to_owned()));
            crate::jsonrpc::raw(&map)
        }
        Err(_) => crate::jsonrpc::raw(&serde_json::json!({ key: value })),
    }
}

/// Every server behind the gateway.
#[derive(Debug, Default)]
pub struct Hub {
    servers: BTreeMap<String, Arc<Server>>,
    /// The pins tools are checked against (`crate::pins`), if any.
    pub(crate) pins: Option<Arc<crate::pins::Pins>>,
}

impl Hub {
    /// The servers of `config`, each connected by `connect`; each server's lists are dropped
    /// when it says they changed.
    pub fn new(config: &McpConfig, connect: &dyn Fn(&ServerSpec) -> Arc<dyn Upstream>) -> Self {
        let mut servers = BTreeMap::new();
        for spec in &config.servers {
            let server = Server::start(spec.clone(), connect(spec));
            servers.insert(spec.name.clone(), server);
        }
        Self {
            servers,
            pins: None,
        }
    }

    /// The servers of `config`: a server whose entry is unchanged is this hub's, connection,
    /// lists and all; a new or changed entry is connected by `connect`. Also returns the
    /// servers of this hub that the new one no longer has, for the caller to shut down once
    /// the new hub is in use.
    pub fn reconfigured(
        &self,
        config: &McpConfig,
        connect: &dyn Fn(&ServerSpec) -> Arc<dyn Upstream>,
    ) -> (Hub, Vec<Arc<Server>>) {
        let mut servers = BTreeMap::new();
        for spec in &config.servers {
            let server = match self.servers.get(&spec.name) {
                Some(kept) if kept.spec == *spec => kept.clone(),
                _ => Server::start(spec.clone(), connect(spec)),
            };
            servers.insert(spec.name.clone(), server);
        }
        let gone = self
            .servers
            .values()
            .filter(|old| {
                servers
                    .get(old.name())
                    .is_none_or(|new| !Arc::ptr_eq(new, old))
            })
            .cloned()
            .collect();
        (
            Hub {
                servers,
                pins: self.pins.clone(),
            },
            gone,
        )
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.get(name)
    }

    /// Every server, in name order.
    pub fn servers(&self) -> impl Iterator<Item = &Arc<Server>> {
        self.servers.values()
    }

    /// Whether there are no servers.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The lists of `kind` of `servers`, fetched in parallel; a server that fails gives its
    /// error in its place.
    pub async fn lists<'s>(
        &self,
        servers: impl Iterator<Item = &'s Arc<Server>>,
        kind: ListKind,
    ) -> Vec<(&'s Arc<Server>, Result<Arc<Listing>, ListError>)> {
        let servers: Vec<&Arc<Server>> = servers.collect();
        let lists =
            futures_util::future::join_all(servers.iter().map(|server| server.list(kind))).await;
        servers.into_iter().zip(lists).collect()
    }

    /// Stops every server.
    pub async fn shutdown(&self) {
        futures_util::future::join_all(self.servers.values().map(|s| s.upstream.shutdown())).await;
    }
}

/// Drops `server`'s lists when it says they changed, for as long as the server exists.
fn watch_list_changes(server: &Arc<Server>) {
    let mut notifications = server.upstream.notifications();
    let server: Weak<Server> = Arc::downgrade(server);
    tokio::spawn(async move {
        loop {
            let message = match notifications.recv().await {
                Ok(m) => m,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Notifications were missed: any list may have changed.
                    let Some(server) = server.upgrade() else {
                        return;
                    };
                    for kind in ListKind::ALL {
                        server.invalidate(kind).await;
                    }
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Message::Notification(n) = message else {
                continue;
            };
            let kinds = ListKind::changed_by(&n.method);
            if kinds.is_empty() {
                continue;
            }
            let Some(server) = server.upgrade() else {
                return;
            };
            for kind in kinds {
                server.invalidate(*kind).await;
            }
        }
    });
}

/// The connection to `spec`'s server over its transport. A connection that cannot even be
/// set up (a URL the client refuses, say) is kept as a server that answers every call with
/// the reason, so that it shows as failing and never hides the other servers.
pub fn connect(spec: &ServerSpec) -> Arc<dyn Upstream> {
    use crate::config::Transport;
    use crate::upstream::{HttpUpstream, SseUpstream, StdioUpstream};
    let name = spec.name.clone();
    let made: Result<Arc<dyn Upstream>, UpstreamError> = match &spec.transport {
        Transport::Stdio(stdio) => StdioUpstream::start(name, stdio.clone(), spec.timeout)
            .map(|u| Arc::new(u) as Arc<dyn Upstream>),
        Transport::StreamableHttp(http) => HttpUpstream::connect(name, http, spec.timeout)
            .map(|u| Arc::new(u) as Arc<dyn Upstream>),
        Transport::Sse(http) => {
            SseUpstream::connect(name, http, spec.timeout).map(|u| Arc::new(u) as Arc<dyn Upstream>)
        }
    };
    made.unwrap_or_else(|error| {
        tracing::error!(server = %spec.name, "MCP server cannot be set up: {error}");
        Arc::new(Broken {
            name: spec.name.clone(),
            error,
            notifications: tokio::sync::broadcast::channel(1).0,
        })
    })
}

/// A server whose connection could not be set up.
#[derive(Debug)]
struct Broken {
    name: String,
    error: UpstreamError,
    notifications: tokio::sync::broadcast::Sender<Message>,
}

#[async_trait::async_trait]
impl Upstream for Broken {
    fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &self,
        _method: &str,
        _params: Option<&RawValue>,
        _related: Option<crate::upstream::Related>,
        _timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        Err(self.error.clone())
    }

    async fn notify(&self, _method: &str, _params: Option<&RawValue>) -> Result<(), UpstreamError> {
        Err(self.error.clone())
    }

    async fn respond(&self, _id: crate::jsonrpc::Id, _reply: Reply) -> Result<(), UpstreamError> {
        Err(self.error.clone())
    }

    fn info(&self) -> Option<Arc<crate::upstream::ServerInfo>> {
        None
    }

    fn notifications(&self) -> tokio::sync::broadcast::Receiver<Message> {
        self.notifications.subscribe()
    }

    fn status(&self) -> Status {
        Status::Failing
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_tools_annotations_give_its_hints_and_odd_ones_count_as_absent() {
        let listing = build_listing(
            "bank",
            ListKind::Tools,
            vec![
                raw(r#"{"name":"pay","annotations":{"destructiveHint":true}}"#),
                raw(
                    r#"{"name":"peek","annotations":{"destructiveHint":true,"readOnlyHint":true}}"#,
                ),
                raw(r#"{"name":"odd","annotations":{"destructiveHint":"yes"}}"#),
                raw(r#"{"name":"bare"}"#),
            ],
        );
        let hints = |own: &str| listing.entry(own).unwrap().hints;
        assert!(hints("pay").destructive && !hints("pay").read_only);
        assert!(hints("peek").destructive && hints("peek").read_only);
        assert_eq!(hints("odd"), ToolHints::NONE);
        assert_eq!(hints("bare"), ToolHints::NONE);
        assert_eq!(listing.entries.len(), 4);
    }
}

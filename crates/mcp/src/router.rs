//! Requests of MCP clients, answered from the servers behind the gateway.
//!
//! A request is handled in two steps, so that the gateway's own stages (limits, the log) run
//! between them: [`Hub::plan`] decides — answer here (`initialize`, `ping`, `server/discover`,
//! the lists, refusals) or forward to one server with the names put back as the server knows
//! them — and [`Hub::forward`] sends a forwarded request and returns its result, URIs made
//! public again and, for clients of the 2026 protocol, the members that revision requires.
//!
//! What a caller may use is decided by [`ToolAccess`]: lists leave out what it may not see, and
//! a `tools/call` of a tool it may not call — or of a name that resolves to no tool — is a
//! JSON-RPC error `-32602` naming the tool, the same for both, so that names cannot be probed.
//! The gateway's guardrails have their say through a [`ToolGate`] in the [`Ask`]: lists leave
//! out what it hides (before the page digest, so cursors follow what the caller sees), and a
//! forwarded `tools/call` carries its tool's annotation hints ([`Forward::hints`]) for the
//! gateway to decide on.

use std::borrow::Cow;
use std::sync::Arc;

use portcullis_policy::{ToolAccess, ToolHints};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::hub::{Hub, ListKind, Listing, Server};
use crate::jsonrpc::{ErrorObject, INVALID_PARAMS, METHOD_NOT_FOUND, Request, UPSTREAM_ERROR};
use crate::names;
use crate::pages::{self, ListDigest};
use crate::upstream::{Related, Reply};

/// The protocol versions of the initialize handshake the gateway speaks, newest first.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The protocol versions without a handshake the gateway speaks.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];
/// The `_meta` key of a 2026 request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// `/mcp`: every server the caller may use, names namespaced.
    All,
    /// `/mcp/<server>`: one server, its own names.
    Server(&'a Arc<Server>),
}

/// The agent guardrails' say on tools (the gateway's `tool_policies` and the session's trust):
/// whether a tool stays listed to this caller now.
pub trait ToolGate: Send + Sync + std::fmt::Debug {
    /// Whether the tool `public` (`<server>__<tool>`, whichever endpoint lists it), with its
    /// server's annotation `hints`, is listed.
    fn shows(&self, public: &str, hints: ToolHints) -> bool;

    /// Whether the listed tool `public` loses its `outputSchema` (its results reach the client
    /// rewritten, without the structured content the schema describes).
    fn hides_output_schema(&self, _public: &str) -> bool {
        false
    }
}

/// The hints of a called tool its server's listing does not show (or that cannot be read):
/// destructive, so that it needs a trusted context unless a rule says otherwise.
const UNKNOWN_TOOL: ToolHints = ToolHints {
    destructive: true,
    read_only: false,
};

/// Which generation of the protocol the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// With the initialize handshake (2025-11-25 and before).
    Legacy,
    /// Without it (2026-07-28): every result says its `resultType`, lists say how long they
    /// may be cached.
    Modern,
}

/// The caller's own instances of servers, which carry their (or their team's) credentials
/// (`crate::credentials`).
pub trait Instances: Send + Sync + std::fmt::Debug {
    /// The caller's instance of `server`, started if need be; `None` when they have none and
    /// the server's shared connection serves them.
    fn of(&self, server: &Server) -> Option<Result<Arc<Server>, ErrorObject>>;
}

/// A client's request, as the router sees it.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The endpoint.
    pub scope: Scope<'a>,
    /// The caller's own instances, if they may have any: lists, names and pins are read
    /// through the caller's instance of a server when they have one.
    pub instances: Option<&'a dyn Instances>,
    /// What the caller may use.
    pub access: ToolAccess<'a>,
    /// The client's protocol generation.
    pub era: Era,
    /// Entries per page of a list.
    pub page_size: usize,
    /// The guardrails, when a list may hide tools by policy and a call needs its tool's hints.
    pub gate: Option<&'a dyn ToolGate>,
}

/// What became of a request, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answered by the gateway itself.
    Answered,
    /// Sent to a server, which answered.
    Forwarded,
    /// Refused: the caller may not use what it asked for, or it does not exist.
    Refused,
    /// Sent to a server, which failed or did not answer.
    Failed,
    /// Not understood (unknown method, invalid parameters).
    Invalid,
    /// Refused: the tool's definition changed since it was pinned and awaits an admin's
    /// approval (`crate::pins`).
    Withheld,
}

impl Decision {
    /// `answered`, `forwarded`, `refused`, `failed`, `invalid` or `withheld`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Answered => "answered",
            Decision::Forwarded => "forwarded",
            Decision::Refused => "refused",
            Decision::Failed => "failed",
            Decision::Invalid => "invalid",
            Decision::Withheld => "withheld",
        }
    }
}

/// What the log says of a request.
#[derive(Debug, Clone)]
pub struct Note {
    /// The method.
    pub method: String,
    /// The server it went to, if any.
    pub server: Option<String>,
    /// The tool or prompt (its public name on `/mcp`, its own on `/mcp/<server>`).
    pub tool: Option<String>,
    /// The SHA-256 of the arguments as sent, for a call ([`arguments_digest`]).
    pub arguments_digest: Option<String>,
    /// What became of it.
    pub decision: Decision,
    /// Why the answer is not the server's own, when the gateway rewrote it (a quarantined
    /// result: `quarantined` or `quarantine_failed`).
    pub rewritten: Option<&'static str>,
}

/// The router's first decision.
#[derive(Debug)]
pub enum Plan {
    /// The answer, now.
    Answer(Result<Box<RawValue>, ErrorObject>, Note),
    /// Forward to a server.
    Forward(Forward),
}

/// A request to send to one server.
#[derive(Debug)]
pub struct Forward {
    /// The server.
    pub server: Arc<Server>,
    /// The method.
    pub method: String,
    /// The parameters, names and URIs as the server knows them.
    pub params: Option<Box<RawValue>>,
    /// What the log says.
    pub note: Note,
    /// For a `tools/call` under a [`ToolGate`]: the annotation hints of the tool as its server
    /// lists it (a tool the listing cannot be read for counts as destructive).
    pub hints: ToolHints,
    /// Whether URIs in the result are made public (the aggregated endpoint).
    public_uris: bool,
    era: Era,
}

impl Forward {
    /// The tool called, when it is a `tools/call` (for limits with `scope: tool`).
    pub fn tool(&self) -> Option<&str> {
        if self.method == "tools/call" {
            self.note.tool.as_deref()
        } else {
            None
        }
    }
}

impl Hub {
    /// Decides what to do with `request` (see the module documentation).
    pub async fn plan(&self, ask: &Ask<'_>, request: &Request) -> Plan {
        let method = request.method.as_str();
        let params = request.params.as_deref();
        let note = |decision: Decision| Note {
            method: method.to_owned(),
            server: match ask.scope {
                Scope::Server(s) => Some(s.name().to_owned()),
                Scope::All => None,
            },
            tool: None,
            arguments_digest: None,
            decision,
            rewritten: None,
        };
        let answer = |result: Result<Box<RawValue>, ErrorObject>, decision: Decision| {
            Plan::Answer(result, note(decision))
        };
        match method {
            "initialize" => answer(Ok(self.initialize_result(ask, params)), Decision::Answered),
            "ping" => answer(Ok(finish(empty(), ask.era, false)), Decision::Answered),
            "server/discover" => answer(Ok(self.discover_result(ask)), Decision::Answered),
            "logging/setLevel" if matches!(ask.scope, Scope::All) => {
                answer(Ok(finish(empty(), ask.era, false)), Decision::Answered)
            }
            "tools/list" => self.plan_list(ask, ListKind::Tools, params, note).await,
            "prompts/list" => self.plan_list(ask, ListKind::Prompts, params, note).await,
            "resources/list" => self.plan_list(ask, ListKind::Resources, params, note).await,
            "resources/templates/list" => {
                self.plan_list(ask, ListKind::Templates, params, note).await
            }
            "tools/call" | "prompts/get" => self.plan_named(ask, request, note).await,
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.plan_uri(ask, request, note)
            }
            "completion/complete" => self.plan_completion(ask, request, note).await,
            _ => match ask.scope {
                // A server's own endpoint passes on what it does not know itself.
                Scope::Server(server) => Plan::Forward(Forward {
                    server: Arc::clone(server),
                    method: method.to_owned(),
                    params: request.params.clone(),
                    note: note(Decision::Forwarded),
                    hints: ToolHints::NONE,
                    public_uris: false,
                    era: ask.era,
                }),
                Scope::All => answer(
                    Err(ErrorObject::new(
                        METHOD_NOT_FOUND,
                        format!("Method not found: `{method}`"),
                    )),
                    Decision::Invalid,
                ),
            },
        }
    }

    /// Sends a forwarded request; messages the server sends on the way go to `related`.
    pub async fn forward(
        &self,
        forward: &Forward,
        related: Option<Related>,
    ) -> (Result<Box<RawValue>, ErrorObject>, Decision) {
        self.forward_via(forward, &*forward.server.upstream, related)
            .await
    }

    /// [`Hub::forward`] over `upstream`: the server's instance that carries one user's or
    /// team's own credentials (`crate::credentials`).
    pub async fn forward_via(
        &self,
        forward: &Forward,
        upstream: &dyn crate::upstream::Upstream,
        related: Option<Related>,
    ) -> (Result<Box<RawValue>, ErrorObject>, Decision) {
        let server = &forward.server;
        // Upstream connections speak the handshake generation: a 2026 request's envelope
        // (`io.modelcontextprotocol/…` in `_meta`) is not theirs to read.
        let params = match forward.era {
            Era::Modern => forward.params.as_deref().map(without_envelope),
            Era::Legacy => None,
        };
        let params = match &params {
            Some(p) => Some(&**p),
            None => forward.params.as_deref(),
        };
        let reply = upstream
            .request(&forward.method, params, related, server.spec.timeout)
            .await;
        match reply {
            Ok(Reply::Result(result)) => {
                let result = if forward.public_uris && forward.method == "resources/read" {
                    public_contents(server.name(), &result).unwrap_or(result)
                } else {
                    result
                };
                (Ok(finish(result, forward.era, false)), Decision::Forwarded)
            }
            Ok(Reply::Error(e)) => (Err(e), Decision::Forwarded),
            Err(e) => (
                Err(ErrorObject::new(UPSTREAM_ERROR, e.to_string())),
                Decision::Failed,
            ),
        }
    }

    /// What the caller reaches `server` through: their own instance of it, if any, else the
    /// server's shared connection.
    fn via(&self, ask: &Ask<'_>, server: &Arc<Server>) -> Result<Arc<Server>, ErrorObject> {
        match ask.instances.and_then(|i| i.of(server)) {
            Some(instance) => instance,
            None => Ok(Arc::clone(server)),
        }
    }

    /// `server`'s list of `kind` as the caller sees it (through their own instance, if any).
    async fn list_for(
        &self,
        ask: &Ask<'_>,
        server: &Arc<Server>,
        kind: ListKind,
    ) -> Result<Arc<Listing>, ErrorObject> {
        Ok(self.list_via(ask, server, kind).await?.1)
    }

    /// [`Hub::list_for`], with the server it was read through (whose scope its tools are
    /// pinned in).
    async fn list_via(
        &self,
        ask: &Ask<'_>,
        server: &Arc<Server>,
        kind: ListKind,
    ) -> Result<(Arc<Server>, Arc<Listing>), ErrorObject> {
        let source = self.via(ask, server)?;
        let listing = source.list(kind).await.map_err(|e| e.to_error_object())?;
        Ok((source, listing))
    }

    async fn plan_list(
        &self,
        ask: &Ask<'_>,
        kind: ListKind,
        params: Option<&RawValue>,
        note: impl Fn(Decision) -> Note,
    ) -> Plan {
        // The lists of every server in scope, held while their entries are paged, each with
        // the instance it was read through.
        let mut listings: Vec<(Arc<Server>, Arc<Listing>)> = Vec::new();
        match ask.scope {
            Scope::Server(server) => match self.list_via(ask, server, kind).await {
                Ok(read) => listings.push(read),
                Err(e) => {
                    return Plan::Answer(Err(e), note(Decision::Failed));
                }
            },
            Scope::All => {
                // In parallel, each through the caller's own instance of it when they have one.
                let usable: Vec<&Arc<Server>> = self
                    .servers()
                    .filter(|s| ask.access.allows_server(s.name()))
                    .collect();
                let lists = futures_util::future::join_all(
                    usable.iter().map(|server| self.list_via(ask, server, kind)),
                )
                .await;
                for (server, listing) in usable.into_iter().zip(lists) {
                    match listing {
                        Ok(read) => listings.push(read),
                        // One server failing leaves the others' entries listed.
                        Err(e) => {
                            tracing::warn!(server = server.name(), "listing skipped: {}", e.message)
                        }
                    }
                }
            }
        }
        let aggregated = matches!(ask.scope, Scope::All);
        let mut scratch = String::new();
        let mut digest = ListDigest::new(kind.method());
        let mut visible: Vec<Cow<'_, RawValue>> = Vec::new();
        // Tools whose definition changed since it was pinned are left out (`crate::pins`).
        let pinned = futures_util::future::join_all(listings.iter().map(|(server, listing)| {
            let tools = kind == ListKind::Tools;
            async move {
                match tools {
                    true => self.pinned(server, listing).await,
                    false => None,
                }
            }
        }))
        .await;
        for ((server, listing), pinned) in listings.iter().zip(pinned) {
            for e in &listing.entries {
                if kind != ListKind::Tools
                    || (ask.access.allows_tool(server.name(), &e.own, &mut scratch)
                        && self.shows_tool(server, pinned, &e.own)
                        && ask.gate.is_none_or(|g| g.shows(&e.public, e.hints)))
                {
                    let entry: &RawValue = if aggregated {
                        digest.push(&e.public);
                        &e.aggregated
                    } else {
                        digest.push(&e.own);
                        &e.direct
                    };
                    let plain = kind == ListKind::Tools
                        && ask.gate.is_some_and(|g| g.hides_output_schema(&e.public));
                    visible.push(match plain {
                        true => Cow::Owned(without_output_schema(entry)),
                        false => Cow::Borrowed(entry),
                    });
                }
            }
        }
        let digest = digest.finish();
        let cursor = params
            .and_then(|p| serde_json::from_str::<Cursor>(p.get()).ok())
            .and_then(|c| c.cursor);
        let start = match cursor {
            None => 0,
            Some(c) => match pages::offset(&c, &digest).filter(|o| *o <= visible.len()) {
                Some(o) => o,
                // Not a cursor of this list as it is now: the client lists again.
                None => {
                    return Plan::Answer(
                        Err(ErrorObject::new(
                            INVALID_PARAMS,
                            "Invalid cursor: the list changed or the cursor is not one this \
                             gateway gave; list again without a cursor",
                        )),
                        note(Decision::Invalid),
                    );
                }
            },
        };
        let end = start
            .saturating_add(ask.page_size.max(1))
            .min(visible.len());
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(kind.field().as_bytes());
        out.extend_from_slice(b"\":[");
        for (i, entry) in visible[start..end].iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(entry.get().as_bytes());
        }
        out.push(b']');
        if end < visible.len() {
            out.extend_from_slice(b",\"nextCursor\":\"");
            out.extend_from_slice(pages::cursor(end, &digest).as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
        let result = raw_from(out);
        Plan::Answer(Ok(finish(result, ask.era, true)), note(Decision::Answered))
    }

    /// `tools/call` and `prompts/get`: the name resolved to a server and its own name.
    async fn plan_named(
        &self,
        ask: &Ask<'_>,
        request: &Request,
        note: impl Fn(Decision) -> Note,
    ) -> Plan {
        let is_tool = request.method == "tools/call";
        let what = if is_tool { "Tool" } else { "Prompt" };
        let Some(mut params) = object(request.params.as_deref()) else {
            return Plan::Answer(
                Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params` must be an object with a `name`",
                )),
                note(Decision::Invalid),
            );
        };
        let Some(name) = params
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Plan::Answer(
                Err(ErrorObject::new(
                    INVALID_PARAMS,
                    "`params.name` is required",
                )),
                note(Decision::Invalid),
            );
        };
        let arguments_digest = is_tool.then(|| arguments_digest(request.params.as_deref()));
        let refused = |note: Note| {
            Plan::Answer(
                Err(ErrorObject::new(
                    INVALID_PARAMS,
                    format!("{what} `{name}` is not available to this caller"),
                )),
                note,
            )
        };
        let mut base = note(Decision::Refused);
        // The log and `scope: tool` limits name a tool the same on both endpoints.
        base.tool = Some(match ask.scope {
            Scope::Server(server) => names::public(server.name(), &name),
            Scope::All => name.clone(),
        });
        base.arguments_digest = arguments_digest;
        let mut scratch = String::new();
        let mut hints = ToolHints::NONE;
        let (server, own, public_uris) = match ask.scope {
            Scope::Server(server) => (server, name.clone(), false),
            Scope::All => {
                let Some(server) = names::split(&name)
                    .and_then(|(server, _)| self.server(server))
                    .filter(|s| ask.access.allows_server(s.name()))
                else {
                    return refused(base);
                };
                base.server = Some(server.name().to_owned());
                let kind = if is_tool {
                    ListKind::Tools
                } else {
                    ListKind::Prompts
                };
                let own = match self.list_for(ask, server, kind).await {
                    Ok(listing) => listing.own_name(&name).map(|own| {
                        if is_tool && ask.gate.is_some() {
                            hints = listing.entry(own).map_or(UNKNOWN_TOOL, |e| e.hints);
                        }
                        own.to_owned()
                    }),
                    Err(e) => {
                        base.decision = Decision::Failed;
                        return Plan::Answer(Err(e), base);
                    }
                };
                let Some(own) = own else {
                    return refused(base);
                };
                (server, own, true)
            }
        };
        if is_tool && !ask.access.allows_tool(server.name(), &own, &mut scratch) {
            return refused(base);
        }
        if is_tool && ask.gate.is_some() && !public_uris {
            hints = match self.list_for(ask, server, ListKind::Tools).await {
                Ok(listing) => listing.entry(&own).map_or(UNKNOWN_TOOL, |e| e.hints),
                Err(_) => UNKNOWN_TOOL,
            };
        }
        // A tool whose definition changed since it was pinned is not called (`crate::pins`).
        if is_tool {
            let callable = match self.via(ask, server) {
                Ok(source) => self
                    .tool_callable(&source, &own)
                    .await
                    .map_err(|e| e.to_error_object()),
                Err(e) => Err(e),
            };
            match callable {
                Ok(true) => {}
                Ok(false) => {
                    base.decision = Decision::Withheld;
                    return Plan::Answer(
                        Err(ErrorObject::new(
                            INVALID_PARAMS,
                            format!(
                                "Tool `{name}` is withheld: its definition changed since it was \
                                 approved and awaits an admin's approval"
                            ),
                        )),
                        base,
                    );
                }
                Err(e) => {
                    base.decision = Decision::Failed;
                    return Plan::Answer(Err(e), base);
                }
            }
        }
        let params = if public_uris {
            params.insert("name".to_owned(), Value::String(own));
            Some(crate::jsonrpc::raw(&params))
        } else {
            request.params.clone()
        };
        base.decision = Decision::Forwarded;
        Plan::Forward(Forward {
            server: Arc::clone(server),
            method: request.method.clone(),
            params,
            note: base,
            hints,
            public_uris,
            era: ask.era,
        })
    }

    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`: the URI routed back.
    fn plan_uri(&self, ask: &Ask<'_>, request: &Request, note: impl Fn(Decision) -> Note) -> Plan {
        match ask.scope {
            Scope::Server(server) => Plan::Forward(Forward {
                server: Arc::clone(server),
                method: request.method.clone(),
                params: request.params.clone(),
                note: note(Decision::Forwarded),
                hints: ToolHints::NONE,
                public_uris: false,
                era: ask.era,
            }),
            Scope::All => {
                let mut params = object(request.params.as_deref()).unwrap_or_default();
                let uri = params
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let Some((server, own)) = names::split_uri(&uri)
                    .and_then(|(s, own)| Some((self.server(s)?, own)))
                    .filter(|(s, _)| ask.access.allows_server(s.name()))
                else {
                    return Plan::Answer(
                        Err(ErrorObject::new(
                            INVALID_PARAMS,
                            format!("Resource `{uri}` is not available to this caller"),
                        )),
                        note(Decision::Refused),
                    );
                };
                params.insert("uri".to_owned(), Value::String(own.to_owned()));
                let mut n = note(Decision::Forwarded);
                n.server = Some(server.name().to_owned());
                Plan::Forward(Forward {
                    server: Arc::clone(server),
                    method: request.method.clone(),
                    params: Some(crate::jsonrpc::raw(&params)),
                    note: n,
                    hints: ToolHints::NONE,
                    public_uris: true,
                    era: ask.era,
                })
            }
        }
    }

    /// `completion/complete`: the prompt or resource it completes for, routed back.
    async fn plan_completion(
        &self,
        ask: &Ask<'_>,
        request: &Request,
        note: impl Fn(Decision) -> Note,
    ) -> Plan {
        let Scope::All = ask.scope else {
            return self.plan_uri(ask, request, note);
        };
        let mut params = object(request.params.as_deref()).unwrap_or_default();
        let reference = params.get("ref").cloned().unwrap_or(Value::Null);
        let kind = reference.get("type").and_then(Value::as_str).unwrap_or("");
        let unavailable = |what: &str| {
            Plan::Answer(
                Err(ErrorObject::new(
                    INVALID_PARAMS,
                    format!("`{what}` is not available to this caller"),
                )),
                note(Decision::Refused),
            )
        };
        let (server, rewritten) = match kind {
            "ref/prompt" => {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(server) = names::split(name)
                    .and_then(|(s, _)| self.server(s))
                    .filter(|s| ask.access.allows_server(s.name()))
                else {
                    return unavailable(name);
                };
                let own = match self.list_for(ask, server, ListKind::Prompts).await {
                    Ok(l) => l.own_name(name).map(str::to_owned),
                    Err(_) => None,
                };
                let Some(own) = own else {
                    return unavailable(name);
                };
                (
                    server,
                    serde_json::json!({"type": "ref/prompt", "name": own}),
                )
            }
            "ref/resource" => {
                let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                let Some((server, own)) = names::split_uri(uri)
                    .and_then(|(s, own)| Some((self.server(s)?, own)))
                    .filter(|(s, _)| ask.access.allows_server(s.name()))
                else {
                    return unavailable(uri);
                };
                (
                    server,
                    serde_json::json!({"type": "ref/resource", "uri": own}),
                )
            }
            _ => {
                return Plan::Answer(
                    Err(ErrorObject::new(
                        INVALID_PARAMS,
                        "`params.ref` must be a `ref/prompt` or a `ref/resource`",
                    )),
                    note(Decision::Invalid),
                );
            }
        };
        params.insert("ref".to_owned(), rewritten);
        let mut n = note(Decision::Forwarded);
        n.server = Some(server.name().to_owned());
        Plan::Forward(Forward {
            server: Arc::clone(server),
            method: request.method.clone(),
            params: Some(crate::jsonrpc::raw(&params)),
            note: n,
            hints: ToolHints::NONE,
            public_uris: true,
            era: ask.era,
        })
    }

    fn initialize_result(&self, ask: &Ask<'_>, params: Option<&RawValue>) -> Box<RawValue> {
        #[derive(Deserialize)]
        struct Init<'a> {
            #[serde(borrow, rename = "protocolVersion")]
            protocol_version: Option<Cow<'a, str>>,
        }
        let asked = params
            .and_then(|p| serde_json::from_str::<Init<'_>>(p.get()).ok())
            .and_then(|i| i.protocol_version);
        let version = asked
            .as_deref()
            .filter(|v| HANDSHAKE_VERSIONS.contains(v))
            .unwrap_or(HANDSHAKE_VERSIONS[0]);
        match ask.scope {
            Scope::Server(server) => {
                // The server's own answer, in the version agreed with this client.
                let own = server
                    .upstream
                    .info()
                    .and_then(|info| object(Some(&info.initialize_result)));
                let mut result = own.unwrap_or_else(|| {
                    let mut m = Map::new();
                    m.insert("capabilities".into(), self.capabilities());
                    m.insert(
                        "serverInfo".into(),
                        serde_json::json!({"name": server.name(), "version": "unknown"}),
                    );
                    m
                });
                result.insert("protocolVersion".into(), Value::String(version.to_owned()));
                crate::jsonrpc::raw(&result)
            }
            Scope::All => crate::jsonrpc::raw(&serde_json::json!({
                "protocolVersion": version,
                "capabilities": self.capabilities(),
                "serverInfo": server_info(),
                "instructions": self.instructions(),
            })),
        }
    }

    fn discover_result(&self, ask: &Ask<'_>) -> Box<RawValue> {
        let capabilities = match ask.scope {
            Scope::Server(server) => server
                .upstream
                .info()
                .and_then(|info| object(Some(&info.initialize_result)))
                .and_then(|mut m| m.remove("capabilities"))
                .unwrap_or_else(|| self.capabilities()),
            Scope::All => self.capabilities(),
        };
        let result = crate::jsonrpc::raw(&serde_json::json!({
            "supportedVersions": MODERN_VERSIONS,
            "capabilities": capabilities,
            "instructions": self.instructions(),
            "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
        }));
        finish(result, Era::Modern, true)
    }

    fn capabilities(&self) -> Value {
        serde_json::json!({
            "tools": {"listChanged": true},
            "prompts": {"listChanged": true},
            "resources": {"listChanged": true},
            "completions": {},
            "logging": {},
        })
    }

    fn instructions(&self) -> String {
        let names: Vec<&str> = self.servers().map(|s| s.name()).collect();
        format!(
            "Tools, prompts and resources of the MCP servers {} through the Portcullis gateway. \
             Tool and prompt names are `<server>__<name>`.",
            names.join(", ")
        )
    }
}

fn server_info() -> Value {
    serde_json::json!({
        "name": "portcullis",
        "title": "Portcullis MCP gateway",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Deserialize)]
struct Cursor {
    #[serde(default)]
    cursor: Option<String>,
}

/// `params` as an object, when it is one.
fn object(params: Option<&RawValue>) -> Option<Map<String, Value>> {
    serde_json::from_str(params?.get()).ok()
}

fn empty() -> Box<RawValue> {
    crate::jsonrpc::empty_object()
}

fn raw_from(bytes: Vec<u8>) -> Box<RawValue> {
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| RawValue::from_string(s).ok())
        .unwrap_or_else(empty)
}

/// The SHA-256 (64 hex digits) of a call's arguments as sent — their JSON text, untouched;
/// empty when absent or unreadable: the one digest of a call's arguments that the request log,
/// the audit and the approvals use.
pub fn arguments_digest(params: Option<&RawValue>) -> String {
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow, default)]
        arguments: Option<&'a RawValue>,
    }
    let text = params
        .and_then(|p| serde_json::from_str::<Params<'_>>(p.get()).ok())
        .and_then(|p| p.arguments)
        .map_or("", RawValue::get);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A result as the client's generation wants it: for 2026 clients, `resultType` and, for
/// lists (`cacheable`), `ttlMs` and `cacheScope` (`private`: what a caller sees depends on
/// who it is).
pub fn finish(result: Box<RawValue>, era: Era, cacheable: bool) -> Box<RawValue> {
    if era == Era::Legacy {
        return result;
    }
    let text = result.get();
    let Some(body) = text.trim_start().strip_prefix('{') else {
        return result;
    };
    if text.contains("\"resultType\"") {
        // A server of the same generation said it already.
        return result;
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push('{');
    out.push_str("\"resultType\":\"complete\"");
    if cacheable {
        out.push_str(",\"ttlMs\":0,\"cacheScope\":\"private\"");
    }
    if !body.trim_start().starts_with('}') {
        out.push(',');
    }
    out.push_str(body);
    RawValue::from_string(out).unwrap_or(result)
}

/// A tool's listing entry without its `outputSchema`.
fn without_output_schema(entry: &RawValue) -> Box<RawValue> {
    let Ok(mut map) = serde_json::from_str::<Map<String, Value>>(entry.get()) else {
        return entry.to_owned();
    };
    if map.remove("outputSchema").is_none() {
        return entry.to_owned();
    }
    serde_json::value::to_raw_value(&map).unwrap_or_else(|_| entry.to_owned())
}

/// `params` without the 2026 envelope's members in `_meta` (an emptied `_meta` goes too).
fn without_envelope(params: &RawValue) -> Box<RawValue> {
    let Ok(mut map) = serde_json::from_str::<Map<String, Value>>(params.get()) else {
        return params.to_owned();
    };
    let Some(Value::Object(meta)) = map.get_mut("_meta") else {
        return params.to_owned();
    };
    meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
    if meta.is_empty() {
        map.remove("_meta");
    }
    crate::jsonrpc::raw(&map)
}

/// A `resources/read` result with each content's URI made public.
fn public_contents(server: &str, result: &RawValue) -> Option<Box<RawValue>> {
    let mut map: Map<String, Value> = serde_json::from_str(result.get()).ok()?;
    if let Some(Value::Array(contents)) = map.get_mut("contents") {
        for content in contents {
            if let Some(Value::String(uri)) = content.get_mut("uri") {
                *uri = names::public_uri(server, uri);
            }
        }
    }
    Some(crate::jsonrpc::raw(&map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_digest_is_the_sha256_of_their_json_text_as_sent() {
        let text = r#"{"path": "/srv/a b",  "n": [1, 2.5, null], "ü": true}"#;
        let params =
            RawValue::from_string(format!(r#"{{"name":"read","arguments":{text}}}"#)).unwrap();
        assert_eq!(
            arguments_digest(Some(&params)),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        let bare = RawValue::from_string(r#"{"name":"read"}"#.to_owned()).unwrap();
        assert_eq!(
            arguments_digest(Some(&bare)),
            hex::encode(Sha256::digest(b""))
        );
        assert_eq!(arguments_digest(None).len(), 64);
    }

    #[test]
    fn a_tool_listed_without_its_output_schema_keeps_the_rest() {
        let entry = RawValue::from_string(
            r#"{"name":"read","inputSchema":{"type":"object"},"outputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}"#
                .to_owned(),
        )
        .unwrap();
        let plain: Value = serde_json::from_str(without_output_schema(&entry).get()).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"name": "read", "inputSchema": {"type": "object"},
                "annotations": {"readOnlyHint": true}})
        );
        let bare = RawValue::from_string(r#"{"name":"x"}"#.to_owned()).unwrap();
        assert_eq!(without_output_schema(&bare).get(), bare.get());
    }

    #[test]
    fn the_2026_envelope_stays_out_of_upstream_requests() {
        let p = RawValue::from_string(
            r#"{"name":"add","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":7}}"#
                .into(),
        )
        .unwrap();
        assert_eq!(
            without_envelope(&p).get(),
            r#"{"_meta":{"progressToken":7},"name":"add"}"#
        );
        let q = RawValue::from_string(
            r#"{"name":"add","_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}"#.into(),
        )
        .unwrap();
        assert_eq!(without_envelope(&q).get(), r#"{"name":"add"}"#);
    }

    #[test]
    fn modern_results_say_their_type_and_lists_their_cache_scope() {
        let r = RawValue::from_string(r#"{"content":[]}"#.into()).unwrap();
        assert_eq!(finish(r.clone(), Era::Legacy, false).get(), r.get());
        assert_eq!(
            finish(r, Era::Modern, false).get(),
            r#"{"resultType":"complete","content":[]}"#
        );
        let e = RawValue::from_string("{}".into()).unwrap();
        assert_eq!(
            finish(e, Era::Modern, true).get(),
            r#"{"resultType":"complete","ttlMs":0,"cacheScope":"private"}"#
        );
    }
}

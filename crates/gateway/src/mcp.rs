//! `/mcp` and `/mcp/<server>`: the MCP gateway's Streamable HTTP endpoints, as the pipeline's
//! stages (`crate::pipeline`):
//!
//! **guard** (`Host` and `Origin`: DNS rebinding) → authenticate → decode (one JSON-RPC
//! message; the protocol generation from `MCP-Protocol-Version` and the request's `_meta`) →
//! authorize (the key's `tools` globs, through `portcullis_mcp::router`) → admit (limits with
//! `scope: tool` and `scope: server` for a `tools/call`) → dispatch (the server) → respond
//! (JSON, or an SSE stream once the server sends progress or requests on the way) → record.
//!
//! Both endpoints take the LLM API's credentials. Without them the answer is 401 with
//! `WWW-Authenticate: Bearer resource_metadata="<base>/.well-known/oauth-protected-resource/mcp[/<server>]"`,
//! the document served there. A refused or unknown tool is a JSON-RPC error sent with HTTP
//! 200; HTTP error statuses are kept for what breaks the transport: a body that is not JSON
//! (400, `-32700`) or not JSON-RPC (400, `-32600`), a foreign `Host`/`Origin` (403), an
//! unknown server (404), a session id the gateway never issued (404).
//!
//! Sessions are stateless: `initialize` answers with an `Mcp-Session-Id` signed with a key
//! kept in the database ([`session_key`]), which any replica — and the same gateway after a
//! restart — verifies without storing anything per session. Clients of the 2026 protocol have no sessions.
//!
//! In the request log an MCP request is a record with endpoint `mcp`, its server as
//! `provider` and its tool (or prompt) as `model`, so `/admin/usage` groups by both; its
//! metadata holds the method, the decision and a digest of the arguments.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use portcullis_core::{ErrorKind, GatewayError};
use portcullis_identity::Principal;
use portcullis_limits::{Estimate, Subjects};
use portcullis_mcp::hub::ListKind;
use portcullis_mcp::jsonrpc::{
    ErrorObject, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, Id, Message, Outcome,
    RATE_LIMITED, Request as RpcRequest, Response as RpcResponse, UPSTREAM_ERROR,
};
use portcullis_mcp::router::{
    Ask, Decision, Era, HANDSHAKE_VERSIONS, META_PROTOCOL_VERSION, MODERN_VERSIONS, Note, Plan,
    Scope,
};
use portcullis_mcp::upstream::Reply;
use portcullis_policy::ToolAccess;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::mcp_endpoint::McpEndpoint;
use crate::mcp_handoff::{self, Asked, Handoff, Retried};
use crate::mcp_relay::{AskHandler, Replier};
use crate::mcp_streams::{CallEvent, CallEvents, Gone, Kind, Owner, ParkedCall, Stream};
use crate::pipeline::{Exchange, Operation, Stage};
use crate::request_log::RequestLog;
use crate::state::AppState;

/// `MCP-Protocol-Version`.
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Session-Id`.
const SESSION_ID: &str = "mcp-session-id";
/// `Mcp-Method` (2026).
const MCP_METHOD: &str = "mcp-method";
/// `Last-Event-ID`: where a resumed stream goes on from.
const LAST_EVENT_ID: &str = "last-event-id";
/// `Mcp-Name` (2026).
const MCP_NAME: &str = "mcp-name";
/// A header that does not match the body (2026).
const HEADER_MISMATCH: i64 = -32020;
/// An unsupported protocol version (2026).
const UNSUPPORTED_VERSION: i64 = -32022;

/// `/mcp`.
pub async fn aggregated(State(state): State<Arc<AppState>>, req: Request) -> Response {
    serve(state, None, req).await
}

/// `/mcp/<server>`.
pub async fn one_server(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
    req: Request,
) -> Response {
    serve(state, Some(server), req).await
}

/// `/.well-known/oauth-protected-resource/mcp`.
pub async fn resource_metadata(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    metadata(&state, None, &headers)
}

/// `/.well-known/oauth-protected-resource/mcp/<server>`.
pub async fn server_resource_metadata(
    State(state): State<Arc<AppState>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    metadata(&state, Some(&server), &headers)
}

fn metadata(state: &AppState, server: Option<&str>, headers: &HeaderMap) -> Response {
    let Some(endpoint) = state.mcp.load_full() else {
        return plain(StatusCode::NOT_FOUND, "no MCP servers are configured");
    };
    if let Some(server) = server
        && endpoint.hub.server(server).is_none()
    {
        return plain(StatusCode::NOT_FOUND, "no such MCP server");
    }
    let base = endpoint.base_url(headers);
    let resource = match server {
        Some(s) => format!("{base}/mcp/{s}"),
        None => format!("{base}/mcp"),
    };
    let body = serde_json::json!({
        "resource": resource,
        // The gateway's own authorization server, whose issuer defaults to the listen address.
        "authorization_servers": state
            .auth
            .oauth()
            .map(|o| o.issuer().to_owned())
            .or_else(|| endpoint.issuer.clone())
            .into_iter()
            .collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools"],
        "resource_name": "Portcullis MCP gateway",
    });
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn serve(state: Arc<AppState>, server: Option<String>, req: Request) -> Response {
    let Some(endpoint) = state.mcp.load_full() else {
        return plain(StatusCode::NOT_FOUND, "no MCP servers are configured");
    };
    // From its first MCP request on, a replica may hold streams and calls other replicas
    // ask about (`crate::mcp_handoff`).
    endpoint.relays().on_asked(|| holder(&state));
    if let Err(why) = endpoint.guard(req.headers()) {
        return rpc_error_status(StatusCode::FORBIDDEN, None, INVALID_REQUEST, why);
    }
    let scope_server = match &server {
        Some(name) => match endpoint.hub.server(name) {
            Some(s) => Some(s.clone()),
            None => {
                return rpc_error_status(
                    StatusCode::NOT_FOUND,
                    None,
                    INVALID_REQUEST,
                    "No such MCP server",
                );
            }
        },
        None => None,
    };
    match *req.method() {
        Method::POST | Method::GET => {}
        _ => {
            // Nothing to end: sessions are stateless.
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and POST are supported",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            return r;
        }
    }
    let mut x = Exchange::begin(&state, Operation::Mcp, req.headers());
    let span = x.span.clone();
    async move {
        let (parts, body) = req.into_parts();
        let resource = resource_uri(&endpoint, server.as_deref(), &parts.headers);
        let principal = match Stage::Authenticate
            .run_async(state.auth.authenticate_logged_for(
                &parts.headers,
                &mut x.log,
                Some(&resource),
            ))
            .await
        {
            Ok(p) => p,
            Err(e) => return unauthenticated(&endpoint, server.as_deref(), &parts.headers, &e, x),
        };
        x.log.identity(&principal.identity);
        audit_session(&mut x.log, &parts.headers, &principal);
        if !principal.identity.has_scope("tools") {
            let e = GatewayError::new(
                ErrorKind::PermissionDenied,
                "This access token lacks the `tools` scope",
            )
            .with_code("insufficient_scope");
            return unauthenticated(&endpoint, server.as_deref(), &parts.headers, &e, x);
        }
        // The key's `tools` globs and the access rules by identity (configured and stored).
        let stored_rules = state
            .auth
            .directory()
            .map(|d| d.mcp_access())
            .unwrap_or_default();
        let access = ToolAccess::new(principal.tools.as_deref()).with_rules(
            endpoint.access(),
            &stored_rules,
            &principal.identity,
        );
        if let Some(s) = &scope_server
            && !access.allows_server(s.name())
        {
            return finish_http(
                x,
                rpc_error_status(
                    StatusCode::FORBIDDEN,
                    None,
                    INVALID_REQUEST,
                    "This API key may not use this MCP server",
                ),
                403,
            );
        }
        if parts.method == Method::GET {
            // The standalone stream, or a stream resumed.
            let allowed = endpoint
                .hub
                .servers()
                .filter(|s| access.allows_server(s.name()))
                .map(|s| s.name().to_owned())
                .collect();
            let call = Listen {
                state: &state,
                endpoint: &endpoint,
                server: server.as_deref(),
                caller: caller_of(&principal),
                who: principal.identity.clone(),
                allowed,
            };
            return call.open(&parts.headers, x).await;
        }
        let runtime = x.runtime.clone();
        let bytes = match crate::body::read(
            Some(&state.body_budget),
            body,
            &parts.headers,
            runtime.max_request_body_bytes,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => {
                let status = e.status();
                x.log.error(&e);
                return finish_http(
                    x,
                    rpc_error_status(status, None, INVALID_REQUEST, e.message()),
                    status.as_u16(),
                );
            }
        };
        // Arguments and results are kept only when the operator logs bodies.
        let log_bodies = runtime.log_bodies;
        if log_bodies && let Some(r) = x.log.record() {
            r.request_body = Some(crate::request_log::body_text(&bytes));
        }
        let message = match Stage::Decode.run(|| Message::parse(&bytes)) {
            Ok(m) => m,
            Err(e) => {
                let r = rpc_error_status(StatusCode::BAD_REQUEST, None, e.code(), &e.to_string());
                return finish_http(x, r, 400);
            }
        };
        let request = match message {
            Message::Request(r) => r,
            // A client's answer to a request a server made through the gateway goes back to
            // that server under the server's own id.
            // With Redis, an answer for a request another replica holds is passed to it.
            Message::Response(answer) => {
                let r = crate::mcp_relay::deliver(endpoint.relays(), answer, &bytes).await;
                let status = r.status().as_u16();
                return finish_http(x, r, status);
            }
            // A cancelled call whose answer is a stream here ends, and so is cancelled
            // upstream (a call answered with JSON ends with its connection).
            Message::Notification(n) if n.method == "notifications/cancelled" => {
                if let Some(request) = cancelled_request(n.params.as_deref()) {
                    let owner = Owner {
                        caller: caller_of(&principal),
                        server: scope_server.as_ref().map(|s| s.name().to_owned()),
                        session: session_of(&parts.headers),
                    };
                    endpoint.streams.cancel(&owner, &request);
                }
                let r = status_only(StatusCode::ACCEPTED);
                return finish_http(x, r, 202);
            }
            // Other notifications (initialized, roots changed): accepted, nothing to send back.
            Message::Notification(_) => {
                let r = status_only(StatusCode::ACCEPTED);
                return finish_http(x, r, 202);
            }
        };
        let era = match era_of(&parts.headers, &request) {
            Ok(era) => era,
            Err(r) => return finish_http(x, r, 400),
        };
        if era == Era::Legacy
            && request.method != "initialize"
            && let Some(session) = parts.headers.get(SESSION_ID)
            && !endpoint.session_valid(session.to_str().unwrap_or(""))
        {
            let r = rpc_error_status(
                StatusCode::NOT_FOUND,
                None,
                INVALID_REQUEST,
                "Session not found: initialize again",
            );
            return finish_http(x, r, 404);
        }
        if era == Era::Modern
            && let Err(r) = check_modern_headers(&parts.headers, &request)
        {
            return finish_http(x, r, 400);
        }
        if era == Era::Modern && request.method == "subscriptions/listen" {
            // The 2026 way of hearing of changed lists: a stream answering this request.
            let allowed = endpoint
                .hub
                .servers()
                .filter(|s| access.allows_server(s.name()))
                .map(|s| s.name().to_owned())
                .collect();
            let listen = Listen {
                state: &state,
                endpoint: &endpoint,
                server: server.as_deref(),
                caller: caller_of(&principal),
                who: principal.identity.clone(),
                allowed,
            };
            let owner = Owner {
                caller: listen.caller.clone(),
                server: server.clone(),
                session: None,
            };
            return subscribe(listen, owner, &request, x);
        }
        let scope = match &scope_server {
            Some(s) => Scope::Server(s),
            None => Scope::All,
        };
        // Lists, names and pins through the caller's own instances of servers, if any; what the
        // gateway answers itself (initialize, ping, ...) needs no user's grant.
        let oauth = if answered_here(&request.method, &scope) {
            std::collections::HashMap::new()
        } else {
            crate::mcp_upstream_oauth::instances(
                &state,
                &endpoint,
                &parts.headers,
                &principal.identity,
            )
            .await
        };
        let instances = endpoint
            .instances_of(state.auth.directory(), &principal.identity)
            .with_oauth(&oauth);
        // The guardrails (`mcp_guard`): a tools/list hides what the policies and the session's
        // trust say; a call's tool hints are read for its decision.
        let policies = state.tool_policies();
        let guard_session = matches!(request.method.as_str(), "tools/list" | "tools/call")
            .then(|| crate::mcp_guard::session(&parts.headers, &principal.identity));
        let guard_session = guard_session.as_deref().unwrap_or("");
        let list_gate;
        let gate: &dyn portcullis_mcp::router::ToolGate = if request.method == "tools/list" {
            list_gate = crate::mcp_guard::ListGate {
                policies: &policies,
                who: &principal.identity,
                trust: crate::mcp_guard::trust_of(&state, guard_session).await,
                quarantines: policies.uses_quarantine(),
            };
            &list_gate
        } else {
            &crate::mcp_guard::ShowAll
        };
        let ask = Ask {
            scope,
            instances: Some(&instances),
            access,
            era,
            page_size: endpoint.page_size(),
            gate: Some(gate),
        };
        let plan = Stage::Authorize
            .run_async(endpoint.hub.plan(&ask, &request))
            .await;
        let initialize = request.method == "initialize" && era == Era::Legacy;
        let id = request.id.clone();
        let mut response = match plan {
            Plan::Answer(result, note) => {
                note_log(&mut x.log, &note, None);
                json_answer(id, result)
            }
            Plan::Forward(forward) => {
                // The guardrails' decision on a call: withheld or held calls end here.
                match crate::mcp_guard::judge_call(
                    &state,
                    &policies,
                    &principal.identity,
                    guard_session,
                    &forward,
                    &id,
                    state.audit.is_some(),
                )
                .await
                {
                    Some((crate::mcp_guard::Judged::Refuse(e), verdict)) => {
                        let mut note = forward.note.clone();
                        note.decision = Decision::Withheld;
                        note_log(&mut x.log, &note, None);
                        if let Some(verdict) = verdict {
                            verdict.annotate(x.log.audit());
                        }
                        return finish_http(x, json_answer(id, Err(e)), 200);
                    }
                    Some((crate::mcp_guard::Judged::Pass, Some(verdict))) => {
                        verdict.begin(&mut x.log, forward.note.tool.as_deref().unwrap_or(""));
                    }
                    Some((crate::mcp_guard::Judged::Pass, None)) | None => {}
                };
                // Limits with `scope: tool` and `scope: server` for a call.
                let admission = match admit(&x, &principal, forward.tool(), forward.server.name())
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        let mut note = forward.note.clone();
                        note.decision = Decision::Refused;
                        note_log(&mut x.log, &note, None);
                        if let Some(call) = x.log.audit().and_then(|a| a.calls.first_mut()) {
                            call.rule = Some("limits".to_owned());
                            call.reason = Some(e.message().to_owned());
                        }
                        return finish_http(
                            x,
                            json_answer(id, Err(ErrorObject::new(RATE_LIMITED, e.message()))),
                            200,
                        );
                    }
                };
                // A 2026 client's call of a tool, prompt or resource: the server's requests to
                // the client become `input_required` results (multi round-trip requests).
                let rounds = (era == Era::Modern
                    && matches!(
                        forward.method.as_str(),
                        "tools/call" | "prompts/get" | "resources/read"
                    ))
                .then(|| Rounds::of(&forward));
                let (related_tx, mut related_rx) = mpsc::channel::<Message>(64);
                let hub = endpoint.hub.clone();
                let server = forward.server.clone();
                // The user's OAuth grant for a server that needs one, else the caller's own
                // (or their team's) credential for the server, if any.
                let planned = match oauth.get(server.name()) {
                    Some(Ok(instance)) => Some(Ok(instance.upstream.clone())),
                    _ => {
                        crate::mcp_upstream_oauth::upstream_for(
                            &state,
                            &endpoint,
                            &parts.headers,
                            &principal.identity,
                            &server,
                        )
                        .await
                    }
                };
                let own = match planned {
                    Some(own) => Some(own),
                    None => endpoint.own_upstream(
                        state.auth.directory(),
                        &principal.identity,
                        &server,
                    ),
                };
                // The connection the call goes over: a server's requests on the way are
                // answered back over it.
                let via = match &own {
                    Some(Ok(upstream)) => upstream.clone(),
                    _ => server.upstream.clone(),
                };
                // A quarantined tool's result is read by the quarantine model on its way back.
                let quarantine = forward.tool().and_then(|tool| {
                    crate::mcp_quarantine::McpQuarantine::of(
                        &state,
                        x.parent(),
                        &principal,
                        &policies,
                        tool,
                        guard_session,
                    )
                });
                let call = async move {
                    let (result, decision) = match own {
                        Some(Ok(upstream)) => {
                            hub.forward_via(&forward, &*upstream, Some(related_tx)).await
                        }
                        Some(Err(e)) => (Err(e), Decision::Failed),
                        None => hub.forward(&forward, Some(related_tx)).await,
                    };
                    let mut note = forward.note;
                    let result = match quarantine {
                        Some(q) => {
                            let (result, why) = q.apply(result).await;
                            note.rewritten = Some(why);
                            result
                        }
                        None => result,
                    };
                    ((result, decision), note)
                };
                let mut call = Box::pin(call.instrument(Stage::Dispatch.span()));
                if let Some(rounds) = rounds {
                    let owner = Owner {
                        caller: caller_of(&principal),
                        server: scope_server.as_ref().map(|s| s.name().to_owned()),
                        session: None,
                    };
                    let modern = ModernCall {
                        endpoint: endpoint.clone(),
                        server,
                        upstream: via,
                        owner,
                        id,
                        log_bodies,
                    };
                    return modern.run(rounds, call, related_rx, admission, x).await;
                }
                tokio::select! {
                    biased;
                    ((result, decision), mut note) = &mut call => {
                        drop(admission);
                        note.decision = decision;
                        let size = result.as_ref().map(|r| r.get().len()).ok();
                        note_log(&mut x.log, &note, size);
                        if log_bodies {
                            log_result(&mut x.log, &result);
                        }
                        json_answer(id, result)
                    }
                    Some(first) = related_rx.recv() => {
                        // The server talks on the way: the answer becomes an SSE stream.
                        let log = x.log.take();
                        let relay = Relay { endpoint: endpoint.clone(), server, upstream: via };
                        let owner = Owner {
                            caller: caller_of(&principal),
                            server: scope_server.as_ref().map(|s| s.name().to_owned()),
                            session: session_of(&parts.headers),
                        };
                        let request = serde_json::to_string(&id).ok();
                        let stream = endpoint.streams.open(Kind::Answer, owner, request);
                        return stream_answer(id, first, related_rx, call, log, admission, relay, stream);
                    }
                }
            }
        };
        if initialize {
            let session = endpoint.new_session();
            if let Ok(v) = HeaderValue::from_str(&session) {
                response.headers_mut().insert(SESSION_ID, v);
            }
        }
        finish_http(x, response, 200)
    }
    .instrument(span)
    .await
}

/// The protocol generation of a request: 2026 when `MCP-Protocol-Version` says so (or, without
/// the header, when its `_meta` names the version), else the handshake generation. A version
/// the gateway does not speak is a 400.
#[allow(clippy::result_large_err)]
fn era_of(headers: &HeaderMap, request: &RpcRequest) -> Result<Era, Response> {
    let header = headers
        .get(PROTOCOL_VERSION)
        .map(|v| v.to_str().unwrap_or(""));
    // The parameters are read for `_meta` only when the header does not say.
    let meta_version = match header {
        Some(_) => None,
        None => meta_protocol_version(request.params.as_deref()),
    };
    let version = header.or(meta_version.as_deref());
    match version {
        None => Ok(Era::Legacy),
        Some(v) if MODERN_VERSIONS.contains(&v) => Ok(Era::Modern),
        Some(v) if HANDSHAKE_VERSIONS.contains(&v) => Ok(Era::Legacy),
        Some(v) => {
            let error = ErrorObject::new(
                UNSUPPORTED_VERSION,
                format!("Unsupported protocol version `{v}`"),
            )
            .with_data(&serde_json::json!({
                "supported": MODERN_VERSIONS.iter().chain(HANDSHAKE_VERSIONS.iter()).collect::<Vec<_>>(),
                "requested": v,
            }));
            Err(rpc_response(
                StatusCode::BAD_REQUEST,
                RpcResponse::error(Some(request.id.clone()), error),
            ))
        }
    }
}

fn meta_protocol_version(params: Option<&RawValue>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "_meta", default)]
        meta: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let params: Params = serde_json::from_str(params?.get()).ok()?;
    params
        .meta?
        .get(META_PROTOCOL_VERSION)?
        .as_str()
        .map(str::to_owned)
}

/// 2026 requests mirror their method (and the tool, prompt or resource) in headers, which must
/// agree with the body.
#[allow(clippy::result_large_err)]
fn check_modern_headers(headers: &HeaderMap, request: &RpcRequest) -> Result<(), Response> {
    let mismatch = |what: &str| {
        Err(rpc_response(
            StatusCode::BAD_REQUEST,
            RpcResponse::error(
                Some(request.id.clone()),
                ErrorObject::new(HEADER_MISMATCH, format!("Header mismatch: {what}")),
            ),
        ))
    };
    let method = headers.get(MCP_METHOD).and_then(|v| v.to_str().ok());
    if method != Some(request.method.as_str()) {
        return mismatch("`Mcp-Method` must equal the request's method");
    }
    let member = match request.method.as_str() {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    let in_body = request
        .params
        .as_deref()
        .and_then(|p| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(p.get()).ok()
        })
        .and_then(|m| m.get(member).and_then(|v| v.as_str()).map(str::to_owned));
    let in_header = headers
        .get(MCP_NAME)
        .and_then(|v| v.to_str().ok())
        .map(decode_header_value);
    if in_body.is_none() || in_header != in_body {
        return mismatch("`Mcp-Name` must equal the request's name or URI");
    }
    Ok(())
}

/// A header value as 2026 clients send text that is not plain ASCII: `=?base64?<b64>?=`.
fn decode_header_value(value: &str) -> String {
    use base64::Engine;
    value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| value.to_owned())
}

/// **admit** for a tool call: the caller's rules (and the key's own) with `tool` as the
/// subject of `scope: tool` rules and its server's name of `scope: server` rules. Nothing to
/// admit for other requests: a server's limits count the tool calls it is sent.
async fn admit(
    x: &Exchange,
    principal: &Principal,
    tool: Option<&str>,
    server: &str,
) -> Result<Option<portcullis_limits::Admission>, GatewayError> {
    let Some(tool) = tool else {
        return Ok(None);
    };
    let key_rules = principal.rules.as_ref();
    let Some(limiter) = x
        .runtime
        .limiter
        .as_ref()
        .filter(|l| !l.is_empty() || key_rules.is_some())
    else {
        return Ok(None);
    };
    let who = &principal.identity;
    let subjects = Subjects {
        key: who.key_id.as_deref(),
        user: who.user.as_deref(),
        team: who.team.as_deref(),
        model: None,
        provider: None,
        route: None,
        tool: Some(tool),
        server: Some(server),
    };
    let estimate = Estimate {
        tokens: 0,
        cost_usd: 0.0,
    };
    Stage::Admit
        .run_async(limiter.admit_with(&subjects, estimate, key_rules))
        .await
        .map(Some)
        .map_err(|refusal| crate::limits::refusal_error(&refusal))
}

/// A call's result (or error) as its log record's response body.
fn log_result(log: &mut RequestLog, result: &Result<Box<RawValue>, ErrorObject>) {
    if let Some(r) = log.record() {
        r.response_body = Some(match result {
            Ok(raw) => crate::request_log::body_text(raw.get().as_bytes()),
            Err(e) => serde_json::to_string(e).unwrap_or_default(),
        });
    }
}

/// The server, tool, decision and arguments digest of a request in its log record; a tool
/// call also counts in the metrics, and a request sent to a server times there by method.
fn note_log(log: &mut RequestLog, note: &Note, result_bytes: Option<usize>) {
    if note.method == "tools/call"
        && let (Some(server), Some(tool)) = (&note.server, &note.tool)
    {
        log.metrics()
            .observe_mcp_call(server, tool, note.decision.as_str());
    }
    log.mcp_method(&note.method);
    let Some(r) = log.record() else {
        return;
    };
    r.dialect = "mcp";
    r.provider = note.server.as_deref().map(Arc::from);
    r.model = note.tool.as_deref().map(Arc::from);
    r.requested_model = note.tool.clone();
    let meta = McpMetadata {
        arguments_sha256: note.arguments_digest.as_deref(),
        decision: note.decision.as_str(),
        method: &note.method,
        result_bytes,
    };
    r.metadata = serde_json::to_string(&meta).ok();
    set_error_type(r, note, result_bytes);
    if note.method == "tools/call" {
        let mut audit = audit_record(r, note);
        // What the guardrails decided before the call went on (`mcp_guard::Verdict::begin`).
        if let Some(earlier) = log.audit() {
            crate::mcp_guard::carry(earlier, &mut audit);
        }
        log.set_audit(audit);
    }
}

/// An MCP request's log metadata, written straight to its JSON text.
#[derive(serde::Serialize)]
struct McpMetadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments_sha256: Option<&'a str>,
    decision: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_bytes: Option<usize>,
}

/// The log record's error type from a request's decision.
fn set_error_type(r: &mut portcullis_store::LogRecord, note: &Note, result_bytes: Option<usize>) {
    if matches!(
        note.decision,
        Decision::Refused | Decision::Failed | Decision::Withheld
    ) {
        r.error_type = Some(note.decision.as_str().to_owned());
    } else if note.decision == Decision::Forwarded && result_bytes.is_none() {
        // The server answered with a JSON-RPC error.
        r.error_type = Some("server_error".to_owned());
    }
}

/// A JSON-RPC answer with HTTP 200.
fn json_answer(id: Id, result: Result<Box<RawValue>, ErrorObject>) -> Response {
    let response = match result {
        Ok(r) => RpcResponse::result(id, r),
        Err(e) => RpcResponse::error(Some(id), e),
    };
    rpc_response(StatusCode::OK, response)
}

fn rpc_response(status: StatusCode, response: RpcResponse) -> Response {
    let mut r = Response::new(Body::from(response.to_bytes()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn rpc_error_status(status: StatusCode, id: Option<Id>, code: i64, message: &str) -> Response {
    rpc_response(
        status,
        RpcResponse::error(id, ErrorObject::new(code, message)),
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}

fn status_only(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// The URI of the protected resource a request to `/mcp` or `/mcp/<server>` reaches: the
/// audience the gateway's OAuth access tokens must have there (RFC 8707).
fn resource_uri(endpoint: &McpEndpoint, server: Option<&str>, headers: &HeaderMap) -> String {
    let base = endpoint.base_url(headers);
    match server {
        Some(s) => format!("{base}/mcp/{s}"),
        None => format!("{base}/mcp"),
    }
}

/// 401 (or 403) with the challenge that points clients at the resource metadata; a
/// credential that was presented and refused is named `invalid_token` (RFC 6750).
fn unauthenticated(
    endpoint: &McpEndpoint,
    server: Option<&str>,
    headers: &HeaderMap,
    error: &GatewayError,
    mut x: Exchange,
) -> Response {
    x.log.error(error);
    let status = error.status();
    let mut r = rpc_error_status(status, None, INVALID_REQUEST, error.message());
    let insufficient = error.code() == Some("insufficient_scope");
    if error.kind() == ErrorKind::Authentication || insufficient {
        let base = endpoint.base_url(headers);
        let path = match server {
            Some(s) => format!("/mcp/{s}"),
            None => "/mcp".to_owned(),
        };
        let presented =
            headers.contains_key(http::header::AUTHORIZATION) || headers.contains_key("x-api-key");
        let error = if insufficient {
            "error=\"insufficient_scope\", scope=\"tools\", "
        } else if presented {
            "error=\"invalid_token\", "
        } else {
            ""
        };
        let challenge = format!(
            "Bearer {error}resource_metadata=\"{base}/.well-known/oauth-protected-resource{path}\""
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
    }
    finish_http(x, r, status.as_u16())
}

/// **record**: the log record completed with the HTTP status answered.
fn finish_http(mut x: Exchange, response: Response, status: u16) -> Response {
    crate::trace::record_status(&x.span, status);
    x.log.finish(status);
    response
}

/// An SSE answer: `first`, then whatever else the server sends on the way, then the response.
/// The client leaving ends the call (and so cancels it upstream).
/// Where messages a server sends during a call go: requests get an id of the gateway's own.
struct Relay {
    endpoint: Arc<McpEndpoint>,
    server: Arc<portcullis_mcp::hub::Server>,
    /// The connection the call went over (the caller's own instance, if any).
    upstream: Arc<dyn portcullis_mcp::upstream::Upstream>,
}

impl Relay {
    fn message(&self, message: Message) -> Vec<u8> {
        match message {
            Message::Request(mut request) => {
                self.endpoint
                    .relay(&self.server, &self.upstream, &mut request);
                Message::Request(request).to_bytes()
            }
            other => other.to_bytes(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stream_answer<F>(
    id: Id,
    first: Message,
    mut related: mpsc::Receiver<Message>,
    mut call: std::pin::Pin<Box<F>>,
    mut log: RequestLog,
    admission: Option<portcullis_limits::Admission>,
    relay: Relay,
    stream: Arc<Stream>,
) -> Response
where
    F: std::future::Future<Output = ((Result<Box<RawValue>, ErrorObject>, Decision), Note)>
        + Send
        + 'static,
{
    // A priming event first, so that a client that loses the connection at once can resume.
    stream.prime();
    stream.push(&relay.message(first));
    let body = Body::from_stream(stream.read(0, None, ()));
    let streams = relay.endpoint.streams.clone();
    tokio::spawn(async move {
        let _admission = admission;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                ((result, decision), mut note) = &mut call => {
                    // Whatever the server sent just before its answer goes first.
                    while let Ok(m) = related.try_recv() {
                        stream.push(&relay.message(m));
                    }
                    note.decision = decision;
                    let size = result.as_ref().map(|r| r.get().len()).ok();
                    note_log(&mut log, &note, size);
                    let response = match result {
                        Ok(r) => RpcResponse::result(id, r),
                        Err(e) => RpcResponse::error(Some(id), e),
                    };
                    stream.push(&response.to_bytes());
                    stream.finish();
                    log.finish(200);
                    break;
                }
                Some(m) = related.recv() => stream.push(&relay.message(m)),
                _ = stream.cancelled() => {
                    // Dropping the call cancels it upstream.
                    stream.finish();
                    streams.close(&stream);
                    return;
                }
                _ = tick.tick() => {
                    if stream.abandoned() {
                        // Nobody came back for it: dropping the call cancels it upstream.
                        streams.close(&stream);
                        return;
                    }
                }
            }
        }
        // The events stay for a client that resumes, until read or abandoned.
        loop {
            tick.tick().await;
            if stream.delivered() || stream.abandoned() {
                streams.close(&stream);
                return;
            }
        }
    });
    sse_response(body)
}

fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The id of the request a `notifications/cancelled` names, as JSON text.
fn cancelled_request(params: Option<&RawValue>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Cancelled {
        #[serde(rename = "requestId")]
        request_id: Id,
    }
    let cancelled: Cancelled = serde_json::from_str(params?.get()).ok()?;
    serde_json::to_string(&cancelled.request_id).ok()
}

/// Which caller a stream is for: its identity's subject and key.
/// Whether the router answers `method` itself, reading no server's lists (`Hub::plan`).
fn answered_here(method: &str, scope: &Scope<'_>) -> bool {
    matches!(method, "initialize" | "ping" | "server/discover")
        || (method == "logging/setLevel" && matches!(scope, Scope::All))
}

fn caller_of(principal: &Principal) -> String {
    let who = &principal.identity;
    format!("{}|{}", who.subject, who.key_id.as_deref().unwrap_or(""))
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Open GET connections a caller may hold on one replica.
const MAX_LISTENING: usize = 16;
/// How long one GET connection stays open: then it ends with a `retry` field, the client comes
/// back (authenticated again) and resumes the stream.
const LISTEN_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// `GET /mcp` and `GET /mcp/<server>`: the standalone SSE stream, on which the gateway says
/// when a list the caller sees changed (`notifications/{tools,prompts,resources}/list_changed`),
/// or, with `Last-Event-ID`, a stream resumed.
struct Listen<'a> {
    state: &'a Arc<AppState>,
    endpoint: &'a Arc<McpEndpoint>,
    server: Option<&'a str>,
    caller: String,
    /// Who the caller is (whose own instances of servers the stream follows too).
    who: Arc<portcullis_core::Identity>,
    /// The servers the caller may use (on `/mcp`).
    allowed: std::collections::HashSet<String>,
}

impl Listen<'_> {
    async fn open(self, headers: &HeaderMap, mut x: Exchange) -> Response {
        let note = Note {
            method: "GET".to_owned(),
            server: self.server.map(str::to_owned),
            tool: None,
            arguments_digest: None,
            decision: Decision::Answered,
            rewritten: None,
        };
        let refuse = |mut x: Exchange, status: StatusCode, message: &str| {
            let mut note = note.clone();
            note.decision = Decision::Invalid;
            note_log(&mut x.log, &note, None);
            finish_http(
                x,
                rpc_error_status(status, None, INVALID_REQUEST, message),
                status.as_u16(),
            )
        };
        let accepts = headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/event-stream") || v.contains("*/*"));
        if !accepts {
            return refuse(
                x,
                StatusCode::NOT_ACCEPTABLE,
                "GET opens an SSE stream: accept text/event-stream",
            );
        }
        let session = session_of(headers);
        if let Some(s) = &session
            && !self.endpoint.session_valid(s)
        {
            return refuse(
                x,
                StatusCode::NOT_FOUND,
                "Session not found: initialize again",
            );
        }
        let owner = Owner {
            caller: self.caller.clone(),
            server: self.server.map(str::to_owned),
            session,
        };
        let streams = &self.endpoint.streams;
        let mut missed = false;
        let last = headers
            .get(LAST_EVENT_ID)
            .map(|last| last.to_str().unwrap_or(""));
        // A stream another replica holds: that one relays it, with Redis.
        let elsewhere = last
            .and_then(|last| crate::mcp_streams::event_id(last).ok())
            .filter(|id| {
                id.replica.is_some_and(|r| r != streams.replica())
                    && self.endpoint.relays().connected()
            });
        if let Some(id) = elsewhere {
            let slot = match id.kind {
                Kind::Answer => None,
                Kind::Listen => match streams.listen(&self.caller, MAX_LISTENING) {
                    Some(slot) => Some(slot),
                    None => return refuse(x, StatusCode::TOO_MANY_REQUESTS, TOO_MANY),
                },
            };
            let lifetime = (id.kind == Kind::Listen).then_some(LISTEN_FOR);
            let holder = id.replica.unwrap_or_default();
            let relays = self.endpoint.relays();
            match mcp_handoff::resume(relays, holder, id.stream, id.next, &owner, lifetime).await {
                Ok(relayed) => {
                    // The connection counts as long as it lasts.
                    let body = futures_util::StreamExt::map(relayed, move |chunk| {
                        let _open = &slot;
                        chunk
                    });
                    note_log(&mut x.log, &note, None);
                    return finish_http(x, sse_response(Body::from_stream(body)), 200);
                }
                Err(Handoff::Gone) if id.kind == Kind::Answer => {
                    return refuse(x, StatusCode::NOT_FOUND, STREAM_GONE);
                }
                Err(Handoff::Gone) => missed = true,
                Err(e) => {
                    tracing::warn!("MCP stream not resumed from its replica: {e}");
                    return refuse(
                        x,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The stream is held by another replica, which could not be reached",
                    );
                }
            }
        } else if let Some(last) = last {
            match streams.resume(last, &owner) {
                Ok((stream, from)) => {
                    let body = match stream.kind() {
                        Kind::Answer => Body::from_stream(stream.read(from, None, ())),
                        Kind::Listen => {
                            let Some(slot) = streams.listen(&self.caller, MAX_LISTENING) else {
                                return refuse(x, StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
                            };
                            Body::from_stream(stream.read(from, Some(LISTEN_FOR), slot))
                        }
                    };
                    note_log(&mut x.log, &note, None);
                    return finish_http(x, sse_response(body), 200);
                }
                Err(Gone::Malformed) => {
                    return refuse(
                        x,
                        StatusCode::BAD_REQUEST,
                        "Last-Event-ID is not an event of this gateway",
                    );
                }
                Err(Gone::Unknown(Kind::Answer)) => {
                    return refuse(x, StatusCode::NOT_FOUND, STREAM_GONE);
                }
                // The standalone stream's events are gone: a new stream begins, saying that
                // every list may have changed, so that nothing missed is lost.
                Err(Gone::Unknown(Kind::Listen)) => missed = true,
            }
        }
        let Some(slot) = streams.listen(&self.caller, MAX_LISTENING) else {
            return refuse(x, StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
        };
        let stream = streams.open(Kind::Listen, owner, None);
        stream.prime();
        if missed {
            announce(&stream, &ListKind::ALL, &Wanted::all());
        }
        let body = Body::from_stream(stream.read(0, Some(LISTEN_FOR), slot));
        tokio::spawn(listen_for_changes(
            self.state.clone(),
            self.endpoint.clone(),
            stream,
            self.server.map(str::to_owned),
            self.who,
            self.allowed,
            Wanted::all(),
            None,
        ));
        note_log(&mut x.log, &note, None);
        finish_http(x, sse_response(body), 200)
    }
}

const TOO_MANY: &str = "Too many open streams for this caller";
const STREAM_GONE: &str = "Stream not found: its events are no longer kept, or were kept by a \
                           replica that is gone or out of reach";

/// What handles what other replicas ask of this one (`crate::mcp_handoff`): resumes of the
/// streams it holds, retries of the calls it holds waiting for input.
fn holder(state: &Arc<AppState>) -> AskHandler {
    let state = Arc::downgrade(state);
    Box::new(move |what, replier| {
        tokio::spawn(serve_asked(state.clone(), what, replier));
    })
}

async fn serve_asked(state: std::sync::Weak<AppState>, what: Vec<u8>, replier: Replier) {
    let endpoint = state.upgrade().and_then(|s| s.mcp.load_full());
    let asked = serde_json::from_slice::<Asked>(&what);
    let (Some(endpoint), Ok(asked)) = (endpoint, asked) else {
        return mcp_handoff::gone(&replier).await;
    };
    match asked {
        Asked::Resume {
            stream,
            from,
            owner,
            lifetime_ms,
        } => {
            let lifetime = lifetime_ms.map(std::time::Duration::from_millis);
            mcp_handoff::serve_resume(&endpoint.streams, &stream, from, &owner, lifetime, replier)
                .await;
        }
        Asked::Retry {
            state,
            owner,
            id,
            responses,
        } => ModernCall::retried_here(endpoint, &state, owner, id, responses, replier).await,
    }
}

/// Fills a stream with the changes of the lists of the servers it covers (one server, or
/// those the caller may use) that it wants — heard from the shared connections and from the
/// caller's own instances of them, followed from when they run —, and on the GET stream with
/// the servers' `notifications/resources/updated` (URIs as the endpoint names them), until
/// nobody reads it; a reload (a new endpoint) counts as a change of every list. A
/// subscription ends at `until` with its request's result.
#[allow(clippy::too_many_arguments)]
async fn listen_for_changes(
    state: Arc<AppState>,
    mut endpoint: Arc<McpEndpoint>,
    stream: Arc<Stream>,
    server: Option<String>,
    who: Arc<portcullis_core::Identity>,
    allowed: std::collections::HashSet<String>,
    wanted: Wanted,
    until: Option<tokio::time::Instant>,
) {
    let end = async move {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(end);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let covered: Vec<Arc<portcullis_mcp::hub::Server>> = match &server {
            Some(name) => endpoint.hub.server(name).cloned().into_iter().collect(),
            None => endpoint
                .hub
                .servers()
                .filter(|s| allowed.contains(s.name()))
                .cloned()
                .collect(),
        };
        if server.is_some() && covered.is_empty() {
            // The server is gone.
            stream.finish();
            return;
        }
        // The caller's own instances: their credential's, and their token's for servers that
        // need OAuth.
        let own = |covered: &[Arc<portcullis_mcp::hub::Server>]| {
            covered
                .iter()
                .flat_map(|s| {
                    endpoint
                        .running_own_instance(state.auth.directory(), &who, s)
                        .into_iter()
                        .chain(crate::mcp_upstream_oauth::running_instances(
                            &endpoint, &who, s,
                        ))
                })
                .collect::<Vec<_>>()
        };
        let followed = own(&covered);
        let (tx, mut rx) = mpsc::channel::<Heard>(16);
        let public_uris = server.is_none();
        for s in covered.iter().chain(&followed) {
            tokio::spawn(changes_of(s.clone(), public_uris, tx.clone()));
        }
        drop(tx);
        loop {
            tokio::select! {
                Some(heard) = rx.recv() => match heard {
                    Heard::Lists(kinds) => announce(&stream, kinds, &wanted),
                    Heard::Updated(uri) => updated(&stream, &uri, &wanted),
                },
                _ = &mut end => {
                    if let Some(id) = &wanted.subscription {
                        let done = RpcResponse::result(
                            id.clone(),
                            portcullis_mcp::jsonrpc::raw(&serde_json::json!({
                                "resultType": "complete", "_meta": wanted.meta()})),
                        );
                        stream.push(&done.to_bytes());
                    }
                    stream.finish();
                    endpoint.streams.close(&stream);
                    return;
                }
                _ = tick.tick() => {
                    if stream.abandoned() || stream.finished() {
                        endpoint.streams.close(&stream);
                        return;
                    }
                    match state.mcp.load_full() {
                        Some(now) if Arc::ptr_eq(&now, &endpoint) => {
                            // An own instance started or stopped since: follow what runs now.
                            let running = own(&covered);
                            if running.len() != followed.len()
                                || running.iter().zip(&followed).any(|(a, b)| !Arc::ptr_eq(a, b))
                            {
                                break;
                            }
                        }
                        Some(now) => {
                            endpoint = now;
                            announce(&stream, &ListKind::ALL, &wanted);
                            break;
                        }
                        None => {
                            stream.finish();
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// What a stream hears of one server.
#[derive(Debug)]
enum Heard {
    /// These kinds of list changed.
    Lists(&'static [ListKind]),
    /// The resource with this URI (as the endpoint names it) changed.
    Updated(String),
}

/// Sends the kinds of list `server` says changed, its cached list dropped first so that the
/// client's next listing is fresh, and the resources it says were updated (their URIs made
/// public with `public_uris`, for `/mcp`); until `changed` is closed.
async fn changes_of(
    server: Arc<portcullis_mcp::hub::Server>,
    public_uris: bool,
    changed: mpsc::Sender<Heard>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut notifications = server.upstream.notifications();
    loop {
        let kinds: &'static [ListKind] = tokio::select! {
            _ = changed.closed() => return,
            m = notifications.recv() => match m {
                Ok(Message::Notification(n)) if n.method == "notifications/resources/updated" => {
                    let uri = n
                        .params
                        .as_deref()
                        .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
                        .and_then(|p| p.get("uri")?.as_str().map(str::to_owned));
                    let Some(uri) = uri else { continue };
                    let uri = if public_uris {
                        portcullis_mcp::names::public_uri(server.name(), &uri)
                    } else {
                        uri
                    };
                    if changed.send(Heard::Updated(uri)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Message::Notification(n)) => ListKind::changed_by(&n.method),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => &ListKind::ALL,
                Err(RecvError::Closed) => return,
            },
        };
        if kinds.is_empty() {
            continue;
        }
        for kind in kinds {
            server.invalidate(*kind).await;
        }
        if changed.send(Heard::Lists(kinds)).await.is_err() {
            return;
        }
    }
}

/// A resource's `notifications/resources/updated`, on the GET stream (a 2026 subscription
/// asks only for list changes).
fn updated(stream: &Stream, uri: &str, wanted: &Wanted) {
    if wanted.subscription.is_none() && wanted.resources {
        let message = serde_json::json!({"jsonrpc": "2.0",
            "method": "notifications/resources/updated", "params": {"uri": uri}});
        stream.push(message.to_string().as_bytes());
    }
}

/// Which `list_changed` notifications a stream carries: all of them on the GET stream; on a
/// 2026 client's `subscriptions/listen`, those it asked for, each with the subscription's id.
#[derive(Debug, Clone, Default)]
struct Wanted {
    tools: bool,
    prompts: bool,
    resources: bool,
    /// The id of the `subscriptions/listen` request.
    subscription: Option<Id>,
}

impl Wanted {
    fn all() -> Self {
        Self {
            tools: true,
            prompts: true,
            resources: true,
            subscription: None,
        }
    }

    /// `_meta` naming the subscription, if any.
    fn meta(&self) -> serde_json::Value {
        match &self.subscription {
            Some(id) => serde_json::json!({"io.modelcontextprotocol/subscriptionId": id}),
            None => serde_json::json!({}),
        }
    }
}

/// The `list_changed` notifications of `kinds` the stream carries, once each.
fn announce(stream: &Stream, kinds: &[ListKind], wanted: &Wanted) {
    let mut methods = std::collections::BTreeSet::new();
    for kind in kinds {
        let (method, on) = match kind {
            ListKind::Tools => ("notifications/tools/list_changed", wanted.tools),
            ListKind::Prompts => ("notifications/prompts/list_changed", wanted.prompts),
            ListKind::Resources | ListKind::Templates => {
                ("notifications/resources/list_changed", wanted.resources)
            }
        };
        if on {
            methods.insert(method);
        }
    }
    for method in methods {
        let message = match &wanted.subscription {
            None => serde_json::json!({"jsonrpc": "2.0", "method": method}),
            Some(_) => serde_json::json!({"jsonrpc": "2.0", "method": method,
                "params": {"_meta": wanted.meta()}}),
        };
        stream.push(message.to_string().as_bytes());
    }
}

/// A 2026 client's `subscriptions/listen`: an SSE answer that acknowledges the notifications
/// the gateway will send (the lists' changes; not resource updates), then carries them, and
/// ends after [`LISTEN_FOR`] with the request's result, so that the client listens again.
fn subscribe(listen: Listen<'_>, owner: Owner, request: &RpcRequest, mut x: Exchange) -> Response {
    #[derive(serde::Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Filter {
        #[serde(default)]
        tools_list_changed: bool,
        #[serde(default)]
        prompts_list_changed: bool,
        #[serde(default)]
        resources_list_changed: bool,
    }
    #[derive(serde::Deserialize, Default)]
    struct Params {
        #[serde(default)]
        notifications: Filter,
    }
    let params: Params = request
        .params
        .as_deref()
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or_default();
    let note = Note {
        method: request.method.clone(),
        server: listen.server.map(str::to_owned),
        tool: None,
        arguments_digest: None,
        decision: Decision::Answered,
        rewritten: None,
    };
    let streams = &listen.endpoint.streams;
    let Some(slot) = streams.listen(&listen.caller, MAX_LISTENING) else {
        let mut note = note;
        note.decision = Decision::Refused;
        note_log(&mut x.log, &note, None);
        let error = ErrorObject::new(RATE_LIMITED, TOO_MANY);
        return finish_http(x, json_answer(request.id.clone(), Err(error)), 200);
    };
    let wanted = Wanted {
        tools: params.notifications.tools_list_changed,
        prompts: params.notifications.prompts_list_changed,
        resources: params.notifications.resources_list_changed,
        subscription: Some(request.id.clone()),
    };
    let mut agreed = serde_json::Map::new();
    for (on, name) in [
        (wanted.tools, "toolsListChanged"),
        (wanted.prompts, "promptsListChanged"),
        (wanted.resources, "resourcesListChanged"),
    ] {
        if on {
            agreed.insert(name.into(), true.into());
        }
    }
    let stream = streams.open(Kind::Answer, owner, serde_json::to_string(&request.id).ok());
    stream.prime();
    let ack = serde_json::json!({"jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": wanted.meta(), "notifications": agreed}});
    stream.push(ack.to_string().as_bytes());
    let body = Body::from_stream(stream.read(0, None, slot));
    tokio::spawn(listen_for_changes(
        listen.state.clone(),
        listen.endpoint.clone(),
        stream,
        listen.server.map(str::to_owned),
        listen.who,
        listen.allowed,
        wanted,
        Some(tokio::time::Instant::now() + LISTEN_FOR),
    ));
    note_log(&mut x.log, &note, None);
    finish_http(x, sse_response(body), 200)
}

/// What a 2026 client's retry of a call carries: the answers to the gateway's input requests,
/// by key, and the `requestState` the gateway gave.
struct Rounds {
    state: Option<String>,
    responses: serde_json::Map<String, serde_json::Value>,
    /// The log's note of the call.
    note: Note,
}

impl Rounds {
    fn of(forward: &portcullis_mcp::router::Forward) -> Self {
        #[derive(serde::Deserialize)]
        struct Retry {
            #[serde(rename = "requestState", default)]
            state: Option<String>,
            #[serde(rename = "inputResponses", default)]
            responses: Option<serde_json::Map<String, serde_json::Value>>,
        }
        let retry = forward
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str::<Retry>(p.get()).ok());
        let (state, responses) = match retry {
            Some(r) => (r.state, r.responses.unwrap_or_default()),
            None => (None, serde_json::Map::new()),
        };
        Self {
            state,
            responses,
            note: forward.note.clone(),
        }
    }
}

/// A call of a 2026 client (`tools/call`, `prompts/get`, `resources/read`) to a server of the
/// handshake generation: it runs in the background; a request the server makes of the client
/// ends the HTTP exchange with an `input_required` result, whose `requestState` finds the call
/// again when the client retries with its answers, which go to the server. A retry reaching
/// another replica than the one holding the call is passed to that one, with Redis
/// (`crate::mcp_handoff`), which answers with what the call does next.
struct ModernCall {
    endpoint: Arc<McpEndpoint>,
    server: Arc<portcullis_mcp::hub::Server>,
    /// The connection the call went over (the caller's own instance, if any).
    upstream: Arc<dyn portcullis_mcp::upstream::Upstream>,
    owner: Owner,
    id: Id,
    log_bodies: bool,
}

/// What a 2026 client's call does next.
enum Step {
    /// It ended: its result or error, what became of it, its note.
    Done(Result<Box<RawValue>, ErrorObject>, Decision, Note),
    /// The server asked the client: the `input_required` result (the call parked).
    Input(Box<RawValue>),
    /// The server sent a notification first: the answer becomes a stream.
    Stream(Message, CallEvents),
    /// The call ended without a result.
    Ended,
}

/// What more than the call's timeout a replica waits for another to answer a retry.
const HANDOFF_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

const STATE_GONE: &str = "Invalid requestState: no call of this caller waits for input under \
                          it (expired, or its replica is gone or out of reach); call again \
                          without it";

/// The decision `Decision::as_str` names.
fn decision_named(name: &str) -> Option<Decision> {
    [
        Decision::Answered,
        Decision::Forwarded,
        Decision::Refused,
        Decision::Failed,
        Decision::Invalid,
        Decision::Withheld,
    ]
    .into_iter()
    .find(|d| d.as_str() == name)
}

impl ModernCall {
    async fn run<F>(
        mut self,
        rounds: Rounds,
        call: std::pin::Pin<Box<F>>,
        related: mpsc::Receiver<Message>,
        admission: Option<portcullis_limits::Admission>,
        mut x: Exchange,
    ) -> Response
    where
        F: std::future::Future<Output = ((Result<Box<RawValue>, ErrorObject>, Decision), Note)>
            + Send
            + 'static,
    {
        let events = match &rounds.state {
            None => in_background(call, related, admission),
            Some(state) => {
                // A retry: the call goes on where it waited, with the client's answers.
                drop(call);
                let holder = crate::mcp_streams::holder_of_state(state)
                    .filter(|h| {
                        *h != self.endpoint.streams.replica() && self.endpoint.relays().connected()
                    })
                    .map(str::to_owned);
                if let Some(holder) = holder {
                    return self.retry_elsewhere(&holder, rounds, x).await;
                }
                let Some(parked) = self.endpoint.streams.unpark(state, &self.owner) else {
                    let mut note = rounds.note.clone();
                    note.decision = Decision::Invalid;
                    note_log(&mut x.log, &note, None);
                    let error = ErrorObject::new(INVALID_PARAMS, STATE_GONE);
                    return finish_http(x, json_answer(self.id, Err(error)), 200);
                };
                // The server's next requests go back over the connection the call went over.
                self.server = parked.server;
                self.upstream = parked.upstream;
                self.give_answers(rounds.responses).await;
                parked.events
            }
        };
        self.next(events, rounds.note, x).await
    }

    /// The client's answers to the input requests, to the server that asked.
    async fn give_answers(&self, responses: serde_json::Map<String, serde_json::Value>) {
        for (key, value) in responses {
            let Some(relayed) = self.endpoint.answered(&Id::String(key)) else {
                continue;
            };
            let reply = Reply::Result(portcullis_mcp::jsonrpc::raw(&value));
            if let Err(e) = relayed.upstream.respond(relayed.id, reply).await {
                tracing::warn!(server = relayed.server.name(), "answer not delivered: {e}");
            }
        }
    }

    /// What the call does next.
    async fn step(&self, mut events: CallEvents) -> Step {
        match events.recv().await {
            Some(CallEvent::Done(result, decision, note)) => Step::Done(result, decision, note),
            Some(CallEvent::Related(Message::Request(request))) => {
                Step::Input(self.input_required(request, events))
            }
            Some(CallEvent::Related(first)) => Step::Stream(first, events),
            None => Step::Ended,
        }
    }

    /// A retry of a call `holder` holds: passed to it, and its answer to the client.
    async fn retry_elsewhere(self, holder: &str, rounds: Rounds, mut x: Exchange) -> Response {
        let Rounds {
            state,
            responses,
            mut note,
        } = rounds;
        let asked = Asked::Retry {
            state: state.unwrap_or_default(),
            owner: self.owner.clone(),
            id: self.id.clone(),
            responses,
        };
        let wait = self.server.spec.timeout + HANDOFF_MARGIN;
        match mcp_handoff::retry(self.endpoint.relays(), holder, &asked, wait).await {
            Ok(Retried::Answer { decision, body }) => {
                let result = match Message::parse(&body) {
                    Ok(Message::Response(r)) => match r.outcome {
                        Outcome::Result(r) => Ok(r),
                        Outcome::Error(e) => Err(e),
                    },
                    _ => Err(ErrorObject::new(
                        INTERNAL_ERROR,
                        "The replica holding the call answered with something else than a \
                         JSON-RPC response",
                    )),
                };
                match decision_named(&decision) {
                    Some(decision) => {
                        note.decision = decision;
                        let size = result.as_ref().map(|r| r.get().len()).ok();
                        note_log(&mut x.log, &note, size);
                        if self.log_bodies {
                            log_result(&mut x.log, &result);
                        }
                    }
                    // Another request for input.
                    None => note_log(&mut x.log, &note, None),
                }
                finish_http(x, json_answer(self.id, result), 200)
            }
            Ok(Retried::Stream(body)) => {
                note_log(&mut x.log, &note, None);
                finish_http(x, sse_response(Body::from_stream(body)), 200)
            }
            Err(Handoff::Gone) => {
                note.decision = Decision::Invalid;
                note_log(&mut x.log, &note, None);
                let error = ErrorObject::new(INVALID_PARAMS, STATE_GONE);
                finish_http(x, json_answer(self.id, Err(error)), 200)
            }
            Err(e) => {
                tracing::warn!("MCP retry not passed to the replica holding its call: {e}");
                note.decision = Decision::Failed;
                note_log(&mut x.log, &note, None);
                let error = ErrorObject::new(
                    INTERNAL_ERROR,
                    "The call waiting for input is held by another replica, which could not \
                     be reached; call again without requestState",
                );
                finish_http(x, json_answer(self.id, Err(error)), 200)
            }
        }
    }

    /// On the replica holding the call parked under `state`: another replica passed on the
    /// retry of `owner` (JSON-RPC id `id`) with the client's `responses`; the call goes on, and
    /// what it does next goes back to that replica.
    async fn retried_here(
        endpoint: Arc<McpEndpoint>,
        state: &str,
        owner: Owner,
        id: Id,
        responses: serde_json::Map<String, serde_json::Value>,
        replier: Replier,
    ) {
        let Some(parked) = endpoint.streams.unpark(state, &owner) else {
            return mcp_handoff::gone(&replier).await;
        };
        let call = ModernCall {
            endpoint,
            server: parked.server,
            upstream: parked.upstream,
            owner,
            id,
            log_bodies: false,
        };
        call.give_answers(responses).await;
        let id = call.id.clone();
        let (decision, response) = match call.step(parked.events).await {
            Step::Done(Ok(result), decision, _) => (decision, RpcResponse::result(id, result)),
            Step::Done(Err(e), decision, _) => (decision, RpcResponse::error(Some(id), e)),
            Step::Input(result) => {
                let response = RpcResponse::result(id, result);
                return mcp_handoff::answer(&replier, "input", &response.to_bytes()).await;
            }
            Step::Stream(first, events) => {
                let stream = call.open_stream(first, events, None);
                return mcp_handoff::relay(stream, 0, None, replier).await;
            }
            Step::Ended => (
                Decision::Failed,
                RpcResponse::error(
                    Some(id),
                    ErrorObject::new(UPSTREAM_ERROR, "The call ended without a result"),
                ),
            ),
        };
        mcp_handoff::answer(&replier, decision.as_str(), &response.to_bytes()).await;
    }

    /// Answers with what the call does next: its result, a request for input, or a stream
    /// when the server sends notifications first.
    async fn next(self, events: CallEvents, note: Note, mut x: Exchange) -> Response {
        match self.step(events).await {
            Step::Done(result, decision, mut note) => {
                note.decision = decision;
                let size = result.as_ref().map(|r| r.get().len()).ok();
                note_log(&mut x.log, &note, size);
                if self.log_bodies {
                    log_result(&mut x.log, &result);
                }
                finish_http(x, json_answer(self.id, result), 200)
            }
            Step::Input(result) => {
                note_log(&mut x.log, &note, None);
                finish_http(x, json_answer(self.id, Ok(result)), 200)
            }
            Step::Stream(first, events) => {
                let log = x.log.take();
                let stream = self.open_stream(first, events, Some(log));
                let body = Body::from_stream(stream.read(0, None, ()));
                finish_http(x, sse_response(body), 200)
            }
            Step::Ended => {
                let mut note = note;
                note.decision = Decision::Failed;
                note_log(&mut x.log, &note, None);
                let error = ErrorObject::new(UPSTREAM_ERROR, "The call ended without a result");
                finish_http(x, json_answer(self.id, Err(error)), 200)
            }
        }
    }

    /// The `input_required` result for the server's `request`; the call is parked meanwhile.
    fn input_required(&self, mut request: RpcRequest, events: CallEvents) -> Box<RawValue> {
        self.endpoint
            .relay(&self.server, &self.upstream, &mut request);
        let key = match &request.id {
            Id::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut asked = serde_json::Map::new();
        asked.insert("method".into(), request.method.clone().into());
        if let Some(params) = request
            .params
            .as_deref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p.get()).ok())
        {
            asked.insert("params".into(), params);
        }
        let parked = ParkedCall {
            events,
            server: self.server.clone(),
            upstream: self.upstream.clone(),
        };
        let state = self.endpoint.streams.park(self.owner.clone(), parked);
        portcullis_mcp::jsonrpc::raw(&serde_json::json!({
            "resultType": "input_required",
            "inputRequests": { key: asked },
            "requestState": state,
        }))
    }

    /// A stream answering the call: the server's notifications, then the result or a request
    /// for input; `log`, when the call's record goes with it, is finished at its end.
    fn open_stream(
        self,
        first: Message,
        mut events: CallEvents,
        mut log: Option<RequestLog>,
    ) -> Arc<Stream> {
        let stream = self.endpoint.streams.open(
            Kind::Answer,
            self.owner.clone(),
            serde_json::to_string(&self.id).ok(),
        );
        stream.prime();
        stream.push(&first.to_bytes());
        let streams = self.endpoint.streams.clone();
        let filled = stream.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Some(CallEvent::Related(Message::Request(request))) => {
                            let result = self.input_required(request, events);
                            let response = RpcResponse::result(self.id.clone(), result);
                            stream.push(&response.to_bytes());
                            if let Some(log) = log.as_mut() {
                                log.finish(200);
                            }
                            break;
                        }
                        Some(CallEvent::Related(m)) => stream.push(&m.to_bytes()),
                        Some(CallEvent::Done(result, decision, mut note)) => {
                            note.decision = decision;
                            let size = result.as_ref().map(|r| r.get().len()).ok();
                            if let Some(log) = log.as_mut() {
                                note_log(log, &note, size);
                            }
                            let response = match result {
                                Ok(r) => RpcResponse::result(self.id.clone(), r),
                                Err(e) => RpcResponse::error(Some(self.id.clone()), e),
                            };
                            stream.push(&response.to_bytes());
                            if let Some(log) = log.as_mut() {
                                log.finish(200);
                            }
                            break;
                        }
                        None => break,
                    },
                    _ = stream.cancelled() => break,
                    _ = tick.tick() => {
                        if stream.abandoned() {
                            streams.close(&stream);
                            return;
                        }
                    }
                }
            }
            stream.finish();
            loop {
                tick.tick().await;
                if stream.delivered() || stream.abandoned() {
                    streams.close(&stream);
                    return;
                }
            }
        });
        filled
    }
}

/// Runs a call in the background; its events, until they are no longer read (which drops the
/// call, and so cancels it upstream).
fn in_background<F>(
    mut call: std::pin::Pin<Box<F>>,
    mut related: mpsc::Receiver<Message>,
    admission: Option<portcullis_limits::Admission>,
) -> CallEvents
where
    F: std::future::Future<Output = ((Result<Box<RawValue>, ErrorObject>, Decision), Note)>
        + Send
        + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _admission = admission;
        loop {
            tokio::select! {
                biased;
                _ = tx.closed() => return,
                ((result, decision), note) = &mut call => {
                    while let Ok(m) = related.try_recv() {
                        let _ = tx.send(CallEvent::Related(m)).await;
                    }
                    let _ = tx.send(CallEvent::Done(result, decision, note)).await;
                    return;
                }
                Some(m) = related.recv() => {
                    if tx.send(CallEvent::Related(m)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The session a tool call is audited under (also the request log's `session_id`): the one
/// whose trust the guardrails read and taint (`mcp_guard::session`), so a call's audit
/// record, its approvals and its session's taint name the same session.
fn audit_session(log: &mut RequestLog, headers: &HeaderMap, principal: &Principal) {
    let Some(r) = log.record() else {
        return;
    };
    if r.session_id.is_some() {
        return;
    }
    r.session_id = Some(crate::mcp_guard::session(headers, &principal.identity).into_owned());
}

/// A tool call's decision-audit record, from its log record (request id, time, identity,
/// session) and the router's note (server, tool, arguments digest, decision). A refusal by
/// limits gets its rule and reason from the admit stage.
fn audit_record(r: &portcullis_store::LogRecord, note: &Note) -> portcullis_audit::AuditRecord {
    use portcullis_audit::{AuditPath, AuditRecord, CallDecision, ToolCall};
    let mut a = AuditRecord::new(
        uuid::Uuid::now_v7().to_string(),
        jiff::Timestamp::now().as_millisecond(),
        AuditPath::Mcp,
    );
    a.session.clone_from(&r.session_id);
    a.request_id = Some(r.id.to_string());
    a.identity.auth_method = r.auth_method.map(str::to_owned);
    a.identity.subject.clone_from(&r.subject);
    a.identity.key_id.clone_from(&r.key_id);
    a.identity.user.clone_from(&r.user);
    a.identity.team.clone_from(&r.team);
    a.provider.clone_from(&note.server);
    let tool = match (&note.server, &note.tool) {
        (Some(server), Some(tool)) if !tool.starts_with(&format!("{server}__")) => {
            format!("{server}__{tool}")
        }
        (_, Some(tool)) => tool.clone(),
        (_, None) => String::new(),
    };
    let (decision, rule, reason) = match note.decision {
        Decision::Forwarded => (CallDecision::Allow, None, note.rewritten),
        Decision::Failed => (
            CallDecision::Allow,
            None,
            Some("the server failed or did not answer"),
        ),
        Decision::Refused => (
            CallDecision::Refused,
            Some("access"),
            Some("the caller may not use this tool, or it does not exist"),
        ),
        Decision::Withheld => (
            CallDecision::Withheld,
            Some("pins"),
            Some("its definition changed and awaits approval"),
        ),
        Decision::Invalid | Decision::Answered => (
            CallDecision::Refused,
            Some("protocol"),
            Some("the call is not valid"),
        ),
    };
    let mut call = ToolCall::new(tool, decision);
    call.arguments_sha256.clone_from(&note.arguments_digest);
    call.rule = rule.map(str::to_owned);
    call.reason = reason.map(str::to_owned);
    a.calls.push(call);
    a
}

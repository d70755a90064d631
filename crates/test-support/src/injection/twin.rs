//! [`McpTwin`]: the cases' tools served over MCP (Streamable HTTP, JSON answers), one server
//! per domain at `/<domain>` on one listener. `tools/list` gives the domain's tools with their
//! JSON schemas and annotations (side-effecting tools `destructiveHint: true`, the others
//! `readOnlyHint: true`; tools whose output others write `openWorldHint: true`). `tools/call`
//! answers with the result the case being played ([`McpTwin::play`]) gives that call — its
//! next matching script step's (with the injection when the run is injected), or the
//! attacker's result — and every call received is recorded ([`McpTwin::calls`]), so whether an
//! attacker's call reached the tool is observable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Case, Tool};
use crate::reply::MockBody;

/// A `tools/call` the twin received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwinCall {
    /// The server (domain) it came to.
    pub domain: String,
    /// The tool's name as the server knows it.
    pub tool: String,
    /// Its arguments.
    pub arguments: Value,
}

#[derive(Debug, Default)]
struct State {
    tools: BTreeMap<String, Vec<Tool>>,
    /// The case being played, whether its run is injected, and its script steps answered.
    playing: Option<(Case, bool, Vec<bool>)>,
    calls: Vec<TwinCall>,
}

/// A running MCP twin. Dropping it stops it.
#[derive(Debug)]
pub struct McpTwin {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl McpTwin {
    /// Serves the tools of every domain in `cases` on a free loopback port.
    pub async fn start(cases: &[Case]) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut state = State::default();
        for c in cases {
            state
                .tools
                .entry(c.domain.clone())
                .or_insert_with(|| c.tools.clone());
        }
        let state = Arc::new(Mutex::new(state));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// The domains served.
    pub fn domains(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.tools.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The MCP endpoint of `domain`'s server.
    pub fn url(&self, domain: &str) -> String {
        format!("http://{}/{domain}", self.addr)
    }

    /// Answers calls for `case` from now on (with its injection when `injected`), and forgets
    /// the calls recorded so far.
    pub fn play(&self, case: &Case, injected: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.playing = Some((case.clone(), injected, Vec::new()));
            s.calls.clear();
        }
    }

    /// The calls received since the last [`McpTwin::play`].
    pub fn calls(&self) -> Vec<TwinCall> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }
}

impl Drop for McpTwin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn definition(t: &Tool) -> Value {
    let annotations = if t.side_effecting {
        json!({"readOnlyHint": false, "destructiveHint": true, "openWorldHint": t.untrusted_output})
    } else {
        json!({"readOnlyHint": true, "openWorldHint": t.untrusted_output})
    };
    json!({"name": t.name, "description": t.description, "inputSchema": t.input_schema,
           "annotations": annotations})
}

async fn handle(req: http::Request<Incoming>, state: &Mutex<State>) -> Response<MockBody> {
    if req.method() != http::Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let domain = req.uri().path().trim_matches('/').to_owned();
    let Ok(body) = req.into_body().collect().await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(id) = message.get("id").cloned() else {
        return status(StatusCode::ACCEPTED);
    };
    let Ok(mut s) = state.lock() else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(tools) = s.tools.get(&domain).cloned() else {
        return status(StatusCode::NOT_FOUND);
    };
    let method = message["method"].as_str().unwrap_or("");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": format!("{domain}-twin"), "version": "1.0.0"},
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools.iter().map(definition).collect::<Vec<_>>()}),
        "tools/call" => {
            let name = message["params"]["name"].as_str().unwrap_or("").to_owned();
            let arguments = message["params"]["arguments"].clone();
            s.calls.push(TwinCall {
                domain: domain.clone(),
                tool: name.clone(),
                arguments: arguments.clone(),
            });
            let answer = s.playing.as_mut().and_then(|(case, injected, done)| {
                (case.domain == domain)
                    .then(|| case.answer(&name, &arguments, done, *injected))
                    .flatten()
            });
            match answer {
                Some(text) => {
                    json!({"content": [{"type": "text", "text": text}], "isError": false})
                }
                None => {
                    json!({"content": [{"type": "text", "text": format!("No such operation: {name}")}],
                               "isError": true})
                }
            }
        }
        other => {
            let body = json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("Method not found: {other}")}});
            return json_response(body, false);
        }
    };
    json_response(
        json!({"jsonrpc": "2.0", "id": id, "result": result}),
        method == "initialize",
    )
}

fn json_response(body: Value, with_session: bool) -> Response<MockBody> {
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if with_session {
        r.headers_mut().insert(
            "mcp-session-id",
            http::HeaderValue::from_static("twin-session"),
        );
    }
    r
}

fn full(body: Bytes) -> MockBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn status(code: StatusCode) -> Response<MockBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = code;
    r
}

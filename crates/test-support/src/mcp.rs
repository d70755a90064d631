//! [`MockMcpServer`]: a Streamable HTTP MCP server for tests and the benchmark — `initialize`
//! (protocol 2025-11-25, with a session id), `notifications/*` (202), `ping`, `tools/list`
//! (`tools` tools named `tool-0`, `tool-1`, …) and `tools/call` (the arguments echoed back as
//! text), each answered as one JSON object; every call is counted. A GET opens the standalone
//! SSE stream, on which [`MockMcpServer::set_tools`] announces `notifications/tools/list_changed`.
//! `resources/subscribe` and `resources/unsubscribe` are answered and remembered
//! ([`MockMcpServer::subscriptions`]); [`MockMcpServer::update_resource`] sends
//! `notifications/resources/updated` on every GET stream, and [`MockMcpServer::notify_header`]
//! a notification only on the GET streams whose request carried a header value.
//! [`MockMcpServer::set_tools_for_header`] gives requests carrying a header value a list of
//! their own (as a server whose tools depend on the caller's credential would).
//! What a real server would do beyond that (SSE answers, resumption, server requests) is left
//! to the real servers the test suites run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::reply::MockBody;

/// A running mock MCP server.
#[derive(Debug)]
pub struct MockMcpServer {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    /// The headers of each `tools/call` received, in order.
    call_headers: Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
    list: Arc<RwLock<Bytes>>,
    /// Lists of their own for requests carrying a header value: (header, value, list).
    keyed: Arc<RwLock<Vec<(String, String, Bytes)>>>,
    changes: broadcast::Sender<Announcement>,
    /// The URIs subscribed to with `resources/subscribe` (and not unsubscribed), in order.
    subscribed: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// An event for the GET streams: for all of them, or only those whose request carried the
/// header value.
type Announcement = (Option<(String, String)>, Bytes);

fn for_all(event: Bytes) -> Announcement {
    (None, event)
}

impl MockMcpServer {
    /// Starts a server listing `tools` tools on a free loopback port.
    pub async fn start(tools: usize) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicU64::new(0));
        let list = Arc::new(RwLock::new(tool_list(tools)));
        let (changes, _) = broadcast::channel(16);
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let counted = calls.clone();
        let call_headers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = call_headers.clone();
        let (listed, announced) = (list.clone(), changes.clone());
        let keyed: Arc<RwLock<Vec<(String, String, Bytes)>>> = Arc::default();
        let keyed_lists = keyed.clone();
        let subscribed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let subscriptions = subscribed.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                let (list, calls, changes) = (listed.clone(), counted.clone(), announced.clone());
                let seen = recorded.clone();
                let keyed = keyed_lists.clone();
                let subs = subscriptions.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (list, calls, changes) = (list.clone(), calls.clone(), changes.clone());
                        let (seen, keyed, subs) = (seen.clone(), keyed.clone(), subs.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                handle(req, &list, &keyed, &calls, &changes, &seen, &subs).await,
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            calls,
            call_headers,
            list,
            keyed,
            changes,
            subscribed,
            stop: Some(stop),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// `tools/call` requests received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The value of header `name` on each `tools/call` received, in order.
    pub fn call_header(&self, name: &str) -> Vec<Option<String>> {
        self.call_headers
            .lock()
            .map(|all| {
                all.iter()
                    .map(|h| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lists `tools` tools from now on, and says so on every open GET stream.
    pub fn set_tools(&self, tools: usize) {
        if let Ok(mut list) = self.list.write() {
            *list = tool_list(tools);
        }
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let _ = self.changes.send(for_all(Bytes::from(format!(
            "event: message\ndata: {changed}\n\n"
        ))));
    }

    /// Lists `tools`, tool definitions as given, to requests whose header `header` is `value`
    /// (other requests get the list as before), and says so on every open GET stream.
    pub fn set_tools_for_header(&self, header: &str, value: &str, tools: Vec<Value>) {
        if let Ok(mut keyed) = self.keyed.write() {
            keyed.retain(|(h, v, _)| !(h.eq_ignore_ascii_case(header) && v == value));
            keyed.push((
                header.to_owned(),
                value.to_owned(),
                Bytes::from(json!({ "tools": tools }).to_string()),
            ));
        }
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let _ = self.changes.send(for_all(Bytes::from(format!(
            "event: message\ndata: {changed}\n\n"
        ))));
    }

    /// The URIs subscribed to now (`resources/subscribe`, less `resources/unsubscribe`).
    pub fn subscriptions(&self) -> Vec<String> {
        self.subscribed
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Says on every open GET stream that the resource `uri` changed
    /// (`notifications/resources/updated`).
    pub fn update_resource(&self, uri: &str) {
        let updated = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": uri}});
        let _ = self.changes.send(for_all(Bytes::from(format!(
            "event: message\ndata: {updated}\n\n"
        ))));
    }

    /// Sends the notification `method` only on the GET streams whose request's header
    /// `header` was `value` (as a server would tell only one credential's connections).
    pub fn notify_header(&self, header: &str, value: &str, method: &str) {
        let message = json!({"jsonrpc": "2.0", "method": method});
        let _ = self.changes.send((
            Some((header.to_ascii_lowercase(), value.to_owned())),
            Bytes::from(format!("event: message\ndata: {message}\n\n")),
        ));
    }

    /// GET streams open now.
    pub fn listeners(&self) -> usize {
        self.changes.receiver_count()
    }

    /// Lists `tools`, tool definitions as given, from now on, and says so on every open GET
    /// stream.
    pub fn set_tool_definitions(&self, tools: Vec<Value>) {
        if let Ok(mut list) = self.list.write() {
            *list = Bytes::from(json!({ "tools": tools }).to_string());
        }
        let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        let _ = self.changes.send(for_all(Bytes::from(format!(
            "event: message\ndata: {changed}\n\n"
        ))));
    }
}

impl Drop for MockMcpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn tool_list(n: usize) -> Bytes {
    let tools: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "name": format!("tool-{i}"),
                "description": format!("Echoes its arguments back (tool {i})."),
                "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
            })
        })
        .collect();
    Bytes::from(json!({ "tools": tools }).to_string())
}

async fn handle(
    req: Request,
    list: &RwLock<Bytes>,
    keyed: &RwLock<Vec<(String, String, Bytes)>>,
    calls: &AtomicU64,
    changes: &broadcast::Sender<Announcement>,
    call_headers: &std::sync::Mutex<Vec<http::HeaderMap>>,
    subscribed: &std::sync::Mutex<Vec<String>>,
) -> Response<MockBody> {
    if req.method() == http::Method::GET {
        return listen(changes.subscribe(), req.headers().clone());
    }
    let headers = req.headers().clone();
    let own = keyed.read().ok().and_then(|keyed| {
        keyed
            .iter()
            .find(|(h, v, _)| headers.get(h).and_then(|x| x.to_str().ok()) == Some(v.as_str()))
            .map(|(_, _, l)| l.clone())
    });
    let list = match own {
        Some(l) => l,
        None => match list.read() {
            Ok(l) => l.clone(),
            Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR),
        },
    };
    let Ok(body) = req.into_body().collect().await else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification or a response.
        return status(StatusCode::ACCEPTED);
    };
    let method = message["method"].as_str().unwrap_or("");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "mock-mcp", "version": "1.0.0"},
        }),
        "ping" => json!({}),
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = message["params"]["uri"].as_str().unwrap_or("").to_owned();
            if let Ok(mut subscribed) = subscribed.lock() {
                subscribed.retain(|u| *u != uri);
                if method == "resources/subscribe" {
                    subscribed.push(uri);
                }
            }
            json!({})
        }
        "tools/list" => {
            let mut out = Vec::with_capacity(list.len() + 48);
            out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
            out.extend_from_slice(id.to_string().as_bytes());
            out.extend_from_slice(br#","result":"#);
            out.extend_from_slice(&list);
            out.push(b'}');
            return json_response(Bytes::from(out), method == "initialize");
        }
        "tools/call" => {
            calls.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut all) = call_headers.lock() {
                all.push(headers);
            }
            let arguments = message["params"]["arguments"].to_string();
            json!({"content": [{"type": "text", "text": arguments}], "isError": false})
        }
        other => {
            let body = json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": format!("Method not found: {other}")}});
            return json_response(Bytes::from(body.to_string()), false);
        }
    };
    let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
    json_response(Bytes::from(body.to_string()), method == "initialize")
}

type Request = http::Request<Incoming>;

/// The standalone SSE stream: what `set_tools` announces (and the announcements for a header
/// value this request carried), until the server stops.
fn listen(
    changes: broadcast::Receiver<Announcement>,
    headers: http::HeaderMap,
) -> Response<MockBody> {
    let events = futures_util::stream::unfold(changes, move |mut changes| {
        let headers = headers.clone();
        async move {
            loop {
                match changes.recv().await {
                    Ok((Some((header, value)), _))
                        if headers.get(&header).and_then(|v| v.to_str().ok())
                            != Some(value.as_str()) =>
                    {
                        continue;
                    }
                    Ok((_, event)) => return Some((Ok(hyper::body::Frame::data(event)), changes)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(events)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    r
}

fn json_response(body: Bytes, with_session: bool) -> Response<MockBody> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if with_session {
        r.headers_mut().insert(
            "mcp-session-id",
            http::HeaderValue::from_static("mock-session"),
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

//! A scripted Streamable HTTP server for what the reference server does not do: answering an
//! expired session with `404` (the spec's way), closing a request's event stream before the
//! reply and resuming it with `Last-Event-ID`, refusing credentials, refusing the GET stream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_mcp::config::HttpSpec;
use portcullis_mcp::upstream::{HttpUpstream, Status, Upstream, UpstreamError};
use serde_json::{Value, json};

use crate::common::{self, CALL, result, text};

/// A request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: http::HeaderMap,
    body: Value,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// The session the server knows, if any.
    session: Option<String>,
    sessions_made: u32,
    /// The reply of the request whose stream was cut, kept for the resumed stream.
    held_reply: Option<Value>,
}

struct Fake {
    state: Mutex<State>,
    /// The `Authorization` value required, if any.
    token: Option<&'static str>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn forget_sessions(&self) {
        self.state.lock().unwrap().session = None;
    }
}

fn json_answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn events(text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn handle(fake: &Fake, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.state.lock().unwrap().seen.push(Seen {
        method: parts.method.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if body["method"] == "slow" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut state = fake.state.lock().unwrap();
    if let Some(token) = fake.token
        && parts
            .headers
            .get("authorization")
            .is_none_or(|v| v.as_bytes() != token.as_bytes())
    {
        return status(StatusCode::UNAUTHORIZED);
    }
    let session = parts
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    if parts.method == http::Method::GET {
        return match parts.headers.get("last-event-id") {
            Some(cursor) if cursor == "cut-1" => match state.held_reply.take() {
                Some(reply) => events(format!("id: cut-2\ndata: {reply}\n\n")),
                None => status(StatusCode::NOT_FOUND),
            },
            _ => status(StatusCode::METHOD_NOT_ALLOWED),
        };
    }
    if parts.method == http::Method::DELETE {
        return status(StatusCode::OK);
    }
    let method = body["method"].as_str().unwrap_or_default();
    if method == "initialize" {
        state.sessions_made += 1;
        let made = format!("session-{}", state.sessions_made);
        state.session = Some(made.clone());
        let answer = json!({"jsonrpc": "2.0", "id": body["id"], "result": {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fake", "version": "1"}
        }});
        let mut response = json_answer(StatusCode::OK, &answer);
        response
            .headers_mut()
            .insert("mcp-session-id", made.parse().unwrap());
        return response;
    }
    if session.is_none() || session != state.session {
        return json_answer(
            StatusCode::NOT_FOUND,
            &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}}),
        );
    }
    if body.get("id").is_none() || body.get("method").is_none() {
        return status(StatusCode::ACCEPTED);
    }
    match method {
        "slow" => status(StatusCode::GATEWAY_TIMEOUT),
        "tools/call" => {
            // The stream primes resumption, asks for a short wait and ends before the reply.
            let reply = json!({"jsonrpc": "2.0", "id": body["id"], "result": {
                "content": [{"type": "text", "text": "after resuming"}]
            }});
            state.held_reply = Some(reply);
            events("id: cut-1\ndata: \n\nretry: 50\n\n".to_owned())
        }
        _ => json_answer(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": body["id"], "result": {"tools": []}}),
        ),
    }
}

async fn serve(token: Option<&'static str>) -> (Arc<Fake>, u16) {
    let fake = Arc::new(Fake {
        state: Mutex::new(State::default()),
        token,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::clone(&fake);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let fake = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let fake = Arc::clone(&fake);
                    async move { Ok::<_, Infallible>(handle(&fake, request).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (fake, port)
}

fn connect(port: u16, authorization: &str) -> HttpUpstream {
    let spec = HttpSpec {
        url: format!("http://127.0.0.1:{port}/mcp"),
        headers: BTreeMap::from([("Authorization".to_owned(), authorization.to_owned())]),
    };
    HttpUpstream::connect("fake".to_owned(), &spec, CALL).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_and_every_post_carry_the_headers() {
    let (fake, port) = serve(Some("Bearer good")).await;
    let upstream = connect(port, "Bearer good");
    common::ready(&upstream).await;
    assert_eq!(upstream.info().unwrap().protocol_version, "2025-06-18");
    let list = result(upstream.request("tools/list", None, None, CALL).await);
    assert_eq!(list["tools"], json!([]));
    upstream.shutdown().await;

    let seen = fake.seen();
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == "POST").collect();
    let methods: Vec<&str> = posts
        .iter()
        .map(|s| s.body["method"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized", "tools/list"]
    );
    let init = posts[0];
    assert_eq!(init.body["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(init.body["params"]["clientInfo"]["name"], "portcullis");
    assert_eq!(
        init.body["params"]["capabilities"],
        json!({"sampling": {}, "elicitation": {}, "roots": {"listChanged": true}})
    );
    assert!(init.headers.get("mcp-session-id").is_none());
    assert!(init.headers.get("mcp-protocol-version").is_none());
    for post in &posts {
        assert_eq!(post.headers["authorization"], "Bearer good");
        assert_eq!(post.headers["content-type"], "application/json");
        assert_eq!(
            post.headers["accept"],
            "application/json, text/event-stream"
        );
    }
    for post in &posts[1..] {
        assert_eq!(post.headers["mcp-session-id"], "session-1");
        assert_eq!(post.headers["mcp-protocol-version"], "2025-06-18");
    }
    // The server refused the GET stream (405): it was not asked again.
    assert_eq!(seen.iter().filter(|s| s.method == "GET").count(), 1);
    // Shutting down deleted the session.
    let delete = seen
        .iter()
        .find(|s| s.method == "DELETE")
        .expect("a DELETE");
    assert_eq!(delete.headers["mcp-session-id"], "session-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answered_404_is_renewed_once() {
    let (fake, port) = serve(None).await;
    let upstream = connect(port, "Bearer any");
    common::ready(&upstream).await;
    fake.forget_sessions();
    let list = result(upstream.request("tools/list", None, None, CALL).await);
    assert_eq!(list["tools"], json!([]));
    let seen = fake.seen();
    let initializations = seen
        .iter()
        .filter(|s| s.body["method"] == "initialize")
        .count();
    assert_eq!(initializations, 2);
    let last = seen.iter().rev().find(|s| s.method == "POST").unwrap();
    assert_eq!(last.headers["mcp-session-id"], "session-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_the_reply_is_resumed() {
    let (fake, port) = serve(None).await;
    let upstream = connect(port, "Bearer any");
    common::ready(&upstream).await;
    let reply = common::call_tool(&upstream, "anything", "{}").await;
    assert_eq!(text(&result(reply)), "after resuming");
    let resumed = fake
        .seen()
        .into_iter()
        .find(|s| s.headers.contains_key("last-event-id"))
        .expect("a resuming GET");
    assert_eq!(resumed.method, "GET");
    assert_eq!(resumed.headers["last-event-id"], "cut-1");
    assert_eq!(upstream.pending_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_unavailable_without_the_credential() {
    let (_fake, port) = serve(Some("Bearer good")).await;
    let upstream = connect(port, "Bearer wrong-secret");
    assert!(
        upstream
            .wait_for(Status::Failing, Duration::from_secs(5))
            .await
    );
    let reply = upstream.request("tools/list", None, None, CALL).await;
    let Err(UpstreamError::Unavailable { reason, .. }) = reply else {
        panic!("{reply:?}");
    };
    assert!(reason.contains("HTTP 401"), "{reason}");
    assert!(!reason.contains("wrong-secret"));
    let message = UpstreamError::Unavailable {
        server: "fake".to_owned(),
        reason,
    }
    .to_string();
    assert!(!message.contains("wrong-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_is_cancelled_upstream() {
    let (fake, port) = serve(None).await;
    let upstream = connect(port, "Bearer any");
    common::ready(&upstream).await;
    let reply = upstream
        .request("slow", None, None, Duration::from_millis(300))
        .await;
    assert!(
        matches!(reply, Err(UpstreamError::Timeout { .. })),
        "{reply:?}"
    );
    assert_eq!(upstream.pending_requests(), 0);
    let slow_id = fake
        .seen()
        .iter()
        .find(|s| s.body["method"] == "slow")
        .map(|s| s.body["id"].clone())
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let cancelled = fake
            .seen()
            .into_iter()
            .find(|s| s.body["method"] == "notifications/cancelled");
        if let Some(cancelled) = cancelled {
            assert_eq!(cancelled.body["params"]["requestId"], slow_id);
            assert_eq!(cancelled.headers["mcp-session-id"], "session-1");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no cancellation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! What the transport tests share: locating the test servers, starting the HTTP ones, and the
//! checks every transport must pass.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_mcp::jsonrpc::Message;
use portcullis_mcp::upstream::{Reply, Status, Upstream, UpstreamError};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// How long a test waits for a server to come up.
pub const START_WITHIN: Duration = Duration::from_secs(30);
/// The timeout of ordinary calls.
pub const CALL: Duration = Duration::from_secs(15);

/// A program of the test servers' `node_modules/.bin`.
pub fn bin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in tests/mcp",
        path.display()
    );
    path
}

/// Raw JSON.
pub fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

/// A result as JSON.
pub fn result(reply: Result<Reply, UpstreamError>) -> Value {
    match reply {
        Ok(Reply::Result(r)) => serde_json::from_str(r.get()).unwrap(),
        Ok(Reply::Error(e)) => panic!("the server answered error {}: {}", e.code, e.message),
        Err(e) => panic!("no reply: {e}"),
    }
}

/// The first text block of a `tools/call` result.
pub fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {result}"))
        .to_owned()
}

/// Calls a tool.
pub async fn call_tool(
    upstream: &dyn Upstream,
    name: &str,
    arguments: &str,
) -> Result<Reply, UpstreamError> {
    let params = raw(&format!(r#"{{"name":"{name}","arguments":{arguments}}}"#));
    upstream
        .request("tools/call", Some(&params), None, CALL)
        .await
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `server-everything` serving HTTP in `mode` (`streamableHttp` or `sse`), killed on drop.
pub struct HttpServer {
    _child: tokio::process::Child,
    pub port: u16,
}

impl HttpServer {
    pub async fn start(mode: &str) -> Self {
        Self::start_on(mode, free_port()).await
    }

    pub async fn start_on(mode: &str, port: u16) -> Self {
        let child = tokio::process::Command::new(bin("mcp-server-everything"))
            .arg(mode)
            .env("PORT", port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < START_WITHIN,
                "server-everything {mode} did not listen on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            _child: child,
            port,
        }
    }
}

/// Stops `server` and waits until its port is closed.
pub async fn stop(server: HttpServer) -> u16 {
    let port = server.port;
    drop(server);
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(started.elapsed() < START_WITHIN, "port {port} stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    port
}

/// Waits until `upstream` is ready.
pub async fn ready(upstream: &dyn Upstream) {
    let started = Instant::now();
    while upstream.status() != Status::Ready {
        assert!(
            started.elapsed() < START_WITHIN,
            "{} did not become ready: {:?}",
            upstream.name(),
            upstream.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The handshake's outcome, `tools/list` and `tools/call echo`.
pub async fn initializes_lists_and_calls(upstream: &dyn Upstream) {
    ready(upstream).await;
    let info = upstream.info().expect("initialized");
    assert_eq!(info.protocol_version, "2025-11-25");
    let init: Value = serde_json::from_str(info.initialize_result.get()).unwrap();
    assert!(init["serverInfo"]["name"].is_string(), "{init}");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");

    let list = result(upstream.request("tools/list", None, None, CALL).await);
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");

    let echoed = result(call_tool(upstream, "echo", r#"{"message":"through the gateway"}"#).await);
    assert!(text(&echoed).contains("through the gateway"), "{echoed}");

    let unknown = upstream.request("no/such/method", None, None, CALL).await;
    assert!(
        matches!(unknown, Ok(Reply::Error(ref e)) if e.code == -32601),
        "{unknown:?}"
    );
}

/// Progress reaches the caller's `related` channel under the caller's own token.
pub async fn progress_comes_back_with_the_callers_token(upstream: &dyn Upstream) {
    ready(upstream).await;
    let (related, mut received) = mpsc::channel(16);
    let params = raw(
        r#"{"name":"trigger-long-running-operation","arguments":{"duration":1,"steps":3},"_meta":{"progressToken":"caller-token-7"}}"#,
    );
    let reply = upstream
        .request("tools/call", Some(&params), Some(related), CALL)
        .await;
    let done = result(reply);
    assert!(text(&done).contains("completed"), "{done}");
    let mut progress = Vec::new();
    while let Ok(message) = received.try_recv() {
        if let Message::Notification(n) = message
            && n.method == "notifications/progress"
        {
            let params: Value = serde_json::from_str(n.params.unwrap().get()).unwrap();
            progress.push(params);
        }
    }
    assert_eq!(progress.len(), 3, "{progress:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["progressToken"], "caller-token-7");
        assert_eq!(p["progress"], i + 1);
        assert_eq!(p["total"], 3);
    }
}

/// A server request made while one request is in flight reaches that request's `related`
/// channel; the answer given with `respond` reaches the server.
pub async fn server_requests_reach_the_request_in_flight(upstream: &dyn Upstream) {
    ready(upstream).await;
    let (related, mut received) = mpsc::channel(16);
    let params =
        raw(r#"{"name":"trigger-sampling-request","arguments":{"prompt":"say hi","maxTokens":5}}"#);
    let call = upstream.request("tools/call", Some(&params), Some(related), CALL);
    let answer = async {
        loop {
            match received.recv().await {
                Some(Message::Request(r)) if r.method == "sampling/createMessage" => {
                    let reply = raw(
                        r#"{"role":"assistant","content":{"type":"text","text":"hi from the caller"},"model":"test-model"}"#,
                    );
                    upstream.respond(r.id, Reply::Result(reply)).await.unwrap();
                    return;
                }
                Some(_) => continue,
                None => panic!("the sampling request never came"),
            }
        }
    };
    let (reply, ()) = tokio::join!(call, answer);
    let done = result(reply);
    assert!(text(&done).contains("hi from the caller"), "{done}");
}

/// A call that outlives its timeout gives `Timeout`, and is forgotten (and cancelled).
pub async fn slow_calls_time_out(upstream: &dyn Upstream, pending: impl Fn() -> usize) {
    ready(upstream).await;
    let params =
        raw(r#"{"name":"trigger-long-running-operation","arguments":{"duration":5,"steps":5}}"#);
    let started = Instant::now();
    let reply = upstream
        .request(
            "tools/call",
            Some(&params),
            None,
            Duration::from_millis(300),
        )
        .await;
    assert!(
        matches!(reply, Err(UpstreamError::Timeout { .. })),
        "{reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(pending(), 0, "the timed-out request is forgotten");

    // A request whose future is dropped is forgotten too.
    let abandoned = upstream.request("tools/call", Some(&params), None, CALL);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), abandoned)
            .await
            .is_err()
    );
    assert_eq!(pending(), 0, "the abandoned request is forgotten");

    // The connection still answers.
    let echoed = result(call_tool(upstream, "echo", r#"{"message":"still here"}"#).await);
    assert!(text(&echoed).contains("still here"));
}

/// After shutdown, calls fail with `Unavailable`.
pub async fn shut_down_connections_refuse_calls(upstream: &dyn Upstream) {
    ready(upstream).await;
    upstream.shutdown().await;
    assert_eq!(upstream.status(), Status::Stopped);
    let reply = upstream.request("tools/list", None, None, CALL).await;
    assert!(
        matches!(reply, Err(UpstreamError::Unavailable { .. })),
        "{reply:?}"
    );
}

/// Messages the server sends outside any request reach `notifications()` (over HTTP, by the
/// GET stream).
pub async fn server_notifications_reach_the_broadcast_channel(upstream: &dyn Upstream) {
    ready(upstream).await;
    let mut notifications = upstream.notifications();
    let toggled = result(call_tool(upstream, "toggle-simulated-logging", "{}").await);
    assert!(text(&toggled).contains("logging"), "{toggled}");
    let logged = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            match notifications.recv().await {
                Ok(Message::Notification(n)) if n.method == "notifications/message" => return n,
                Ok(_) => continue,
                Err(e) => panic!("the broadcast channel failed: {e}"),
            }
        }
    })
    .await
    .expect("a log message within 12 s");
    let params: Value = serde_json::from_str(logged.params.unwrap().get()).unwrap();
    assert!(params["level"].is_string(), "{params}");
}

//! What the standalone GET stream of `/mcp` and `/mcp/<server>` tells a client beyond its
//! lists, over real HTTP in front of the test-support `MockMcpServer`: a resource subscribed
//! to with `resources/subscribe` (its URI public on `/mcp`) is announced with
//! `notifications/resources/updated` under the URI the endpoint names it by; and a list change
//! on a caller's own-credential instance of a server reaches that caller's stream, and no one
//! else's.

use std::time::Duration;

use futures_util::StreamExt;
use portcullis_test_support::MockMcpServer;
use serde_json::{Value, json};

use crate::common::*;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn rpc(gw: &TestGateway, path: &str, key: &str, body: Value) -> Value {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// An open GET stream, read as it comes.
struct Listening {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffered: String,
}

impl Listening {
    async fn open(gw: &TestGateway, path: &str, key: &str) -> Self {
        let r = client()
            .get(gw.at(path))
            .bearer_auth(key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        Self {
            body: r.bytes_stream().boxed(),
            buffered: String::new(),
        }
    }

    /// The next JSON-RPC message on the stream within `wait`, if any.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffered.find("\n\n") {
                let event: String = self.buffered.drain(..end + 2).collect();
                if let Some((_, data)) = sse_events(&event).into_iter().next()
                    && let Ok(v) = serde_json::from_str::<Value>(&data)
                {
                    return Some(v);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buffered.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Calls `trigger` until a message with `method` arrives (the gateway follows a server's
    /// notifications a moment after the stream opens); returns it.
    async fn until(&mut self, method: &str, trigger: impl Fn()) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {method} on the stream"
            );
            trigger();
            while let Some(m) = self.next(Duration::from_millis(200)).await {
                if m["method"] == method {
                    return m;
                }
            }
        }
    }
}

/// Waits until `mock` has `n` GET streams open (the gateway's connections to it).
async fn listeners(mock: &MockMcpServer, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mock.listeners() < n {
        assert!(tokio::time::Instant::now() < deadline, "no GET stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_subscribed_resource_is_announced_updated_under_the_endpoints_uri() {
    let mock = MockMcpServer::start(1).await.unwrap();
    let yaml = format!(
        "\nmcp:\n  servers:\n    files:\n      url: {}\n      timeout: 5s\n",
        mock.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let mut all = Listening::open(&gw, "/mcp", MASTER_KEY).await;
    let mut own = Listening::open(&gw, "/mcp/files", MASTER_KEY).await;

    // The public URI is routed back to the server under its own.
    let answer = rpc(
        &gw,
        "/mcp",
        MASTER_KEY,
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe",
               "params": {"uri": "portcullis://files/file:///notes.txt"}}),
    )
    .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    assert_eq!(mock.subscriptions(), ["file:///notes.txt"]);

    listeners(&mock, 1).await;
    let update = || mock.update_resource("file:///notes.txt");
    let heard = all.until("notifications/resources/updated", update).await;
    assert_eq!(
        heard["params"]["uri"], "portcullis://files/file:///notes.txt",
        "{heard}"
    );
    let heard = own.until("notifications/resources/updated", update).await;
    assert_eq!(heard["params"]["uri"], "file:///notes.txt", "{heard}");

    let answer = rpc(
        &gw,
        "/mcp/files",
        MASTER_KEY,
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/unsubscribe",
               "params": {"uri": "file:///notes.txt"}}),
    )
    .await;
    assert_eq!(answer["result"], json!({}), "{answer}");
    assert!(mock.subscriptions().is_empty());
}

async fn admin(gw: &TestGateway, path: &str, body: Value) -> Value {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_list_change_on_a_callers_own_instance_reaches_that_callers_stream_only() {
    let mock = MockMcpServer::start(1).await.unwrap();
    let yaml = format!(
        "secret_key: {SECRET_KEY}\nmcp:\n  servers:\n    gh:\n      url: {}\n      timeout: 5s\n",
        mock.url()
    );
    let gw = TestGateway::start(&yaml).await;
    admin(&gw, "/admin/users", json!({"id": "ann", "role": "member"})).await;
    let key = admin(
        &gw,
        "/admin/keys",
        json!({"name": "ann-agent", "user": "ann"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(
        &gw,
        "/admin/mcp-servers/gh/credentials",
        json!({"owner": {"user": "ann"}, "headers": {"x-upstream-token": "ann-s3cret"}}),
    )
    .await;
    // Ann lists through her own instance, which opens a GET stream of its own upstream.
    let listed = rpc(
        &gw,
        "/mcp",
        &key,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(
        listed["result"]["tools"][0]["name"], "gh__tool-0",
        "{listed}"
    );
    listeners(&mock, 2).await;

    let mut anns = Listening::open(&gw, "/mcp", &key).await;
    let mut others = Listening::open(&gw, "/mcp", MASTER_KEY).await;
    // The server tells only the connections carrying Ann's credential.
    let changed = || {
        mock.notify_header(
            "x-upstream-token",
            "ann-s3cret",
            "notifications/tools/list_changed",
        )
    };
    anns.until("notifications/tools/list_changed", changed)
        .await;
    while let Some(m) = others.next(Duration::from_millis(300)).await {
        assert_ne!(
            m["method"], "notifications/tools/list_changed",
            "another caller hears of Ann's instance: {m}"
        );
    }
}

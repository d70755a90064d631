//! Two gateway replicas on one PostgreSQL database and one Redis, behind no sticky load
//! balancer, driven over HTTP like a client that lands on either: a call's SSE stream begun
//! on one replica resumes with `Last-Event-ID` on the other, every event once and in order;
//! a 2026 client's retry of a call waiting for its input (`requestState`) reaches the call on
//! the replica holding it; and when the replica named is gone, the answer is the one for a
//! stream or call no longer kept.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::common::*;

/// The server-everything binary the test suite's npm packages install.
fn everything_bin() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in tests/mcp",
        path.display()
    );
    path.display().to_string()
}

/// Replicas A and B, with Redis, in front of server-everything.
async fn replicas() -> (TestGateway, TestGateway) {
    let redis = std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let yaml = format!(
        "redis: {{url: \"{redis}\"}}\nmcp:\n  servers:\n    everything:\n      command: {}\n      args: [stdio]\n      timeout: 20s\n",
        everything_bin()
    );
    let db = fresh_postgres_url().await;
    let a = TestGateway::start_with_db(&db, &yaml).await;
    let b = TestGateway::start_with_db(&db, &yaml).await;
    (a, b)
}

/// A client without a total timeout, for streams.
fn streaming() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Reads SSE events from `body` into `pending` until one satisfies `wanted` (20 s at most);
/// returns the events read, each as (id, data).
async fn events_until(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    pending: &mut String,
    wanted: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let id = event
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or("")
                .to_owned();
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .unwrap_or("")
                .to_owned();
            if id.is_empty() && data.is_empty() {
                continue; // a comment or a retry field
            }
            let done = wanted(&id, &data);
            seen.push((id, data));
            if done {
                return seen;
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .unwrap_or_else(|_| panic!("no such event; seen: {seen:?}"))
            .unwrap_or_else(|| panic!("the stream ended; seen: {seen:?}"))
            .unwrap();
        pending.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn resume(gw: &TestGateway, session: &str, last_event_id: &str) -> reqwest::RequestBuilder {
    streaming()
        .get(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last_event_id)
}

/// The stream and number of an event id (`<stream>-<n>`).
fn split_id(id: &str) -> (&str, u64) {
    let (stream, n) = id.rsplit_once('-').expect("an event id");
    (stream, n.parse().expect("an event number"))
}

/// A call's stream begun on A, its connection broken after the first progress, resumes on B:
/// B gets the events after the one named, then the rest live from A as they happen, to the
/// result; every event arrives once and in order. Another session may not resume it there.
#[tokio::test]
async fn a_calls_stream_begun_on_one_replica_resumes_on_the_other() {
    let (a, b) = replicas().await;
    let session = mcp_session(&a, MASTER_KEY).await;
    let call = json!({"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": {
        "name": "everything__trigger-long-running-operation",
        "arguments": {"duration": 4, "steps": 4},
        "_meta": {"progressToken": "p-1"}}});
    let r = streaming()
        .post(a.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let first = events_until(&mut body, &mut pending, |_, d| d.contains("progress")).await;
    let (last_id, _) = first.last().unwrap().clone();
    // The connection breaks after the first progress; the client comes back through B.
    drop(body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = resume(&b, &session, &last_id).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let rest = events_until(&mut body, &mut pending, |_, d| d.contains("\"id\":21")).await;

    // One stream, every event once, in order.
    let all: Vec<&(String, String)> = first.iter().chain(rest.iter()).collect();
    let (stream, _) = split_id(&all[0].0);
    let numbers: Vec<u64> = all
        .iter()
        .map(|(id, _)| {
            let (s, n) = split_id(id);
            assert_eq!(s, stream, "one stream: {all:?}");
            n
        })
        .collect();
    let expected: Vec<u64> = (0..numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{all:?}");
    let progress: Vec<u64> = all
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(progress, [1, 2, 3, 4], "{all:?}");
    let result: Value = serde_json::from_str(&rest.last().unwrap().1).unwrap();
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{result}"
    );
    // The stream ends after the result.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends after the result");

    // Another session is refused on B as on A; the stream's owner may read it again there
    // (it is kept a little after its end for a client that missed the last bytes).
    let other = mcp_session(&b, MASTER_KEY).await;
    let r = resume(&b, &other, &last_id).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    let (_, result_n) = split_id(&rest.last().unwrap().0);
    let before_result = format!("{stream}-{}", result_n - 1);
    let r = resume(&b, &session, &before_result).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let again = events_until(&mut body, &mut pending, |_, d| d.contains("\"id\":21")).await;
    assert_eq!(again.len(), 1, "{again:?}");
    a.stop().await;
    b.stop().await;
}

const META: &str = r#"{"io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}"#;
const SAMPLING: &str = "everything__trigger-sampling-request";

/// A 2026 client's call of the sampling tool on `gw` with `key`, with `extra` parameters.
async fn call_2026(gw: &TestGateway, key: &str, extra: Value) -> Value {
    let meta: Value = serde_json::from_str(META).unwrap();
    let mut params = json!({"_meta": meta, "name": SAMPLING,
        "arguments": {"prompt": "Capital of France?", "maxTokens": 20}});
    if let Value::Object(extra) = extra {
        params.as_object_mut().unwrap().extend(extra);
    }
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", SAMPLING)
        .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The `input_required` result of a first call: the key of its one input request and the
/// `requestState`.
fn input_required(first: &Value) -> (String, String) {
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1, "{first}");
    let (key, asked) = requests.iter().next().unwrap();
    assert_eq!(asked["method"], "sampling/createMessage");
    assert!(
        asked["params"].to_string().contains("Capital of France?"),
        "{asked}"
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    (key.clone(), state)
}

fn answers(key: &str, state: &str) -> Value {
    json!({"inputResponses": {key: {"role": "assistant", "model": "client-model",
        "stopReason": "endTurn", "content": {"type": "text", "text": "Paris, said the client."}}},
        "requestState": state})
}

/// A 2026 call asked for input on A is retried on B: the retry reaches the call on A, which
/// goes on with the client's answer, and B answers with its result. Another caller's retry
/// through B is refused and takes nothing; a spent state is refused.
#[tokio::test]
async fn a_2026_retry_on_another_replica_reaches_the_call_waiting_for_input() {
    let (a, b) = replicas().await;
    let first = call_2026(&a, MASTER_KEY, json!({})).await;
    let (key, state) = input_required(&first);

    // A key made on B, which B knows at once.
    let other = client()
        .post(b.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "other"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let stolen = call_2026(&b, &other, answers(&key, &state)).await;
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");

    let done = call_2026(&b, MASTER_KEY, answers(&key, &state)).await;
    assert_eq!(done["id"], 5, "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(
        done["result"]["content"]
            .to_string()
            .contains("Paris, said the client."),
        "{done}"
    );
    // The state is spent, on either replica.
    let again = call_2026(&b, MASTER_KEY, answers(&key, &state)).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    let again = call_2026(&a, MASTER_KEY, answers(&key, &state)).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");

    // And the other way round: asked on B, retried on A.
    let first = call_2026(&b, MASTER_KEY, json!({})).await;
    let (key, state) = input_required(&first);
    let done = call_2026(&a, MASTER_KEY, answers(&key, &state)).await;
    assert!(
        done["result"]["content"]
            .to_string()
            .contains("Paris, said the client."),
        "{done}"
    );
    a.stop().await;
    b.stop().await;
}

/// When the replica a stream or a waiting call names is gone, the answer is the one for a
/// stream or call no longer kept: 404 for a call's stream, a fresh standalone stream saying
/// every list may have changed, an invalid `requestState`.
#[tokio::test]
async fn what_a_gone_replica_held_is_answered_as_no_longer_kept() {
    let (a, b) = replicas().await;
    let session = mcp_session(&b, MASTER_KEY).await;
    let nobody = "0123456789abcdef";
    let r = resume(&b, &session, &format!("p{nobody}.{:032x}-3", 7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    let r = resume(&b, &session, &format!("g{nobody}.{:032x}-3", 7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let fresh = events_until(&mut body, &mut pending, |_, d| {
        d.contains("notifications/tools/list_changed")
    })
    .await;
    assert!(
        fresh[0].0.starts_with('g') && !fresh[0].0.contains(nobody),
        "{fresh:?}"
    );
    drop(body);
    let state = format!("portcullis-{nobody}-{:032x}", 7);
    let gone = call_2026(&b, MASTER_KEY, answers("k", &state)).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    assert!(
        gone["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requestState"),
        "{gone}"
    );

    // A replica that stops takes its waiting calls with it.
    let first = call_2026(&a, MASTER_KEY, json!({})).await;
    let (key, state) = input_required(&first);
    a.stop().await;
    let gone = call_2026(&b, MASTER_KEY, answers(&key, &state)).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    b.stop().await;
}

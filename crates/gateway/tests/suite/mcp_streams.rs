//! The MCP gateway's lists and streams over real HTTP: lists answered page by page with
//! stateless cursors (followed by the `rmcp` client; checked by hand for stale and forged
//! cursors), in front of the test-support `MockMcpServer`, whose tool list a test can change.

use portcullis_test_support::MockMcpServer;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::*;

fn yaml(mock: &MockMcpServer) -> String {
    format!(
        "\nmcp:\n  servers:\n    many:\n      url: {}\n      timeout: 5s\n",
        mock.url()
    )
}

async fn rpc(gw: &TestGateway, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn list(cursor: Option<&str>) -> Value {
    match cursor {
        Some(c) => {
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": c}})
        }
        None => json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    }
}

fn names(page: &Value) -> Vec<String> {
    page["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of tools: {page}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the gateway's connection to `mock` has its GET stream open, so that the
/// server's `list_changed` reaches the gateway.
async fn listened(mock: &MockMcpServer) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while mock.listeners() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no GET stream");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn long_lists_come_in_pages_a_client_follows_and_a_stale_cursor_is_refused() {
    let mock = MockMcpServer::start(250).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;

    // A client that follows `nextCursor` gets every tool, once each.
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.at("/mcp")).auth_header(MASTER_KEY);
    let client_ = ().serve(StreamableHttpClientTransport::from_config(config)).await.unwrap();
    let tools = client_.list_all_tools().await.unwrap();
    let mut all: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(all.len(), 250);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 250);
    assert!(all.iter().all(|n| n.starts_with("many__tool-")));
    client_.cancel().await.unwrap();

    // By hand: pages of 100 in the server's order; the last says nothing of a next.
    let (status, first) = rpc(&gw, "/mcp", list(None)).await;
    assert_eq!(status, 200);
    assert_eq!(names(&first).len(), 100);
    assert_eq!(names(&first)[0], "many__tool-0");
    let cursor = first["result"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, second) = rpc(&gw, "/mcp", list(Some(&cursor))).await;
    assert_eq!(names(&second)[0], "many__tool-100");
    let third_cursor = second["result"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, third) = rpc(&gw, "/mcp", list(Some(&third_cursor))).await;
    assert_eq!(names(&third).len(), 50);
    assert_eq!(names(&third)[49], "many__tool-249");
    assert!(third["result"].get("nextCursor").is_none(), "{third}");

    // The server's own endpoint pages its own names.
    let (_, own) = rpc(&gw, "/mcp/many", list(None)).await;
    assert_eq!(names(&own)[0], "tool-0");
    let own_cursor = own["result"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, own2) = rpc(&gw, "/mcp/many", list(Some(&own_cursor))).await;
    assert_eq!(names(&own2)[0], "tool-100");

    // A cursor of another list, or one the gateway never wrote: -32602, HTTP 200.
    let (status, other) = rpc(
        &gw,
        "/mcp",
        json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/list", "params": {"cursor": cursor}}),
    )
    .await;
    assert_eq!(
        (status, other["error"]["code"].as_i64()),
        (200, Some(-32602)),
        "{other}"
    );
    for forged in ["garbage", "", "p1.64.0000000000000000"] {
        let (status, body) = rpc(&gw, "/mcp", list(Some(forged))).await;
        assert_eq!(
            (status, body["error"]["code"].as_i64()),
            (200, Some(-32602)),
            "{forged}: {body}"
        );
    }
    // A cursor of the aggregated list is not one of the server's own.
    let (_, mixed) = rpc(&gw, "/mcp/many", list(Some(&cursor))).await;
    assert_eq!(mixed["error"]["code"], -32602, "{mixed}");

    // The server's list changes: a cursor cut from the old list is refused, a new listing
    // pages the new one.
    listened(&mock).await;
    mock.set_tools(240);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, again) = rpc(&gw, "/mcp", list(Some(&cursor))).await;
        if again["error"]["code"] == -32602 {
            assert!(
                again["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("cursor"),
                "{again}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old cursor still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, fresh) = rpc(&gw, "/mcp", list(None)).await;
    let next = fresh["result"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, fresh2) = rpc(&gw, "/mcp", list(Some(&next))).await;
    let next = fresh2["result"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, fresh3) = rpc(&gw, "/mcp", list(Some(&next))).await;
    assert_eq!(names(&fresh3).len(), 40);
}

/// The operator sets the page size (`mcp.page_size`).
#[tokio::test]
async fn the_page_size_is_configurable() {
    let mock = MockMcpServer::start(20).await.unwrap();
    let gw = TestGateway::start(&format!("{}  page_size: 7\n", yaml(&mock))).await;
    let (_, first) = rpc(&gw, "/mcp", list(None)).await;
    assert_eq!(names(&first).len(), 7, "{first}");
    let mut cursor = first["result"]["nextCursor"].as_str().map(str::to_owned);
    let mut all = names(&first);
    while let Some(c) = cursor {
        let (_, page) = rpc(&gw, "/mcp", list(Some(&c))).await;
        all.extend(names(&page));
        cursor = page["result"]["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(all.len(), 20);
}

/// A key that sees few tools gets them on one page: pages are cut after the key's filter.
#[tokio::test]
async fn pages_are_cut_from_what_the_caller_may_see() {
    let mock = MockMcpServer::start(250).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "few", "tools": ["many__tool-1*"]}))
        .send()
        .await
        .unwrap();
    let key: Value = r.json().await.unwrap();
    let key = key["key"].as_str().unwrap();
    let r: Value = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .json(&list(None))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // tool-1, tool-10..19, tool-100..199.
    assert_eq!(names(&r).len(), 100);
    let cursor = r["result"]["nextCursor"].as_str().unwrap();
    let r2: Value = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .json(&list(Some(cursor)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names(&r2).len(), 11);
    assert!(r2["result"].get("nextCursor").is_none());
    // Another caller's view is another list: the key's cursor means nothing to the master key.
    let (_, other) = rpc(&gw, "/mcp", list(Some(cursor))).await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
}

/// A client without a total timeout, for streams.
fn streaming() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Reads SSE events from `body` into `pending` until one satisfies `wanted` (10 s at most);
/// returns the events read, each as (id, data).
async fn events_until(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    pending: &mut String,
    wanted: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    use futures_util::StreamExt;
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
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .unwrap_or_else(|_| panic!("no such event; seen: {seen:?}"))
            .unwrap_or_else(|| panic!("the stream ended; seen: {seen:?}"))
            .unwrap();
        pending.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn get(gw: &TestGateway, key: &str, session: &str) -> reqwest::RequestBuilder {
    streaming()
        .get(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
}

const TOOLS_CHANGED: &str = "notifications/tools/list_changed";

/// The standalone GET stream says when a server's tools change, and the next listing shows the
/// change; a broken connection resumes with `Last-Event-ID` and gets what it missed.
#[tokio::test]
async fn the_get_stream_tells_of_changed_lists_and_resumes_where_it_broke() {
    let mock = MockMcpServer::start(5).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;
    let session = mcp_session(&gw, MASTER_KEY).await;
    listened(&mock).await;
    let (_, before) = rpc(&gw, "/mcp", list(None)).await;
    assert_eq!(names(&before).len(), 5);

    let r = get(&gw, MASTER_KEY, &session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    // A priming event: an id, no data.
    let primed = events_until(&mut body, &mut pending, |_, _| true).await;
    let (primer, data) = &primed[0];
    assert!(primer.starts_with('g') && data.is_empty(), "{primed:?}");

    mock.set_tools(3);
    let seen = events_until(&mut body, &mut pending, |_, d| d.contains(TOOLS_CHANGED)).await;
    let (last_id, data) = seen.last().unwrap().clone();
    let message: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(message, json!({"jsonrpc": "2.0", "method": TOOLS_CHANGED}));
    let (_, after) = rpc(&gw, "/mcp", list(None)).await;
    assert_eq!(names(&after).len(), 3, "the list is fetched again");

    // The connection breaks; a change happens meanwhile; the client comes back.
    drop(body);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    mock.set_tools(4);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = get(&gw, MASTER_KEY, &session)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let replayed = events_until(&mut body, &mut pending, |_, d| d.contains(TOOLS_CHANGED)).await;
    assert_eq!(
        replayed.len(),
        1,
        "only what came after {last_id}: {replayed:?}"
    );
    assert_ne!(replayed[0].0, last_id);
    drop(body);

    // Another caller cannot resume it: it gets a stream of its own, which says every list
    // may have changed — and nothing of the other stream.
    let other = client()
        .post(gw.at("/admin/keys"))
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
    let other_session = mcp_session(&gw, &other).await;
    let r = get(&gw, &other, &other_session)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    // (In name order: prompts, resources, tools.)
    let fresh = events_until(&mut body, &mut pending, |_, d| d.contains(TOOLS_CHANGED)).await;
    assert!(
        fresh
            .iter()
            .all(|(id, _)| !id.starts_with(last_id.split('-').next().unwrap())),
        "{fresh:?}"
    );
    let methods: Vec<&str> = fresh.iter().map(|(_, d)| d.as_str()).collect();
    assert!(
        methods.iter().any(|d| d.contains(TOOLS_CHANGED)),
        "{methods:?}"
    );
    assert!(
        methods.iter().any(|d| d.contains("prompts/list_changed")),
        "{methods:?}"
    );
}

/// The GET stream authenticates like POST, and its edges answer with precise statuses.
#[tokio::test]
async fn the_get_streams_edges() {
    let mock = MockMcpServer::start(5).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;
    let session = mcp_session(&gw, MASTER_KEY).await;
    let r = streaming()
        .get(gw.at("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = get(&gw, MASTER_KEY, "forged.00").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = streaming()
        .get(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    // A resume of an answer stream the gateway does not keep; an id it never wrote.
    let r = get(&gw, MASTER_KEY, &session)
        .header("last-event-id", "p0123-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600);
    let r = get(&gw, MASTER_KEY, &session)
        .header("last-event-id", "whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = streaming()
        .delete(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    // A caller holds a bounded number of GET connections on a replica.
    let mut open = Vec::new();
    for _ in 0..16 {
        let s = mcp_session(&gw, MASTER_KEY).await;
        let r = get(&gw, MASTER_KEY, &s).send().await.unwrap();
        assert_eq!(r.status(), 200);
        open.push(r);
    }
    let s = mcp_session(&gw, MASTER_KEY).await;
    let r = get(&gw, MASTER_KEY, &s).send().await.unwrap();
    assert_eq!(r.status(), 429);
    drop(open);
}

fn everything_bin() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-everything")
        .display()
        .to_string()
}

/// A call's SSE answer survives a broken connection: the call goes on, and a GET with
/// `Last-Event-ID` gets the events after it, the result included.
#[tokio::test]
async fn a_calls_stream_resumes_after_a_broken_connection_with_its_result() {
    let gw = TestGateway::start(&format!(
        "\nmcp:\n  servers:\n    everything:\n      command: {}\n      args: [stdio]\n      timeout: 20s\n",
        everything_bin()
    ))
    .await;
    let session = mcp_session(&gw, MASTER_KEY).await;
    let call = json!({"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": {
        "name": "everything__trigger-long-running-operation",
        "arguments": {"duration": 2, "steps": 4},
        "_meta": {"progressToken": "p-1"}}});
    let r = streaming()
        .post(gw.at("/mcp"))
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
    assert!(
        first[0].1.is_empty() && first[0].0.starts_with('p'),
        "primed: {first:?}"
    );
    let (last_id, _) = first.last().unwrap().clone();
    // The connection breaks after the first progress.
    drop(body);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let r = get(&gw, MASTER_KEY, &session)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let rest = events_until(&mut body, &mut pending, |_, d| d.contains("\"id\":21")).await;
    let progress: Vec<u64> = rest
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progress"].as_u64().unwrap())
        .collect();
    assert_eq!(progress, [2, 3, 4], "{rest:?}");
    let result: Value = serde_json::from_str(&rest.last().unwrap().1).unwrap();
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{result}"
    );
    // The stream ends after the result.
    use futures_util::StreamExt;
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends after the result");
    // A resume from another session is not this stream's.
    let other = mcp_session(&gw, MASTER_KEY).await;
    let r = get(&gw, MASTER_KEY, &other)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A client that cancels a call whose answer is a stream ends it (and the call upstream),
/// rather than leaving it to run for a resume that will not come.
#[tokio::test]
async fn a_cancelled_calls_stream_ends() {
    use futures_util::StreamExt;
    let gw = TestGateway::start(&format!(
        "\nmcp:\n  servers:\n    everything:\n      command: {}\n      args: [stdio]\n      timeout: 20s\n",
        everything_bin()
    ))
    .await;
    let session = mcp_session(&gw, MASTER_KEY).await;
    let call = json!({"jsonrpc": "2.0", "id": 31, "method": "tools/call", "params": {
        "name": "everything__trigger-long-running-operation",
        "arguments": {"duration": 10, "steps": 10},
        "_meta": {"progressToken": "p-2"}}});
    let r = streaming()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .json(&call)
        .send()
        .await
        .unwrap();
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    events_until(&mut body, &mut pending, |_, d| d.contains("progress")).await;
    // Another session's cancellation is not this call's.
    let other = mcp_session(&gw, MASTER_KEY).await;
    let cancel = |session: String| {
        client()
            .post(gw.at("/mcp"))
            .bearer_auth(MASTER_KEY)
            .header("mcp-session-id", session)
            .json(
                &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 31, "reason": "enough"}}),
            )
            .send()
    };
    assert_eq!(cancel(other).await.unwrap().status(), 202);
    events_until(&mut body, &mut pending, |_, d| d.contains("progress")).await;
    assert_eq!(cancel(session).await.unwrap().status(), 202);
    let rest = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut text = pending.clone();
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        text
    })
    .await
    .expect("the stream ends");
    assert!(
        !rest.contains("\"id\":31"),
        "no result after a cancel: {rest}"
    );
}

/// A 2026 client is asked for what a server of the handshake generation asks during a call
/// (here sampling) with an `input_required` result; its retry carries the answer and the
/// `requestState`, and gets the call's result. A `requestState` is only good for its caller.
#[tokio::test]
async fn a_2026_client_answers_a_servers_request_by_retrying_the_call() {
    let gw = TestGateway::start(&format!(
        "\nmcp:\n  servers:\n    everything:\n      command: {}\n      args: [stdio]\n      timeout: 20s\n",
        everything_bin()
    ))
    .await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}});
    let tool = "everything__trigger-sampling-request";
    let call = |key: &str, extra: Value| {
        let mut params = json!({"_meta": meta, "name": tool,
            "arguments": {"prompt": "Capital of France?", "maxTokens": 20}});
        if let Value::Object(extra) = extra {
            params.as_object_mut().unwrap().extend(extra);
        }
        client()
            .post(gw.at("/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .json(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}))
            .send()
    };
    let first: Value = call(MASTER_KEY, json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let requests = result["inputRequests"].as_object().unwrap();
    assert_eq!(requests.len(), 1);
    let (key, asked) = requests.iter().next().unwrap();
    assert_eq!(asked["method"], "sampling/createMessage");
    assert!(
        asked["params"].to_string().contains("Capital of France?"),
        "{asked}"
    );
    let state = result["requestState"].as_str().unwrap().to_owned();

    // Another caller's retry with that state is refused, and takes nothing from the call.
    let other = client()
        .post(gw.at("/admin/keys"))
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
    let answers = json!({"inputResponses": {key: {"role": "assistant", "model": "client-model",
        "stopReason": "endTurn", "content": {"type": "text", "text": "Paris, said the client."}}},
        "requestState": state});
    let stolen: Value = call(&other, answers.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stolen["error"]["code"], -32602, "{stolen}");

    let done: Value = call(MASTER_KEY, answers.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(
        done["result"]["content"]
            .to_string()
            .contains("Paris, said the client."),
        "{done}"
    );
    // The state is spent.
    let again: Value = call(MASTER_KEY, answers)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["error"]["code"], -32602, "{again}");
}

/// The `rmcp` client opens the GET stream itself after the handshake, and is told when a
/// server's tools change; listing again shows the change.
#[tokio::test]
async fn an_rmcp_client_hears_of_changed_tools() {
    struct Changes(tokio::sync::mpsc::UnboundedSender<()>);
    impl rmcp::ClientHandler for Changes {
        fn on_tool_list_changed(
            &self,
            _: rmcp::service::NotificationContext<rmcp::RoleClient>,
        ) -> impl std::future::Future<Output = ()> + Send + '_ {
            let _ = self.0.send(());
            std::future::ready(())
        }
    }
    let mock = MockMcpServer::start(5).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;
    listened(&mock).await;
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.at("/mcp")).auth_header(MASTER_KEY);
    let mcp = Changes(tx)
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap();
    assert_eq!(mcp.list_all_tools().await.unwrap().len(), 5);
    // The client's GET stream is open once the gateway counts it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        mock.set_tools(8);
        if tokio::time::timeout(std::time::Duration::from_millis(300), changed.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no list_changed");
    }
    assert_eq!(mcp.list_all_tools().await.unwrap().len(), 8);
    mcp.cancel().await.unwrap();
}

/// A 2026 client hears of changed lists through `subscriptions/listen`: acknowledged first,
/// then the notifications it asked for, each naming its subscription.
#[tokio::test]
async fn a_2026_client_subscribes_to_list_changes() {
    let mock = MockMcpServer::start(5).await.unwrap();
    let gw = TestGateway::start(&yaml(&mock)).await;
    listened(&mock).await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let r = streaming()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen",
            "params": {"_meta": meta, "notifications": {"toolsListChanged": true,
                "resourceSubscriptions": ["portcullis://many/x"]}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = Box::pin(r.bytes_stream());
    let mut pending = String::new();
    let ack = events_until(&mut body, &mut pending, |_, d| d.contains("acknowledged")).await;
    let ack: Value = serde_json::from_str(&ack.last().unwrap().1).unwrap();
    assert_eq!(
        ack["params"],
        json!({"_meta": {"io.modelcontextprotocol/subscriptionId": 9},
               "notifications": {"toolsListChanged": true}}),
        "resource updates are not offered: {ack}"
    );
    mock.set_tools(2);
    let seen = events_until(&mut body, &mut pending, |_, d| d.contains(TOOLS_CHANGED)).await;
    let changed: Value = serde_json::from_str(&seen.last().unwrap().1).unwrap();
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        9
    );
}

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

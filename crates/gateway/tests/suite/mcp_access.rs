//! MCP access rules by user, team and role, over real HTTP against a mock Streamable HTTP
//! server that counts the calls it gets: keys of users in different teams see different
//! `tools/list`s; a refused call is the JSON-RPC -32602 naming the tool with HTTP 200 and never
//! reaches the server; deny rules win; rules added and deleted through `/admin/mcp-access`
//! take effect at once on the replica that took them and, on PostgreSQL, on another replica
//! within its poll interval; bad rules are refused with the field named; only admins manage
//! rules.

use std::time::Duration;

use portcullis_test_support::mcp::MockMcpServer;
use serde_json::{Value, json};

use crate::common::*;

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client()
        .request(method, gw.at(path))
        .bearer_auth(MASTER_KEY);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// One JSON-RPC request to `/mcp` with `key`: HTTP status and the answer.
async fn rpc(gw: &TestGateway, key: &str, method: &str, params: Value) -> (u16, Value) {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The tool names `key` sees on `/mcp`.
async fn tools(gw: &TestGateway, key: &str) -> Vec<String> {
    let (status, answer) = rpc(gw, key, "tools/list", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn call(gw: &TestGateway, key: &str, tool: &str) -> (u16, Value) {
    rpc(
        gw,
        key,
        "tools/call",
        json!({"name": tool, "arguments": {"x": 1}}),
    )
    .await
}

/// Asserts the refusal a caller sees for `tool`.
fn assert_refused(status: u16, answer: &Value, tool: &str) {
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains(tool),
        "{answer}"
    );
}

/// Teams `platform` and `data`, users `ann` (platform, member) and `bob` (data, member), and a
/// key of each; returns (ann's key, bob's key).
async fn people(gw: &TestGateway) -> (String, String) {
    for team in ["platform", "data"] {
        let (s, body) = admin(
            gw,
            "POST",
            "/admin/teams",
            Some(json!({"id": team, "name": team})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    let mut keys = Vec::new();
    for (user, team) in [("ann", "platform"), ("bob", "data")] {
        let (s, body) = admin(
            gw,
            "POST",
            "/admin/users",
            Some(json!({"id": user, "email": format!("{user}@example.com"), "role": "member", "teams": [team]})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        let (s, body) = admin(
            gw,
            "POST",
            "/admin/keys",
            Some(json!({"name": format!("{user}-agent"), "user": user})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        keys.push(body["key"].as_str().unwrap().to_owned());
    }
    (keys[0].clone(), keys[1].clone())
}

fn config(mock: &MockMcpServer) -> String {
    format!(
        "mcp:\n  servers:\n    gh:\n      url: {}\n  access:\n    - tools: [\"gh__tool-0\"]\n      teams: [platform]\n      allow: true\n",
        mock.url()
    )
}

#[tokio::test]
async fn teams_see_and_call_different_tools() {
    let mock = MockMcpServer::start(3).await.unwrap();
    let gw = TestGateway::start(&config(&mock)).await;
    let (ann, bob) = people(&gw).await;

    // `gh__tool-0` is reserved to platform; the others are everyone's.
    assert_eq!(
        tools(&gw, &ann).await,
        ["gh__tool-0", "gh__tool-1", "gh__tool-2"]
    );
    assert_eq!(tools(&gw, &bob).await, ["gh__tool-1", "gh__tool-2"]);

    let (status, answer) = call(&gw, &bob, "gh__tool-0").await;
    assert_refused(status, &answer, "gh__tool-0");
    assert_eq!(mock.calls(), 0, "a refused call never reaches the server");
    // On the server's own endpoint as well.
    let r = client()
        .post(gw.at("/mcp/gh"))
        .bearer_auth(&bob)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "tool-0", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(mock.calls(), 0);

    let (status, answer) = call(&gw, &ann, "gh__tool-0").await;
    assert_eq!(status, 200);
    assert!(answer["result"].is_object(), "{answer}");
    assert_eq!(mock.calls(), 1);
    let (_, answer) = call(&gw, &bob, "gh__tool-1").await;
    assert!(answer["result"].is_object(), "{answer}");
    assert_eq!(mock.calls(), 2);

    // The master key is an admin without teams: not in platform.
    assert_eq!(tools(&gw, MASTER_KEY).await, ["gh__tool-1", "gh__tool-2"]);
    gw.stop().await;
}

#[tokio::test]
async fn runtime_rules_take_effect_and_go_away() {
    let mock = MockMcpServer::start(3).await.unwrap();
    let gw = TestGateway::start(&config(&mock)).await;
    let (ann, bob) = people(&gw).await;

    // A deny rule about ann's team wins over the configuration's allow rule.
    let (s, rule) = admin(
        &gw,
        "POST",
        "/admin/mcp-access",
        Some(json!({"tools": ["gh__tool-0", "gh__tool-2"], "users": ["ann"], "allow": false})),
    )
    .await;
    assert_eq!(s, 201, "{rule}");
    assert_eq!(rule["allow"], false);
    assert_eq!(rule["users"], json!(["ann"]));
    let id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(tools(&gw, &ann).await, ["gh__tool-1"]);
    let (status, answer) = call(&gw, &ann, "gh__tool-0").await;
    assert_refused(status, &answer, "gh__tool-0");
    assert_eq!(mock.calls(), 0);
    assert_eq!(tools(&gw, &bob).await, ["gh__tool-1", "gh__tool-2"]);

    // Reserving a tool to a role.
    let (s, admins) = admin(
        &gw,
        "POST",
        "/admin/mcp-access",
        Some(json!({"tools": ["gh__tool-1"], "roles": ["admin"], "allow": true})),
    )
    .await;
    assert_eq!(s, 201, "{admins}");
    assert_eq!(tools(&gw, &bob).await, ["gh__tool-2"]);
    assert_eq!(tools(&gw, MASTER_KEY).await, ["gh__tool-1", "gh__tool-2"]);

    let (s, list) = admin(&gw, "GET", "/admin/mcp-access", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(
        list["configured"][0]["teams"],
        json!(["platform"]),
        "{list}"
    );

    let (s, _) = admin(&gw, "DELETE", &format!("/admin/mcp-access/{id}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = admin(&gw, "DELETE", &format!("/admin/mcp-access/{id}"), None).await;
    assert_eq!(s, 404);
    let admins_id = admins["id"].as_str().unwrap();
    let (s, _) = admin(
        &gw,
        "DELETE",
        &format!("/admin/mcp-access/{admins_id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        tools(&gw, &ann).await,
        ["gh__tool-0", "gh__tool-1", "gh__tool-2"]
    );
    let (_, answer) = call(&gw, &ann, "gh__tool-0").await;
    assert!(answer["result"].is_object(), "{answer}");
    assert_eq!(mock.calls(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_deny_rule_over_a_whole_server_closes_its_endpoint() {
    let mock = MockMcpServer::start(2).await.unwrap();
    let gw = TestGateway::start(&config(&mock)).await;
    let (_, bob) = people(&gw).await;
    let (s, body) = admin(
        &gw,
        "POST",
        "/admin/mcp-access",
        Some(json!({"tools": ["gh__*"], "teams": ["data"], "allow": false})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert!(tools(&gw, &bob).await.is_empty());
    let r = client()
        .post(gw.at("/mcp/gh"))
        .bearer_auth(&bob)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    gw.stop().await;
}

#[tokio::test]
async fn bad_rules_are_refused_and_only_admins_manage_rules() {
    let mock = MockMcpServer::start(1).await.unwrap();
    let gw = TestGateway::start(&config(&mock)).await;
    let (ann, _) = people(&gw).await;
    for (body, needle) in [
        (json!({"tools": [], "allow": true}), "tools"),
        (json!({"tools": ["gh__["], "allow": true}), "tools[0]"),
        (
            json!({"tools": ["gh__*"], "roles": ["boss"], "allow": true}),
            "roles[0]",
        ),
        (
            json!({"tools": ["gh__*"], "teams": ["nobody"], "allow": true}),
            "nobody",
        ),
        (json!({"tools": ["gh__*"]}), "allow"),
        (
            json!({"tools": ["gh__*"], "allow": true, "effect": "x"}),
            "effect",
        ),
    ] {
        let (s, answer) = admin(&gw, "POST", "/admin/mcp-access", Some(body.clone())).await;
        assert!(s == 400 || s == 404, "{body}: {s} {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {answer}");
    }
    let r = client()
        .get(gw.at("/admin/mcp-access"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    gw.stop().await;
}

#[tokio::test]
async fn a_rule_added_on_one_replica_applies_on_another() {
    let db = fresh_postgres_url().await;
    let mock = MockMcpServer::start(2).await.unwrap();
    let one = TestGateway::start_with_db(&db, &config(&mock)).await;
    let two = TestGateway::start_with_db(&db, &config(&mock)).await;
    let (_, bob) = people(&one).await;
    // The users and keys reach the second replica within its poll interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rpc(&two, &bob, "tools/list", json!({})).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "bob's key arrives");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, body) = admin(
        &one,
        "POST",
        "/admin/mcp-access",
        Some(json!({"tools": ["gh__tool-1"], "teams": ["data"], "allow": false})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    loop {
        if tools(&two, &bob).await.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the rule arrives");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, answer) = call(&two, &bob, "gh__tool-1").await;
    assert_refused(status, &answer, "gh__tool-1");
    assert_eq!(mock.calls(), 0);
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_servers_limit_counts_its_tool_calls() {
    let gh = MockMcpServer::start(2).await.unwrap();
    let other = MockMcpServer::start(1).await.unwrap();
    let yaml = format!(
        "mcp:\n  servers:\n    gh:\n      url: {}\n    other:\n      url: {}\nlimits:\n  - scope: server\n    match: gh\n    requests: 1\n    window: 1m\n",
        gh.url(),
        other.url()
    );
    let gw = TestGateway::start(&yaml).await;
    // Lists are not calls: they do not count.
    assert_eq!(tools(&gw, MASTER_KEY).await.len(), 3);
    let (_, answer) = call(&gw, MASTER_KEY, "gh__tool-0").await;
    assert!(answer["result"].is_object(), "{answer}");
    // Another tool of the same server shares the server's counter, on either endpoint.
    let (status, answer) = call(&gw, MASTER_KEY, "gh__tool-1").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["code"], -32029, "{answer}");
    let r = client()
        .post(gw.at("/mcp/gh"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "tool-0", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"]["code"], -32029, "{answer}");
    assert_eq!(gh.calls(), 1, "refused calls never reach the server");
    // Other servers are not limited.
    for _ in 0..3 {
        let (_, answer) = call(&gw, MASTER_KEY, "other__tool-0").await;
        assert!(answer["result"].is_object(), "{answer}");
    }
    assert_eq!(other.calls(), 3);
    gw.stop().await;
}

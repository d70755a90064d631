//! Users' and teams' own credentials for MCP servers, over real HTTP: each caller's calls to an
//! HTTP server carry their own header (the user's credential winning over their team's, the
//! configured headers otherwise), each caller of a stdio server gets a process of its own
//! whose environment has their variables and not another tenant's; values are never shown;
//! the body is checked against the server's transport; storing needs the vault key.

use portcullis_test_support::mcp::MockMcpServer;
use serde_json::{Value, json};

use crate::common::*;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

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

async fn call(gw: &TestGateway, key: &str, tool: &str) -> Value {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// Teams `platform` and `data`, users `ann` (platform) and `bob` (data), a key of each.
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
            Some(json!({"id": user, "role": "member", "teams": [team]})),
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

async fn put(gw: &TestGateway, server: &str, body: Value) -> (u16, Value) {
    admin(
        gw,
        "POST",
        &format!("/admin/mcp-servers/{server}/credentials"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn each_caller_reaches_an_http_server_with_its_own_header() {
    let mock = MockMcpServer::start(1).await.unwrap();
    let yaml = format!(
        "secret_key: {SECRET_KEY}\nmcp:\n  servers:\n    gh:\n      url: {}\n      headers: {{x-service: shared}}\n",
        mock.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let (ann, bob) = people(&gw).await;
    let (s, body) = put(
        &gw,
        "gh",
        json!({"owner": {"user": "ann"}, "headers": {"X-Upstream-Token": "ann-s3cret-token"}}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["names"], json!(["X-Upstream-Token"]));
    assert!(!body.to_string().contains("ann-s3cret-token"));
    let (s, body) = put(
        &gw,
        "gh",
        json!({"owner": {"team": "data"}, "headers": {"x-upstream-token": "data-s3cret-token"}}),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    for key in [&ann, &bob, &MASTER_KEY.to_owned(), &ann] {
        let answer = call(&gw, key, "gh__tool-0").await;
        assert!(answer["result"].is_object(), "{answer}");
    }
    assert_eq!(
        mock.call_header("x-upstream-token"),
        [
            Some("ann-s3cret-token".to_owned()),
            Some("data-s3cret-token".to_owned()),
            None,
            Some("ann-s3cret-token".to_owned()),
        ]
    );
    // The configured headers stay.
    assert!(
        mock.call_header("x-service")
            .iter()
            .all(|v| v.as_deref() == Some("shared"))
    );

    // Bob's own credential wins over his team's.
    let (s, _) = put(
        &gw,
        "gh",
        json!({"owner": {"user": "bob"}, "headers": {"x-upstream-token": "bob-s3cret-token"}}),
    )
    .await;
    assert_eq!(s, 201);
    call(&gw, &bob, "gh__tool-0").await;
    assert_eq!(
        mock.call_header("x-upstream-token")
            .last()
            .cloned()
            .flatten(),
        Some("bob-s3cret-token".to_owned())
    );

    let (s, list) = admin(&gw, "GET", "/admin/mcp-servers/gh/credentials", None).await;
    assert_eq!(s, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{list}");
    assert!(
        !list.to_string().contains("s3cret"),
        "values are never shown"
    );
    let anns = data.iter().find(|c| c["owner"]["user"] == "ann").unwrap();
    assert_eq!(anns["running"], true, "{list}");
    let id = anns["id"].as_str().unwrap();
    let (s, _) = admin(
        &gw,
        "DELETE",
        &format!("/admin/mcp-servers/gh/credentials/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    call(&gw, &ann, "gh__tool-0").await;
    assert_eq!(
        mock.call_header("x-upstream-token")
            .last()
            .cloned()
            .flatten(),
        None
    );
    gw.stop().await;
}

#[tokio::test]
async fn bodies_are_checked_against_the_server_and_need_the_vault() {
    let mock = MockMcpServer::start(1).await.unwrap();
    let servers = format!("mcp:\n  servers:\n    gh:\n      url: {}\n", mock.url());
    let gw = TestGateway::start(&format!("secret_key: {SECRET_KEY}\n{servers}")).await;
    people(&gw).await;
    for (server, body, status, needle) in [
        (
            "gh",
            json!({"owner": {"user": "ann"}, "env": {"A": "b"}}),
            400,
            "headers",
        ),
        (
            "gh",
            json!({"owner": {"user": "ann"}, "headers": {"bad header": "x"}}),
            400,
            "headers.bad header",
        ),
        (
            "gh",
            json!({"owner": {"user": "ann"}, "headers": {}}),
            400,
            "at least one",
        ),
        (
            "gh",
            json!({"owner": {"user": "nobody"}, "headers": {"a": "b"}}),
            404,
            "nobody",
        ),
        (
            "gh",
            json!({"owner": {"group": "x"}, "headers": {"a": "b"}}),
            400,
            "owner",
        ),
        (
            "nope",
            json!({"owner": {"user": "ann"}, "headers": {"a": "b"}}),
            404,
            "nope",
        ),
    ] {
        let (s, answer) = put(&gw, server, body.clone()).await;
        assert_eq!(s, status, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {answer}");
    }
    gw.stop().await;

    let gw = TestGateway::start(&servers).await;
    people(&gw).await;
    let (s, answer) = put(
        &gw,
        "gh",
        json!({"owner": {"user": "ann"}, "headers": {"a": "b"}}),
    )
    .await;
    assert_eq!(s, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "vault_not_configured");
    gw.stop().await;
}

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

#[tokio::test]
async fn each_tenant_gets_its_own_stdio_process_and_environment() {
    let yaml = format!(
        "secret_key: {SECRET_KEY}\nmcp:\n  servers:\n    everything:\n      command: {}\n      args: [stdio]\n      env: {{SHARED_SETTING: on}}\n      timeout: 20s\n",
        everything_bin()
    );
    let gw = TestGateway::start(&yaml).await;
    let (ann, bob) = people(&gw).await;
    for (owner, token) in [
        (json!({"user": "ann"}), "ann-env-s3cret"),
        (json!({"team": "data"}), "data-env-s3cret"),
    ] {
        let (s, body) = put(
            &gw,
            "everything",
            json!({"owner": owner, "env": {"TENANT_TOKEN": token}}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    let env_of = |answer: &Value| -> Value {
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("an environment: {answer}"));
        serde_json::from_str(text).unwrap()
    };
    let anns = env_of(&call(&gw, &ann, "everything__get-env").await);
    let bobs = env_of(&call(&gw, &bob, "everything__get-env").await);
    let shared = env_of(&call(&gw, MASTER_KEY, "everything__get-env").await);
    assert_eq!(anns["TENANT_TOKEN"], "ann-env-s3cret");
    assert_eq!(bobs["TENANT_TOKEN"], "data-env-s3cret");
    assert_eq!(shared["TENANT_TOKEN"], Value::Null);
    for env in [&anns, &bobs, &shared] {
        assert_eq!(
            env["SHARED_SETTING"], "on",
            "the configured environment stays"
        );
    }
    let (_, list) = admin(
        &gw,
        "GET",
        "/admin/mcp-servers/everything/credentials",
        None,
    )
    .await;
    let running: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["running"] == true)
        .collect();
    assert_eq!(running.len(), 2, "two instances of their own: {list}");
    assert!(!list.to_string().contains("env-s3cret"));
    gw.stop().await;
}

//! MCP servers managed through the admin API, over real HTTP: a stdio server-everything added
//! at runtime serves its tools on `/mcp` and `/mcp/<name>` until it is deleted; bodies are
//! checked by the configuration file's own rules, with the offending field as `param`; names
//! of the file or of another server are taken (409); `env` and header values are never shown
//! and are stored sealed; servers survive a restart; a server added on one replica appears on
//! another sharing PostgreSQL; and only admins may do any of it.

use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::common::*;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ENV_SECRET: &str = "env-value-s3cret-41f7";

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

/// A server-everything entry called `name`, with a secret in its environment.
fn everything(name: &str) -> Value {
    json!({"name": name, "command": everything_bin(), "args": ["stdio"],
        "env": {"EVERYTHING_TOKEN": ENV_SECRET}, "timeout": "20s"})
}

async fn send(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, gw.at(path)).bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn add(gw: &TestGateway, body: Value) -> (u16, Value) {
    send(
        gw,
        reqwest::Method::POST,
        "/admin/mcp-servers",
        MASTER_KEY,
        Some(body),
    )
    .await
}

/// Calls a server-everything `echo` tool through the aggregated endpoint with the rmcp client.
async fn echo(gw: &TestGateway, tool: &str) -> String {
    call(gw, tool, json!({"message": "hello"})).await
}

/// Calls `tool` through the aggregated endpoint with the rmcp client; the first text.
async fn call(gw: &TestGateway, tool: &str, arguments: Value) -> String {
    let config =
        StreamableHttpClientTransportConfig::with_uri(gw.at("/mcp")).auth_header(MASTER_KEY);
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("the client connects");
    let result = client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .expect("the call succeeds");
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let _ = client.cancel().await;
    text
}

/// The names of the tools `/mcp` lists.
async fn tool_names(gw: &TestGateway) -> Vec<String> {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    if r.status() != 200 {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    v["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (up to 20 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_server_added_at_runtime_serves_its_tools_until_it_is_deleted() {
    let gw = TestGateway::start(&format!("secret_key: {SECRET_KEY}\n")).await;
    let (status, listed) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!((status, listed), (200, json!({"data": []})));
    let (status, created) = add(&gw, everything("everything")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "everything");
    assert_eq!(created["source"], "admin");
    assert_eq!(created["transport"], "stdio");
    assert_eq!(created["timeout_ms"], 20_000);
    assert_eq!(created["env"], json!(["EVERYTHING_TOKEN"]));
    assert!(!created.to_string().contains(ENV_SECRET), "{created}");

    // Its tools are served, namespaced, on /mcp, and on /mcp/everything.
    assert_eq!(echo(&gw, "everything__echo").await, "Echo: hello");
    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        "/mcp/everything",
        MASTER_KEY,
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo")
    );

    // Shown without its secret, alone and in the list.
    let (status, shown) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers/everything",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["source"], "admin");
    assert_eq!(shown["status"], "ready");
    assert!(shown["tools"].as_u64().unwrap() > 0, "{shown}");
    let (_, listed) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(ENV_SECRET));

    // The row holds the entry without the value, and the value only sealed.
    let row = gw
        .state
        .stores
        .mcp_servers
        .mcp_server("everything")
        .await
        .unwrap()
        .unwrap();
    assert!(!row.config.contains(ENV_SECRET) && !row.config.contains("EVERYTHING_TOKEN"));
    assert!(
        row.config.contains("\"args\":[\"stdio\"]"),
        "{}",
        row.config
    );
    let sealed = row.sealed.expect("sealed values");
    assert!(!sealed.contains(ENV_SECRET) && !sealed.contains("EVERYTHING_TOKEN"));

    // Deleted: its tools vanish and its endpoint is gone.
    let (status, deleted) = send(
        &gw,
        reqwest::Method::DELETE,
        "/admin/mcp-servers/everything",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"name": "everything", "deleted": true}));
    assert!(
        !tool_names(&gw)
            .await
            .iter()
            .any(|t| t.starts_with("everything__"))
    );
    let (status, _) = send(
        &gw,
        reqwest::Method::POST,
        "/mcp/everything",
        MASTER_KEY,
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, again) = send(
        &gw,
        reqwest::Method::DELETE,
        "/admin/mcp-servers/everything",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 404, "{again}");
    assert_eq!(again["error"]["code"], "not_found");
    gw.stop().await;
}

#[tokio::test]
async fn bad_bodies_taken_names_and_non_admins_are_refused() {
    // No secret key: values of `env` and `headers` cannot be stored.
    let gw = TestGateway::start(
        "mcp:\n  timeout: 7s\n  servers:\n    remote: {url: \"http://127.0.0.1:9/mcp\"}\n",
    )
    .await;
    for (body, param, message) in [
        (
            json!({"name": "x", "command": "x", "limits": {"memory": "1KiB"}}),
            Some("limits.memory"),
            "must be at least 16MiB",
        ),
        (
            json!({"name": "x", "command": "x", "read_paths": ["relative"]}),
            Some("read_paths[0]"),
            "must be an absolute path",
        ),
        (
            json!({"name": "Bad_Name", "command": "x"}),
            Some("name"),
            "a server name is 1 to 32",
        ),
        (
            json!({"name": "x", "url": "http://a", "args": ["y"]}),
            Some("args"),
            "applies to stdio servers only",
        ),
        (
            json!({"name": "x", "command": "x", "url": "http://a"}),
            None,
            "set either `command`",
        ),
        (
            json!({"name": "x", "command": "x", "bogus": 1}),
            Some("bogus"),
            "unknown field `bogus`",
        ),
        (
            json!({"name": "x", "command": "x", "args": "y"}),
            Some("args"),
            "invalid type",
        ),
        (json!({"command": "x"}), Some("name"), "Missing `name`"),
        (json!([1]), None, "expected a JSON object"),
    ] {
        let (status, v) = add(&gw, body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{body}: {v}");
        let text = v["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }

    // The file's name, another server's name.
    let (status, v) = add(
        &gw,
        json!({"name": "remote", "url": "http://127.0.0.1:9/x"}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configuration file")
    );
    let (status, v) = add(&gw, json!({"name": "other", "url": "http://127.0.0.1:9/x"})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["source"], "admin");
    assert_eq!(v["timeout_ms"], 7_000, "the file's default timeout applies");
    let (status, v) = add(&gw, json!({"name": "other", "url": "http://127.0.0.1:9/y"})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");

    // A file server is listed as the file's, and cannot be deleted or replaced here.
    let (_, listed) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers",
        MASTER_KEY,
        None,
    )
    .await;
    let sources: Vec<(&str, &str)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("other", "admin"), ("remote", "config")]);
    let (status, v) = send(
        &gw,
        reqwest::Method::DELETE,
        "/admin/mcp-servers/remote",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configuration file")
    );
    let put = |name: &str, body: Value| {
        let path = format!("/admin/mcp-servers/{name}");
        let gw = &gw;
        async move { send(gw, reqwest::Method::PUT, &path, MASTER_KEY, Some(body)).await }
    };
    let (status, _) = put("remote", json!({"url": "http://127.0.0.1:9/z"})).await;
    assert_eq!(status, 409);
    let (status, _) = put("nobody", json!({"url": "http://127.0.0.1:9/z"})).await;
    assert_eq!(status, 404);
    let (status, v) = put(
        "other",
        json!({"name": "renamed", "url": "http://127.0.0.1:9/z"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("name")),
        "{v}"
    );
    let (status, v) = put(
        "other",
        json!({"url": "http://127.0.0.1:9/z", "timeout": "3s"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["url"].as_str(), v["timeout_ms"].as_u64()),
        (Some("http://127.0.0.1:9/z"), Some(3_000))
    );

    // Secret values without a key to seal them.
    let (status, v) = add(
        &gw,
        json!({"name": "sealed", "url": "http://127.0.0.1:9/x",
            "headers": {"Authorization": "Bearer s3cret"}}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "vault_not_configured");
    assert!(!v.to_string().contains("s3cret"));

    // Only admins.
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: Value = r.json().await.unwrap();
    let key = key["key"].as_str().unwrap();
    for (method, path, body) in [
        (reqwest::Method::GET, "/admin/mcp-servers", None),
        (reqwest::Method::GET, "/admin/mcp-servers/other", None),
        (
            reqwest::Method::POST,
            "/admin/mcp-servers",
            Some(json!({"name": "mine", "url": "http://127.0.0.1:9/x"})),
        ),
        (
            reqwest::Method::PUT,
            "/admin/mcp-servers/other",
            Some(json!({"url": "http://127.0.0.1:9/x"})),
        ),
        (reqwest::Method::DELETE, "/admin/mcp-servers/other", None),
    ] {
        let (status, v) = send(&gw, method.clone(), path, key, body).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
    }
    let (status, _) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers/other",
        "nope",
        None,
    )
    .await;
    assert_eq!(status, 401);
    gw.stop().await;
}

/// A program the gateway starts runs on its host: an admin credential may start only sandboxed
/// ones unless the file says `mcp.runtime_stdio: any`, and none with `none`.
#[tokio::test]
async fn the_file_decides_which_stdio_servers_the_admin_api_may_start() {
    for (setting, sandboxed, unsandboxed) in [
        ("", 201, 403),
        ("  runtime_stdio: any\n", 201, 201),
        ("  runtime_stdio: none\n", 403, 403),
    ] {
        let gw = TestGateway::start(&format!("mcp:\n{setting}  servers: {{}}\n")).await;
        let (status, v) = add(&gw, json!({"name": "boxed", "command": "true"})).await;
        assert_eq!(status, sandboxed, "{setting}: {v}");
        let (status, v) = add(
            &gw,
            json!({"name": "loose", "command": "true", "sandbox": false}),
        )
        .await;
        assert_eq!(status, unsandboxed, "{setting}: {v}");
        if status == 403 {
            assert_eq!(v["error"]["code"], "stdio_not_allowed", "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("mcp.runtime_stdio"),
                "{v}"
            );
        }
        // Remote servers are never affected.
        let (status, v) = add(
            &gw,
            json!({"name": "remote", "url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
        assert_eq!(status, 201, "{setting}: {v}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn servers_added_at_runtime_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let extra = format!("secret_key: {SECRET_KEY}\n");
    let gw = TestGateway::start_with_db(&db, &extra).await;
    let (status, v) = add(&gw, everything("kept")).await;
    assert_eq!(status, 201, "{v}");
    gw.stop().await;

    let gw = TestGateway::start_with_db(&db, &extra).await;
    let (status, shown) = send(
        &gw,
        reqwest::Method::GET,
        "/admin/mcp-servers/kept",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["source"], "admin");
    // The sealed environment was opened again: the server starts with it and answers.
    assert_eq!(echo(&gw, "kept__echo").await, "Echo: hello");
    let env = call(&gw, "kept__get-env", json!({})).await;
    assert!(env.contains(ENV_SECRET), "{env}");
    gw.stop().await;
}

#[tokio::test]
async fn a_server_added_on_one_replica_appears_on_another() {
    let db = fresh_postgres_url().await;
    let redis = std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let extra = format!(
        "secret_key: {SECRET_KEY}\nredis: {{url: \"{redis}\"}}\nidentity:\n  poll_interval: 100ms\n"
    );
    let first = TestGateway::start_with_db(&db, &extra).await;
    let second = TestGateway::start_with_db(&db, &extra).await;
    let (status, v) = add(&first, everything("shared")).await;
    assert_eq!(status, 201, "{v}");
    eventually("the second replica serves the server's tools", || async {
        tool_names(&second)
            .await
            .iter()
            .any(|t| t == "shared__echo")
    })
    .await;
    assert_eq!(echo(&second, "shared__echo").await, "Echo: hello");
    let (_, shown) = send(
        &second,
        reqwest::Method::GET,
        "/admin/mcp-servers/shared",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(shown["source"], "admin");

    let (status, _) = send(
        &first,
        reqwest::Method::DELETE,
        "/admin/mcp-servers/shared",
        MASTER_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    eventually("the second replica drops the server", || async {
        let (status, _) = send(
            &second,
            reqwest::Method::GET,
            "/admin/mcp-servers/shared",
            MASTER_KEY,
            None,
        )
        .await;
        status == 404
    })
    .await;
    assert!(
        !tool_names(&second)
            .await
            .iter()
            .any(|t| t.starts_with("shared__"))
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_reload_keeps_the_servers_added_at_runtime_under_the_files_new_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let file = |mcp: &str| {
        let text = format!(
            "master_key: {MASTER_KEY}\ndatabase: {{url: \"{db}\"}}\nlog: {{flush_interval_ms: 5}}\n{mcp}"
        );
        portcullis_config::from_yaml(
            &text,
            portcullis_config::Source::Environment,
            &std::collections::HashMap::<String, String>::new(),
        )
        .unwrap()
    };
    let gw = TestGateway::start_config(file(
        "mcp:\n  timeout: 7s\n  servers:\n    remote: {url: \"http://127.0.0.1:9/mcp\"}\n",
    ))
    .await;
    let (status, v) = add(&gw, json!({"name": "added", "url": "http://127.0.0.1:9/x"})).await;
    assert_eq!(status, 201, "{v}");
    let listed = |gw: &TestGateway| {
        let request = client()
            .get(gw.at("/admin/mcp-servers"))
            .bearer_auth(MASTER_KEY)
            .send();
        async move {
            let v: Value = request.await.unwrap().json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().to_owned(),
                        s["source"].as_str().unwrap().to_owned(),
                        s["timeout_ms"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // A new default timeout: the added server takes it; the file's server goes.
    gw.state
        .reload(&file("mcp:\n  timeout: 9s\n"))
        .await
        .unwrap();
    assert_eq!(
        listed(&gw).await,
        [("added".to_owned(), "admin".to_owned(), 9_000)]
    );
    // No mcp block at all: the added server stays.
    gw.state.reload(&file("")).await.unwrap();
    assert_eq!(
        listed(&gw).await,
        [("added".to_owned(), "admin".to_owned(), 30_000)]
    );
    // A file server of the same name takes precedence; removing it brings the added one back.
    gw.state
        .reload(&file(
            "mcp:\n  servers:\n    added: {url: \"http://127.0.0.1:9/file\", timeout: 2s}\n",
        ))
        .await
        .unwrap();
    assert_eq!(
        listed(&gw).await,
        [("added".to_owned(), "config".to_owned(), 2_000)]
    );
    gw.state.reload(&file("")).await.unwrap();
    assert_eq!(
        listed(&gw).await,
        [("added".to_owned(), "admin".to_owned(), 30_000)]
    );
    gw.stop().await;
}

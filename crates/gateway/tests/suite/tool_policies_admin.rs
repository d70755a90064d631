//! Tool policies added at run time over `/admin/tool-policies`: a rule added through the API
//! applies to the next turn after the file's rules (a `block` tool is no longer offered to the
//! upstream), is listed with its index, can be reordered with `PUT` and removed with `DELETE`;
//! bad rules are refused naming the field; only admins may manage them; on PostgreSQL a rule
//! added on one replica applies on another within the poll interval and after a restart.

use std::time::{Duration, Instant};

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

const TOOLS: [&str; 3] = ["read_email", "send_money", "send_mail"];

fn config(mock: &MockUpstream) -> String {
    format!(
        "{}tool_policies:\n  - {{match: \"read_*\", output: untrusted}}\n",
        providers_yaml(mock)
    )
}

async fn call(
    gw: &TestGateway,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), gw.at(path))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(gw, MASTER_KEY, method, path, body).await
}

/// One chat turn offering [`TOOLS`]; returns the tools the upstream was offered.
async fn offered(gw: &TestGateway, mock: &MockUpstream) -> Vec<String> {
    let body = json!({
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "Check my mail."}],
        "tools": TOOLS.iter().map(|t| json!({"type": "function", "function": {"name": t, "parameters": {"type": "object"}}})).collect::<Vec<_>>(),
    });
    let (status, answer) = call(gw, MASTER_KEY, "POST", "/v1/chat/completions", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    let last = mock.requests().pop().expect("the upstream was called");
    last.body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Turns until the upstream is offered `want`, for at most `within`.
async fn offered_within(gw: &TestGateway, mock: &MockUpstream, want: &[&str], within: Duration) {
    let started = Instant::now();
    loop {
        let got = offered(gw, mock).await;
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < within,
            "still offered {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rule_added_through_the_api_applies_to_the_next_turn_and_is_gone_once_deleted() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    assert_eq!(offered(&gw, &mock).await, TOOLS);

    let (s, rule) = admin(
        &gw,
        "POST",
        "/admin/tool-policies",
        Some(json!({"match": "send_money", "call": "block"})),
    )
    .await;
    assert_eq!(s, 201, "{rule}");
    assert_eq!(rule["source"], "api");
    assert_eq!(rule["index"], 1, "after the file's one rule: {rule}");
    assert_eq!(
        rule["rule"],
        json!({"match": "send_money", "call": "block"})
    );
    assert_eq!(rule["created_by"], "master");
    let id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(offered(&gw, &mock).await, ["read_email", "send_mail"]);

    let (s, list) = admin(&gw, "GET", "/admin/tool-policies", None).await;
    assert_eq!(s, 200, "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    assert_eq!(data[0]["source"], "file");
    assert_eq!(data[0]["index"], 0);
    assert_eq!(data[0]["rule"]["match"], "read_*");
    assert!(data[0].get("id").is_none(), "{list}");
    assert_eq!(data[1]["id"], id.as_str());

    let (s, gone) = admin(&gw, "DELETE", &format!("/admin/tool-policies/{id}"), None).await;
    assert_eq!(s, 200, "{gone}");
    assert_eq!(offered(&gw, &mock).await, TOOLS);
    let (s, again) = admin(&gw, "DELETE", &format!("/admin/tool-policies/{id}"), None).await;
    assert_eq!(s, 404, "{again}");
    let (_, list) = admin(&gw, "GET", "/admin/tool-policies", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    gw.stop().await;
}

#[tokio::test]
async fn put_replaces_the_stored_rules_in_order_and_the_first_matching_rule_decides() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let allow = json!({"match": "send_money", "call": "allow"});
    let block = json!({"match": "send_*", "call": "block"});

    let (s, list) = admin(
        &gw,
        "PUT",
        "/admin/tool-policies",
        Some(json!({"rules": [allow, block]})),
    )
    .await;
    assert_eq!(s, 200, "{list}");
    let indexes: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["index"])
        .collect();
    assert_eq!(indexes, [&json!(0), &json!(1), &json!(2)], "{list}");
    assert_eq!(offered(&gw, &mock).await, ["read_email", "send_money"]);

    let (s, list) = admin(
        &gw,
        "PUT",
        "/admin/tool-policies",
        Some(json!({"rules": [block, allow]})),
    )
    .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"][1]["rule"], block, "{list}");
    assert_eq!(offered(&gw, &mock).await, ["read_email"]);

    // The file's rules come first: a stored rule cannot change what the file decides.
    let (s, _) = admin(
        &gw,
        "PUT",
        "/admin/tool-policies",
        Some(json!({"rules": [{"match": "read_email", "call": "block"}]})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(offered(&gw, &mock).await, TOOLS);

    let (s, list) = admin(
        &gw,
        "PUT",
        "/admin/tool-policies",
        Some(json!({"rules": []})),
    )
    .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    gw.stop().await;
}

#[tokio::test]
async fn bad_rules_are_refused_with_400_naming_the_field_and_change_nothing() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    for (rule, field) in [
        (json!({"match": "send_[a", "call": "block"}), "match"),
        (json!({"match": "send_money", "call": "sometimes"}), "call"),
        (json!({"match": "send_money", "output": "secret"}), "output"),
        (
            json!({"match": "send_money", "args": {"iban": {"pattern": "(["}}}),
            "args.iban",
        ),
        (
            json!({"match": "send_money", "roles": ["boss"]}),
            "roles[0]",
        ),
        // No quarantine model is configured.
        (json!({"match": "web_*", "output": "quarantine"}), "output"),
        (json!({"match": "send_money", "frobnicate": true}), ""),
    ] {
        let (s, body) = admin(&gw, "POST", "/admin/tool-policies", Some(rule.clone())).await;
        assert_eq!(s, 400, "{rule}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        if field.is_empty() {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("frobnicate"),
                "{body}"
            );
        } else {
            assert!(
                body["error"]["param"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(field),
                "{rule}: {body}"
            );
        }
    }
    let (s, body) = admin(
        &gw,
        "PUT",
        "/admin/tool-policies",
        Some(json!({"rules": [{"match": "a", "call": "block"}, {"match": "b", "call": "never"}]})),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["param"], "rules[1].call", "{body}");
    let (_, list) = admin(&gw, "GET", "/admin/tool-policies", None).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "nothing was stored: {list}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn only_admins_manage_tool_policies() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&config(&mock)).await;
    let (s, body) = admin(
        &gw,
        "POST",
        "/admin/users",
        Some(json!({"id": "ann", "email": "ann@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "ann-agent", "user": "ann"})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let ann = body["key"].as_str().unwrap().to_owned();
    let rule = json!({"match": "send_money", "call": "block"});
    for (method, path, body) in [
        ("GET", "/admin/tool-policies", None),
        ("POST", "/admin/tool-policies", Some(rule.clone())),
        (
            "PUT",
            "/admin/tool-policies",
            Some(json!({"rules": [rule.clone()]})),
        ),
        ("DELETE", "/admin/tool-policies/tp_x", None),
    ] {
        let (s, answer) = call(&gw, &ann, method, path, body).await;
        assert_eq!(s, 403, "{method} {path}: {answer}");
    }
    assert_eq!(offered(&gw, &mock).await, TOOLS);
    gw.stop().await;
}

#[tokio::test]
async fn on_postgres_a_rule_added_on_one_replica_applies_on_the_other_and_after_a_restart() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let a = TestGateway::start_with_db(&db, &config(&mock)).await;
    let b = TestGateway::start_with_db(&db, &config(&mock)).await;
    assert_eq!(offered(&b, &mock).await, TOOLS);

    let (s, rule) = admin(
        &a,
        "POST",
        "/admin/tool-policies",
        Some(json!({"match": "send_money", "call": "block"})),
    )
    .await;
    assert_eq!(s, 201, "{rule}");
    // B's directory polls the tenancy version every second.
    offered_within(
        &b,
        &mock,
        &["read_email", "send_mail"],
        Duration::from_secs(5),
    )
    .await;
    let (_, on_b) = admin(&b, "GET", "/admin/tool-policies", None).await;
    assert_eq!(on_b["data"][1]["id"], rule["id"], "{on_b}");

    a.stop().await;
    b.stop().await;
    let c = TestGateway::start_with_db(&db, &config(&mock)).await;
    assert_eq!(offered(&c, &mock).await, ["read_email", "send_mail"]);
    let (_, on_c) = admin(&c, "GET", "/admin/tool-policies", None).await;
    assert_eq!(on_c["data"][1]["rule"]["match"], "send_money", "{on_c}");
    c.stop().await;
}

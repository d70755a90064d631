//! The configuration in force through the admin API: `GET /admin/providers` and
//! `GET /admin/routes` show providers, routes and their settings without a single secret of
//! the file; `POST /admin/audit/verify` checks the stored audit chains as
//! `portcullis audit verify` does, and names the record changed behind the gateway's back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use portcullis_test_support::MockUpstream;

/// Every secret the file below holds: none may appear in an answer.
const SECRETS: [&str; 8] = [
    "sk-secret-openai-7f3a",
    "sk-ant-secret-91bc",
    "hdr-secret-value-55e1",
    "url-password-c0ffee",
    "url-query-key-d00d",
    "AKIDSECRETKEYID0001",
    "aws-secret-access-key-e4e4",
    "entra-client-secret-a1a1",
];

fn yaml(mock: &MockUpstream) -> String {
    format!(
        r#"
providers:
  openai:
    api_key: sk-secret-openai-7f3a
    base_url: {openai}
    headers:
      x-team-secret: hdr-secret-value-55e1
  anthropic:
    api_key: sk-ant-secret-91bc
    base_url: {anthropic}
  local:
    kind: vllm
    base_url: http://me:url-password-c0ffee@127.0.0.1:9/v1?key=url-query-key-d00d
    models: [llama-local]
  aws:
    kind: bedrock
    region: us-east-1
    access_key_id: AKIDSECRETKEYID0001
    secret_access_key: aws-secret-access-key-e4e4
  azure:
    kind: azure
    base_url: https://example-resource.openai.azure.com
    api_version: "2024-10-21"
    deployments:
      gpt-4o: prod-gpt4o
    tenant_id: tenant-1
    client_id: client-1
    client_secret: entra-client-secret-a1a1
routes:
  smart:
    strategy: weighted
    targets:
      - {{model: anthropic/claude-sonnet-4-5, weight: 3}}
      - {{model: openai/gpt-4o, weight: 1}}
    retry:
      max_attempts: 3
      delay: 250ms
    timeouts:
      first_byte: 5s
      total: 60s
    tools_denied: ["delete_*"]
aliases:
  clever: smart
circuit_breaker:
  failures: 4
  open_for: 20s
"#,
        openai = mock.openai_base_url(),
        anthropic = mock.anthropic_base_url(),
    )
}

async fn get(gw: &TestGateway, path: &str, key: &str) -> (u16, String) {
    let r = client()
        .get(gw.at(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn assert_no_secret(body: &str) {
    for s in SECRETS {
        assert!(!body.contains(s), "`{s}` is in the answer: {body}");
    }
}

#[tokio::test]
async fn providers_are_listed_without_their_secrets() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&yaml(&mock)).await;
    let (status, body) = get(&gw, "/admin/providers", MASTER_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&body);
    let v: Value = serde_json::from_str(&body).unwrap();
    let by_name = |n: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no provider {n}: {v}"))
    };
    let openai = by_name("openai");
    assert_eq!(openai["kind"], "openai");
    assert_eq!(openai["has_credentials"], true);
    assert_eq!(openai["credential_type"], "api_key");
    assert_eq!(openai["headers"], json!(["x-team-secret"]));
    assert_eq!(openai["routes"], json!(["smart"]));
    assert_eq!(
        openai["host"].as_str().unwrap(),
        mock.openai_base_url()
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
    );
    let local = by_name("local");
    assert_eq!(local["host"], "127.0.0.1:9");
    assert_eq!(local["models"], json!(["llama-local"]));
    assert_eq!(local["has_credentials"], false);
    assert_eq!(local["credentials_optional"], true);
    let aws = by_name("aws");
    assert_eq!(
        (&aws["kind"], &aws["credential_type"], &aws["region"]),
        (&json!("bedrock"), &json!("aws"), &json!("us-east-1"))
    );
    assert_eq!(aws["host"], "bedrock-runtime.us-east-1.amazonaws.com");
    let azure = by_name("azure");
    assert_eq!(azure["credential_type"], "entra_id");
    assert_eq!(
        azure["deployments"],
        json!([{"model": "gpt-4o", "deployment": "prod-gpt4o"}])
    );

    // Admins only.
    let (status, _) = get(&gw, "/admin/providers", "sk-not-a-key").await;
    assert_eq!(status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn routes_show_targets_and_policies_without_secrets() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&yaml(&mock)).await;
    let (status, body) = get(&gw, "/admin/routes", MASTER_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_no_secret(&body);
    let v: Value = serde_json::from_str(&body).unwrap();
    let smart = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "smart")
        .cloned()
        .unwrap();
    assert_eq!(smart["strategy"], "weighted");
    assert_eq!(
        smart["targets"],
        json!([
            {"provider": "anthropic", "model": "claude-sonnet-4-5", "weight": 3, "role": "primary"},
            {"provider": "openai", "model": "gpt-4o", "weight": 1, "role": "fallback"},
        ])
    );
    assert_eq!(smart["retry"]["max_attempts"], 3);
    assert_eq!(smart["retry"]["delay_ms"], 250);
    assert_eq!(
        smart["timeouts"],
        json!({"first_byte_ms": 5000, "total_ms": 60000})
    );
    assert_eq!(smart["tools_denied"], json!(["delete_*"]));
    assert_eq!(smart["aliases"], json!(["clever"]));
    assert_eq!(
        v["aliases"],
        json!([{"alias": "clever", "target": "smart"}])
    );
    assert_eq!(
        v["circuit_breaker"],
        json!({"failure_threshold": 4, "open_for_ms": 20000})
    );
    assert_eq!(v["default"]["retry"]["max_attempts"], 1);
    gw.stop().await;
}

/// A turn offering a tool, in `session`: it leaves one audit record.
async fn turn(gw: &TestGateway, session: &str) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(MASTER_KEY)
        .header("x-portcullis-session-id", session)
        .json(&json!({"model": "openai/gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "read_email", "parameters": {"type": "object"}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn audit_ids(gw: &TestGateway, at_least: usize) -> Vec<String> {
    for _ in 0..100 {
        let (_, body) = get(gw, "/admin/audit", MASTER_KEY).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= at_least {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} audit records");
}

async fn verify(gw: &TestGateway) -> Value {
    let r = client()
        .post(gw.at("/admin/audit/verify"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn audit_verify_finds_an_intact_chain_then_the_record_changed() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.db");
    let db = format!("sqlite://{}?mode=rwc", file.display());
    let gw = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    for i in 0..3 {
        turn(&gw, &format!("verify-{i}")).await;
    }
    let ids = audit_ids(&gw, 3).await;

    let report = verify(&gw).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["records"], 3, "{report}");
    assert_eq!(report["first_bad_record"], Value::Null, "{report}");

    // The middle record is changed in the database.
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let (changed,): (String,) =
        sqlx::query_as("SELECT id FROM audit_records WHERE session = 'verify-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(ids.contains(&changed));
    sqlx::query(
        "UPDATE audit_records SET body = replace(body, 'verify-1', 'verify-X') WHERE id = ?",
    )
    .bind(&changed)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let report = verify(&gw).await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_bad_record"], changed.as_str(), "{report}");
    assert_eq!(report["bad"][0]["id"], changed.as_str(), "{report}");

    // Admins only.
    let r = client()
        .post(gw.at("/admin/audit/verify"))
        .bearer_auth("sk-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.stop().await;
}

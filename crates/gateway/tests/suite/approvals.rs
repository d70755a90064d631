//! Approvals of held tool calls: calls held through the gateway's approvals service (as the
//! LLM and MCP paths hold them), then listed, paged, filtered and decided over the admin API —
//! one decision per call (409 for the second, also between two replicas on PostgreSQL), 400
//! for a bad decision, 404 for an unknown id, 403 for a non-admin key; an approved call passes
//! once; expiry; the signed webhook, received by a local HTTP server; retention, which deletes
//! what is done with and keeps what is pending; and one pending approval per call when two
//! replicas on PostgreSQL hold the same MCP call at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use portcullis_core::{AccessRole, AuthMethod, Identity};
use portcullis_gateway::approvals::HeldCall;
use portcullis_test_support::MockUpstream;
use portcullis_test_support::injection::cases;
use portcullis_test_support::injection::twin::McpTwin;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{
    MASTER_KEY, TestGateway, client, fresh_postgres_url, mcp_session, providers_yaml,
};

fn caller(subject: &str) -> Identity {
    Identity {
        subject: subject.to_owned(),
        method: AuthMethod::VirtualKey,
        key_id: Some(subject.to_owned()),
        team: Some("payments".to_owned()),
        teams: vec!["payments".to_owned()],
        role: AccessRole::Member,
        ..Identity::master()
    }
}

fn call(session: &str, subject: &str, tool: &str, arguments: &str) -> HeldCall {
    HeldCall {
        tool: tool.to_owned(),
        arguments: arguments.to_owned(),
        arguments_sha256: hex::encode(Sha256::digest(arguments.as_bytes())),
        identity: caller(subject),
        key_id: None,
        session: session.to_owned(),
        reason: "rule 0 (send_money): the context holds output of read_mail".to_owned(),
    }
}

async fn get(gw: &TestGateway, path: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn decide(gw: &TestGateway, id: &str, body: Value) -> (u16, Value) {
    decide_as(gw, MASTER_KEY, id, body).await
}

async fn decide_as(gw: &TestGateway, key: &str, id: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(gw.at(&format!("/admin/approvals/{id}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the held call `id` (written in the background) can be read.
async fn stored(gw: &TestGateway, id: &str) -> Value {
    for _ in 0..200 {
        let (status, v) = get(gw, &format!("/admin/approvals/{id}")).await;
        if status == 200 {
            return v;
        }
        assert_eq!(status, 404, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("held call {id} never stored");
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn held_calls_are_listed_paged_filtered_and_decided_once() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let approvals = &gw.state.approvals;
    let pay = r#"{"iban":"GB00EVIL0000000000","amount":120}"#;
    let first = approvals.hold(call("s-1", "key-a", "send_money", pay));
    let second = approvals.hold(call("s-1", "key-a", "send_mail", r#"{"to":"x@evil.test"}"#));
    let third = approvals.hold(call("s-2", "key-b", "send_money", pay));
    // A repeat of a pending call is the same held call, not a new one.
    assert_eq!(
        approvals.hold(call("s-1", "key-a", "send_money", pay)),
        first
    );
    for id in [&first, &second, &third] {
        assert!(id.starts_with("apr_"), "{id}");
        stored(&gw, id).await;
    }

    // The contract's shape, newest first, paged.
    let (status, page) = get(&gw, "/admin/approvals?limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), [third.clone(), second.clone()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = get(&gw, &format!("/admin/approvals?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), [first.as_str()]);
    assert!(rest["next_cursor"].is_null());
    let one = &rest["data"][0];
    for field in [
        "id",
        "tool",
        "arguments",
        "identity",
        "session",
        "status",
        "created_at",
    ] {
        assert!(one.get(field).is_some(), "{field} missing in {one}");
    }
    assert_eq!(one["tool"], "send_money");
    assert_eq!(
        one["arguments"],
        json!({"iban": "GB00EVIL0000000000", "amount": 120})
    );
    assert_eq!(one["arguments_sha256"], hex::encode(Sha256::digest(pay)));
    assert_eq!(one["identity"]["subject"], "key-a");
    assert_eq!(one["identity"]["team"], "payments");
    assert_eq!(one["session"], "s-1");
    assert_eq!(one["status"], "pending");
    assert!(one["reason"].as_str().unwrap().contains("read_mail"));

    // Filters.
    let (_, by_session) = get(&gw, "/admin/approvals?session=s-2").await;
    assert_eq!(ids(&by_session), [third.as_str()]);
    let (status, bad) = get(&gw, "/admin/approvals?status=maybe").await;
    assert_eq!(
        (status, bad["error"]["param"].as_str()),
        (400, Some("status"))
    );
    let (status, _) = get(&gw, "/admin/approvals?limit=0").await;
    assert_eq!(status, 400);

    // Decisions: a bad one, an unknown id, a non-admin key, then one decision only.
    let (status, v) = decide(&gw, &first, json!({"decision": "maybe"})).await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = decide(&gw, &first, json!({"verdict": "approve"})).await;
    assert_eq!(status, 400);
    let unknown = "apr_0000000000000000000000000000000f";
    let (status, v) = decide(&gw, unknown, json!({"decision": "approve"})).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = get(&gw, &format!("/admin/approvals/{unknown}")).await;
    assert_eq!(status, 404);
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let agent_key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = decide_as(&gw, &agent_key, &first, json!({"decision": "approve"})).await;
    assert_eq!(status, 403, "{v}");
    let r = client()
        .get(gw.at("/admin/approvals"))
        .bearer_auth(&agent_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (status, v) = decide(&gw, &first, json!({"decision": "approve"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "approved");
    assert_eq!(v["decided_by"], "master");
    assert!(v["decided_at"].is_string());
    let (status, v) = decide(&gw, &first, json!({"decision": "deny"})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    let (status, _) = decide(&gw, &second, json!({"decision": "deny"})).await;
    assert_eq!(status, 200);
    let (_, approved) = get(&gw, "/admin/approvals?status=approved").await;
    assert_eq!(ids(&approved), [first.as_str()]);

    // The approved call is offered to its own session and caller only, and passes once.
    assert!(approvals.approved("s-1", "key-b").await.is_empty());
    assert!(approvals.approved("s-2", "key-a").await.is_empty());
    let given = approvals.approved("s-1", "key-a").await;
    assert_eq!(given.len(), 1, "{given:?}");
    assert_eq!(
        (given[0].id.as_str(), given[0].tool.as_str()),
        (first.as_str(), "send_money")
    );
    assert_eq!(given[0].arguments_sha256, hex::encode(Sha256::digest(pay)));
    // A denied call repeated is withheld under its own id, not held again.
    assert_eq!(
        approvals.hold(call("s-1", "key-a", "send_mail", r#"{"to":"x@evil.test"}"#)),
        second
    );
    approvals.consume(&first);
    assert!(approvals.approved("s-1", "key-a").await.is_empty());
    let mut used = Value::Null;
    for _ in 0..100 {
        used = stored(&gw, &first).await;
        if used["status"] == "used" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(used["status"], "used", "{used}");
    assert!(used["used_at"].is_string());
    let (status, _) = decide(&gw, &first, json!({"decision": "approve"})).await;
    assert_eq!(status, 409);
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_call_can_no_longer_be_decided_nor_pass() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!("{}approvals:\n  ttl: 1s\n", providers_yaml(&mock))).await;
    let approvals = &gw.state.approvals;
    let approved = approvals.hold(call("s-9", "key-a", "send_money", "{}"));
    let pending = approvals.hold(call("s-9", "key-a", "delete_file", "{}"));
    stored(&gw, &approved).await;
    let held = stored(&gw, &pending).await;
    let created: jiff::Timestamp = held["created_at"].as_str().unwrap().parse().unwrap();
    let expires: jiff::Timestamp = held["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.duration_since(created).as_millis(), 1000);
    let (status, _) = decide(&gw, &approved, json!({"decision": "approve"})).await;
    assert_eq!(status, 200);
    assert_eq!(approvals.approved("s-9", "key-a").await.len(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        approvals.approved("s-9", "key-a").await.is_empty(),
        "an expired approval no longer passes"
    );
    let (status, v) = decide(&gw, &pending, json!({"decision": "approve"})).await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    let (_, expired) = get(&gw, "/admin/approvals?status=expired").await;
    let mut expired = ids(&expired);
    expired.sort();
    let mut both = vec![approved.clone(), pending.clone()];
    both.sort();
    assert_eq!(expired, both);
    // Once expired, the same call is held anew.
    let again = approvals.hold(call("s-9", "key-a", "delete_file", "{}"));
    assert_ne!(again, pending);
    gw.stop().await;
}

/// What the mock webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    timestamp: String,
    signature: String,
    body: String,
}

#[tokio::test]
async fn each_new_held_call_is_posted_to_the_webhook_signed() {
    let received: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let got = got.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let mut got = got.lock().unwrap();
                got.push(Delivery {
                    timestamp: header("x-portcullis-timestamp"),
                    signature: header("x-portcullis-signature"),
                    body,
                });
                // The first attempt fails: the notification is tried again.
                if got.len() == 1 {
                    http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = "whsec-0123456789abcdef";
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}approvals:\n  webhook:\n    url: {hook_url}\n    secret: {secret}\n",
        providers_yaml(&mock)
    ))
    .await;
    let id = gw.state.approvals.hold(call(
        "s-hook",
        "key-a",
        "send_money",
        r#"{"iban":"GB00EVIL0000000000","amount":120}"#,
    ));
    let mut deliveries = Vec::new();
    for _ in 0..300 {
        deliveries = received.lock().unwrap().clone();
        if deliveries.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        deliveries.len(),
        2,
        "retried once after a 503: {deliveries:?}"
    );
    let now = jiff::Timestamp::now().as_second();
    for d in &deliveries {
        let ts: i64 = d.timestamp.parse().unwrap();
        assert!((now - ts).abs() < 30, "fresh timestamp {ts}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{}.{}", d.timestamp, d.body).as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(d.signature, expected);
        // Another secret, or another timestamp, does not verify.
        let mut other = Hmac::<Sha256>::new_from_slice(b"whsec-another-secret").unwrap();
        other.update(format!("{}.{}", d.timestamp, d.body).as_bytes());
        assert_ne!(
            d.signature,
            format!("sha256={}", hex::encode(other.finalize().into_bytes()))
        );
    }
    let body: Value = serde_json::from_str(&deliveries[1].body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["tool"], "send_money");
    assert_eq!(body["arguments"]["iban"], "GB00EVIL0000000000");
    assert_eq!(body["identity"]["subject"], "key-a");
    assert_eq!(body["session"], "s-hook");
    assert_eq!(body["status"], "pending");
    assert!(body["created_at"].is_string() && body["expires_at"].is_string());
    // Notified only once the call is stored: its id reads back.
    assert_eq!(stored(&gw, &id).await["id"], id.as_str());
    assert!(
        !format!("{:?}", gw.state.approvals).contains(secret),
        "the secret never prints"
    );
    gw.stop().await;
}

#[tokio::test]
async fn two_replicas_racing_a_decision_get_one_200_and_one_409() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let a = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    let b = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    for round in 0..8 {
        let id = a.state.approvals.hold(call(
            &format!("s-race-{round}"),
            "key-a",
            "send_money",
            "{}",
        ));
        stored(&a, &id).await;
        let (left, right) = tokio::join!(
            decide(&a, &id, json!({"decision": "approve"})),
            decide(&b, &id, json!({"decision": "deny"})),
        );
        let mut statuses = [left.0, right.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {left:?} {right:?}");
        let winner = if left.0 == 200 { &left.1 } else { &right.1 };
        // Both replicas read the one decision that was taken.
        let (_, on_b) = get(&b, &format!("/admin/approvals/{id}")).await;
        assert_eq!(on_b["status"], winner["status"]);
        let passes = b
            .state
            .approvals
            .approved(&format!("s-race-{round}"), "key-a")
            .await;
        assert_eq!(passes.len(), usize::from(winner["status"] == "approved"));
    }
    a.stop().await;
    b.stop().await;
}

/// The ids `GET /admin/approvals` lists (every status, the newest 1000).
async fn listed(gw: &TestGateway) -> Vec<String> {
    let (status, page) = get(gw, "/admin/approvals?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    ids(&page)
}

#[tokio::test]
async fn retention_deletes_used_and_expired_approvals_and_keeps_pending_ones() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}approvals:\n  retention: 1s\n",
        providers_yaml(&mock)
    ))
    .await;
    let approvals = &gw.state.approvals;
    let used = approvals.hold(call("s-r", "key-a", "send_money", r#"{"amount":1}"#));
    let denied = approvals.hold(call("s-r", "key-a", "send_money", r#"{"amount":2}"#));
    let pending = approvals.hold(call("s-r", "key-a", "send_money", r#"{"amount":3}"#));
    for id in [&used, &denied, &pending] {
        stored(&gw, id).await;
    }
    assert_eq!(
        decide(&gw, &used, json!({"decision": "approve"})).await.0,
        200
    );
    assert_eq!(
        decide(&gw, &denied, json!({"decision": "deny"})).await.0,
        200
    );
    // The agent repeats the approved call: it passes, once.
    let given = approvals.approved("s-r", "key-a").await;
    assert_eq!(given.len(), 1, "{given:?}");
    approvals.consume(&used);
    for _ in 0..100 {
        if stored(&gw, &used).await["status"] == "used" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second past its use, a sweep deletes the used approval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listed(&gw).await.contains(&used) {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = get(&gw, &format!("/admin/approvals/{used}")).await;
    assert_eq!(status, 404);
    // The pending one stays, and so does the denied one until its expiry: a repeat of its
    // call is still withheld under its id.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kept = listed(&gw).await;
    assert_eq!(kept, [pending.clone(), denied.clone()]);
    assert_eq!(stored(&gw, &pending).await["status"], "pending", "{kept:?}");
    assert_eq!(
        approvals.hold(call("s-r", "key-a", "send_money", r#"{"amount":2}"#)),
        denied
    );
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains(r#"portcullis_approvals_total{event="deleted"} 1"#),
        "{metrics}"
    );
    gw.stop().await;

    // Expired approvals go a retention after their expiry, pending or denied alike.
    let gw = TestGateway::start(&format!(
        "{}approvals:\n  ttl: 1s\n  retention: 1s\n",
        providers_yaml(&mock)
    ))
    .await;
    let approvals = &gw.state.approvals;
    let lapsed = approvals.hold(call("s-x", "key-a", "send_money", r#"{"amount":1}"#));
    let refused = approvals.hold(call("s-x", "key-a", "send_money", r#"{"amount":2}"#));
    stored(&gw, &lapsed).await;
    stored(&gw, &refused).await;
    assert_eq!(
        decide(&gw, &refused, json!({"decision": "deny"})).await.0,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !listed(&gw).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}

/// A `tools/call` of `tool` in `session` on `gw`; its JSON-RPC answer.
async fn mcp_call(gw: &TestGateway, session: &str, tool: &str, arguments: Value) -> Value {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The approval a held call's answer names.
fn held_as(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("held for approval"), "{message}");
    message.split('`').nth(3).unwrap().to_owned()
}

#[tokio::test]
async fn two_replicas_holding_the_same_call_at_once_name_one_approval() {
    let case = cases()
        .into_iter()
        .find(|c| c.id.starts_with("banking-t1"))
        .unwrap();
    let twin = McpTwin::start(std::slice::from_ref(&case)).await.unwrap();
    twin.play(&case, true);
    let redis = std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let config = format!(
        "redis: {{url: \"{redis}\"}}\nmcp:\n  servers:\n    banking: {{url: \"{url}\"}}\n\
         tool_policies:\n  - {{match: banking__send_money, call: approval}}\n",
        url = twin.url("banking")
    );
    let db = fresh_postgres_url().await;
    let a = TestGateway::start_with_db(&db, &config).await;
    let b = TestGateway::start_with_db(&db, &config).await;
    let session = mcp_session(&a, MASTER_KEY).await;
    // The bill's text taints the session, on every replica (through Redis).
    let v = mcp_call(
        &a,
        &session,
        "banking__read_bill",
        json!({"file": "bill-january.txt"}),
    )
    .await;
    assert!(v["result"].is_object(), "{v}");

    for round in 0..6 {
        let payment = json!({"recipient_iban": "DE89370400440532013000", "amount": round,
                             "subject": "INV-0001"});
        let (on_a, on_b) = tokio::join!(
            mcp_call(&a, &session, "banking__send_money", payment.clone()),
            mcp_call(&b, &session, "banking__send_money", payment.clone()),
        );
        let (id_a, id_b) = (held_as(&on_a), held_as(&on_b));
        assert_eq!(
            id_a, id_b,
            "round {round}: both replicas name the same approval"
        );
        // One row for the call, pending, the same on both replicas.
        let (_, page) = get(
            &b,
            &format!("/admin/approvals?session={session}&limit=1000"),
        )
        .await;
        let rows: Vec<&Value> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["arguments"]["amount"] == round)
            .collect();
        assert_eq!(rows.len(), 1, "round {round}: {page}");
        assert_eq!(rows[0]["id"], id_a.as_str());
        assert_eq!(rows[0]["status"], "pending");
        // Repeated on either replica, the call is still held under that approval.
        let again = mcp_call(&b, &session, "banking__send_money", payment).await;
        assert_eq!(held_as(&again), id_a);
    }
    assert_eq!(
        twin.calls().len(),
        1,
        "only the bill was read: {:?}",
        twin.calls()
    );
    a.stop().await;
    b.stop().await;
}

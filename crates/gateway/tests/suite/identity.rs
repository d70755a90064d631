//! Identity end to end, as a platform team would use it over HTTP: teams, users and virtual
//! keys through the admin API; keys that are hashed, listed without secrets, rotated with a
//! grace period, expired and revoked (at once, and on a second replica within the poll
//! interval); allowed models; per-key limits; roles on the admin API; and provider keys from
//! the vault resolved per user, then team, then default — never shown anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::{MASTER_KEY, TestGateway, client, fresh_postgres_url, providers_yaml};
use portcullis_test_support::{MockOptions, MockUpstream};
use serde_json::{Value, json};

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin_as(gw, MASTER_KEY, method, path, body).await
}

async fn admin_as(
    gw: &TestGateway,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let c = client();
    let req = match method {
        "POST" => c.post(gw.at(path)),
        "GET" => c.get(gw.at(path)),
        "DELETE" => c.delete(gw.at(path)),
        "PATCH" => c.patch(gw.at(path)),
        _ => unreachable!(),
    };
    let req = req.bearer_auth(key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A chat completion with `key`; returns status, headers and body.
async fn chat(
    gw: &TestGateway,
    key: &str,
    model: &str,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn setup_team_and_users(gw: &TestGateway) {
    let (s, _) = admin(
        gw,
        "POST",
        "/admin/teams",
        Some(json!({"name": "ML Platform"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = admin(
        gw,
        "POST",
        "/admin/teams",
        Some(json!({"id": "research", "name": "Research"})),
    )
    .await;
    assert_eq!(s, 201);
    for (id, teams, role) in [
        ("alice", json!(["ml-platform"]), "member"),
        ("bob", json!(["ml-platform", "research"]), "member"),
        ("carol", json!([]), "member"),
        ("vera", json!(["research"]), "viewer"),
        ("ada", json!([]), "admin"),
    ] {
        let (s, body) = admin(
            gw,
            "POST",
            "/admin/users",
            Some(
                json!({"id": id, "email": format!("{id}@corp.test"), "teams": teams, "role": role}),
            ),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
}

async fn new_key(gw: &TestGateway, body: Value) -> (String, String) {
    let (s, v) = admin(gw, "POST", "/admin/keys", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn virtual_keys_are_shown_once_stored_hashed_and_identify_the_caller() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    setup_team_and_users(&gw).await;

    let (s, created) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(
            json!({"name": "alice laptop", "user": "alice@corp.test", "metadata": {"env": "dev"}}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pk-") && secret.len() > 40);
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["user"], "alice");
    assert_eq!(created["status"], "active");

    // Listing and reading never show the secret.
    let (s, list) = admin(&gw, "GET", "/admin/keys", None).await;
    assert_eq!(s, 200);
    assert!(!list.to_string().contains(&secret));
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert!(list["data"][0].get("key").is_none());
    let (_, one) = admin(&gw, "GET", &format!("/admin/keys/{id}"), None).await;
    assert!(!one.to_string().contains(&secret));
    // Nor does the database: only the digest is stored.
    let stored = gw
        .state
        .stores
        .tenancy
        .key_by_secret(&secret)
        .await
        .unwrap();
    assert!(stored.is_none(), "the secret itself is not a lookup key");

    // The key works, over the OpenAI and the Anthropic SDK's header, and the log knows who.
    let (s, h, _) = chat(&gw, &secret, "gpt-4o", &[]).await;
    assert_eq!(s, 200);
    let rid = h["x-portcullis-request-id"].to_str().unwrap().to_owned();
    let r = client()
        .post(gw.at("/v1/messages"))
        .header("x-api-key", &secret)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = gw.log_of(&rid).await;
    assert_eq!(rec["subject"], id.as_str());
    assert_eq!(rec["auth_method"], "virtual_key");
    assert_eq!(rec["user"], "alice");
    assert_eq!(rec["team"], "ml-platform");
    assert_eq!(rec["key_id"], id.as_str());

    // A team header picks one of the caller's teams, and only those.
    let (s, _, body) = chat(&gw, &secret, "gpt-4o", &[("x-portcullis-team", "research")]).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "team_not_allowed");
    // A team header that is not printable ASCII is the caller's mistake, named as such.
    let (s, _, body) = chat(&gw, &secret, "gpt-4o", &[("x-portcullis-team", "équipe")]).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_header");

    // Revocation takes effect at once.
    let (s, revoked) = admin(&gw, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(revoked["status"], "revoked");
    let (s, _, body) = chat(&gw, &secret, "gpt-4o", &[]).await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["code"], "key_revoked");
    let (s, _) = admin(&gw, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 404, "revoking twice names nothing to revoke");

    // A made-up key of the right shape is refused like any other.
    let (s, _, body) = chat(
        &gw,
        "pk-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "gpt-4o",
        &[],
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    gw.stop().await;
}

#[tokio::test]
async fn bad_admin_input_gets_precise_errors() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    setup_team_and_users(&gw).await;
    for (body, status, needle) in [
        (json!({"user": "alice"}), 400, "name"),
        (json!({"name": "k", "user": "nobody"}), 404, "nobody"),
        (json!({"name": "k", "team": "nope"}), 404, "nope"),
        (
            json!({"name": "k", "user": "alice", "team": "research"}),
            400,
            "not a member",
        ),
        (
            json!({"name": "k", "expires_at": "yesterday"}),
            400,
            "expires_at",
        ),
        (
            json!({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}),
            400,
            "past",
        ),
        (
            json!({"name": "k", "limits": {"requests_per_minute": 0}}),
            400,
            "positive",
        ),
        (
            json!({"name": "k", "budget": {"usd": 5, "period": "hourly"}}),
            400,
            "daily",
        ),
        (json!({"name": "k", "surprise": true}), 400, "surprise"),
        (
            json!([]),
            400,
            "expected a JSON object of fields, got an array",
        ),
        (json!("k"), 400, "got a string"),
        (
            json!({"name": "k", "budget": [5, "daily"]}),
            400,
            "Invalid `budget`: expected a JSON object, got an array",
        ),
        (
            json!({"name": "k", "controls": {"retry": [3]}}),
            400,
            "`controls.retry`",
        ),
        (json!({"name": "k", "limits": []}), 400, "`limits`"),
    ] {
        let (s, v) = admin(&gw, "POST", "/admin/keys", Some(body.clone())).await;
        assert_eq!(s, status, "{body} → {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/teams",
        Some(json!({"name": "ML Platform"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let r = client()
        .post(gw.at("/admin/users"))
        .bearer_auth(MASTER_KEY)
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // `[]` (or any non-object) creates no user; e-mail addresses must be addresses.
    for (path, body, needle) in [
        ("/admin/users", json!([]), "expected a JSON object"),
        ("/admin/users", json!(null), "got null"),
        ("/admin/teams", json!(["x", "X"]), "got an array"),
        ("/admin/users", json!({"email": "not an address"}), "email"),
        ("/admin/users", json!({"email": "eve@corp..test"}), "email"),
        (
            "/admin/users",
            json!({"id": "eve", "email": "eve@"}),
            "email",
        ),
    ] {
        let (s, v) = admin(&gw, "POST", path, Some(body.clone())).await;
        assert_eq!(s, 400, "{body} → {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body} → {v}"
        );
    }
    let (_, users) = admin(&gw, "GET", "/admin/users", None).await;
    assert_eq!(users["data"].as_array().unwrap().len(), 5, "{users}");
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/users",
        Some(json!({"id": "eve", "email": "eve.o'neil+ml@corp.test"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_period_and_expiry_ends_keys() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (id, old) = new_key(&gw, json!({"name": "svc"})).await;
    let (s, rotated) = admin(
        &gw,
        "POST",
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 1})),
    )
    .await;
    assert_eq!(s, 200, "{rotated}");
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id.as_str());
    assert_eq!(
        chat(&gw, &old, "gpt-4o", &[]).await.0,
        200,
        "old key in its grace period"
    );
    assert_eq!(chat(&gw, &new, "gpt-4o", &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, _, body) = chat(&gw, &old, "gpt-4o", &[]).await;
    assert_eq!(s, 401, "grace period over");
    assert_eq!(body["error"]["code"], "key_expired");
    assert_eq!(chat(&gw, &new, "gpt-4o", &[]).await.0, 200);

    // A key with an expiry stops at that time.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1000);
    let (_, short) = new_key(
        &gw,
        json!({"name": "short", "expires_at": soon.to_string()}),
    )
    .await;
    assert_eq!(chat(&gw, &short, "gpt-4o", &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat(&gw, &short, "gpt-4o", &[]).await.0, 401);

    // No body at all, even framed as chunked with no chunk: the defaults.
    let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
    let r = client()
        .post(gw.at(&format!("/admin/keys/{id}/rotate")))
        .bearer_auth(MASTER_KEY)
        .body(reqwest::Body::wrap_stream(empty))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["key"].is_string());
    gw.stop().await;
}

#[tokio::test]
async fn keys_limit_models_and_carry_their_own_rate_limits() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (_, key) = new_key(
        &gw,
        json!({"name": "openai only", "models": ["openai/*", "fast"], "limits": {"requests_per_minute": 3}}),
    )
    .await;
    assert_eq!(chat(&gw, &key, "gpt-4o", &[]).await.0, 200);
    assert_eq!(chat(&gw, &key, "fast", &[]).await.0, 200);
    // Not allowed: refused in the caller's dialect, before any upstream call.
    let hits = mock.hits();
    let r = client()
        .post(gw.at("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "permission_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5")
    );
    assert_eq!(mock.hits(), hits);
    // The third allowed request uses up the key's minute; the fourth is refused.
    let (s, h, _) = chat(&gw, &key, "gpt-4o", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h["ratelimit-remaining"], "0");
    let (s, h, body) = chat(&gw, &key, "gpt-4o", &[]).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(h["ratelimit-limit"], "3");
    assert!(h.contains_key("retry-after"));
    // Another key is not affected.
    let (_, other) = new_key(&gw, json!({"name": "other"})).await;
    assert_eq!(chat(&gw, &other, "gpt-4o", &[]).await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn roles_gate_the_admin_api_and_viewers_see_only_their_teams() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    setup_team_and_users(&gw).await;
    let (_, alice) = new_key(&gw, json!({"name": "a", "user": "alice"})).await;
    let (_, bob) = new_key(&gw, json!({"name": "b", "user": "bob", "team": "research"})).await;
    let (_, vera) = new_key(&gw, json!({"name": "v", "user": "vera"})).await;
    let (_, ada) = new_key(&gw, json!({"name": "ad", "user": "ada"})).await;
    assert_eq!(chat(&gw, &alice, "gpt-4o", &[]).await.0, 200);
    assert_eq!(chat(&gw, &bob, "gpt-4o", &[]).await.0, 200);
    gw.logs("", 2).await;

    // A member's virtual key may not use the admin API; an admin's may.
    let (s, v) = admin_as(&gw, &alice, "GET", "/admin/keys", None).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "admin_required");
    let (s, _) = admin_as(&gw, &alice, "GET", "/admin/logs", None).await;
    assert_eq!(s, 403);
    let (s, v) = admin_as(&gw, &ada, "GET", "/admin/keys", None).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = admin_as(
        &gw,
        &ada,
        "POST",
        "/admin/teams",
        Some(json!({"name": "New"})),
    )
    .await;
    assert_eq!(s, 201);

    // A viewer reads logs and usage of its own team only.
    let (s, v) = admin_as(&gw, &vera, "GET", "/admin/logs", None).await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["user"], "bob");
    let (s, v) = admin_as(&gw, &vera, "GET", "/admin/logs?team=ml-platform", None).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = admin_as(&gw, &vera, "GET", "/admin/usage?group_by=user", None).await;
    assert_eq!(s, 200, "{v}");
    let groups: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["bob"]);
    let (s, _) = admin_as(&gw, &vera, "GET", "/admin/keys", None).await;
    assert_eq!(s, 403);

    // The admin sees per-user and per-team usage.
    let (_, v) = admin(&gw, "GET", "/admin/usage?group_by=team", None).await;
    let mut teams: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    teams.sort_unstable();
    assert_eq!(teams, ["ml-platform", "research"]);

    // Disabling a user stops their keys at once.
    let (s, v) = admin(&gw, "DELETE", "/admin/users/alice", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["disabled"], true);
    let (s, _, body) = chat(&gw, &alice, "gpt-4o", &[]).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "identity_disabled");
    let (s, _) = admin(
        &gw,
        "PATCH",
        "/admin/users/alice",
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(chat(&gw, &alice, "gpt-4o", &[]).await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn provider_keys_resolve_per_user_then_team_then_default_and_never_show() {
    let mock = MockUpstream::start_with(MockOptions {
        extra_api_keys: vec![
            "sk-alice-own-0001".into(),
            "sk-team-ml-0002".into(),
            "sk-default-0003".into(),
            "sk-alice-rotated-0004".into(),
        ],
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\n{}",
        providers_yaml(&mock)
    ))
    .await;
    setup_team_and_users(&gw).await;
    let mut ids = std::collections::HashMap::new();
    for (alias, secret, owner) in [
        ("alice", "sk-alice-own-0001", json!({"user": "alice"})),
        ("ml", "sk-team-ml-0002", json!({"team": "ml-platform"})),
    ] {
        let mut body = json!({"provider": "openai", "alias": alias, "secret": secret});
        body.as_object_mut()
            .unwrap()
            .extend(owner.as_object().unwrap().clone());
        let (s, v) = admin(&gw, "POST", "/admin/provider-keys", Some(body)).await;
        assert_eq!(s, 201, "{v}");
        assert!(!v.to_string().contains(secret));
        ids.insert(alias, v["id"].as_str().unwrap().to_owned());
    }
    let (_, alice) = new_key(&gw, json!({"name": "a", "user": "alice"})).await;
    let (_, bob) = new_key(&gw, json!({"name": "b", "user": "bob"})).await;
    let (_, carol) = new_key(&gw, json!({"name": "c", "user": "carol"})).await;

    let upstream_key =
        |mock: &MockUpstream| mock.requests().last().unwrap().headers["authorization"].clone();
    // Alice: her own key.
    let (s, h, _) = chat(&gw, &alice, "gpt-4o", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(upstream_key(&mock), "Bearer sk-alice-own-0001");
    assert_eq!(h["x-portcullis-provider-key"], ids["alice"].as_str());
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["provider_key_id"], ids["alice"].as_str());
    // Bob: his team's.
    let (_, h, _) = chat(&gw, &bob, "gpt-4o", &[]).await;
    assert_eq!(upstream_key(&mock), "Bearer sk-team-ml-0002");
    assert_eq!(h["x-portcullis-provider-key"], ids["ml"].as_str());
    // Carol: the provider's configured key, until a stored default exists.
    let (_, h, _) = chat(&gw, &carol, "gpt-4o", &[]).await;
    assert_eq!(upstream_key(&mock), "Bearer sk-mock-openai");
    assert_eq!(h["x-portcullis-provider-key"], "openai:default");
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/provider-keys",
        Some(json!({"provider": "openai", "alias": "shared", "secret": "sk-default-0003"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, h, _) = chat(&gw, &carol, "gpt-4o", &[]).await;
    assert_eq!(upstream_key(&mock), "Bearer sk-default-0003");
    assert_eq!(h["x-portcullis-provider-key"], v["id"].as_str().unwrap());

    // Aliases by header: allowed ones work; someone else's and unknown ones get the same
    // answer (aliases cannot be enumerated).
    let (s, _, _) = chat(
        &gw,
        &alice,
        "gpt-4o",
        &[("x-portcullis-provider-key", "ml")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(upstream_key(&mock), "Bearer sk-team-ml-0002");
    let (s, _, body) = chat(
        &gw,
        &carol,
        "gpt-4o",
        &[("x-portcullis-provider-key", "alice")],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let someone_elses = body["error"].clone();
    let (s, _, body) = chat(
        &gw,
        &carol,
        "gpt-4o",
        &[("x-portcullis-provider-key", "nope")],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nope"));
    assert_eq!(
        someone_elses["message"]
            .as_str()
            .unwrap()
            .replace("alice", "nope"),
        body["error"]["message"].as_str().unwrap()
    );
    assert_eq!(someone_elses["code"], body["error"]["code"]);
    assert_eq!(someone_elses["code"], "unknown_provider_key");

    // Secrets appear nowhere: admin listings, the request log (bodies included), debug output.
    let (_, listed) = admin(&gw, "GET", "/admin/provider-keys", None).await;
    let logs = gw.logs("limit=1000", 1).await;
    let debug = format!("{:?}", gw.state);
    for secret in [
        "sk-alice-own-0001",
        "sk-team-ml-0002",
        "sk-default-0003",
        "sk-mock-openai",
    ] {
        assert!(
            !listed.to_string().contains(secret),
            "admin listing shows {secret}"
        );
        assert!(
            !serde_json::to_string(&logs).unwrap().contains(secret),
            "log shows {secret}"
        );
        assert!(!debug.contains(secret), "debug output shows {secret}");
    }
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    assert_eq!(listed["data"][0]["hint"], "…0001");
    // Sealed at rest: the stored value is not the secret.
    let stored = gw.state.stores.tenancy.credentials().await.unwrap();
    assert!(stored.iter().all(|c| !c.sealed.contains("sk-")));

    // Rotated: the same id and alias, the new secret used at once, never shown.
    let path = format!("/admin/provider-keys/{}/rotate", ids["alice"]);
    let (s, v) = admin(
        &gw,
        "POST",
        &path,
        Some(json!({"secret": "sk-alice-rotated-0004"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["id"], &v["alias"]),
        (&json!(ids["alice"]), &json!("alice"))
    );
    assert_eq!(v["hint"], "…0004");
    assert!(!v.to_string().contains("sk-alice-rotated"));
    let (s, h, _) = chat(&gw, &alice, "gpt-4o", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(upstream_key(&mock), "Bearer sk-alice-rotated-0004");
    assert_eq!(h["x-portcullis-provider-key"], ids["alice"].as_str());
    for (path, body, status) in [
        (path.as_str(), json!({"secret": "  "}), 400),
        (path.as_str(), json!({"secret": "x", "alias": "y"}), 400),
        (
            "/admin/provider-keys/cred_nope/rotate",
            json!({"secret": "sk-x"}),
            404,
        ),
    ] {
        let (s, v) = admin(&gw, "POST", path, Some(body)).await;
        assert_eq!(s, status, "{path}: {v}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn provider_keys_are_refused_without_a_vault_key() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/provider-keys",
        Some(json!({"provider": "openai", "alias": "x", "secret": "sk-never-stored"})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "vault_not_configured");
    assert!(!v.to_string().contains("sk-never-stored"));
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/provider-keys",
        Some(json!({"provider": "nope", "alias": "x", "secret": "s"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_every_replica_within_the_poll_interval() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let yaml = format!(
        "identity:\n  poll_interval: 100ms\n{}",
        providers_yaml(&mock)
    );
    let a = TestGateway::start_with_db(&db, &yaml).await;
    let b = TestGateway::start_with_db(&db, &yaml).await;
    let (id, key) = new_key(&a, json!({"name": "shared"})).await;
    // A accepts it at once; B from its next poll of the tenancy version.
    assert_eq!(chat(&a, &key, "gpt-4o", &[]).await.0, 200);
    let started = std::time::Instant::now();
    while chat(&b, &key, "gpt-4o", &[]).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "replica B never learnt of the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = admin(&a, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        chat(&a, &key, "gpt-4o", &[]).await.0,
        401,
        "at once on the replica that revoked"
    );
    let started = std::time::Instant::now();
    loop {
        let (s, _, _) = chat(&b, &key, "gpt-4o", &[]).await;
        if s == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "replica B still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_keys_own_cache_retry_and_timeout_settings_sit_between_route_and_request() {
    let mock = MockUpstream::start().await;
    // The file: no cache, no retries.
    let gw = TestGateway::start(&format!(
        "{}cache: {{enabled: false}}\n",
        providers_yaml(&mock)
    ))
    .await;
    let (id, tuned) = new_key(
        &gw,
        json!({"name": "batch jobs", "controls": {
            "cache": {"enabled": true, "ttl": "1h", "nondeterministic": true},
            "retry": {"max_attempts": 3, "delay": "1ms", "backoff": "constant"},
            "timeouts": {"first_byte": "150ms"},
        }}),
    )
    .await;
    let (_, plain) = new_key(&gw, json!({"name": "interactive"})).await;

    // Retries: the key's three attempts; the file's one for the other key; a request header
    // still has the last word.
    let before = mock.hits();
    let (s, h, _) = chat(&gw, &tuned, "openai/mock-error-503", &[]).await;
    assert_eq!(s, 503);
    assert_eq!(h["x-portcullis-attempts"], "3");
    assert_eq!(mock.hits() - before, 3);
    // (Other failing models from here on: five failures in a row open a target's breaker.)
    let (s, h, _) = chat(&gw, &plain, "openai/mock-error-502", &[]).await;
    assert_eq!(s, 502);
    assert_eq!(h["x-portcullis-attempts"], "1");
    let (_, h, _) = chat(
        &gw,
        &tuned,
        "openai/mock-error-500",
        &[("x-portcullis-max-attempts", "2")],
    )
    .await;
    assert_eq!(h["x-portcullis-attempts"], "2");

    // Cache: on for the key (the file has it off), off for the other.
    let (_, h1, _) = chat(&gw, &tuned, "gpt-4o", &[]).await;
    let (_, h2, b2) = chat(&gw, &tuned, "gpt-4o", &[]).await;
    assert_eq!(h1["x-portcullis-cache"], "MISS");
    assert_eq!(h2["x-portcullis-cache"], "HIT", "{b2}");
    let (_, h3, _) = chat(&gw, &plain, "gpt-4o", &[]).await;
    assert_eq!(h3["x-portcullis-cache"], "BYPASS");
    let (_, h4, _) = chat(&gw, &tuned, "gpt-4o", &[("cf-aig-skip-cache", "true")]).await;
    assert_eq!(h4["x-portcullis-cache"], "BYPASS");

    // Timeouts: the key's first-byte limit cuts a slow upstream (each of its 3 attempts).
    let started = std::time::Instant::now();
    let (s, _, body) = chat(&gw, &tuned, "openai/mock-slow-2000", &[]).await;
    assert_eq!(s, 504, "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let (s, _, _) = chat(&gw, &plain, "openai/mock-slow-300", &[]).await;
    assert_eq!(s, 200, "no key timeout for the other key");

    // The controls are shown on the key, and bad ones are refused with their path.
    let (_, list) = admin(&gw, "GET", "/admin/keys", None).await;
    let shown = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(shown["controls"]["retry"]["max_attempts"], 3);
    assert_eq!(shown["controls"]["cache"]["ttl"], "1h");
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bad", "controls": {"retry": {"backoff": "fibonacci", "max_attempts": 50}}})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("controls.retry.backoff"), "{message}");
    assert!(message.contains("controls.retry.max_attempts"), "{message}");
    let (s, _) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bad", "controls": {"cache": {"backend": "redis"}}})),
    )
    .await;
    assert_eq!(s, 400);
    gw.stop().await;
}

/// Teams `red` and `blue`; `vic` (viewer) in red, `max` (member) in red, `mia` (member) in
/// blue.
async fn setup_red_and_blue(gw: &TestGateway) {
    for (id, name) in [("red", "Red"), ("blue", "Blue")] {
        let (s, v) = admin(
            gw,
            "POST",
            "/admin/teams",
            Some(json!({"id": id, "name": name})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    for (id, team, role) in [
        ("vic", "red", "viewer"),
        ("max", "red", "member"),
        ("mia", "blue", "member"),
    ] {
        let (s, v) = admin(
            gw,
            "POST",
            "/admin/users",
            Some(json!({"id": id, "teams": [team], "role": role})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
}

#[tokio::test]
async fn a_team_bound_key_loses_the_teams_logs_when_its_user_leaves_the_team() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    setup_red_and_blue(&gw).await;
    let (_, max) = new_key(&gw, json!({"name": "m", "user": "max", "team": "red"})).await;
    let (vic_id, vic) = new_key(&gw, json!({"name": "v", "user": "vic", "team": "red"})).await;
    assert_eq!(chat(&gw, &max, "gpt-4o", &[]).await.0, 200);
    gw.logs("", 1).await;
    let (s, v) = admin_as(&gw, &vic, "GET", "/admin/logs", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["team"], "red");

    // Vic leaves red: the key bound to red stops working everywhere, with a clear error.
    let (s, v) = admin(&gw, "DELETE", "/admin/teams/red/members/vic", None).await;
    assert_eq!(s, 200, "{v}");
    for path in ["/admin/logs", "/admin/logs?team=red", "/admin/usage"] {
        let (s, v) = admin_as(&gw, &vic, "GET", path, None).await;
        assert_eq!(s, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "team_membership_ended", "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("`red`"),
            "{v}"
        );
    }
    let (s, _, body) = chat(&gw, &vic, "gpt-4o", &[]).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "team_membership_ended");
    // The refusal is logged against the key, never against red.
    let refused = gw.logs("status=403", 1).await;
    assert_eq!(refused[0]["key_id"], vic_id.as_str());
    assert!(refused[0]["team"].is_null(), "{}", refused[0]);

    // Back in the team, the key works again.
    let (s, _) = admin(
        &gw,
        "POST",
        "/admin/teams/red/members",
        Some(json!({"user": "vic"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = admin_as(&gw, &vic, "GET", "/admin/logs", None).await;
    assert_eq!(s, 200, "{v}");

    // A key bound to a team its user never joined cannot be created; deleting the team
    // revokes the keys bound to it.
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "x", "user": "vic", "team": "blue"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = admin(&gw, "DELETE", "/admin/teams/red", None).await;
    assert_eq!(s, 200);
    for key in [&vic, &max] {
        let (s, v) = admin_as(&gw, key, "GET", "/admin/logs", None).await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["error"]["code"], "team_membership_ended");
        let (s, _, body) = chat(&gw, key, "gpt-4o", &[]).await;
        assert_eq!(s, 403, "{body}");
    }
    let (_, keys) = admin(&gw, "GET", "/admin/keys?include_revoked=true", None).await;
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "revoked"),
        "{keys}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_member_who_left_a_team_can_no_longer_use_its_provider_key_or_bill_it() {
    let mock = MockUpstream::start_with(MockOptions {
        extra_api_keys: vec!["sk-team-blue-0004".into()],
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\n{}",
        providers_yaml(&mock)
    ))
    .await;
    setup_red_and_blue(&gw).await;
    let (s, v) = admin(
        &gw,
        "POST",
        "/admin/provider-keys",
        Some(
            json!({"provider": "openai", "alias": "blue", "secret": "sk-team-blue-0004",
                    "team": "blue"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (mia_id, mia) = new_key(
        &gw,
        json!({"name": "m", "user": "mia", "team": "blue",
               "budget": {"usd": 10, "period": "daily"}}),
    )
    .await;
    let (s, h, _) = chat(&gw, &mia, "gpt-4o", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-team-blue-0004"
    );
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["team"], "blue");
    let sent = mock.requests().len();

    let (s, v) = admin(&gw, "DELETE", "/admin/teams/blue/members/mia", None).await;
    assert_eq!(s, 200, "{v}");
    for alias in [None, Some("blue")] {
        let extra: Vec<(&str, &str)> = alias
            .map(|a| ("x-portcullis-provider-key", a))
            .into_iter()
            .collect();
        let (s, _, body) = chat(&gw, &mia, "gpt-4o", &extra).await;
        assert_eq!(s, 403, "{body}");
        assert_eq!(body["error"]["code"], "team_membership_ended");
    }
    assert_eq!(mock.requests().len(), sent, "blue's provider key was used");
    // Nothing more is billed to blue: its only record is the one before mia left.
    let (_, v) = admin(&gw, "GET", "/admin/usage?team=blue", None).await;
    assert_eq!(v["totals"]["requests"], 1, "{v}");
    let refused = gw.logs("status=403", 2).await;
    for r in &refused {
        assert_eq!(r["key_id"], mia_id.as_str());
        assert!(r["team"].is_null(), "{r}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn leaving_a_team_ends_a_team_bound_key_on_every_replica_within_the_poll_interval() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let yaml = format!(
        "identity:\n  poll_interval: 100ms\n{}",
        providers_yaml(&mock)
    );
    let a = TestGateway::start_with_db(&db, &yaml).await;
    let b = TestGateway::start_with_db(&db, &yaml).await;
    setup_red_and_blue(&a).await;
    let (_, vic) = new_key(&a, json!({"name": "v", "user": "vic", "team": "red"})).await;
    // A accepts it at once; B from its next poll of the tenancy version.
    assert_eq!(admin_as(&a, &vic, "GET", "/admin/logs", None).await.0, 200);
    let started = std::time::Instant::now();
    while admin_as(&b, &vic, "GET", "/admin/logs", None).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "replica B never learnt of the new key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, _) = admin(&a, "DELETE", "/admin/teams/red/members/vic", None).await;
    assert_eq!(s, 200);
    assert_eq!(admin_as(&a, &vic, "GET", "/admin/logs", None).await.0, 403);
    let started = std::time::Instant::now();
    loop {
        let (s, v) = admin_as(&b, &vic, "GET", "/admin/logs", None).await;
        if s == 403 {
            assert_eq!(v["error"]["code"], "team_membership_ended");
            break;
        }
        assert_eq!(s, 200, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "replica B still honours a key whose user left its team"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_a_refused_key_is_named_in_the_log() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (id, key) = new_key(&gw, json!({"name": "k"})).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = client()
            .post(gw.at("/v1/chat/completions"))
            .header("authorization", format!("{scheme} {key}"))
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let (s, _) = admin(&gw, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    let (s, h, body) = chat(&gw, &key, "gpt-4o", &[]).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error"]["code"], "key_revoked");
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["status"], 401);
    assert_eq!(rec["key_id"], id.as_str(), "{rec}");
    assert_eq!(rec["auth_method"], "virtual_key");
    // An unknown key names nothing.
    let (s, h, _) = chat(
        &gw,
        "pk-unknown-0000000000000000000000000000000000",
        "gpt-4o",
        &[],
    )
    .await;
    assert_eq!(s, 401);
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert!(rec["key_id"].is_null(), "{rec}");
    gw.stop().await;
}

/// Limits and budgets stored for a whole team or user through the admin API bind every key
/// and token of that team or user, on whichever team a request is accounted to; `null`
/// clears them.
async fn exercise_owner_limits(gw: &TestGateway) {
    setup_team_and_users(gw).await;
    let (_, team_key) = new_key(gw, json!({"name": "team's", "team": "research"})).await;
    let (_, bobs) = new_key(gw, json!({"name": "bob's", "user": "bob"})).await;

    let (s, team) = admin(
        gw,
        "PATCH",
        "/admin/teams/research",
        Some(json!({"limits": {"requests_per_minute": 1}})),
    )
    .await;
    assert_eq!(s, 200, "{team}");
    assert_eq!(
        team["limits"],
        json!({"requests_per_minute": 1, "tokens_per_minute": null, "max_in_flight": null})
    );
    assert_eq!(team["budget"], Value::Null);
    let (_, listed) = admin(gw, "GET", "/admin/teams", None).await;
    let research = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "research")
        .unwrap();
    assert_eq!(research["limits"]["requests_per_minute"], 1);

    // The team's one request a minute, used by the team's key, is used for bob too — when
    // his request is accounted to research, not to his other team.
    assert_eq!(chat(gw, &team_key, "gpt-4o", &[]).await.0, 200);
    let (s, _, body) = chat(gw, &bobs, "gpt-4o", &[("x-portcullis-team", "research")]).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let (s, _, body) = chat(gw, &bobs, "gpt-4o", &[("x-portcullis-team", "ml-platform")]).await;
    assert_eq!(s, 200, "{body}");

    // Cleared, the team's requests flow again.
    let (s, team) = admin(
        gw,
        "PATCH",
        "/admin/teams/research",
        Some(json!({"limits": null})),
    )
    .await;
    assert_eq!(s, 200, "{team}");
    assert_eq!(team["limits"], Value::Null);
    assert_eq!(chat(gw, &team_key, "gpt-4o", &[]).await.0, 200);

    // A user's budget binds every key of the user, and the user's other settings stay.
    let (s, user) = admin(
        gw,
        "PATCH",
        "/admin/users/bob",
        Some(json!({"budget": {"usd": 0.000001, "period": "daily"}})),
    )
    .await;
    assert_eq!(s, 200, "{user}");
    assert_eq!(user["budget"], json!({"usd": 0.000001, "period": "daily"}));
    assert_eq!(user["role"], "member");
    let refused = [
        chat(gw, &bobs, "gpt-4o", &[]).await,
        chat(gw, &bobs, "gpt-4o", &[]).await,
    ];
    let (s, _, body) = &refused[1];
    assert_eq!(*s, 429, "{body}");
    assert_eq!(body["error"]["code"], "budget_exceeded");
    assert_eq!(
        chat(gw, &team_key, "gpt-4o", &[]).await.0,
        200,
        "not the team's"
    );

    // Bad limits are refused whole; unknown teams and users are 404s.
    for (path, body) in [
        (
            "/admin/teams/research",
            json!({"limits": {"requests_per_minute": 0}}),
        ),
        (
            "/admin/users/bob",
            json!({"budget": {"usd": -1, "period": "daily"}}),
        ),
        (
            "/admin/users/bob",
            json!({"budget": {"usd": 1, "period": "hourly"}}),
        ),
        ("/admin/teams/research", json!({"limits": {"rpm": 5}})),
    ] {
        let (s, v) = admin(gw, "PATCH", path, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    let (s, _) = admin(
        gw,
        "PATCH",
        "/admin/teams/nope",
        Some(json!({"limits": null})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = admin(
        gw,
        "PATCH",
        "/admin/users/nope",
        Some(json!({"budget": null})),
    )
    .await;
    assert_eq!(s, 404);
    let (_, user) = admin(gw, "GET", "/admin/users/bob", None).await;
    assert_eq!(user["budget"]["usd"], 0.000001, "unchanged by the refusals");
}

#[tokio::test]
async fn team_and_user_limits_bind_every_key_on_sqlite() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    exercise_owner_limits(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn team_and_user_limits_bind_every_key_on_postgres() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start_with_db(&fresh_postgres_url().await, &providers_yaml(&mock)).await;
    exercise_owner_limits(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn users_and_teams_are_listed_a_page_at_a_time_with_their_teams_and_member_counts() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    setup_team_and_users(&gw).await;

    let (s, first) = admin(&gw, "GET", "/admin/users?limit=2", None).await;
    assert_eq!(s, 200, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["ada", "alice"]);
    assert_eq!(first["data"][1]["teams"], json!(["ml-platform"]));
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = admin(
        &gw,
        "GET",
        &format!("/admin/users?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&second), ["bob", "carol"]);
    assert_eq!(
        second["data"][0]["teams"],
        json!(["ml-platform", "research"])
    );
    assert_eq!(second["data"][1]["teams"], json!([]));
    let cursor = second["next_cursor"].as_str().unwrap().to_owned();
    let (_, last) = admin(
        &gw,
        "GET",
        &format!("/admin/users?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(ids(&last), ["vera"]);
    assert_eq!(last["next_cursor"], Value::Null);
    let (_, all) = admin(&gw, "GET", "/admin/users", None).await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        5,
        "100 a page by default"
    );

    let (s, teams) = admin(&gw, "GET", "/admin/teams?limit=1", None).await;
    assert_eq!(s, 200, "{teams}");
    assert_eq!(teams["data"][0]["id"], "ml-platform");
    assert_eq!(teams["data"][0]["member_count"], 2);
    let cursor = teams["next_cursor"].as_str().unwrap().to_owned();
    let (_, teams) = admin(
        &gw,
        "GET",
        &format!("/admin/teams?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(teams["data"][0]["id"], "research");
    assert_eq!(teams["data"][0]["member_count"], 2);

    for bad in [
        "/admin/users?limit=0",
        "/admin/users?limit=1001",
        "/admin/users?limit=2&limit=3",
        "/admin/teams?sort=name",
    ] {
        let (s, v) = admin(&gw, "GET", bad, None).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    gw.stop().await;
}

//! Changing a virtual key after it was issued (`PATCH /admin/keys/{id}`), over HTTP: its
//! name, models, limits, budget and expiry change while its secret keeps working; a narrowed
//! key is refused the models it no longer may use at once; bad input is refused as creating a
//! key refuses it; unknown and revoked keys are 404; and only admins may change a key (no
//! credentials: 401; a viewer's or member's key: 403), a console session only with its
//! anti-CSRF token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{MASTER_KEY, TestGateway, client, providers_yaml};
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

/// A request to the admin API with `key` (none: no credentials); status and body.
async fn call(
    gw: &TestGateway,
    key: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, gw.at(path));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn patch(gw: &TestGateway, id: &str, body: Value) -> (u16, Value) {
    call(
        gw,
        Some(MASTER_KEY),
        reqwest::Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(body),
    )
    .await
}

async fn new_key(gw: &TestGateway, body: Value) -> (String, String) {
    let (s, v) = call(
        gw,
        Some(MASTER_KEY),
        reqwest::Method::POST,
        "/admin/keys",
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

/// A chat completion with `key`; status and body.
async fn chat(gw: &TestGateway, key: &str, model: &str) -> (u16, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_keys_settings_change_in_place_and_a_narrowed_key_is_refused_at_once() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (id, key) = new_key(
        &gw,
        json!({"name": "ci", "limits": {"requests_per_minute": 100}, "budget": {"usd": 5.0, "period": "monthly"}, "metadata": {"owner": "ci"}}),
    )
    .await;
    assert_eq!(chat(&gw, &key, "gpt-4o").await.0, 200);
    assert_eq!(chat(&gw, &key, "claude-sonnet-4-5").await.0, 200);

    // Narrow the models and rename: the same secret now reaches only what is left.
    let (s, v) = patch(
        &gw,
        &id,
        json!({"name": "ci (openai)", "models": ["gpt-4o"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id);
    assert_eq!(v["name"], "ci (openai)");
    assert_eq!(v["models"], json!(["gpt-4o"]));
    assert_eq!(v["status"], "active");
    assert!(v.get("key").is_none(), "{v}");
    // What was not named stays as it was.
    assert_eq!(v["limits"]["requests_per_minute"], 100);
    assert_eq!(v["budget"], json!({"usd": 5.0, "period": "monthly"}));
    assert_eq!(v["metadata"], json!({"owner": "ci"}));
    let hits = mock.hits();
    let (s, body) = chat(&gw, &key, "claude-sonnet-4-5").await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5"),
        "{body}"
    );
    assert_eq!(mock.hits(), hits, "refused before any upstream call");
    assert_eq!(chat(&gw, &key, "gpt-4o").await.0, 200);

    // Limits replace the rate limits as a whole and leave the budget; an expiry is set.
    let expires = "2099-01-01T00:00:00Z";
    let (s, v) = patch(
        &gw,
        &id,
        json!({"limits": {"requests_per_minute": 1}, "expires_at": expires}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["limits"],
        json!({"requests_per_minute": 1, "tokens_per_minute": null, "max_in_flight": null})
    );
    assert_eq!(v["budget"]["usd"], 5.0);
    assert!(v["expires_at"].as_str().unwrap().starts_with("2099-01-01"));
    // The new limit holds at once: this minute's requests already used it up.
    chat(&gw, &key, "gpt-4o").await;
    let (s, body) = chat(&gw, &key, "gpt-4o").await;
    assert_eq!(s, 429, "{body}");

    // `null` clears: every model again, no limits, no budget, no expiry.
    let (s, v) = patch(
        &gw,
        &id,
        json!({"models": null, "limits": null, "budget": null, "expires_at": null}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["models"], Value::Null);
    assert_eq!(v["limits"], Value::Null);
    assert_eq!(v["budget"], Value::Null);
    assert_eq!(v["expires_at"], Value::Null);
    assert_eq!(chat(&gw, &key, "claude-sonnet-4-5").await.0, 200);

    // The list shows the key as it is now.
    let (s, v) = call(
        &gw,
        Some(MASTER_KEY),
        reqwest::Method::GET,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "ci (openai)");
    gw.stop().await;
}

#[tokio::test]
async fn key_edits_are_checked_as_new_keys_are() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (id, key) = new_key(&gw, json!({"name": "k", "models": ["gpt-4o"]})).await;
    for (body, needle) in [
        (json!({"name": "  "}), "name"),
        (json!({"models": ["gpt-4o", " "]}), "models"),
        (json!({"expires_at": "2001-01-01T00:00:00Z"}), "past"),
        (json!({"expires_at": "tomorrow"}), "expires_at"),
        (json!({"limits": {"requests_per_minute": 0}}), "positive"),
        (json!({"budget": {"usd": 5, "period": "hourly"}}), "period"),
        (
            json!({"budget": {"usd": -1, "period": "daily"}}),
            "budget.usd",
        ),
        (json!({"tools": ["github__*", "["]}), "tools[1]"),
        (json!({"metadata": [1]}), "metadata"),
        // Who a key belongs to does not change.
        (json!({"team": "research"}), "team"),
        (json!({"limits": {"rpm": 3}}), "rpm"),
    ] {
        let (s, v) = patch(&gw, &id, body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Nothing changed: the key still reaches only gpt-4o.
    let (_, v) = call(
        &gw,
        Some(MASTER_KEY),
        reqwest::Method::GET,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(v["name"], "k");
    assert_eq!(v["models"], json!(["gpt-4o"]));
    assert_eq!(chat(&gw, &key, "claude-sonnet-4-5").await.0, 403);

    // Unknown and revoked keys are 404.
    let (s, v) = patch(&gw, "key_nope", json!({"name": "x"})).await;
    assert_eq!(s, 404, "{v}");
    let (s, _) = call(
        &gw,
        Some(MASTER_KEY),
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = patch(&gw, &id, json!({"name": "x"})).await;
    assert_eq!(s, 404, "{v}");
    gw.stop().await;
}

#[tokio::test]
async fn only_admins_change_keys() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (s, v) = call(
        &gw,
        Some(MASTER_KEY),
        reqwest::Method::POST,
        "/admin/teams",
        Some(json!({"id": "research", "name": "Research"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for (user, role) in [("vera", "viewer"), ("mia", "member")] {
        let (s, v) = call(
            &gw,
            Some(MASTER_KEY),
            reqwest::Method::POST,
            "/admin/users",
            Some(json!({"id": user, "teams": ["research"], "role": role})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (id, _) = new_key(&gw, json!({"name": "target", "team": "research"})).await;
    let (_, vera) = new_key(&gw, json!({"name": "v", "user": "vera"})).await;
    let (_, mia) = new_key(&gw, json!({"name": "m", "user": "mia"})).await;
    let path = format!("/admin/keys/{id}");
    let change = json!({"models": ["gpt-4o"]});

    let (s, v) = call(
        &gw,
        None,
        reqwest::Method::PATCH,
        &path,
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    for who in [&vera, &mia] {
        let (s, v) = call(
            &gw,
            Some(who),
            reqwest::Method::PATCH,
            &path,
            Some(change.clone()),
        )
        .await;
        assert_eq!(s, 403, "{v}");
        assert_eq!(v["error"]["code"], "admin_required");
    }

    let (_, v) = call(&gw, Some(MASTER_KEY), reqwest::Method::GET, &path, None).await;
    assert_eq!(v["models"], Value::Null, "nothing changed: {v}");
    gw.stop().await;
}

#[tokio::test]
async fn a_console_session_changes_a_key_only_with_its_csrf_token() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (id, _) = new_key(&gw, json!({"name": "target"})).await;
    let path = format!("/admin/keys/{id}");
    let change = json!({"models": ["gpt-4o"]});
    // A console session: refused without its anti-CSRF token, accepted with it.
    let origin = gw.at("");
    let r = client()
        .post(gw.at("/ui/api/session"))
        .header("origin", &origin)
        .json(&json!({"master_key": MASTER_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client()
        .patch(gw.at(&path))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "csrf_failed", "{v}");
    let (_, v) = call(&gw, Some(MASTER_KEY), reqwest::Method::GET, &path, None).await;
    assert_eq!(v["models"], Value::Null, "nothing changed: {v}");
    let r = client()
        .patch(gw.at(&path))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .header("x-portcullis-csrf", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["models"], json!(["gpt-4o"]));
    gw.stop().await;
}

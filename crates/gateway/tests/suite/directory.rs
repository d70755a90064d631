//! The identity directory over HTTP: a key's own tool deny-list (`tools_denied`) and MCP tool
//! allow-list (`tools`) through the admin API on SQLite and PostgreSQL, and the invariant that the hot path never waits on the
//! database — with the tenancy tables locked by an open transaction, known and unknown keys
//! still answer at once on both replicas, even while a tenancy change is pending, and a
//! revocation takes effect once the lock is gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::{MASTER_KEY, TestGateway, client, fresh_postgres_url, providers_yaml};
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};
use sqlx::Connection;

/// Far longer than a request answered from memory takes, far shorter than a wait for a lock.
const PROMPT: Duration = Duration::from_secs(2);

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = client();
    let req = match method {
        "POST" => c.post(gw.at(path)),
        "GET" => c.get(gw.at(path)),
        "DELETE" => c.delete(gw.at(path)),
        _ => unreachable!(),
    };
    let req = req.bearer_auth(MASTER_KEY);
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

/// A chat completion with `key`: its status and body.
async fn chat(gw: &TestGateway, key: &str) -> (u16, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// [`chat`], which must answer within [`PROMPT`].
async fn prompt_chat(gw: &TestGateway, key: &str, what: &str) -> u16 {
    tokio::time::timeout(PROMPT, chat(gw, key))
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PROMPT:?}"))
        .0
}

/// Waits until `key` gets `status` from `gw` (a change made on another replica arrives
/// within its poll interval).
async fn until_status(gw: &TestGateway, key: &str, status: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (s, body) = chat(gw, key).await;
        if s == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {s} ({body})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn tool_lists_round_trip(gw: &TestGateway) {
    let (s, created) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "agents", "tools_denied": ["delete_*", "send_{mail,money}", "rm"]})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let globs = json!(["delete_*", "send_{mail,money}", "rm"]);
    assert_eq!(created["tools_denied"], globs);
    let (s, one) = admin(gw, "GET", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(one["tools_denied"], globs);
    let (s, list) = admin(gw, "GET", "/admin/keys", None).await;
    assert_eq!(s, 200);
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the key is listed: {list}"));
    assert_eq!(listed["tools_denied"], globs);
    // A key without a list shows null; the key with one still works.
    let (s, plain) = admin(gw, "POST", "/admin/keys", Some(json!({"name": "plain"}))).await;
    assert_eq!(s, 201);
    assert_eq!(plain["tools_denied"], Value::Null);
    assert_eq!(chat(gw, created["key"].as_str().unwrap()).await.0, 200);

    for (globs, message) in [
        (
            json!(["ok_*", "read_["]),
            "`tools_denied[1]` is not a valid glob (`read_[`): unclosed character class; missing ']'",
        ),
        (json!([""]), "`tools_denied[0]` must not be empty"),
        (
            json!(["{a,b"]),
            "`tools_denied[0]` is not a valid glob (`{a,b`): unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
    ] {
        let (s, v) = admin(
            gw,
            "POST",
            "/admin/keys",
            Some(json!({"name": "bad", "tools_denied": globs})),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["message"], message, "{globs}");
    }
    let (s, v) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bad", "tools_denied": "rm"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "tools_denied", "{v}");
    // Neither list is the other: a deny-list alone leaves every MCP tool allowed.
    assert_eq!(created["tools"], Value::Null);
    assert_eq!(plain["tools"], Value::Null);

    // The MCP tool allow-list, with and without a deny-list beside it.
    let allowed = json!(["github__*", "fs__read_{file,dir}"]);
    let (s, created) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "mcp", "tools": allowed, "tools_denied": ["fs__read_dir"]})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["tools"], allowed);
    assert_eq!(created["tools_denied"], json!(["fs__read_dir"]));
    let (s, one) = admin(gw, "GET", &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(one["tools"], allowed);
    let (s, list) = admin(gw, "GET", "/admin/keys", None).await;
    assert_eq!(s, 200);
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the key is listed: {list}"));
    assert_eq!(listed["tools"], allowed);
    assert_eq!(listed["tools_denied"], json!(["fs__read_dir"]));
    assert_eq!(chat(gw, created["key"].as_str().unwrap()).await.0, 200);
    // An empty allow-list is kept as given: it allows no tool (null would allow every one).
    let (s, none) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "no tools", "tools": []})),
    )
    .await;
    assert_eq!(s, 201, "{none}");
    assert_eq!(none["tools"], json!([]));
    let (s, one) = admin(
        gw,
        "GET",
        &format!("/admin/keys/{}", none["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["tools"], json!([]));

    for (globs, message) in [
        (
            json!(["github__*", "fs__[read"]),
            "`tools[1]` is not a valid glob (`fs__[read`): unclosed character class; missing ']'",
        ),
        (json!([""]), "`tools[0]` must not be empty"),
        (
            json!(["", "x__{a,b"]),
            "`tools[0]` must not be empty; `tools[1]` is not a valid glob (`x__{a,b`): unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
    ] {
        let (s, v) = admin(
            gw,
            "POST",
            "/admin/keys",
            Some(json!({"name": "bad", "tools": globs})),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["message"], message, "{globs}");
    }
    let (s, v) = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bad", "tools": "github__*"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "tools", "{v}");
    // A refused list creates nothing.
    let (_, list) = admin(gw, "GET", "/admin/keys", None).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["name"] != "bad"),
        "{list}"
    );
}

#[tokio::test]
async fn a_keys_tools_denied_and_tools_round_trip_through_the_admin_api_on_sqlite() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    tool_lists_round_trip(&gw).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_keys_tools_denied_and_tools_round_trip_through_the_admin_api_on_postgres() {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let gw = TestGateway::start_with_db(&db, &providers_yaml(&mock)).await;
    tool_lists_round_trip(&gw).await;
    gw.stop().await;
}

/// Every table a replica reads its directory from, but the version counter.
const TENANCY_TABLES: &str =
    "virtual_keys, key_secrets, users, team_members, service_accounts, teams, provider_credentials";

#[tokio::test]
async fn keys_answer_from_memory_while_the_tenancy_tables_are_locked_and_revocation_follows_the_lock()
 {
    let mock = MockUpstream::start().await;
    let db = fresh_postgres_url().await;
    let yaml = format!(
        "identity:\n  poll_interval: 100ms\n{}",
        providers_yaml(&mock)
    );
    let a = TestGateway::start_with_db(&db, &yaml).await;
    let b = TestGateway::start_with_db(&db, &yaml).await;
    let (s, created) = admin(&a, "POST", "/admin/keys", Some(json!({"name": "k"}))).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(
        chat(&a, &key).await.0,
        200,
        "at once on the replica that made it"
    );
    until_status(&b, &key, 200, "replica B learns of the new key").await;

    // Another session holds every tenancy table; then a tenancy change is announced, so both
    // replicas start loading a new directory — and wait for the lock in the background.
    let mut holder = sqlx::PgConnection::connect(&db).await.unwrap();
    let mut lock = holder.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {TENANCY_TABLES} IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut *lock)
    .await
    .unwrap();
    let mut bumper = sqlx::PgConnection::connect(&db).await.unwrap();
    sqlx::query("UPDATE tenancy_version SET version = version + 1 WHERE id = 1")
        .execute(&mut bumper)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // Both watchers have seen it.

    let unknown = "pk-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
    for round in 0..3 {
        for (name, gw) in [("A", &a), ("B", &b)] {
            assert_eq!(
                prompt_chat(gw, &key, &format!("known key on {name}, round {round}")).await,
                200
            );
            assert_eq!(
                prompt_chat(
                    gw,
                    unknown,
                    &format!("unknown key on {name}, round {round}")
                )
                .await,
                401
            );
        }
    }

    // The revocation waits for the lock (the admin path may); requests keep answering.
    let revoke = {
        let url = a.at(&format!("/admin/keys/{id}"));
        tokio::spawn(async move {
            client()
                .delete(url)
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!revoke.is_finished(), "the revocation waits for the lock");
    assert_eq!(
        prompt_chat(&b, &key, "known key on B during the revocation").await,
        200
    );
    lock.rollback().await.unwrap();
    assert_eq!(revoke.await.unwrap(), 200);
    let (s, body) = chat(&a, &key).await;
    assert_eq!(s, 401, "at once on the replica that revoked: {body}");
    assert_eq!(body["error"]["code"], "key_revoked");
    until_status(&b, &key, 401, "replica B still accepts the revoked key").await;
    a.stop().await;
    b.stop().await;
}

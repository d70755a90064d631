//! The request log's filters and single-record reads over real HTTP, on SQLite and on
//! PostgreSQL: `model` (served) against `requested_model`, `cache`, `metadata.<key>`, and
//! `GET /admin/logs/{id}` with a viewer limited to its own teams' records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

/// `GET path` with `key`: the status and the JSON body.
async fn get_as(gw: &TestGateway, key: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST path` with the master key and a JSON body; the JSON answer, which must be a 201.
async fn create(gw: &TestGateway, path: &str, body: Value) -> Value {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{path}");
    r.json().await.unwrap()
}

/// A chat request with `key` and the given headers; the request id it was logged under.
async fn chat(gw: &TestGateway, key: &str, model: &str, headers: &[(&str, &str)]) -> String {
    let mut req = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "temperature": 0, "max_tokens": 16,
                      "messages": [{"role": "user", "content": "filter me"}]}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The ids a log query returns (master key), newest first.
async fn ids(gw: &TestGateway, query: &str) -> Vec<String> {
    let (status, v) = get_as(gw, MASTER_KEY, &format!("/admin/logs?{query}")).await;
    assert_eq!(status, 200, "{query}: {v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn exercise_filters(gw: &TestGateway) {
    let prod = [("x-portcullis-metadata", r#"{"env":"prod","ticket":7}"#)];
    // The `smart` route's first target answers: served model claude-sonnet-4-5.
    let miss = chat(gw, MASTER_KEY, "smart", &prod).await;
    let hit = chat(gw, MASTER_KEY, "smart", &prod).await;
    let bypass = chat(
        gw,
        MASTER_KEY,
        "smart",
        &[
            ("x-portcullis-skip-cache", "true"),
            ("x-portcullis-metadata", r#"{"env":"dev","canary":true}"#),
        ],
    )
    .await;
    let direct = chat(gw, MASTER_KEY, "openai/gpt-4o-mini", &[]).await;
    gw.logs("", 4).await;

    // `model` is the served model, `requested_model` the name the caller sent.
    assert_eq!(
        ids(gw, "model=claude-sonnet-4-5").await,
        [bypass.as_str(), hit.as_str(), miss.as_str()]
    );
    assert_eq!(
        ids(gw, "requested_model=smart").await,
        [bypass.as_str(), hit.as_str(), miss.as_str()]
    );
    assert!(ids(gw, "model=smart").await.is_empty());
    assert_eq!(ids(gw, "model=gpt-4o-mini").await, [direct.as_str()]);
    assert_eq!(
        ids(gw, "requested_model=openai/gpt-4o-mini").await,
        [direct.as_str()]
    );

    // Cache outcomes, in any case.
    assert_eq!(ids(gw, "cache=hit").await, [hit.as_str()]);
    assert_eq!(
        ids(gw, "cache=MISS").await,
        [direct.as_str(), miss.as_str()]
    );
    assert_eq!(ids(gw, "cache=bypass").await, [bypass.as_str()]);
    assert!(ids(gw, "cache=none").await.is_empty());

    // One metadata key: strings as they are, numbers and booleans as their JSON text.
    assert_eq!(
        ids(gw, "metadata.env=prod").await,
        [hit.as_str(), miss.as_str()]
    );
    assert_eq!(
        ids(gw, "metadata.ticket=7").await,
        [hit.as_str(), miss.as_str()]
    );
    assert_eq!(ids(gw, "metadata.canary=true").await, [bypass.as_str()]);
    assert!(ids(gw, "metadata.env=staging").await.is_empty());
    assert_eq!(
        ids(gw, "metadata.env=prod&cache=hit&status=200").await,
        [hit.as_str()]
    );
    // Pages through a metadata filter.
    let first = ids(gw, "metadata.env=prod&limit=1").await;
    assert_eq!(first, [hit.as_str()]);
    assert_eq!(
        ids(gw, &format!("metadata.env=prod&limit=1&cursor={hit}")).await,
        [miss.as_str()]
    );

    for bad in [
        "cache=maybe",
        "metadata.=x",
        "metadata.env=prod&metadata.ticket=7",
    ] {
        let (status, v) = get_as(gw, MASTER_KEY, &format!("/admin/logs?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }

    // One record by id.
    let (status, rec) = get_as(gw, MASTER_KEY, &format!("/admin/logs/{hit}")).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["id"], hit.as_str());
    assert_eq!(rec["cache_status"], "HIT");
    assert_eq!(rec["requested_model"], "smart");
    assert!(rec["time"].as_str().unwrap().ends_with('Z'));
    assert!(rec["latency_ms"].is_number());
    let unknown = uuid::Uuid::now_v7();
    let (status, v) = get_as(gw, MASTER_KEY, &format!("/admin/logs/{unknown}")).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    let (status, v) = get_as(gw, MASTER_KEY, "/admin/logs/not-an-id").await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].is_string());
    let (status, _) = get_as(gw, "wrong", &format!("/admin/logs/{hit}")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn log_filters_and_single_records_on_sqlite() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}cache: {{enabled: true}}\n",
        providers_yaml(&mock)
    ))
    .await;
    exercise_filters(&gw).await;
}

#[tokio::test]
async fn log_filters_and_single_records_on_postgres() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start_with_db(
        &fresh_postgres_url().await,
        &format!("{}cache: {{enabled: true}}\n", providers_yaml(&mock)),
    )
    .await;
    exercise_filters(&gw).await;
}

#[tokio::test]
async fn a_viewer_reads_single_records_of_its_own_teams_only() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    create(&gw, "/admin/teams", json!({"id": "red", "name": "Red"})).await;
    create(&gw, "/admin/teams", json!({"id": "blue", "name": "Blue"})).await;
    for (id, teams, role) in [
        ("rita", json!(["red"]), "member"),
        ("bert", json!(["blue"]), "member"),
        ("vic", json!(["red"]), "viewer"),
    ] {
        create(
            &gw,
            "/admin/users",
            json!({"id": id, "email": format!("{id}@corp.test"), "teams": teams, "role": role}),
        )
        .await;
    }
    let key = |user: &'static str| {
        let gw = &gw;
        async move {
            create(gw, "/admin/keys", json!({"name": user, "user": user})).await["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (rita, bert, vic) = (key("rita").await, key("bert").await, key("vic").await);
    let red = chat(
        &gw,
        &rita,
        "gpt-4o-mini",
        &[("x-portcullis-metadata", r#"{"env":"prod"}"#)],
    )
    .await;
    let blue = chat(
        &gw,
        &bert,
        "gpt-4o-mini",
        &[("x-portcullis-metadata", r#"{"env":"prod"}"#)],
    )
    .await;
    let master = chat(&gw, MASTER_KEY, "gpt-4o-mini", &[]).await;
    gw.logs("", 3).await;

    // The viewer reads its team's record; another team's and a teamless one are not found.
    let (status, rec) = get_as(&gw, &vic, &format!("/admin/logs/{red}")).await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["team"], "red");
    for other in [blue.as_str(), master.as_str()] {
        let (status, v) = get_as(&gw, &vic, &format!("/admin/logs/{other}")).await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    // Its list, filtered by metadata, holds only its team's records too.
    let (status, v) = get_as(&gw, &vic, "/admin/logs?metadata.env=prod").await;
    assert_eq!(status, 200, "{v}");
    let listed: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [red.as_str()]);
    // A member reads no records at all; the master key reads every one.
    let (status, v) = get_as(&gw, &rita, &format!("/admin/logs/{red}")).await;
    assert_eq!(status, 403, "{v}");
    for id in [red.as_str(), blue.as_str(), master.as_str()] {
        let (status, _) = get_as(&gw, MASTER_KEY, &format!("/admin/logs/{id}")).await;
        assert_eq!(status, 200);
    }
}

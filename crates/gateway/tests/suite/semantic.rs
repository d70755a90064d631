//! The semantic cache over real HTTP with the local sentence-embedding model: paraphrases are
//! answered from the cache (with their similarity), different questions, near-opposite
//! questions and different scopes are not, streams replay, and entries survive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::*;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

fn yaml(mock: &MockUpstream) -> String {
    format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
routes:
  support:
    targets: [openai/gpt-4o-mini]
    semantic_cache:
      embedder: {{local: "{model}"}}
      threshold: 0.82
      ttl: 1h
"#,
        url = mock.openai_base_url(),
        model = embedding_model_dir().display()
    )
}

fn ask(text: &str, system: &str, stream: bool) -> Value {
    json!({"model": "support", "stream": stream, "max_tokens": 256, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": text}]})
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn answer(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn paraphrases_hit_and_different_questions_or_scopes_miss() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("semantic.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let system = format!("You are the help desk of tenant {}.", uuid::Uuid::now_v7());

    let (status, h, first) = post(
        &gw,
        "/v1/chat/completions",
        &ask("How do I reset my password?", &system, false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");

    let (status, h, second) = post(
        &gw,
        "/v1/chat/completions",
        &ask("I forgot my password, how can I change it?", &system, false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    let score: f32 = header(&h, "x-portcullis-semantic-score").parse().unwrap();
    assert!(score >= 0.82, "{score}");
    assert_eq!(
        answer(&second),
        answer(&first),
        "the stored answer to the first wording"
    );
    assert_eq!(mock.hits(), 1);

    // A different question misses; so does the same question under other instructions.
    let (_, h, _) = post(
        &gw,
        "/v1/chat/completions",
        &ask("What is the capital of France?", &system, false),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    let (_, h, _) = post(
        &gw,
        "/v1/chat/completions",
        &ask("How do I reset my password?", "You are a pirate.", false),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    assert_eq!(mock.hits(), 3);

    // Streamed, in Anthropic's dialect.
    let anthropic = json!({"model": "support", "stream": true, "max_tokens": 256, "system": system,
        "messages": [{"role": "user", "content": "how can i reset my password"}]});
    let (_, h, body) = post(&gw, "/v1/messages", &anthropic).await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT", "{body}");
    let s = parse_anthropic_stream(&body);
    assert_eq!(s.text, answer(&first));
    assert_eq!(mock.hits(), 3);

    // Entries are persisted: a restarted gateway still answers the paraphrase.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.stop().await;
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (_, h, again) = post(
        &gw,
        "/v1/chat/completions",
        &ask("I forgot my password, how can I change it?", &system, false),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&again), answer(&first));
    assert_eq!(mock.hits(), 3);
}

/// Enabling and disabling two-factor authentication score 0.88 with the model, above the
/// threshold: the guard must send the second question to the upstream, and later serve each
/// question the answer to its own side — also after a restart, from the persisted entries.
async fn the_opposite_question_goes_to_the_upstream(db: &str) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start_with_db(db, &yaml(&mock)).await;
    let system = format!("You are the help desk of tenant {}.", uuid::Uuid::now_v7());
    let chat = |q: &str| ask(q, &system, false);

    let (status, h, enable) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How do I enable two-factor authentication?"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    let (status, h, disable) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How do I disable two-factor authentication?"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS", "{disable}");
    assert_eq!(header(&h, "x-portcullis-semantic-score"), "");
    assert!(answer(&disable).contains("disable"), "{disable}");
    assert_eq!(mock.hits(), 2, "the second question went to the upstream");

    // Each side is now answered from the cache with its own answer.
    let (_, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How do I turn off two-factor authentication?"),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&body), answer(&disable));
    let (_, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How do I enable two factor authentication?"),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&body), answer(&enable));
    assert_eq!(mock.hits(), 2);

    // The entries keep their signatures in the database.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.stop().await;
    let gw = TestGateway::start_with_db(db, &yaml(&mock)).await;
    let (_, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How do I turn off two-factor authentication?"),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&body), answer(&disable));
    let (_, h, body) = post(
        &gw,
        "/v1/chat/completions",
        &chat("How can I enable two-factor authentication?"),
    )
    .await;
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&body), answer(&enable));
    assert_eq!(mock.hits(), 2);
}

#[tokio::test]
async fn the_opposite_question_goes_to_the_upstream_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("semantic.db").display());
    the_opposite_question_goes_to_the_upstream(&db).await;
}

#[tokio::test]
async fn the_opposite_question_goes_to_the_upstream_on_postgres() {
    the_opposite_question_goes_to_the_upstream(&fresh_postgres_url().await).await;
}

#[tokio::test]
async fn a_remote_embeddings_model_can_embed_for_the_cache() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
routes:
  faq:
    targets: [openai/gpt-4o-mini]
    semantic_cache:
      embedder: {{model: openai/text-embedding-3-small}}
      threshold: 0.99
"#,
        url = mock.openai_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    let q = format!("What are your opening hours? [{}]", uuid::Uuid::now_v7());
    let body = json!({"model": "faq", "temperature": 0.7,
                      "messages": [{"role": "user", "content": q}]});
    let (status, h, first) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "MISS");
    let (status, h, second) = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "x-portcullis-cache"), "HIT");
    assert_eq!(answer(&first), answer(&second));
    let embeddings_calls = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/embeddings")
        .count();
    assert_eq!(embeddings_calls, 2, "one embedding per lookup");
    let chats = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .count();
    assert_eq!(chats, 1);
}

/// A route that embeds with a model: the embedding is a request of the caller's own, through
/// the embeddings pipeline — its provider key from the vault, its identity and cost in the
/// log — even when the key may not call the embeddings model itself.
#[tokio::test]
async fn the_cache_embeds_on_the_callers_behalf_with_its_provider_key_and_cost() {
    use portcullis_test_support::MockOptions;
    const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mock = MockUpstream::start_with(MockOptions {
        extra_api_keys: vec!["sk-team-embed-0001".into()],
        ..MockOptions::default()
    })
    .await;
    let yaml = format!(
        r#"
secret_key: {SECRET_KEY}
providers:
  openai: {{api_key: sk-mock-openai, base_url: {url}}}
routes:
  faq:
    targets: [openai/gpt-4o-mini]
    semantic_cache:
      embedder: {{model: openai/text-embedding-3-small}}
      threshold: 0.99
prices:
  openai/text-embedding-3-small: {{input: 20.0, output: 0.0}}
"#,
        url = mock.openai_base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    let admin = |path: &str, body: Value| {
        let gw = &gw;
        let path = path.to_owned();
        async move {
            let r = client()
                .post(gw.at(&path))
                .bearer_auth(MASTER_KEY)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 201, "{path}: {v}");
            v
        }
    };
    admin("/admin/teams", json!({"id": "support", "name": "Support"})).await;
    let vault = admin(
        "/admin/provider-keys",
        json!({"provider": "openai", "alias": "support", "secret": "sk-team-embed-0001",
               "team": "support"}),
    )
    .await;
    let key = admin(
        "/admin/keys",
        json!({"name": "agent", "team": "support", "models": ["faq"]}),
    )
    .await;
    let (key_id, key) = (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    );

    let q = format!("When does the shop open? [{}]", uuid::Uuid::now_v7());
    let body = json!({"model": "faq", "messages": [{"role": "user", "content": q}]});
    let ask = || {
        client()
            .post(gw.at("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let first = ask().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(first.headers(), "x-portcullis-cache"), "MISS");
    let chat_id = header(first.headers(), "x-portcullis-request-id").to_owned();
    let second = ask().await.unwrap();
    assert_eq!(header(second.headers(), "x-portcullis-cache"), "HIT");

    // The embeddings went upstream with the team's provider key, not the configured one.
    let embeddings: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/embeddings")
        .collect();
    assert_eq!(embeddings.len(), 2);
    for r in &embeddings {
        assert_eq!(r.headers["authorization"], "Bearer sk-team-embed-0001");
    }

    // Each is in the log as the caller's request, with its cost and the request it served.
    let logs = gw.logs("limit=100", 4).await;
    let embedded: Vec<&Value> = logs
        .iter()
        .filter(|r| r["endpoint"] == "embeddings")
        .collect();
    assert_eq!(embedded.len(), 2, "{logs:?}");
    let first_embedding = embedded
        .iter()
        .find(|r| {
            let meta: Value = serde_json::from_str(r["metadata"].as_str().unwrap()).unwrap();
            meta["purpose"] == "semantic_cache" && meta["parent_request_id"] == chat_id.as_str()
        })
        .expect("the first chat's embedding names it");
    assert_eq!(first_embedding["key_id"], key_id.as_str());
    assert_eq!(first_embedding["team"], "support");
    assert_eq!(first_embedding["status"], 200);
    assert_eq!(first_embedding["provider_key_id"], vault["id"]);
    let input = first_embedding["input_tokens"].as_f64().unwrap();
    assert!(input > 0.0);
    let cost = first_embedding["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - input * 20.0 / 1e6).abs() < 1e-12,
        "{cost} for {input} tokens"
    );
}

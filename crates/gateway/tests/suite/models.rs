//! `GET /v1/models` and `GET /v1/models/{model}` over HTTP: providers enabled from the
//! environment alone list the models their own list endpoints name (Anthropic's read page by
//! page), beside the routes and aliases; a virtual key sees only what it may use; a provider
//! whose list fails or hangs keeps its last good list and never hides the others'; Anthropic's
//! shape and pagination for callers speaking Anthropic; one model looked up, 404 when unknown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::*;
use portcullis_config::Source;
use portcullis_test_support::{MockUpstream, Reply};
use serde_json::{Value, json};

/// `GET path` with the master key, in OpenAI's form (`anthropic = false`) or Anthropic's.
async fn get(gw: &TestGateway, path: &str, key: &str, anthropic: bool) -> (u16, Value) {
    let req = client().get(gw.at(path));
    let req = if anthropic {
        req.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.bearer_auth(key)
    };
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The models requests a mock received, with their query strings.
fn list_requests(mock: &MockUpstream) -> Vec<portcullis_test_support::RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/v1/models")
        .collect()
}

fn openai_list(ids: &[&str]) -> Reply {
    Reply::Json {
        status: 200,
        headers: vec![],
        body: json!({"object": "list", "data": ids.iter().map(|id| json!({
            "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "system"
        })).collect::<Vec<_>>()}),
    }
}

const OPENAI_MODELS: [&str; 3] = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"];
const ANTHROPIC_MODELS: [&str; 5] = [
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-20241022",
];

fn qualified(provider: &str, models: &[&str]) -> Vec<String> {
    models.iter().map(|m| format!("{provider}/{m}")).collect()
}

#[tokio::test]
async fn providers_from_the_environment_list_their_own_models() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    // No `providers:` at all: OpenAI and Anthropic from their variables, as `portcullis serve`
    // with no file does.
    let env: HashMap<String, String> = [
        ("OPENAI_API_KEY", "sk-mock-openai".to_owned()),
        ("OPENAI_BASE_URL", mock.openai_base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-mock".to_owned()),
        ("ANTHROPIC_BASE_URL", mock.anthropic_base_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let yaml = format!("master_key: {MASTER_KEY}\ndatabase:\n  url: \"{db}\"\n");
    let config = portcullis_config::from_yaml(&yaml, Source::Environment, &env).unwrap();
    let gw = TestGateway::start_config(config).await;

    let (status, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    let mut want = qualified("openai", &OPENAI_MODELS);
    want.extend(qualified("anthropic", &ANTHROPIC_MODELS));
    assert_eq!(ids(&list), want);
    assert_eq!(
        list["data"][0],
        json!({"id": "openai/gpt-4o", "object": "model", "created": 1_715_367_049, "owned_by": "openai"})
    );
    assert_eq!(list["data"][4]["owned_by"], "anthropic");
    assert_eq!(list["data"][4]["created"], 1_759_104_000, "2025-09-29");

    // Each provider was asked with its own credential, Anthropic for its largest page.
    let asked = list_requests(&mock);
    assert_eq!(asked.len(), 2, "{asked:?}");
    let openai = asked
        .iter()
        .find(|r| r.headers.contains_key("authorization"))
        .unwrap();
    assert_eq!(openai.headers["authorization"], "Bearer sk-mock-openai");
    let anthropic = asked
        .iter()
        .find(|r| r.headers.contains_key("x-api-key"))
        .unwrap();
    assert_eq!(anthropic.headers["x-api-key"], "sk-ant-mock");
    assert_eq!(anthropic.headers["anthropic-version"], "2023-06-01");
    assert_eq!(anthropic.query, "limit=1000");

    // What is listed can be used, in either dialect.
    for model in ["anthropic/claude-sonnet-4-5-20250929", "openai/gpt-4o-mini"] {
        let (status, _, body) = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
    }

    // The lists are kept: listing again asks no provider.
    let (_, again) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    assert_eq!(ids(&again), want);
    assert_eq!(list_requests(&mock).len(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_lists_are_read_page_by_page() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "providers:\n  anthropic:\n    api_key: sk-ant-mock\n    base_url: {}\n",
        mock.anthropic_base_url()
    ))
    .await;
    let page = |ids: &[&str], more: bool| Reply::Json {
        status: 200,
        headers: vec![],
        body: json!({
            "data": ids.iter().map(|id| json!({"type": "model", "id": id, "display_name": id,
                                               "created_at": "2025-01-01T00:00:00Z"})).collect::<Vec<_>>(),
            "has_more": more, "first_id": ids.first(), "last_id": ids.last(),
        }),
    };
    mock.push_reply(page(&["claude-a", "claude-b"], true));
    mock.push_reply(page(&["claude-c"], false));
    let (status, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        ids(&list),
        qualified("anthropic", &["claude-a", "claude-b", "claude-c"])
    );
    let asked: Vec<String> = list_requests(&mock).into_iter().map(|r| r.query).collect();
    assert_eq!(asked, ["limit=1000", "limit=1000&after_id=claude-b"]);
    gw.stop().await;
}

#[tokio::test]
async fn routes_and_aliases_are_listed_and_a_key_sees_only_what_it_may_use() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (status, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{list}");
    let mut want = vec!["fast".to_owned(), "smart".to_owned()];
    want.extend(qualified("openai", &OPENAI_MODELS));
    want.extend(qualified("anthropic", &ANTHROPIC_MODELS));
    // groq's configured model first, then what its list endpoint (the same mock) names.
    want.push("groq/llama-3.1-8b-instant".to_owned());
    want.extend(qualified("groq", &OPENAI_MODELS));
    assert_eq!(ids(&list), want);
    assert_eq!(
        list["data"][1],
        json!({"id": "smart", "object": "model", "created": 0, "owned_by": "portcullis"})
    );

    // A key for OpenAI's models, the `fast` alias and `gpt-4o-mini` by that name.
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "openai only", "models": ["openai/*", "fast", "gpt-4o-mini"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, list) = get(&gw, "/v1/models", &key, false).await;
    assert_eq!(status, 200, "{list}");
    let mut mine = vec!["fast".to_owned(), "gpt-4o-mini".to_owned()];
    mine.extend(qualified("openai", &OPENAI_MODELS));
    assert_eq!(ids(&list), mine, "not `smart`, half of which is Anthropic");
    // Exactly what chat lets it use.
    let chat = |model: &str| {
        let (url, key) = (gw.at("/v1/chat/completions"), key.clone());
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for model in ["fast", "gpt-4o-mini", "openai/gpt-4o"] {
        assert_eq!(chat(model).await, 200, "{model}");
    }
    for model in [
        "smart",
        "anthropic/claude-sonnet-4-5-20250929",
        "groq/gpt-4o",
    ] {
        assert_eq!(chat(model).await, 403, "{model}");
        let (status, body) = get(&gw, &format!("/v1/models/{model}"), &key, false).await;
        assert_eq!(status, 404, "{model}: {body}");
    }
    let (status, one) = get(&gw, "/v1/models/openai/gpt-4o", &key, false).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], "openai/gpt-4o");
    gw.stop().await;
}

/// A port with nothing listening.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A server that accepts connections and never answers.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = l.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_failing_provider_keeps_its_last_good_list_and_never_hides_the_others() {
    let alpha = MockUpstream::start().await;
    let beta = MockUpstream::start().await;
    let gone = closed_port().await;
    let (silent, _server) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("gw.db").display());
    let yaml = format!(
        r#"
master_key: {MASTER_KEY}
database: {{url: "{db}"}}
providers:
  alpha: {{kind: openai, api_key: sk-mock-openai, base_url: "{alpha}"}}
  beta: {{kind: openai, api_key: sk-mock-openai, base_url: "{beta}"}}
  gone: {{kind: openai, api_key: sk-x, base_url: "http://127.0.0.1:{gone}/v1", models: [kept-by-config]}}
  silent: {{kind: anthropic, api_key: sk-x, base_url: "http://127.0.0.1:{silent}"}}
"#,
        alpha = alpha.openai_base_url(),
        beta = beta.openai_base_url(),
    );
    let config = || portcullis_config::from_yaml(&yaml, Source::Environment, &HashMap::new());
    let gw = TestGateway::start_config(config().unwrap()).await;
    beta.push_reply(openai_list(&["beta-1", "beta-2"]));

    // One provider refuses connections and one never answers: the others are listed, within
    // the wait for first lists, and the configured model of the one that failed stays.
    let began = Instant::now();
    let (status, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "{:?}",
        began.elapsed()
    );
    let mut want = qualified("alpha", &OPENAI_MODELS);
    want.extend(qualified("beta", &["beta-1", "beta-2"]));
    want.push("gone/kept-by-config".to_owned());
    assert_eq!(ids(&list), want);

    // After a reload the lists are fetched again: alpha's changed, beta's fails.
    alpha.push_reply(openai_list(&["alpha-new"]));
    beta.push_reply(Reply::Json {
        status: 500,
        headers: vec![],
        body: json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}}),
    });
    gw.state.reload(&config().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let list = loop {
        let (_, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
        if ids(&list).contains(&"alpha/alpha-new".to_owned()) && list_requests(&beta).len() == 2 {
            break list;
        }
        assert!(Instant::now() < deadline, "no refresh: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!ids(&list).contains(&"alpha/gpt-4o".to_owned()), "{list}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    let mut want = qualified("alpha", &["alpha-new"]);
    want.extend(qualified("beta", &["beta-1", "beta-2"]));
    want.push("gone/kept-by-config".to_owned());
    assert_eq!(ids(&list), want, "beta's last good list is kept");
    gw.stop().await;
}

#[tokio::test]
async fn callers_speaking_anthropic_get_anthropics_shape_and_pages() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let (_, openai) = get(&gw, "/v1/models", MASTER_KEY, false).await;
    let every = ids(&openai);

    // `x-api-key` alone, as the Anthropic SDK authenticates, is enough to be answered in kind.
    let r = client()
        .get(gw.at("/v1/models?limit=1000"))
        .header("x-api-key", MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(ids(&list), every);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], "fast");
    assert_eq!(list["last_id"], every.last().unwrap().as_str());
    assert_eq!(
        list["data"][0],
        json!({"type": "model", "id": "fast", "display_name": "fast", "created_at": "1970-01-01T00:00:00Z"})
    );
    let sonnet = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "anthropic/claude-sonnet-4-5-20250929")
        .unwrap();
    assert_eq!(sonnet["display_name"], "Claude Sonnet 4.5");
    assert_eq!(sonnet["created_at"], "2025-09-29T00:00:00Z");
    assert!(sonnet.get("object").is_none());

    // Without `limit`, Anthropic's default page of 20.
    let (_, first) = get(&gw, "/v1/models", MASTER_KEY, true).await;
    assert_eq!(ids(&first).len(), every.len().min(20));
    assert_eq!(first["has_more"], every.len() > 20);

    // Page by page forwards with `after_id`, and back with `before_id`.
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/v1/models?limit=3".to_owned(),
            Some(id) => format!("/v1/models?limit=3&after_id={}", id.replace('/', "%2F")),
        };
        let (status, page) = get(&gw, &path, MASTER_KEY, true).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(ids(&page));
        if page["has_more"] == false {
            break;
        }
        after = Some(page["last_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(walked, every);
    let (_, back) = get(
        &gw,
        &format!("/v1/models?limit=2&before_id={}", every[5]),
        MASTER_KEY,
        true,
    )
    .await;
    assert_eq!(ids(&back), every[3..5]);
    assert_eq!(back["has_more"], true);
    assert_eq!(back["first_id"], every[3].as_str());

    let (status, bad) = get(&gw, "/v1/models?limit=0", MASTER_KEY, true).await;
    assert_eq!(status, 400);
    assert_eq!(bad["type"], "error");
    assert_eq!(bad["error"]["type"], "invalid_request_error");
    gw.stop().await;
}

#[tokio::test]
async fn one_model_is_looked_up_and_an_unknown_one_is_404_in_the_callers_dialect() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    // The OpenAI SDK sends the slash of `provider/model` escaped; both forms are one model.
    for path in ["/v1/models/openai/gpt-4o", "/v1/models/openai%2Fgpt-4o"] {
        let (status, one) = get(&gw, path, MASTER_KEY, false).await;
        assert_eq!(status, 200, "{path}: {one}");
        assert_eq!(
            one,
            json!({"id": "openai/gpt-4o", "object": "model", "created": 1_715_367_049, "owned_by": "openai"})
        );
    }
    let (status, one) = get(&gw, "/v1/models/smart", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["owned_by"], "portcullis");
    // A name chat resolves to a model its provider lists.
    let (status, one) = get(&gw, "/v1/models/gpt-4o-mini", MASTER_KEY, false).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], "gpt-4o-mini");
    assert_eq!(one["owned_by"], "openai");

    let (status, one) = get(
        &gw,
        "/v1/models/anthropic/claude-sonnet-4-5-20250929",
        MASTER_KEY,
        true,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one,
        json!({"type": "model", "id": "anthropic/claude-sonnet-4-5-20250929",
               "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"})
    );

    for model in ["nowhere/model", "openai/gpt-9-imaginary", "gpt-9-imaginary"] {
        let (status, err) = get(&gw, &format!("/v1/models/{model}"), MASTER_KEY, false).await;
        assert_eq!(status, 404, "{model}: {err}");
        assert_eq!(err["error"]["code"], "model_not_found");
        assert_eq!(err["error"]["param"], "model");
        assert!(err["error"]["message"].as_str().unwrap().contains(model));
        let (status, err) = get(&gw, &format!("/v1/models/{model}"), MASTER_KEY, true).await;
        assert_eq!(status, 404, "{model}: {err}");
        assert_eq!(err["type"], "error");
        assert_eq!(err["error"]["type"], "not_found_error");
    }

    // Unauthenticated: 401 in the caller's dialect, for the list and for one model.
    for path in ["/v1/models", "/v1/models/openai/gpt-4o"] {
        let (status, err) = get(&gw, path, "nope", true).await;
        assert_eq!(status, 401);
        assert_eq!(err["error"]["type"], "authentication_error");
        let (status, err) = get(&gw, path, "nope", false).await;
        assert_eq!(status, 401);
        assert!(err["error"]["message"].is_string());
    }
    gw.stop().await;
}

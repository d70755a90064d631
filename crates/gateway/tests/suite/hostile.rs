//! The hostile-input corpus (`tests/hostile/corpus.json`) over real HTTP, on SQLite and on
//! PostgreSQL: NUL and control characters in models, metadata, messages, headers, admin
//! filters, paths and bodies; malformed JSON and duplicate keys; wrong types in admin bodies;
//! oversized and non-ASCII option headers; custom costs; Bearer forms; provider-key aliases;
//! absurd cache TTLs. Each input runs concurrently with ordinary requests and must get its
//! expected status — never a 5xx, never a hang — and every proxied request keeps exactly one
//! log record, the ordinary ones included.

// The per-group counts and any unexpected answers are printed: they are the corpus's report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CORPUS: &str = include_str!("../hostile/corpus.json");
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The longest any one input may take.
const PER_REQUEST: Duration = Duration::from_secs(15);

/// One hostile request, expanded from a template.
#[derive(Debug, Clone)]
struct Input {
    group: String,
    label: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// Sent byte for byte over a socket (header bytes no HTTP client would send).
    raw_http: Option<String>,
    auth: String,
    expect: String,
}

fn substitute_json(v: &Value, var: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("{v}", var)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| substitute_json(i, var)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, i)| (k.replace("{v}", var), substitute_json(i, var)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn expand() -> Vec<Input> {
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    let mut out = Vec::new();
    for t in corpus["templates"].as_array().unwrap() {
        let vars: Vec<String> = match t["vars"].as_array() {
            Some(vs) => vs.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            None => vec![String::new()],
        };
        for (i, var) in vars.iter().enumerate() {
            let s = |key: &str| t[key].as_str().map(|x| x.replace("{v}", var));
            let body = if let Some(raw) = s("raw") {
                Some(raw.into_bytes())
            } else if let Some(hex) = s("raw_bytes_hex") {
                Some(hex::decode(hex).unwrap())
            } else if !t["body"].is_null() {
                Some(substitute_json(&t["body"], var).to_string().into_bytes())
            } else {
                None
            };
            let headers = t["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().replace("{v}", var)))
                        .collect()
                })
                .unwrap_or_default();
            let method = s("method").unwrap_or_else(|| "POST".to_owned());
            let path = s("path").unwrap_or_default();
            out.push(Input {
                group: t["group"].as_str().unwrap().to_owned(),
                label: format!(
                    "{method} {path} #{i} {:?}",
                    var.chars().take(60).collect::<String>()
                ),
                method,
                path,
                headers,
                body,
                raw_http: s("raw_http"),
                auth: t["auth"].as_str().unwrap_or("master").to_owned(),
                expect: t["expect"].as_str().unwrap().to_owned(),
            });
        }
    }
    out
}

fn matches(expect: &str, status: u16) -> bool {
    expect.split('|').any(|e| match e.strip_suffix("xx") {
        Some(class) => class.parse::<u16>().is_ok_and(|c| status / 100 == c),
        None => e.parse::<u16>().is_ok_and(|s| s == status),
    })
}

fn proxied(path: &str) -> bool {
    ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The keys the corpus's `auth` names.
struct Keys {
    red: String,
    blue: String,
}

async fn admin(gw: &TestGateway, path: &str, body: Value) -> Value {
    let (status, _, text) = post(gw, path, &body).await;
    assert!(status == 200 || status == 201, "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

/// Teams red and blue, a user and a key in each, and a stored provider key for each team.
async fn tenants(gw: &TestGateway) -> Keys {
    for team in ["red", "blue"] {
        admin(gw, "/admin/teams", json!({"id": team, "name": team})).await;
        admin(
            gw,
            "/admin/users",
            json!({"id": format!("{team}-user"), "name": team, "teams": [team]}),
        )
        .await;
        admin(
            gw,
            "/admin/provider-keys",
            json!({"provider": "openai", "alias": format!("{team}-openai"),
                "secret": "sk-mock-openai", "team": team}),
        )
        .await;
    }
    let key = |team: &'static str| async move {
        admin(
            gw,
            "/admin/keys",
            json!({"name": team, "user": format!("{team}-user"), "team": team}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    Keys {
        red: key("red").await,
        blue: key("blue").await,
    }
}

/// Sends `request` over a plain socket and returns the status of the answer (0: none).
async fn send_raw(gw: &TestGateway, request: &str, body: &[u8]) -> (u16, Option<String>) {
    let addr = gw.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = request
        .replace("{auth}", MASTER_KEY)
        .replace("{len}", &body.len().to_string());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    if stream.write_all(&bytes).await.is_err() {
        return (0, None);
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-portcullis-request-id: "))
        .map(|s| s.trim().to_owned());
    (status, id)
}

/// Sends one input; `Err` when it took longer than [`PER_REQUEST`].
async fn send(gw: &TestGateway, keys: &Keys, input: &Input) -> Result<(u16, Option<String>), ()> {
    let call = async {
        if let Some(raw) = &input.raw_http {
            return send_raw(gw, raw, input.body.as_deref().unwrap_or_default()).await;
        }
        let mut req = client().request(input.method.parse().unwrap(), gw.at(&input.path));
        match input.auth.as_str() {
            "master" => req = req.bearer_auth(MASTER_KEY),
            "red" => req = req.bearer_auth(&keys.red),
            "blue" => req = req.bearer_auth(&keys.blue),
            _ => {}
        }
        for (k, v) in &input.headers {
            let v = v.replace("{master}", MASTER_KEY);
            let value = reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap();
            req = req.header(k.as_str(), value);
        }
        if input.path.starts_with("/v1/messages") {
            req = req.header("anthropic-version", "2023-06-01");
        }
        if let Some(body) = &input.body {
            req = req
                .header("content-type", "application/json")
                .body(body.clone());
        }
        match req.send().await {
            Ok(r) => {
                let id = r
                    .headers()
                    .get("x-portcullis-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let status = r.status().as_u16();
                let _ = r.bytes().await;
                (status, id)
            }
            Err(_) => (0, None),
        }
    };
    tokio::time::timeout(PER_REQUEST, call)
        .await
        .map_err(|_| ())
}

/// Every record id in the log.
async fn logged_ids(gw: &TestGateway) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/admin/logs?limit=1000&cursor={c}"),
            None => "/admin/logs?limit=1000".to_owned(),
        };
        let v: Value = client()
            .get(gw.at(&q))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in v["data"].as_array().unwrap() {
            ids.insert(r["id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

async fn run_corpus(db: Option<String>, name: &str) {
    let mock = MockUpstream::start().await;
    let extra = format!(
        "secret_key: {SECRET_KEY}\n{}log:\n  bodies: true\n  flush_interval_ms: 20\n",
        providers_yaml(&mock)
    );
    let gw = match db {
        Some(db) => TestGateway::start_with_db(&db, &extra).await,
        None => TestGateway::start(&extra).await,
    };
    let keys = tenants(&gw).await;
    let inputs = expand();

    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &inputs {
        *per_group.entry(i.group.as_str()).or_default() += 1;
    }
    println!("hostile corpus on {name}: {} inputs", inputs.len());
    for (group, n) in &per_group {
        println!("  {group:<28} {n}");
    }

    // Ordinary requests racing the corpus.
    let ordinary = futures_util::stream::iter(0..120)
        .map(|i| {
            let gw = &gw;
            async move {
                let (status, headers, _) = post(
                    gw,
                    "/v1/chat/completions",
                    &json!({"model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": format!("ordinary {i}")}]}),
                )
                .await;
                (
                    status,
                    headers["x-portcullis-request-id"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                )
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let hostile = futures_util::stream::iter(inputs.iter())
        .map(|input| {
            let (gw, keys) = (&gw, &keys);
            async move { (input, send(gw, keys, input).await) }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let (ordinary, hostile) = tokio::join!(ordinary, hostile);

    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut expected_ids = Vec::new();
    for (input, outcome) in &hostile {
        let problem = match outcome {
            Err(()) => Some("no answer within 15 s".to_owned()),
            Ok((status, _)) if *status >= 500 => Some(format!("{status} from the gateway")),
            Ok((0, _)) => Some("connection closed without an answer".to_owned()),
            Ok((status, _)) if !matches(&input.expect, *status) => {
                Some(format!("{status}, expected {}", input.expect))
            }
            Ok(_) => None,
        };
        if let Some(p) = problem {
            failures
                .entry(input.group.as_str())
                .or_default()
                .push(format!("{}: {p}", input.label));
        }
        if let Ok((_, Some(id))) = outcome
            && proxied(&input.path)
        {
            expected_ids.push(id.clone());
        }
    }
    for (status, id) in &ordinary {
        assert_eq!(
            *status, 200,
            "an ordinary request failed next to the corpus"
        );
        expected_ids.push(id.clone());
    }

    // Every proxied request keeps its record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let missing = loop {
        let logged = logged_ids(&gw).await;
        let missing: Vec<&String> = expected_ids
            .iter()
            .filter(|id| !logged.contains(*id))
            .collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = gw.state.log.stats().lost();

    let failed: usize = failures.values().map(Vec::len).sum();
    println!(
        "hostile corpus on {name}: {} of {} inputs as expected; {} log records expected, {} missing, {lost} lost by the writer",
        inputs.len() - failed,
        inputs.len(),
        expected_ids.len(),
        missing.len()
    );
    for (group, list) in &failures {
        println!("  {group}: {} unexpected", list.len());
        for f in list {
            println!("    {f}");
        }
    }
    assert!(missing.is_empty(), "records missing: {missing:?}");
    assert_eq!(lost, 0, "the log writer lost records");
    assert!(
        failures.is_empty(),
        "{failed} inputs answered unexpectedly (listed above)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_corpus_on_sqlite() {
    run_corpus(None, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_corpus_on_postgres() {
    run_corpus(Some(fresh_postgres_url().await), "PostgreSQL").await;
}

//! The native pass-through `/{provider}/…` over real HTTP, against a raw upstream that sees
//! exactly what arrives: big bodies streamed both ways with every byte intact, server-sent
//! events relayed as they come, the caller's credential never forwarded, the vault's key
//! used, gateway paths winning over a provider's name, unknown providers 404, the log record.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::common::*;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    headers: HashMap<String, String>,
    bytes: usize,
    sha256: String,
}

#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Told how many request bytes arrived so far, as they arrive (`/v1/upload`).
    progress: Arc<Mutex<Option<mpsc::UnboundedSender<usize>>>>,
    /// Released by the test between the SSE answer's two events (`/v1/sse`).
    release: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
}

/// A pattern covering every byte value.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

async fn upstream_handle(up: Upstream, req: Request<Incoming>) -> Response<UpBody> {
    let (parts, mut body) = req.into_parts();
    let mut hasher = Sha256::new();
    let mut bytes = 0usize;
    let progress = up.progress.lock().unwrap().clone();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            hasher.update(d);
            bytes += d.len();
            if let Some(p) = &progress {
                let _ = p.send(bytes);
            }
        }
    }
    let mut headers = HashMap::new();
    for (k, v) in &parts.headers {
        headers.insert(
            k.as_str().to_owned(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        );
    }
    let seen = Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        bytes,
        sha256: hex(&hasher.finalize()),
    };
    up.seen.lock().unwrap().push(seen.clone());
    let path = parts.uri.path();
    let full = |status: u16, ct: &str, b: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .header("x-upstream", "yes")
            .body(http_body_util::Full::new(Bytes::from(b)).boxed())
            .unwrap()
    };
    match path {
        // A big binary answer, in chunks.
        p if p.starts_with("/v1/download/") => {
            let len: usize = p.trim_start_matches("/v1/download/").parse().unwrap();
            let data = pattern(len);
            let chunks: Vec<Bytes> = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
            let stream =
                futures_util::stream::iter(chunks).map(|c| Ok::<_, Infallible>(Frame::data(c)));
            Response::builder()
                .header("content-type", "audio/mpeg")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/v1/sse" => {
            let release = up.release.lock().unwrap().take();
            let first = futures_util::stream::once(async {
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: one\n\n")))
            });
            let second = futures_util::stream::once(async move {
                if let Some(r) = release {
                    let _ = r.await;
                }
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: two\n\n")))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed(StreamBody::new(first.chain(second))))
                .unwrap()
        }
        "/v1/missing" => full(
            404,
            "application/json",
            br#"{"error":{"message":"nope"}}"#.to_vec(),
        ),
        _ => full(
            200,
            "application/json",
            serde_json::to_vec(&json!({"bytes": seen.bytes, "sha256": seen.sha256})).unwrap(),
        ),
    }
}

async fn start_upstream() -> (Upstream, String) {
    let up = Upstream::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shared = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let up = shared.clone();
                    async move { Ok::<_, Infallible>(upstream_handle(up, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (up, url)
}

/// A gateway whose `openai` provider is the raw upstream (its base URL with `/v1`), and
/// whose `mcp` provider is named like a gateway path.
async fn setup(extra: &str) -> (Upstream, TestGateway) {
    let (up, url) = start_upstream().await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\nproviders:\n  openai:\n    api_key: sk-configured\n    base_url: {url}/v1\n    headers:\n      OpenAI-Organization: org-1\n  admin:\n    kind: custom\n    api_key: sk-admin\n    base_url: {url}/v1\n{extra}"
    ))
    .await;
    (up, gw)
}

fn last(up: &Upstream) -> Seen {
    up.seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the upstream was called")
}

#[tokio::test]
async fn a_big_upload_streams_through_unbuffered_with_the_providers_key_only() {
    let (up, gw) = setup("").await;
    let (progress_tx, mut progress) = mpsc::unbounded_channel();
    *up.progress.lock().unwrap() = Some(progress_tx);
    let data = pattern(24 * 1024 * 1024);
    let expected = hex(&Sha256::digest(&data));
    // The first megabyte, then nothing more until the upstream has seen it: a gateway that
    // read the whole body before sending it on would never get there.
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(body_rx));
    let first = Bytes::copy_from_slice(&data[..1024 * 1024]);
    let rest = Bytes::copy_from_slice(&data[1024 * 1024..]);
    let send = tokio::spawn({
        let url = gw.at("/openai/v1/files?purpose=batch&x=1");
        async move {
            client()
                .post(url)
                .bearer_auth(MASTER_KEY)
                .header("content-type", "multipart/form-data; boundary=xyz")
                .header("x-api-key", "caller-secret")
                .header("x-portcullis-metadata", r#"{"a":"b"}"#)
                .header("connection", "keep-alive, x-private")
                .header("x-private", "hop")
                .header("openai-beta", "assistants=v2")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    });
    body_tx.send(Ok(first)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(n) = progress.recv().await {
            if n >= 1024 * 1024 {
                return n;
            }
        }
        0
    })
    .await
    .expect("the upstream sees the first megabyte before the rest is sent");
    assert!(got >= 1024 * 1024);
    for chunk in rest.chunks(256 * 1024) {
        body_tx
            .send(Ok(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    drop(body_tx);
    let r = send.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "yes");
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], data.len());
    assert_eq!(v["sha256"], expected);

    let seen = last(&up);
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path_and_query, "/v1/files?purpose=batch&x=1");
    assert_eq!(seen.headers["authorization"], "Bearer sk-configured");
    assert_eq!(seen.headers["openai-organization"], "org-1");
    assert_eq!(
        seen.headers["content-type"],
        "multipart/form-data; boundary=xyz"
    );
    assert_eq!(seen.headers["openai-beta"], "assistants=v2");
    for gone in ["x-api-key", "x-portcullis-metadata", "x-private"] {
        assert!(!seen.headers.contains_key(gone), "{gone} forwarded");
    }
    assert!(!format!("{:?}", seen.headers).contains(MASTER_KEY));
    assert!(!format!("{:?}", seen.headers).contains("caller-secret"));

    let log = gw.log_of(&id).await;
    assert_eq!(log["endpoint"], "passthrough");
    assert_eq!(log["provider"], "openai");
    assert_eq!(log["status"], 200);
    assert_eq!(log["provider_key_id"], "openai:default");
    let meta: Value = serde_json::from_str(log["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["path"], "/v1/files");
    assert_eq!(meta["method"], "POST");
    assert_eq!(meta["request_bytes"], data.len());
    assert!(meta["response_bytes"].as_u64().unwrap() > 0);
    gw.stop().await;
}

fn tokio_stream_from(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[tokio::test]
async fn a_big_binary_download_arrives_intact_and_is_logged() {
    let (_up, gw) = setup("").await;
    let len = 16 * 1024 * 1024 + 5;
    let r = client()
        .get(gw.at(&format!("/openai/v1/download/{len}")))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), len);
    assert!(got[..] == pattern(len)[..], "the bytes differ");
    let log = gw.log_of(&id).await;
    let meta: Value = serde_json::from_str(log["metadata"].as_str().unwrap()).unwrap();
    assert_eq!(meta["response_bytes"], len);
    assert_eq!(meta["request_bytes"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn server_sent_events_pass_as_they_come() {
    let (up, gw) = setup("").await;
    let (release, held) = oneshot::channel();
    *up.release.lock().unwrap() = Some(held);
    let r = client()
        .post(gw.at("/openai/v1/sse"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    // The first event arrives while the upstream still holds the second.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the first event is relayed before the answer ends")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(rest, b"data: two\n\n");
    gw.stop().await;
}

#[tokio::test]
async fn the_callers_vault_key_is_used_and_the_upstreams_errors_pass_as_they_are() {
    let (up, gw) = setup("").await;
    let (s, v) = admin_post(
        &gw,
        "/admin/provider-keys",
        json!({"provider": "openai", "alias": "shared", "secret": "sk-from-the-vault"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, created) = admin_post(&gw, "/admin/keys", json!({"name": "k"})).await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let r = client()
        .post(gw.at("/openai/v1/audio/speech"))
        .bearer_auth(key)
        .json(&json!({"input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = last(&up);
    assert_eq!(seen.headers["authorization"], "Bearer sk-from-the-vault");
    assert!(!format!("{:?}", seen.headers).contains(key));

    // The upstream's own 404 is the caller's, body and all.
    let r = client()
        .get(gw.at("/openai/v1/missing"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), r#"{"error":{"message":"nope"}}"#);
    gw.stop().await;
}

#[tokio::test]
async fn callers_must_authenticate_and_keys_must_admit_the_provider() {
    let (up, gw) = setup("").await;
    let r = client()
        .post(gw.at("/openai/v1/images/generations"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (_, narrow) = admin_post(
        &gw,
        "/admin/keys",
        json!({"name": "n", "models": ["openai/gpt-4o"]}),
    )
    .await;
    let (_, wide) = admin_post(
        &gw,
        "/admin/keys",
        json!({"name": "w", "models": ["openai/*"]}),
    )
    .await;
    let call = |key: String| {
        client()
            .post(gw.at("/openai/v1/images/generations"))
            .bearer_auth(key)
            .json(&json!({"prompt": "x"}))
            .send()
    };
    assert_eq!(
        call(narrow["key"].as_str().unwrap().to_owned())
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        call(wide["key"].as_str().unwrap().to_owned())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.seen.lock().unwrap().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn gateway_paths_win_and_unknown_providers_are_404() {
    let (up, gw) = setup("").await;
    // `admin` is a configured provider, but `/admin/…` is the gateway's.
    let r = client()
        .get(gw.at("/admin/v1/models"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(gw.at("/admin/logs?limit=1"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in ["/nobody/v1/models", "/v2/whatever"] {
        let r = client()
            .get(gw.at(path))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert!(up.seen.lock().unwrap().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn pass_through_requests_count_against_the_request_limits() {
    let (_up, gw) = setup("limits:\n  - {scope: global, requests: 2, window: 1m}\n").await;
    let call = || {
        client()
            .post(gw.at("/openai/v1/images/generations"))
            .bearer_auth(MASTER_KEY)
            .json(&json!({"prompt": "x"}))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    assert_eq!(call().await.unwrap().status(), 200);
    let r = call().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    gw.stop().await;
}

async fn admin_post(gw: &TestGateway, path: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Providers authenticated by the gateway rather than by a key: Bedrock's requests are signed
/// (SigV4, over the body read whole) and Vertex AI's carry the service account's token; the
/// mocks check both.
#[tokio::test]
async fn signed_and_token_providers_are_authenticated_their_way() {
    use portcullis_test_support::{MockUpstream, vertex};
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("service-account.json");
    std::fs::write(
        &key,
        vertex::service_account_json(vertex::PRIVATE_KEY, &mock.vertex_token_uri()),
    )
    .unwrap();
    let gw = TestGateway::start(&format!(
        "providers:\n  bedrock:\n    region: us-east-1\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n    base_url: {}\n  vertex:\n    kind: vertex\n    location: us-east5\n    credentials: {}\n    base_url: {}\n",
        mock.bedrock_endpoint_url(),
        key.display(),
        mock.vertex_base_url()
    ))
    .await;

    let converse = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]});
    let r = client()
        .post(gw.at("/bedrock/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"))
        .bearer_auth(MASTER_KEY)
        .json(&converse)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        v["output"]["message"]["content"][0]["text"].is_string(),
        "{v}"
    );
    let sent = mock.requests().into_iter().last().unwrap();
    assert!(
        sent.headers["authorization"]
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"),
        "{:?}",
        sent.headers
    );
    assert!(!format!("{:?}", sent.headers).contains(MASTER_KEY));

    let r = client()
        .post(gw.at(
            "/vertex/v1/projects/mock-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent",
        ))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert!(
        v["candidates"][0]["content"]["parts"][0]["text"].is_string(),
        "{v}"
    );
    let sent = mock.requests().into_iter().last().unwrap();
    assert!(sent.headers["authorization"].starts_with("Bearer ya29."));
    gw.stop().await;
}

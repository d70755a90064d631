//! Health, readiness, metrics, and the master key's first-start generation (the model listing
//! is `models.rs`'s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use crate::common::*;
use portcullis_config::Source;
use portcullis_gateway::{Gateway, MasterKeyOrigin};
use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let r = client().get(gw.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(gw.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");

    post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    let _ = gw.logs("", 1).await;
    let text = gw.metrics_text().await;
    assert!(
        text.contains(r#"portcullis_requests_total{endpoint="chat_completions",provider="openai",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains("portcullis_request_duration_seconds_bucket"));
    assert!(text.contains("portcullis_tokens_total{provider=\"openai\",kind=\"input\"}"));
    assert!(text.contains("portcullis_request_log_written_total"));
    assert!(text.contains("portcullis_request_log_dropped_total 0"));
}

#[tokio::test]
async fn a_master_key_is_generated_once_stored_hashed_and_kept_across_restarts() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("mk.db").display());
    let yaml = format!("database:\n  url: \"{db}\"\n{}", providers_yaml(&mock));
    let config = portcullis_config::from_yaml(&yaml, Source::Environment, &HashMap::new()).unwrap();

    let gateway = Gateway::build(&config).await.unwrap();
    let MasterKeyOrigin::Generated(key) = gateway.master_key() else {
        panic!("a key is generated on first start");
    };
    let key = key.expose().to_owned();
    assert!(key.starts_with("pk-master-"));
    let stored = gateway
        .state()
        .stores
        .settings
        .get("master_key_sha256")
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.contains(&key), "only a digest is stored");
    assert_eq!(stored.len(), 64);
    drop(gateway);

    let gw = TestGateway::start_config(config.clone()).await;
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the generated key keeps working after a restart"
    );
    gw.stop().await;

    let again = Gateway::build(&config).await.unwrap();
    assert!(matches!(again.master_key(), MasterKeyOrigin::Stored));
}

#[tokio::test]
async fn readiness_fails_when_draining() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    gw.state.start_draining();
    let r = client().get(gw.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

// ---- Slow clients, connection floods and bodies in flight, over raw TCP ----

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `server:` block of these tests: short timeouts so that they run fast.
fn slow_client_server(extra: &str) -> String {
    format!(
        "\nserver:\n  shutdown_grace_seconds: 5\n  header_read_timeout: 500ms\n  \
         body_read_timeout: 400ms\n  min_body_rate: 100\n  idle_timeout: 2s\n{extra}"
    )
}

fn host(gw: &TestGateway) -> String {
    gw.url.trim_start_matches("http://").to_string()
}

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(host(gw)).await.unwrap()
}

/// A chat request head with the master key (and no body).
fn chat_head(path: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER_KEY}\r\n\
         anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n\r\n"
    )
}

/// Reads one HTTP/1.1 response: status, lower-cased head, body.
async fn read_response(s: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    Some((status, head, body))
}

/// Reads until the peer closes (EOF or reset); returns how long that took.
async fn wait_closed(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the gateway closes the connection");
    started.elapsed()
}

/// The log record `id`, read over an already open connection.
async fn log_over(s: &mut TcpStream, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let req = format!(
            "GET /admin/logs?limit=1000 HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {MASTER_KEY}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let (status, _, body) = read_response(s).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v["data"].as_array().unwrap().iter().find(|r| r["id"] == id) {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no log record for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn healthz_quickly(gw: &TestGateway) {
    let started = Instant::now();
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(gw.at("/healthz"))
        .send()
        .await
        .expect("/healthz answers");
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn chat_body() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn half_sent_requests_without_a_key_neither_stall_the_gateway_nor_stay_open() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        providers_yaml(&mock),
        slow_client_server("")
    ))
    .await;
    // 150 requests stopped in their headers, 150 in their bodies; none carries a key.
    let mut held = Vec::new();
    for i in 0..300 {
        let mut s = connect(&gw).await;
        let partial = if i % 2 == 0 {
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-ty".to_string()
        } else {
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: 5000\r\n\r\n{\"mo"
                .to_string()
        };
        s.write_all(partial.as_bytes()).await.unwrap();
        held.push(s);
    }
    healthz_quickly(&gw).await;
    let started = Instant::now();
    let (status, _, body) = post(&gw, "/v1/chat/completions", &chat_body()).await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Every half-sent request is cut by the header or body timeout.
    for s in &mut held {
        wait_closed(s, Duration::from_secs(5)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_header_trickle_is_cut_at_the_header_timeout() {
    let gw = TestGateway::start(&slow_client_server("")).await;
    let mut s = connect(&gw).await;
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-slow: ")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        // One byte every 50 ms, forever: the headers never end.
        while wr.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut chunk = [0u8; 1024];
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the connection is closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // Whatever was answered, it was not the request the trickle never finished.
    assert!(!String::from_utf8_lossy(&seen).contains(" 200 "));
    trickle.abort();
    healthz_quickly(&gw).await;
}

#[tokio::test]
async fn a_body_trickle_gets_408_in_the_callers_dialect_one_log_record_and_a_closed_connection() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        providers_yaml(&mock),
        slow_client_server("")
    ))
    .await;
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let mut s = connect(&gw).await;
        s.write_all(chat_head(path, 2000).as_bytes()).await.unwrap();
        let started = Instant::now();
        // 20 bytes a second against a minimum of 100 once the 400 ms are spent.
        let (mut rd, mut wr) = s.into_split();
        let trickle = tokio::spawn(async move {
            while wr.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut buf))
            .await
            .expect("answered and closed")
            .ok();
        let took = started.elapsed();
        trickle.abort();
        let text = String::from_utf8_lossy(&buf).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.to_lowercase().contains("connection: close"), "{text}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let body: Value =
            serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        if anthropic {
            assert_eq!(body["type"], "error", "{body}");
        } else {
            assert_eq!(body["error"]["code"], "request_timeout", "{body}");
        }
        let id = text
            .to_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("x-portcullis-request-id: ")
                    .map(str::to_string)
            })
            .unwrap();
        let record = gw.log_of(id.trim()).await;
        assert_eq!(record["status"], 408, "{record}");
        let all = gw.logs("limit=1000", 0).await;
        assert_eq!(all.iter().filter(|r| r["id"] == id.trim()).count(), 1);
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = TestGateway::start(
        "\nserver:\n  shutdown_grace_seconds: 5\n  header_read_timeout: 5s\n  idle_timeout: 300ms\n",
    )
    .await;
    let mut s = connect(&gw).await;
    for _ in 0..2 {
        // Requests keep it open...
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        let (status, _, _) = read_response(&mut s).await.unwrap();
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // ...and idleness closes it.
    let took = wait_closed(&mut s, Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(1000), "{took:?}");

    // An idle HTTP/2 connection is told GOAWAY, then closed.
    let (kinds, took) = h2_frames_until_closed(&gw, Duration::from_secs(5)).await;
    assert!(kinds.contains(&7), "{kinds:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_fast_while_open_ones_keep_working() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}\nserver:\n  shutdown_grace_seconds: 5\n  idle_timeout: 30s\n  max_connections: 4\n",
        providers_yaml(&mock)
    ))
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = connect(&gw).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.unwrap().0, 200);
        open.push(s);
    }
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let body = serde_json::to_string(&chat_body()).unwrap();
        let mut s = connect(&gw).await;
        let started = Instant::now();
        s.write_all(format!("{}{body}", chat_head(path, body.len())).as_bytes())
            .await
            .unwrap();
        let (status, head, text) = read_response(&mut s).await.expect("an answer");
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(status, 503, "{text}");
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let v: Value = serde_json::from_str(&text).unwrap();
        if anthropic {
            assert_eq!(v["type"], "error", "{v}");
        } else {
            assert_eq!(v["error"]["code"], "too_many_connections", "{v}");
        }
        wait_closed(&mut s, Duration::from_secs(3)).await;
        // The refused model request still has its log record.
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("x-portcullis-request-id: "))
            .unwrap()
            .trim()
            .to_string();
        let record = log_over(&mut open[0], &id).await;
        assert_eq!(record["status"], 503, "{record}");
    }
    // An HTTP/2 client over the cap is told GOAWAY.
    let (kinds, took) = h2_frames_until_closed(&gw, Duration::from_secs(5)).await;
    assert_eq!(kinds, [4, 7]);
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // The connections already open keep working.
    for s in &mut open {
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(s).await.unwrap().0, 200);
    }
    // Once one closes, a new connection is served again.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    healthz_quickly(&gw).await;
}

/// An HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Opens an HTTP/2 connection (preface and empty SETTINGS) and returns the kinds of the
/// frames the gateway sends until it closes, and how long that took.
async fn h2_frames_until_closed(gw: &TestGateway, within: Duration) -> (Vec<u8>, Duration) {
    let mut s = connect(gw).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    s.write_all(&hello).await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection")
        .ok();
    let mut kinds = Vec::new();
    let mut at = 0;
    while buf.len() >= at + 9 {
        let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
        kinds.push(buf[at + 3]);
        at += 9 + len;
    }
    (kinds, started.elapsed())
}

#[tokio::test]
async fn an_http2_ping_or_settings_flood_gets_goaway_instead_of_100k_acknowledgements() {
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    let gw = TestGateway::start(&slow_client_server(
        "  http2_max_control_frames_per_second: 20\n",
    ))
    .await;
    // Within the allowance, every PING is acknowledged and the connection stays open.
    let mut s = connect(&gw).await;
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(SETTINGS, 0, 0, &[]));
    hello.extend(h2_frame(PING, 0, 0, &[1; 8]).repeat(100));
    s.write_all(&hello).await.unwrap();
    let (mut acks, mut buf, mut chunk) = (0, Vec::new(), [0u8; 4096]);
    tokio::time::timeout(Duration::from_secs(3), async {
        while acks < 100 {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {acks} acknowledgements");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                assert_ne!(buf[3], GOAWAY);
                if buf[3] == PING && buf[4] & 1 == 1 {
                    acks += 1;
                }
                buf.drain(..9 + len);
            }
        }
    })
    .await
    .expect("100 PINGs acknowledged");

    for kind in [PING, SETTINGS] {
        let (mut rd, mut wr) = connect(&gw).await.into_split();
        let reader = tokio::spawn(async move {
            let (mut acks, mut goaway) = (0usize, None);
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                while buf.len() >= 9 {
                    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                    if buf.len() < 9 + len {
                        break;
                    }
                    if buf[3] == kind && buf[4] & 1 == 1 {
                        acks += 1;
                    }
                    if buf[3] == GOAWAY {
                        goaway = Some(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
                    }
                    buf.drain(..9 + len);
                }
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return (acks, goaway),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(h2_frame(SETTINGS, 0, 0, &[]));
        wr.write_all(&hello).await.unwrap();
        let one = if kind == PING {
            h2_frame(PING, 0, 0, &[7; 8])
        } else {
            h2_frame(SETTINGS, 0, 0, &[])
        };
        let batch = one.repeat(1000);
        let started = Instant::now();
        for _ in 0..100 {
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
        let (acks, goaway) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("the connection is closed")
            .unwrap();
        assert_eq!(
            goaway,
            Some(0xb),
            "GOAWAY(ENHANCE_YOUR_CALM) for kind {kind}"
        );
        // At most a burst of ten seconds' worth (200), not 100,000.
        assert!(acks <= 200, "{acks} acknowledgements of kind {kind}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    healthz_quickly(&gw).await;
}

#[tokio::test]
async fn bodies_over_the_in_flight_budget_are_refused_fast_while_small_requests_succeed() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}\nserver:\n  shutdown_grace_seconds: 5\n  max_request_body_bytes: 65536\n  \
         max_body_bytes_in_flight: 100000\n  body_read_timeout: 10s\n",
        providers_yaml(&mock)
    ))
    .await;
    let budget = gw.state.body_budget.clone();
    // A large body, half sent, holds its declared length of the budget.
    let big = serde_json::to_string(&json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x".repeat(60_000)}]
    }))
    .unwrap();
    let mut slow = connect(&gw).await;
    slow.write_all(chat_head("/v1/chat/completions", big.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&big.as_bytes()[..30_000]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_flight() < big.len() {
        assert!(Instant::now() < deadline, "the body's length is reserved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Another large body does not fit: a fast 503 before its body is sent at all.
    let mut s = connect(&gw).await;
    let started = Instant::now();
    s.write_all(chat_head("/v1/messages", 60_000).as_bytes())
        .await
        .unwrap();
    let (status, head, text) = read_response(&mut s).await.expect("an answer");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(status, 503, "{text}");
    assert!(head.contains("retry-after: 1"), "{head}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-portcullis-request-id: "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(gw.log_of(&id).await["status"], 503);

    // A small request still fits.
    let (status, _, body) = post(&gw, "/v1/chat/completions", &chat_body()).await;
    assert_eq!(status, 200, "{body}");

    // The large body completes, and its bytes are given back once it is answered.
    slow.write_all(&big.as_bytes()[30_000..]).await.unwrap();
    let (status, _, body) = read_response(&mut slow).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while budget.in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} bytes still held",
            budget.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.stop().await;
}

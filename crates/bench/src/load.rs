//! The load generator: a fixed number of closed-loop workers, each on its own HTTP/1.1
//! keep-alive connection, sending the same request back to back for a fixed time and recording
//! every latency in an HDR histogram. In streaming mode it records the time to the first
//! content token instead of the time to the last byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One request, sent over and over.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Request path.
    pub path: String,
    /// `authorization` header value.
    pub authorization: String,
    /// JSON body.
    pub body: Bytes,
    /// Measure time to first token (SSE) instead of time to last byte.
    pub first_token: bool,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Successful requests in the window.
    pub ok: u64,
    /// Non-2xx answers and transport errors.
    pub errors: u64,
    /// The measured window.
    pub elapsed: Duration,
    /// Latencies of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs … 100 s, three significant figures: constant bounds that are always valid.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Whether an SSE chunk carries the first piece of the answer (`"content":"<something>"`, an
/// OpenAI `tool_calls` delta or an Anthropic `text_delta`). `seen` accumulates bytes across
/// chunk boundaries.
pub fn has_first_token(seen: &mut Vec<u8>, chunk: &[u8]) -> bool {
    seen.extend_from_slice(chunk);
    let text = String::from_utf8_lossy(seen);
    text.lines().any(|line| {
        line.strip_prefix("data: ").is_some_and(|d| {
            d.contains("\"text_delta\"")
                || d.contains("\"tool_calls\"")
                || d.find("\"content\":\"")
                    .is_some_and(|i| d[i + 11..].chars().next().is_some_and(|c| c != '"'))
        })
    })
}

/// Runs `concurrency` workers against `target` for `warmup` (not measured) then `duration`.
pub async fn run(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let t = target.clone();
        tasks.push(tokio::spawn(async move { worker(t, start, end).await }));
    }
    let mut total = Outcome {
        ok: 0,
        errors: 0,
        elapsed: duration,
        latency_us: histogram(),
    };
    for t in tasks {
        if let Ok(o) = t.await {
            total.ok += o.ok;
            total.errors += o.errors;
            let _ = total.latency_us.add(&o.latency_us);
        } else {
            total.errors += 1;
        }
    }
    total
}

async fn worker(t: Target, start: Instant, end: Instant) -> Outcome {
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        elapsed: end.saturating_duration_since(start),
        latency_us: histogram(),
    };
    let mut sender = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let measuring = now >= start;
        if sender.is_none() {
            sender = connect(t.addr).await;
            if sender.is_none() {
                out.errors += u64::from(measuring);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let req = Request::builder()
            .method(Method::POST)
            .uri(t.path.as_str())
            .header(http::header::HOST, "bench")
            .header(http::header::AUTHORIZATION, t.authorization.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(t.body.clone()));
        let Ok(req) = req else { break };
        // Wait for the connection to be free (a previous stream may still be draining) before
        // starting the clock.
        if s.ready().await.is_err() {
            out.errors += u64::from(measuring);
            sender = None;
            continue;
        }
        let sent = Instant::now();
        let result = send(s, req, t.first_token).await;
        let latency = sent.elapsed();
        match result {
            Ok(true) => {
                if measuring {
                    out.ok += 1;
                    let _ = out.latency_us.record(latency.as_micros().max(1) as u64);
                }
            }
            Ok(false) => out.errors += u64::from(measuring),
            Err(()) => {
                out.errors += u64::from(measuring);
                sender = None;
            }
        }
    }
    out
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// Sends one request; `Ok(success)` once the measured point is reached and the body drained.
async fn send(s: &mut Sender, req: Request<Full<Bytes>>, first_token: bool) -> Result<bool, ()> {
    let resp = s.send_request(req).await.map_err(|_| ())?;
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    if first_token && ok {
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ())?;
            if let Some(data) = frame.data_ref()
                && has_first_token(&mut seen, data)
            {
                // The measured point for streams; the rest is drained but not timed.
                return drain(body).await.map(|()| true);
            }
        }
        return Ok(false);
    }
    body.collect().await.map_err(|_| ())?;
    Ok(ok)
}

async fn drain(body: hyper::body::Incoming) -> Result<(), ()> {
    tokio::spawn(async move {
        let _ = body.collect().await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_token_is_found_across_chunk_boundaries() {
        let mut seen = Vec::new();
        assert!(!has_first_token(
            &mut seen,
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
        ));
        assert!(!has_first_token(
            &mut seen,
            b"data: {\"choices\":[{\"delta\":{\"con"
        ));
        assert!(has_first_token(&mut seen, b"tent\":\"Hel\"}}]}\n\n"));
        let mut seen = Vec::new();
        assert!(has_first_token(&mut seen, b"event: content_block_delta\ndata: {\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"));
    }
}

//! `portcullis-bench memory`: what a burst of maximum-size request bodies costs the gateway in
//! memory, and whether it gives the memory back.
//!
//! For each case a fresh gateway process is started against an in-process mock upstream (with
//! the request log on SQLite, bodies logged or not), warmed with a few small requests, and its
//! idle resident memory is read. Then `concurrency` clients each send one large chat body at
//! the same moment; the gateway's resident memory is sampled from `/proc/<pid>/status` while
//! they are in flight (its peak is `VmHWM`), and again during the settle time after the last
//! answer. Cases cross three body shapes (one long message; many messages with tool calls and
//! tool definitions; JSON the gateway only passes on), two log settings and two upstream dialects (passthrough OpenAI → OpenAI,
//! translated OpenAI → Anthropic).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use portcullis_test_support::{MockOptions, MockUpstream};
use serde_json::{Value, json};

use crate::procfs;

/// What the `memory` subcommand was asked to do.
pub struct MemoryArgs {
    gateway_bin: PathBuf,
    concurrency: usize,
    body_bytes: usize,
    settle: Duration,
    shapes: Vec<Shape>,
    log_bodies: Vec<bool>,
    upstreams: Vec<Upstream>,
    json: Option<PathBuf>,
    env: Vec<(String, String)>,
}

/// How the bytes of a large body are spread over the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One long user message (a pasted document) and a short question after it.
    Document,
    /// A long conversation: thousands of short messages, tool calls and results, and a few
    /// hundred tool definitions with JSON schemas.
    Conversation,
    /// JSON the gateway only passes on: large tool schemas (long `enum` lists) and a large
    /// provider parameter it does not interpret (`logit_bias`), many small values each.
    Structured,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Document => "document",
            Shape::Conversation => "conversation",
            Shape::Structured => "structured",
        }
    }
}

/// Which upstream serves the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// OpenAI client, OpenAI upstream: the request is re-encoded, the answer passed through.
    OpenAi,
    /// OpenAI client, Anthropic upstream: translated both ways.
    Anthropic,
}

impl Upstream {
    fn name(self) -> &'static str {
        match self {
            Upstream::OpenAi => "openai→openai",
            Upstream::Anthropic => "openai→anthropic",
        }
    }

    fn model(self) -> &'static str {
        match self {
            Upstream::OpenAi => "openai/gpt-4o-mini",
            Upstream::Anthropic => "anthropic/claude-3-5-haiku-latest",
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: portcullis-bench memory [--gateway-bin PATH] [--concurrency N] [--body-mib MIB]\n\
         \x20      [--settle SECS] [--shape document|conversation|structured|all] [--log-bodies on|off|all]\n\
         \x20      [--upstream openai|anthropic|all] [--env NAME=VALUE]... [--json FILE]"
    );
    std::process::exit(2)
}

/// Parses the arguments after `memory`.
pub fn parse_args(mut args: impl Iterator<Item = String>) -> MemoryArgs {
    let mut a = MemoryArgs {
        gateway_bin: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/portcullis"
        )),
        concurrency: 16,
        body_bytes: 13 * 1024 * 1024,
        settle: Duration::from_secs(60),
        shapes: vec![Shape::Document, Shape::Conversation, Shape::Structured],
        log_bodies: vec![false, true],
        upstreams: vec![Upstream::OpenAi, Upstream::Anthropic],
        json: None,
        env: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--gateway-bin" => a.gateway_bin = PathBuf::from(value()),
            "--concurrency" => a.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--body-mib" => {
                let mib: f64 = value().parse().unwrap_or_else(|_| usage());
                a.body_bytes = (mib * 1048576.0) as usize;
            }
            "--settle" => {
                a.settle = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage()))
            }
            "--shape" => {
                a.shapes = match value().as_str() {
                    "document" => vec![Shape::Document],
                    "conversation" => vec![Shape::Conversation],
                    "structured" => vec![Shape::Structured],
                    "all" => vec![Shape::Document, Shape::Conversation, Shape::Structured],
                    _ => usage(),
                }
            }
            "--log-bodies" => {
                a.log_bodies = match value().as_str() {
                    "on" => vec![true],
                    "off" => vec![false],
                    "all" => vec![false, true],
                    _ => usage(),
                }
            }
            "--upstream" => {
                a.upstreams = match value().as_str() {
                    "openai" => vec![Upstream::OpenAi],
                    "anthropic" => vec![Upstream::Anthropic],
                    "all" => vec![Upstream::OpenAi, Upstream::Anthropic],
                    _ => usage(),
                }
            }
            "--env" => {
                let v = value();
                let Some((k, v)) = v.split_once('=') else {
                    usage()
                };
                a.env.push((k.to_owned(), v.to_owned()));
            }
            "--json" => a.json = Some(PathBuf::from(value())),
            _ => usage(),
        }
    }
    a
}

/// What one case measured, in bytes.
struct CaseResult {
    shape: Shape,
    log_bodies: bool,
    upstream: Upstream,
    received: u64,
    ok: usize,
    idle: u64,
    peak: u64,
    /// Resident memory after the last answer: (seconds after, bytes).
    after: Vec<(u64, u64)>,
    elapsed: Duration,
}

/// Runs every case and prints a table.
pub async fn run(args: &MemoryArgs) -> Result<(), String> {
    if !args.gateway_bin.exists() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --release -p portcullis`",
            args.gateway_bin.display()
        ));
    }
    let mock = MockUpstream::start_with(MockOptions {
        record_requests: false,
        ..MockOptions::default()
    })
    .await;
    let mut results = Vec::new();
    for &shape in &args.shapes {
        let body = Bytes::from(build_body(shape, args.body_bytes));
        for &upstream in &args.upstreams {
            let body = with_model(&body, upstream.model());
            for &log_bodies in &args.log_bodies {
                let r = run_case(args, &mock, shape, upstream, log_bodies, body.clone()).await?;
                println!("{}", render_one(&r, args.concurrency));
                results.push(r);
            }
        }
    }
    println!("\n{}", render(&results, args));
    if let Some(path) = &args.json {
        let v: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "shape": r.shape.name(), "upstream": r.upstream.name(),
                    "log_bodies": r.log_bodies, "ok": r.ok,
                    "received_mib": mib(r.received), "idle_mib": mib(r.idle),
                    "peak_mib": mib(r.peak),
                    "peak_over_received": r.peak as f64 / r.received.max(1) as f64,
                    "after": r.after.iter().map(|(s, b)| json!({"secs": s, "rss_mib": mib(*b)})).collect::<Vec<_>>(),
                    "burst_secs": r.elapsed.as_secs_f64(),
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn run_case(
    args: &MemoryArgs,
    mock: &MockUpstream,
    shape: Shape,
    upstream: Upstream,
    log_bodies: bool,
    body: Bytes,
) -> Result<CaseResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = crate::free_port()?;
    let config = dir.path().join("memory.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{listen}\nmaster_key: {key}\n\
             database:\n  url: sqlite://{db}\n\
             log:\n  bodies: {log_bodies}\n\
             providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {openai}\n\
             \x20 anthropic:\n    api_key: sk-ant-mock\n    base_url: {anthropic}\n",
            key = crate::MASTER_KEY,
            db = dir.path().join("memory.db").display(),
            openai = mock.openai_base_url(),
            anthropic = mock.anthropic_base_url(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut gateway = spawn(&args.gateway_bin, &config, &args.env)?;
    let pid = gateway.id();
    let addr: SocketAddr = format!("127.0.0.1:{listen}")
        .parse()
        .map_err(|_| "address")?;
    let result = measure(args, addr, pid, shape, upstream, log_bodies, body).await;
    crate::stop(&mut gateway);
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &MemoryArgs,
    addr: SocketAddr,
    pid: u32,
    shape: Shape,
    upstream: Upstream,
    log_bodies: bool,
    body: Bytes,
) -> Result<CaseResult, String> {
    crate::wait_ready(addr).await?;
    // Warm up: a few small requests so pools, caches and the log writer exist.
    let small = with_model(&Bytes::from(build_body(shape, 4096)), upstream.model());
    for _ in 0..4 {
        let _ = send_one(addr, small.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss(pid);

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let b = body.clone();
        tasks.push(tokio::spawn(async move { send_one(addr, b).await }));
    }
    let mut ok = 0;
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let elapsed = started.elapsed();
    if let Some(f) = failures.first() {
        eprintln!(
            "  {} of {} failed, e.g.: {f}",
            failures.len(),
            args.concurrency
        );
    }
    let peak = procfs::peak_rss(pid).unwrap_or(0);
    let done = Instant::now();
    let mut after = Vec::new();
    let marks = [0u64, 1, 5, 10, 20, 30, 45, 60, 90, 120];
    for &s in marks
        .iter()
        .filter(|&&s| Duration::from_secs(s) <= args.settle)
    {
        let at = done + Duration::from_secs(s);
        tokio::time::sleep_until(at.into()).await;
        after.push((s, rss(pid)));
    }
    Ok(CaseResult {
        shape,
        log_bodies,
        upstream,
        received: body.len() as u64 * args.concurrency as u64,
        ok,
        idle,
        peak,
        after,
        elapsed,
    })
}

fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| procfs::parse_kib(&s, "VmRSS:"))
        .map_or(0, |k| k * 1024)
}

fn spawn(bin: &Path, config: &Path, env: &[(String, String)]) -> Result<Child, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .map_err(|e| format!("starting the gateway: {e}"))
}

/// Sends one chat request on its own connection and reads the whole answer.
async fn send_one(addr: SocketAddr, body: Bytes) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header(http::header::HOST, "bench")
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", crate::MASTER_KEY),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let answer = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        ))
    }
}

/// A paragraph of prose with the characters JSON must escape (quotes, newlines, tabs) and
/// some non-ASCII text, as pasted documents have.
const PARAGRAPH: &str = "The committee met on Tuesday to review the \"quarterly\" figures.\n\
    Revenue rose 4.2% while costs fell; the café franchise in Zürich doubled its footfall.\n\
    \tAction items: (1) re-forecast Q3, (2) ship the 'north' release, (3) hire two engineers.\n";

/// A chat body of about `bytes` bytes, with the model left as `MODEL` (set by [`with_model`]).
fn build_body(shape: Shape, bytes: usize) -> Vec<u8> {
    let v = match shape {
        Shape::Document => {
            let mut doc = String::with_capacity(bytes + PARAGRAPH.len());
            // The JSON encoding of PARAGRAPH is a little longer than the text itself.
            let per = serde_json::to_string(PARAGRAPH).map_or(PARAGRAPH.len(), |s| s.len());
            while doc.len() / PARAGRAPH.len() * per + 400 < bytes {
                doc.push_str(PARAGRAPH);
            }
            json!({"model": "MODEL", "max_tokens": 64, "temperature": 0.2, "messages": [
                {"role": "system", "content": "You are a careful analyst. Answer briefly."},
                {"role": "user", "content": doc},
                {"role": "user", "content": "Summarise the document above in one sentence."}
            ]})
        }
        Shape::Conversation => {
            let mut tools = Vec::new();
            for i in 0..200 {
                tools.push(json!({"type": "function", "function": {
                    "name": format!("tool_{i}"),
                    "description": format!("Looks things up in system {i}. {}", PARAGRAPH.trim()),
                    "parameters": {"type": "object", "properties": {
                        "query": {"type": "string", "description": "What to look for"},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                        "filters": {"type": "array", "items": {"type": "object", "properties": {
                            "field": {"type": "string"}, "op": {"type": "string", "enum": ["eq", "lt", "gt"]},
                            "value": {"type": ["string", "number"]}}}}
                    }, "required": ["query"]}
                }}));
            }
            let mut messages =
                vec![json!({"role": "system", "content": "You are a helpful agent."})];
            let mut size = serde_json::to_vec(&tools).map_or(0, |t| t.len()) + 200;
            let mut i = 0u64;
            while size < bytes {
                let turn = [
                    json!({"role": "user", "content": format!("Question {i}: {PARAGRAPH}")}),
                    json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{i}"), "type": "function",
                        "function": {"name": format!("tool_{}", i % 200), "arguments": json!({"query": format!("item {i}"), "limit": 10}).to_string()}}]}),
                    json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": format!("Result {i}: {PARAGRAPH}")}),
                    json!({"role": "assistant", "content": [{"type": "text", "text": format!("Answer {i}: {PARAGRAPH}")}]}),
                ];
                for m in turn {
                    size += serde_json::to_vec(&m).map_or(0, |m| m.len()) + 1;
                    messages.push(m);
                }
                i += 1;
            }
            messages.push(json!({"role": "user", "content": "What did we learn?"}));
            json!({"model": "MODEL", "max_tokens": 64, "messages": messages, "tools": tools,
                   "tool_choice": "auto", "metadata": {"run": "memory"}})
        }
        Shape::Structured => {
            // Half the bytes in tool schemas, half in a map of small numbers.
            let mut tools = Vec::new();
            let mut size = 0;
            let mut i = 0;
            while size < bytes / 2 {
                let values: Vec<Value> = (0..500).map(|k| json!(format!("v{k}"))).collect();
                let tool = json!({"type": "function", "function": {
                    "name": format!("lookup_{i}"),
                    "parameters": {"type": "object", "properties": {
                        "kind": {"type": "string", "enum": values},
                        "ids": {"type": "array", "items": {"type": "integer"}}
                    }}
                }});
                size += serde_json::to_vec(&tool).map_or(0, |t| t.len()) + 1;
                tools.push(tool);
                i += 1;
            }
            let mut bias = serde_json::Map::new();
            let mut k = 0u64;
            while size < bytes.saturating_sub(300) {
                let key = k.to_string();
                size += key.len() + 7;
                bias.insert(key, json!(-1));
                k += 1;
            }
            json!({"model": "MODEL", "max_tokens": 64, "tools": tools, "logit_bias": bias,
                   "messages": [{"role": "user", "content": "Pick one."}]})
        }
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The body with its `"MODEL"` placeholder replaced.
fn with_model(body: &Bytes, model: &str) -> Bytes {
    let needle = b"\"model\":\"MODEL\"";
    match body.windows(needle.len()).position(|w| w == needle) {
        Some(i) => {
            let mut out = Vec::with_capacity(body.len() + model.len());
            out.extend_from_slice(&body[..i]);
            out.extend_from_slice(format!("\"model\":\"{model}\"").as_bytes());
            out.extend_from_slice(&body[i + needle.len()..]);
            Bytes::from(out)
        }
        None => body.clone(),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

fn render_one(r: &CaseResult, concurrency: usize) -> String {
    let mut s = format!(
        "{:<12} {:<17} log.bodies {:<5}  {}/{} ok in {:.1}s  received {:.0} MiB  idle {:.1} MiB  peak {:.1} MiB ({:.2}× received)  after:",
        r.shape.name(),
        r.upstream.name(),
        r.log_bodies,
        r.ok,
        concurrency,
        r.elapsed.as_secs_f64(),
        mib(r.received),
        mib(r.idle),
        mib(r.peak),
        r.peak as f64 / r.received.max(1) as f64,
    );
    for (secs, b) in &r.after {
        let _ = write!(s, " {secs}s {:.1}", mib(*b));
    }
    s
}

fn render(results: &[CaseResult], args: &MemoryArgs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} concurrent bodies of {:.1} MiB; RSS in MiB; target: peak < 10× received, back near idle within 60 s",
        args.concurrency,
        mib(args.body_bytes as u64)
    );
    let _ = writeln!(
        s,
        "| shape | upstream | log.bodies | ok | received | idle | peak | peak/received | after 1 s | after 60 s | last |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let at = |secs: u64| {
            r.after
                .iter()
                .find(|(s, _)| *s == secs)
                .map_or("-".to_owned(), |(_, b)| format!("{:.1}", mib(*b)))
        };
        let last = r.after.last().map_or("-".to_owned(), |(secs, b)| {
            format!("{:.1} (at {secs} s)", mib(*b))
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}/{} | {:.0} | {:.1} | {:.1} | {:.2}× | {} | {} | {} |",
            r.shape.name(),
            r.upstream.name(),
            if r.log_bodies { "on" } else { "off" },
            r.ok,
            args.concurrency,
            mib(r.received),
            mib(r.idle),
            mib(r.peak),
            r.peak as f64 / r.received.max(1) as f64,
            at(1),
            at(60),
            last,
        );
    }
    s
}

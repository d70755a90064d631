//! `portcullis-bench`: measures what the gateway adds to an LLM call.
//!
//! `portcullis-bench run` starts mock upstreams in-process, starts the real `portcullis` binary
//! (with its request log on, writing to SQLite) pinned to CPU 0 while this process (load
//! generator and mocks) runs on CPU 1, and runs each scenario three times in the same run —
//! straight to the mock, through the physical floor ([`floor`]: a bare one-hop proxy, one
//! thread, pinned to CPU 0 too), then through the gateway:
//!
//! 1. added latency at concurrency 1;
//! 2. saturation throughput at concurrency 50;
//! 3. a mock that takes 50 ms to answer, at concurrency 50;
//! 4. streaming time to first token at concurrency 1 (the mock streams a frame every 5 ms).
//!
//! For the floor and the gateway it reports the CPU time each consumed per request during each
//! measured window (from `/proc/<pid>/stat`), the gateway's ratio to the floor and its p50 over
//! the floor's, and the gateway's peak resident memory (`VmHWM`). It is a report, not a test:
//! it exits 0 whether or not the targets are met.
//!
//! `portcullis-bench memory` ([`memory`]) measures the gateway's resident memory under a burst
//! of concurrent maximum-size request bodies, and how much of it is given back afterwards.
//!
//! `portcullis-bench guardrails` ([`guardrails`]) runs the indirect-prompt-injection scenario
//! set through the gateway, with and without tool policies, and reports how many attacks get
//! through.
//!
//! `portcullis-bench logs` ([`logs`]) seeds a request log of a million records on SQLite and
//! PostgreSQL and times the admin API's log reads on it, unfiltered and with each filter.
//!
//! `portcullis-bench usage` ([`usage_bench`]) times the admin API's usage overview (totals,
//! series and breakdowns over 30 days, 7 days and 24 hours) on those databases.

#![allow(clippy::print_stdout)]

mod floor;
mod guardrails;
mod load;
mod logs;
mod memory;
mod policy_cost;
mod procfs;
mod semantic;
mod usage_bench;

use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use bytes::Bytes;
use portcullis_test_support::{MockOptions, MockUpstream};
use serde_json::json;

use crate::load::{Outcome, Target};

const MASTER_KEY: &str = "bench-master-key-0123456789";

struct Args {
    gateway_bin: PathBuf,
    duration: Duration,
    warmup: Duration,
    json: Option<PathBuf>,
    pin: bool,
    /// Leave the `keyed` route's tool deny-list out, to compare with builds that predate it.
    no_tools_denied: bool,
    /// Leave the MCP servers and scenarios out, to compare with builds that predate them.
    no_mcp: bool,
    /// Run only the scenarios whose name starts with this, or with one of several prefixes
    /// separated by `|` (`saturation|Gemini`).
    only: Option<String>,
}

impl Args {
    /// Whether the scenario `name` is to run.
    fn runs(&self, name: &str) -> bool {
        !(self.no_mcp && name.starts_with("MCP"))
            && self
                .only
                .as_deref()
                .is_none_or(|only| only.split('|').any(|prefix| name.starts_with(prefix)))
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: portcullis-bench run [--gateway-bin PATH] [--duration SECS] [--warmup SECS] [--json FILE] [--no-pin] [--no-tools-denied] [--no-mcp] [--only SCENARIO-PREFIX[|PREFIX…]]\n\
         \x20      portcullis-bench load ADDR PATH KEY MODEL [--concurrency N] [--duration SECS] [--stream]\n\
         \x20      portcullis-bench memory [--help for its options]\n\
         \x20      portcullis-bench floor UPSTREAM_ADDR...\n\
         \x20      portcullis-bench guardrails [--cases N] [--gateway-bin PATH] [... see its README section]\n\
         \x20      portcullis-bench logs [--gateway-bin PATH] [--database URL]... [--records N] [--reps N] [--writer N] [--load N]\n\
         \x20      portcullis-bench usage [--gateway-bin PATH] [--database URL]... [--reps N]"
    );
    std::process::exit(2)
}

/// `load`: the load generator alone against any OpenAI-compatible endpoint on loopback.
fn load_only(mut args: impl Iterator<Item = String>) -> ExitCode {
    let (Some(addr), Some(path), Some(key), Some(model)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        usage()
    };
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
        usage()
    };
    if !addr.ip().is_loopback() {
        eprintln!("only loopback addresses may be targeted");
        return ExitCode::FAILURE;
    }
    let (mut concurrency, mut duration, mut stream) = (1usize, Duration::from_secs(5), false);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--duration" => {
                duration = Duration::from_secs_f64(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            "--stream" => stream = true,
            _ => usage(),
        }
    }
    let target = Target {
        addr,
        path,
        authorization: format!("Bearer {key}"),
        body: Bytes::from(
            json!({"model": model, "max_tokens": 32, "stream": stream,
                   "messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
            .to_string(),
        ),
        first_token: stream,
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let o = rt.block_on(load::run(
        &target,
        concurrency,
        Duration::from_secs(1),
        duration,
    ));
    println!(
        "{:.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
        o.rate(),
        o.ms(0.5),
        o.ms(0.99),
        o.errors
    );
    ExitCode::SUCCESS
}

/// `memory`: peak and settled resident memory of the gateway under a burst of large bodies.
fn memory_only(args: impl Iterator<Item = String>) -> i32 {
    let args = memory::parse_args(args);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    match rt.block_on(memory::run(&args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("memory benchmark failed: {e}");
            1
        }
    }
}

/// `floor`: the bare one-hop proxy alone, one loopback listener per upstream, on one thread.
/// Prints `LISTEN_ADDR UPSTREAM_ADDR` per listener once all are bound, then serves until killed.
fn floor_only(args: impl Iterator<Item = String>) -> i32 {
    let mut upstreams = Vec::new();
    for arg in args {
        match arg.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => upstreams.push(addr),
            Ok(_) => {
                eprintln!("only loopback addresses may be forwarded to");
                return 2;
            }
            Err(_) => usage(),
        }
    }
    if upstreams.is_empty() {
        usage()
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    rt.block_on(async {
        let listening = match floor::start(&upstreams).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("floor proxy failed to start: {e}");
                return 1;
            }
        };
        let mut out = std::io::stdout().lock();
        for (listen, upstream) in listening.iter().zip(&upstreams) {
            let _ = writeln!(out, "{listen} {upstream}");
        }
        let _ = out.flush();
        drop(out);
        std::future::pending::<i32>().await
    })
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("run") => {}
        Some("load") => std::process::exit(match load_only(args) {
            c if c == ExitCode::SUCCESS => 0,
            _ => 1,
        }),
        Some("memory") => std::process::exit(memory_only(args)),
        Some("floor") => std::process::exit(floor_only(args)),
        Some("guardrails") => std::process::exit(guardrails::main(args)),
        Some("logs") => std::process::exit(logs::main(args)),
        Some("usage") => std::process::exit(usage_bench::main(args)),
        _ => usage(),
    }
    let mut a = Args {
        gateway_bin: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/release/portcullis"
        )),
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        json: None,
        pin: true,
        no_tools_denied: false,
        no_mcp: false,
        only: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--gateway-bin" => a.gateway_bin = PathBuf::from(value()),
            "--duration" => {
                a.duration = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage()))
            }
            "--warmup" => {
                a.warmup = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage()))
            }
            "--json" => a.json = Some(PathBuf::from(value())),
            "--no-pin" => a.pin = false,
            "--no-tools-denied" => a.no_tools_denied = true,
            "--no-mcp" => a.no_mcp = true,
            "--only" => a.only = Some(value()),
            _ => usage(),
        }
    }
    a
}

fn main() -> ExitCode {
    let args = parse_args();
    if args.pin {
        // This process (load generator and mocks) on CPU 1; its threads inherit it.
        let pinned = Command::new("taskset")
            .args(["-a", "-cp", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !pinned {
            eprintln!(
                "warning: could not pin the load generator to CPU 1 (is `taskset` installed?)"
            );
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Row {
    scenario: &'static str,
    concurrency: usize,
    direct: Outcome,
    floor: Outcome,
    floor_cpu_us_per_request: f64,
    gateway: Outcome,
    cpu_us_per_request: f64,
}

impl Row {
    /// The gateway's CPU time per request over the floor's.
    fn cpu_ratio(&self) -> f64 {
        self.cpu_us_per_request / self.floor_cpu_us_per_request.max(1e-9)
    }

    /// The gateway's p50 minus the floor's, in microseconds.
    fn p50_over_floor_us(&self) -> f64 {
        (self.gateway.ms(0.5) - self.floor.ms(0.5)) * 1000.0
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let quiet = |o: MockOptions| MockOptions {
        record_requests: false,
        ..o
    };
    let fast = MockUpstream::start_with(quiet(MockOptions::default())).await;
    let slow = MockUpstream::start_with(quiet(MockOptions {
        latency: Duration::from_millis(50),
        ..MockOptions::default()
    }))
    .await;
    let streaming = MockUpstream::start_with(quiet(MockOptions {
        stream_frame_delay: Duration::from_millis(5),
        ..MockOptions::default()
    }))
    .await;

    // Ten MCP servers behind `/mcp`, twenty tools each; calls go to the first.
    let mut mcp_servers = Vec::with_capacity(10);
    for _ in 0..10 {
        mcp_servers.push(
            portcullis_test_support::MockMcpServer::start(20)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // The load generator sends `Host: bench`, which the DNS-rebinding guard must accept.
    let mcp_block = if args.no_mcp {
        String::new()
    } else {
        mcp_servers.iter().enumerate().fold(
            "mcp:\n  allowed_hosts: [bench]\n  servers:\n".to_owned(),
            |mut out, (i, server)| {
                out.push_str(&format!("    s{i}: {{url: \"{}\"}}\n", server.url()));
                out
            },
        )
    };

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let listen = free_port()?;
    let config = dir.path().join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{listen}\nmaster_key: {MASTER_KEY}\nsecret_key: {BENCH_SECRET_KEY}\n\
             database:\n  url: sqlite://{db}\n\
             providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {fast}\n\
             \x20 vaulted:\n    kind: custom\n    api_key: sk-not-used\n    base_url: {fast}\n\
             \x20 slow:\n    kind: custom\n    api_key: sk-mock-openai\n    base_url: {slow}\n\
             \x20 streaming:\n    kind: custom\n    api_key: sk-mock-openai\n    base_url: {stream}\n\
             \x20 gemini:\n    api_key: AIza-mock-gemini\n    base_url: {fast_root}\n\
             \x20 gemini-streaming:\n    kind: gemini\n    api_key: AIza-mock-gemini\n    base_url: {stream_root}\n\
             \x20 bedrock-streaming:\n    kind: bedrock\n    region: us-east-1\n    access_key_id: AKIAIOSFODNN7EXAMPLE\n    secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n    base_url: {bedrock_root}\n\
             routes:\n  cached:\n    targets: [openai/gpt-4o-mini]\n    cache: {{enabled: true}}\n\
             \x20 limited:\n    targets: [openai/gpt-4o-mini]\n\
             \x20 keyed:\n    targets: [openai/gpt-4o-mini]\n{keyed_tools_denied}\
             limits:\n  - {{scope: route, match: limited, requests: 100000000, window: 1h}}\n\
             \x20 - {{scope: route, match: limited, tokens: 1000000000, window: 1h}}\n{mcp_block}",
            db = dir.path().join("bench.db").display(),
            fast = fast.openai_base_url(),
            slow = slow.openai_base_url(),
            stream = streaming.openai_base_url(),
            fast_root = fast.gemini_base_url(),
            stream_root = streaming.gemini_base_url(),
            bedrock_root = streaming.bedrock_endpoint_url(),
            keyed_tools_denied = if args.no_tools_denied {
                ""
            } else {
                KEYED_ROUTE_TOOLS_DENIED
            },
        ),
    )
    .map_err(|e| e.to_string())?;

    // A virtual key (with its own rate limit), created through the CLI on the bench database,
    // so the "virtual key" scenarios measure key lookup and per-key limits on every request.
    let virtual_key = create_virtual_key(args, &config)?;
    let mut gateway = spawn_gateway(args, &config)?;
    let pid = gateway.id();
    let gw_addr: std::net::SocketAddr = format!("127.0.0.1:{listen}")
        .parse()
        .map_err(|_| "address")?;
    wait_ready(gw_addr).await?;
    // The `vaulted` provider's key lives in the vault (sealed in the database): the "vault
    // key" scenarios measure resolving and using a stored provider key on every request.
    store_provider_key(gw_addr).await?;
    // The floor: one listener per mock, pinned to the gateway's core, idle while the gateway
    // is measured and the other way round.
    let (mut floor_proxy, floor_addrs) = match spawn_floor(
        args,
        &[
            fast.addr(),
            slow.addr(),
            streaming.addr(),
            mcp_servers[0].addr(),
        ],
    ) {
        Ok(started) => started,
        Err(e) => {
            stop(&mut gateway);
            return Err(e);
        }
    };
    let floor_pid = floor_proxy.id();
    let floor_of = |direct: &Target| Target {
        addr: floor_addrs
            .iter()
            .find(|(_, upstream)| *upstream == direct.addr)
            .map_or(direct.addr, |(listen, _)| *listen),
        ..direct.clone()
    };

    println!(
        "gateway pid {pid} and floor pid {floor_pid} {} ; load generator and mocks on CPU 1 ; {}s per window after {}s warm-up\n",
        if args.pin {
            "pinned to CPU 0"
        } else {
            "not pinned"
        },
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );

    let chat = |model: &str, stream: bool| {
        Bytes::from(
            json!({"model": model, "max_tokens": 32, "stream": stream, "temperature": 0,
                   "messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
            .to_string(),
        )
    };
    let direct = |mock: &MockUpstream, stream: bool| Target {
        addr: mock.addr(),
        path: "/v1/chat/completions".to_owned(),
        authorization: "Bearer sk-mock-openai".to_owned(),
        body: chat("gpt-4o-mini", stream),
        first_token: stream,
    };
    let via = |model: &str, stream: bool| Target {
        addr: gw_addr,
        path: "/v1/chat/completions".to_owned(),
        authorization: format!("Bearer {MASTER_KEY}"),
        body: chat(model, stream),
        first_token: stream,
    };

    let with_key = |model: &str| Target {
        addr: gw_addr,
        path: "/v1/chat/completions".to_owned(),
        authorization: format!("Bearer {virtual_key}"),
        body: chat(model, false),
        first_token: false,
    };
    // MCP: a JSON-RPC request straight to the first server, and the same through `/mcp`.
    let rpc = |method: &str, params: serde_json::Value| {
        Bytes::from(
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        )
    };
    let mcp_direct = |body: Bytes| Target {
        addr: mcp_servers[0].addr(),
        path: "/mcp".to_owned(),
        authorization: "Bearer unused".to_owned(),
        body,
        first_token: false,
    };
    let mcp_via = |body: Bytes| Target {
        addr: gw_addr,
        path: "/mcp".to_owned(),
        authorization: format!("Bearer {MASTER_KEY}"),
        body,
        first_token: false,
    };
    let call = |name: &str| {
        rpc(
            "tools/call",
            json!({"name": name, "arguments": {"text": "hello"}}),
        )
    };
    let scenarios: Vec<(&'static str, usize, Target, Target)> = vec![
        (
            "added latency",
            1,
            direct(&fast, false),
            via("openai/gpt-4o-mini", false),
        ),
        (
            "saturation",
            50,
            direct(&fast, false),
            via("openai/gpt-4o-mini", false),
        ),
        (
            "50 ms upstream",
            50,
            direct(&slow, false),
            via("slow/gpt-4o-mini", false),
        ),
        (
            "stream TTFT",
            1,
            direct(&streaming, true),
            via("streaming/gpt-4o-mini", true),
        ),
        // Every request after the first is answered from the exact cache.
        ("cache hit", 1, direct(&fast, false), via("cached", false)),
        ("cache hit", 50, direct(&fast, false), via("cached", false)),
        // A request-rate and a token-rate rule checked (and settled) on every request.
        (
            "with limits",
            50,
            direct(&fast, false),
            via("limited", false),
        ),
        // A virtual key instead of the master key: digest, cached lookup, its own rate rule;
        // on a route with a tool deny-list configured that the answers never trigger.
        ("virtual key", 1, direct(&fast, false), with_key("keyed")),
        ("virtual key", 50, direct(&fast, false), with_key("keyed")),
        // The provider key resolved from the vault (a stored default) instead of the file.
        (
            "vault key",
            1,
            direct(&fast, false),
            via("vaulted/gpt-4o-mini", false),
        ),
        (
            "vault key",
            50,
            direct(&fast, false),
            via("vaulted/gpt-4o-mini", false),
        ),
        // An MCP tool call: straight to the server, and through `/mcp` (authenticate, parse,
        // resolve the namespaced name from the cached list, forward, log).
        (
            "MCP tools/call",
            1,
            mcp_direct(call("tool-0")),
            mcp_via(call("s0__tool-0")),
        ),
        (
            "MCP tools/call",
            50,
            mcp_direct(call("tool-0")),
            mcp_via(call("s0__tool-0")),
        ),
        // The aggregated list of ten servers (200 tools) from the gateway's cached lists,
        // against one server's own list of twenty.
        (
            "MCP tools/list 10 servers",
            1,
            mcp_direct(rpc("tools/list", json!({}))),
            mcp_via(rpc("tools/list", json!({}))),
        ),
        // A provider with a wire format of its own: OpenAI-dialect callers to Gemini (request
        // encoded, answer decoded and re-encoded), against the same OpenAI upstream direct.
        (
            "Gemini translated",
            50,
            direct(&fast, false),
            via("gemini/gemini-2.5-flash", false),
        ),
        (
            "Gemini stream TTFT",
            1,
            direct(&streaming, true),
            via("gemini-streaming/gemini-2.5-flash", true),
        ),
        // Bedrock: the request encoded for Converse and signed with SigV4 over its exact
        // bytes, the answer's AWS event stream framed (prelude and message CRCs checked),
        // decoded and re-encoded as the OpenAI caller's server-sent events.
        (
            "Bedrock stream",
            1,
            direct(&streaming, true),
            via(
                "bedrock-streaming/anthropic.claude-3-5-sonnet-20241022-v2:0",
                true,
            ),
        ),
    ];
    let scenarios = scenarios.into_iter().filter(|(name, ..)| args.runs(name));
    let mut rows = Vec::new();
    // The core scenarios come first; the memory target is read once they are done, before
    // the cache-hit runs push the request log to ~60k records/s.
    let mut core_peak_rss = 0;
    for (i, (scenario, concurrency, d, g)) in scenarios.into_iter().enumerate() {
        if i == 4 {
            core_peak_rss = procfs::peak_rss(pid).unwrap_or(0);
        }
        let direct = load::run(&d, concurrency, args.warmup, args.duration).await;
        // CPU is read around the measured window only (warm-up excluded).
        let (floor, floor_cpu_us_per_request) =
            measure(floor_pid, &floor_of(&d), concurrency, args).await;
        let (gateway, cpu_us_per_request) = measure(pid, &g, concurrency, args).await;
        rows.push(Row {
            scenario,
            concurrency,
            direct,
            floor,
            floor_cpu_us_per_request,
            gateway,
            cpu_us_per_request,
        });
    }
    let peak_rss = procfs::peak_rss(pid).unwrap_or(0);
    let dropped = log_dropped(gw_addr).await;
    // The same aggregated list from a gateway that keeps no lists (`list_ttl: 0s`): every
    // request fans out to the ten servers.
    if args.runs("MCP tools/list 10 servers, no cache") {
        let list = mcp_direct(rpc("tools/list", json!({})));
        match uncached_list(args, dir.path(), &mcp_block, &list).await {
            Ok((gateway, cpu_us_per_request)) => {
                let direct = load::run(&list, 1, args.warmup, args.duration).await;
                let (floor, floor_cpu_us_per_request) =
                    measure(floor_pid, &floor_of(&list), 1, args).await;
                rows.push(Row {
                    scenario: "MCP tools/list 10 servers, no cache",
                    concurrency: 1,
                    direct,
                    floor,
                    floor_cpu_us_per_request,
                    gateway,
                    cpu_us_per_request,
                });
            }
            Err(e) => eprintln!("the uncached MCP list was not measured: {e}"),
        }
    }
    // Tool policies: the same agent turn (50 tools, a tainting tool result) through two fresh
    // gateways alike but for `tool_policies` — 100 rules, and none.
    let policy_scenarios = [
        (POLICIES_WITH, POLICIES_WITHOUT, 1, false),
        (POLICIES_WITH, POLICIES_WITHOUT, 50, false),
        (POLICIES_STREAM_WITH, POLICIES_STREAM_WITHOUT, 1, true),
    ];
    let policy_scenarios: Vec<_> = policy_scenarios
        .into_iter()
        .filter(|(with, without, ..)| args.runs(with) || args.runs(without))
        .collect();
    if !policy_scenarios.is_empty() {
        match policy_gateways(args, dir.path(), &fast).await {
            Ok((mut with_gw, mut without_gw)) => {
                for (with, without, concurrency, stream) in policy_scenarios {
                    let d = Target {
                        addr: fast.addr(),
                        path: "/v1/chat/completions".to_owned(),
                        authorization: "Bearer sk-mock-openai".to_owned(),
                        body: policy_cost::body("gpt-4o-mini", stream),
                        first_token: stream,
                    };
                    let via = |addr| Target {
                        addr,
                        authorization: format!("Bearer {MASTER_KEY}"),
                        body: policy_cost::body("openai/gpt-4o-mini", stream),
                        ..d.clone()
                    };
                    let direct = load::run(&d, concurrency, args.warmup, args.duration).await;
                    let (floor, floor_cpu_us_per_request) =
                        measure(floor_pid, &floor_of(&d), concurrency, args).await;
                    for (scenario, (gw, addr)) in [(without, &without_gw), (with, &with_gw)] {
                        let (gateway, cpu_us_per_request) =
                            measure(gw.id(), &via(*addr), concurrency, args).await;
                        rows.push(Row {
                            scenario,
                            concurrency,
                            direct: direct.clone(),
                            floor: floor.clone(),
                            floor_cpu_us_per_request,
                            gateway,
                            cpu_us_per_request,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                stop(&mut with_gw.0);
                stop(&mut without_gw.0);
            }
            Err(e) => eprintln!("the tool-policy scenarios were not measured: {e}"),
        }
    }
    // Let the load generator's connections and stream drains finish on this runtime before
    // the blocking wait for the gateway's exit, so its graceful shutdown is not held up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop(&mut gateway);
    stop(&mut floor_proxy);

    let report = render(&rows, core_peak_rss, peak_rss, dropped);
    println!("{report}");
    println!("{}", semantic::lookup_report());
    if let Some(path) = &args.json {
        let v = json!({
            "rows": rows.iter().map(|r| json!({
                "scenario": r.scenario, "concurrency": r.concurrency,
                "direct": {"rps": r.direct.rate(), "p50_ms": r.direct.ms(0.5), "p99_ms": r.direct.ms(0.99), "errors": r.direct.errors},
                "floor": {"rps": r.floor.rate(), "p50_ms": r.floor.ms(0.5), "p99_ms": r.floor.ms(0.99), "errors": r.floor.errors},
                "gateway": {"rps": r.gateway.rate(), "p50_ms": r.gateway.ms(0.5), "p99_ms": r.gateway.ms(0.99), "errors": r.gateway.errors},
                "added_p50_ms": r.gateway.ms(0.5) - r.direct.ms(0.5),
                "floor_cpu_us_per_request": r.floor_cpu_us_per_request,
                "gateway_cpu_us_per_request": r.cpu_us_per_request,
                "gateway_to_floor_cpu_ratio": r.cpu_ratio(),
                "gateway_p50_over_floor_us": r.p50_over_floor_us(),
            })).collect::<Vec<_>>(),
            "gateway_peak_rss_mib": peak_rss as f64 / 1048576.0,
            "gateway_core_peak_rss_mib": core_peak_rss as f64 / 1048576.0,
            "request_log_dropped": dropped,
            "tool_policies": policy_costs(&rows).iter().map(|c| json!({
                "scenario": c.with.scenario, "concurrency": c.with.concurrency, "stream": c.stream,
                "rules": 100, "tools": 50,
                "cpu_us_per_request_with": c.with.cpu_us_per_request,
                "cpu_us_per_request_without": c.without.cpu_us_per_request,
                "cpu_ratio": c.cpu_ratio(),
                "cpu_ratio_target": 1.05,
                "p50_ms_with": c.with.gateway.ms(0.5),
                "p50_ms_without": c.without.gateway.ms(0.5),
                "p50_added_us": c.p50_added_us(),
                "p50_added_us_target": if c.stream { Some(50.0) } else { None },
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap_or_default())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The tool-policy scenarios' names (one row per gateway: with the 100 rules, and without).
const POLICIES_WITH: &str = "guardrails, 100 rules";
const POLICIES_WITHOUT: &str = "guardrails, no rules";
const POLICIES_STREAM_WITH: &str = "guardrails stream, 100 rules";
const POLICIES_STREAM_WITHOUT: &str = "guardrails stream, no rules";

/// Starts the two gateways of the tool-policy scenarios in front of `upstream`, alike but for
/// `tool_policies`: `(with the 100 rules, without)`, each with its address.
#[allow(clippy::type_complexity)]
async fn policy_gateways(
    args: &Args,
    dir: &std::path::Path,
    upstream: &MockUpstream,
) -> Result<((Child, SocketAddr), (Child, SocketAddr)), String> {
    let mut started: Vec<(Child, SocketAddr)> = Vec::with_capacity(2);
    for (name, with_rules) in [("policies", true), ("no-policies", false)] {
        let listen = free_port()?;
        // The configuration and the database in directories of their own.
        let (config_dir, data_dir) = (dir.join(name), dir.join(format!("{name}-data")));
        for d in [&config_dir, &data_dir] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let config = config_dir.join("bench.yaml");
        std::fs::write(
            &config,
            policy_cost::config(
                listen,
                MASTER_KEY,
                BENCH_SECRET_KEY,
                &data_dir.join("bench.db"),
                &upstream.openai_base_url(),
                with_rules,
            ),
        )
        .map_err(|e| e.to_string())?;
        let gateway = spawn_gateway(args, &config);
        let ready = match gateway {
            Ok(mut gateway) => {
                let addr = SocketAddr::from(([127, 0, 0, 1], listen));
                match wait_ready(addr).await {
                    Ok(()) => Ok((gateway, addr)),
                    Err(e) => {
                        stop(&mut gateway);
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        match ready {
            Ok(g) => started.push(g),
            Err(e) => {
                for (mut g, _) in started {
                    stop(&mut g);
                }
                return Err(e);
            }
        }
    }
    let without = started.pop().ok_or("no gateway")?;
    let with = started.pop().ok_or("no gateway")?;
    Ok((with, without))
}

/// A tool-policy comparison: the same scenario through the gateway with the rules and without.
struct PolicyCost<'a> {
    with: &'a Row,
    without: &'a Row,
    stream: bool,
}

impl PolicyCost<'_> {
    /// CPU per request with the rules over without.
    fn cpu_ratio(&self) -> f64 {
        self.with.cpu_us_per_request / self.without.cpu_us_per_request.max(1e-9)
    }

    /// p50 (time to first token for streams) with the rules minus without, in microseconds.
    fn p50_added_us(&self) -> f64 {
        (self.with.gateway.ms(0.5) - self.without.gateway.ms(0.5)) * 1000.0
    }
}

/// The measured tool-policy comparisons, in row order.
fn policy_costs(rows: &[Row]) -> Vec<PolicyCost<'_>> {
    rows.iter()
        .filter_map(|with| {
            let (without, stream) = match with.scenario {
                POLICIES_WITH => (POLICIES_WITHOUT, false),
                POLICIES_STREAM_WITH => (POLICIES_STREAM_WITHOUT, true),
                _ => return None,
            };
            rows.iter()
                .find(|r| r.scenario == without && r.concurrency == with.concurrency)
                .map(|without| PolicyCost {
                    with,
                    without,
                    stream,
                })
        })
        .collect()
}

/// Measures the aggregated `tools/list` on a second gateway over the same MCP servers that
/// keeps no lists, so each request asks every server; `direct` is the first server's own list.
async fn uncached_list(
    args: &Args,
    dir: &std::path::Path,
    mcp_block: &str,
    direct: &Target,
) -> Result<(Outcome, f64), String> {
    let listen = free_port()?;
    let config = dir.join("bench-uncached.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{listen}\nmaster_key: {MASTER_KEY}\nsecret_key: {BENCH_SECRET_KEY}\n\
             database:\n  url: sqlite://{db}\n{block}",
            db = dir.join("bench-uncached.db").display(),
            block = mcp_block.replacen("mcp:\n", "mcp:\n  list_ttl: 0s\n", 1),
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut gateway = spawn_gateway(args, &config)?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{listen}")
        .parse()
        .map_err(|_| "address")?;
    if let Err(e) = wait_ready(addr).await {
        stop(&mut gateway);
        return Err(e);
    }
    let target = Target {
        addr,
        path: "/mcp".to_owned(),
        authorization: format!("Bearer {MASTER_KEY}"),
        ..direct.clone()
    };
    let measured = measure(gateway.id(), &target, 1, args).await;
    stop(&mut gateway);
    Ok(measured)
}

/// Runs a scenario against the process `pid` (the gateway or the floor), reading its CPU time
/// exactly around the measured window; returns the outcome and the CPU µs per request.
async fn measure(pid: u32, target: &Target, concurrency: usize, args: &Args) -> (Outcome, f64) {
    let warmup = args.warmup;
    let sampler = async {
        tokio::time::sleep(warmup).await;
        let before = procfs::cpu_time(pid).unwrap_or_default();
        tokio::time::sleep(args.duration).await;
        let after = procfs::cpu_time(pid).unwrap_or_default();
        after.saturating_sub(before)
    };
    let (outcome, cpu) = tokio::join!(
        load::run(target, concurrency, warmup, args.duration),
        sampler
    );
    let per_request = cpu.as_secs_f64() * 1e6 / (outcome.ok.max(1) as f64);
    (outcome, per_request)
}

fn render(rows: &[Row], core_peak_rss: u64, peak_rss: u64, dropped: Option<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | conc. | direct req/s | direct p50 / p99 ms | gateway req/s | gateway p50 / p99 ms | added p50 ms | gateway CPU µs/req |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.3} / {:.3} | {:.0} | {:.3} / {:.3} | {:+.3} | {:.1} |",
            r.scenario,
            r.concurrency,
            r.direct.rate(),
            r.direct.ms(0.5),
            r.direct.ms(0.99),
            r.gateway.rate(),
            r.gateway.ms(0.5),
            r.gateway.ms(0.99),
            r.gateway.ms(0.5) - r.direct.ms(0.5),
            r.cpu_us_per_request,
        );
        if r.direct.errors + r.gateway.errors > 0 {
            let _ = writeln!(
                s,
                "|  ↳ errors | | {} | | {} | | | |",
                r.direct.errors, r.gateway.errors
            );
        }
    }
    let _ = writeln!(
        s,
        "\nagainst the floor (a bare one-hop proxy: one thread on the gateway's core, pooled client, no parsing, auth or log):\n"
    );
    let _ = writeln!(
        s,
        "| scenario | conc. | floor req/s | floor p50 / p99 ms | floor CPU µs/req | gateway CPU µs/req | CPU ratio | gateway p50 − floor p50 µs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | {:.3} / {:.3} | {:.1} | {:.1} | {:.2}× | {:+.0} |",
            r.scenario,
            r.concurrency,
            r.floor.rate(),
            r.floor.ms(0.5),
            r.floor.ms(0.99),
            r.floor_cpu_us_per_request,
            r.cpu_us_per_request,
            r.cpu_ratio(),
            r.p50_over_floor_us(),
        );
        if r.floor.errors > 0 {
            let _ = writeln!(s, "|  ↳ errors | | {} | | | | | |", r.floor.errors);
        }
    }
    let _ = writeln!(
        s,
        "\ngateway peak RSS: {:.1} MiB after the core scenarios, {:.1} MiB after all",
        core_peak_rss as f64 / 1048576.0,
        peak_rss as f64 / 1048576.0
    );
    match dropped {
        Some(d) => {
            let _ = writeln!(s, "request log records dropped: {d}");
        }
        None => {
            let _ = writeln!(
                s,
                "request log records dropped: unknown (metrics unavailable)"
            );
        }
    }
    let sat = rows.iter().find(|r| r.scenario == "saturation");
    let lat = rows.iter().find(|r| r.scenario == "added latency");
    let _ = writeln!(s, "\ntargets (request log on, gateway on one core):");
    if let Some(r) = sat {
        let _ = writeln!(
            s,
            "  throughput at c=50   ≥ 15000 req/s : {:.0} {}",
            r.gateway.rate(),
            mark(r.gateway.rate() >= 15000.0)
        );
        let _ = writeln!(
            s,
            "  CPU per request      ≤ 60 µs       : {:.1} {}",
            r.cpu_us_per_request,
            mark(r.cpu_us_per_request <= 60.0)
        );
    }
    if let Some(r) = lat {
        let added = r.gateway.ms(0.5) - r.direct.ms(0.5);
        let _ = writeln!(
            s,
            "  added p50 at c=1     ≤ 0.1 ms      : {added:.3} {}",
            mark(added <= 0.1)
        );
    }
    let mib = core_peak_rss as f64 / 1048576.0;
    let _ = writeln!(
        s,
        "  peak RSS             ≤ 32 MiB      : {mib:.1} {}",
        mark(mib <= 32.0)
    );
    let _ = writeln!(
        s,
        "\ntargets against the floor (request log on, virtual key, tool deny-list configured):"
    );
    for r in rows.iter().filter(|r| r.scenario == "virtual key") {
        let ratio = r.cpu_ratio();
        let _ = writeln!(
            s,
            "  CPU per request at c={:<3} ≤ 1.5× floor  : {ratio:.2}× ({:.1} / {:.1} µs) {}",
            r.concurrency,
            r.cpu_us_per_request,
            r.floor_cpu_us_per_request,
            mark(ratio <= 1.5)
        );
        if r.concurrency == 1 {
            let over = r.p50_over_floor_us();
            let _ = writeln!(
                s,
                "  p50 at c=1 ≤ floor p50 + 10 µs       : {over:+.0} µs ({:.3} vs {:.3} ms) {}",
                r.gateway.ms(0.5),
                r.floor.ms(0.5),
                mark(over <= 10.0)
            );
        }
    }
    let costs = policy_costs(rows);
    if !costs.is_empty() {
        let _ = writeln!(
            s,
            "\ntargets for tool policies (100 rules, 50 tools, tainting history; against the same requests through a gateway without tool_policies):"
        );
    }
    for c in &costs {
        let ratio = c.cpu_ratio();
        let _ = writeln!(
            s,
            "  CPU per request{} at c={:<3} ≤ 1.05× without : {ratio:.3}× ({:.1} / {:.1} µs) {}",
            if c.stream { " (stream)" } else { "" },
            c.with.concurrency,
            c.with.cpu_us_per_request,
            c.without.cpu_us_per_request,
            mark(ratio <= 1.05)
        );
        if c.stream {
            let added = c.p50_added_us();
            let _ = writeln!(
                s,
                "  stream TTFT p50 at c=1 ≤ without + 50 µs  : {added:+.0} µs ({:.3} vs {:.3} ms) {}",
                c.with.gateway.ms(0.5),
                c.without.gateway.ms(0.5),
                mark(added <= 50.0)
            );
        }
    }
    s
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗ (missed)" }
}

/// Starts this binary's `floor` subcommand (pinned to CPU 0 like the gateway) forwarding to
/// `upstreams`; returns it and its `(listen, upstream)` address pairs.
#[allow(clippy::type_complexity)]
fn spawn_floor(
    args: &Args,
    upstreams: &[SocketAddr],
) -> Result<(Child, Vec<(SocketAddr, SocketAddr)>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let mut cmd = if args.pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.arg("floor")
        .args(upstreams.iter().map(ToString::to_string))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the floor proxy: {e}"))?;
    let mut pairs = Vec::with_capacity(upstreams.len());
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines().take(upstreams.len()) {
            let line = line.map_err(|e| format!("reading the floor proxy's addresses: {e}"))?;
            let mut addrs = line.split(' ').filter_map(|a| a.parse::<SocketAddr>().ok());
            if let (Some(listen), Some(upstream)) = (addrs.next(), addrs.next()) {
                pairs.push((listen, upstream));
            }
        }
    }
    if pairs.len() != upstreams.len() {
        stop(&mut child);
        return Err("the floor proxy did not start".to_owned());
    }
    Ok((child, pairs))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn spawn_gateway(args: &Args, config: &std::path::Path) -> Result<Child, String> {
    if !args.gateway_bin.exists() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --release -p portcullis`",
            args.gateway_bin.display()
        ));
    }
    let mut cmd = if args.pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&args.gateway_bin);
        c
    } else {
        Command::new(&args.gateway_bin)
    };
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd.spawn()
        .map_err(|e| format!("starting the gateway: {e}"))
}

/// Creates a virtual key with `portcullis keys create` on the bench configuration's database.
fn create_virtual_key(args: &Args, config: &std::path::Path) -> Result<String, String> {
    let out = Command::new(&args.gateway_bin)
        .args(["keys", "--config"])
        .arg(config)
        .args(["create", "--name", "bench", "--rpm", "100000000"])
        .output()
        .map_err(|e| format!("creating a virtual key: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "creating a virtual key failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("keys create output: {e}"))?;
    v["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "keys create printed no key".to_owned())
}

/// The tool deny-list of the `keyed` route (the virtual-key scenarios): a pattern no tool in the
/// mock's answers matches, so every run measures the filter configured but not triggered.
const KEYED_ROUTE_TOOLS_DENIED: &str = "    tools_denied: [\"bench_never_*\"]\n";

/// The vault's key-encryption key for the bench (32 bytes, base64).
const BENCH_SECRET_KEY: &str = "YmVuY2gtc2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZGU=";

/// Stores the `vaulted` provider's key through the admin API.
async fn store_provider_key(addr: std::net::SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body =
        json!({"provider": "vaulted", "alias": "bench", "secret": "sk-mock-openai"}).to_string();
    let request = format!(
        "POST /admin/provider-keys HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {MASTER_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("storing the provider key: {e}"))?;
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("storing the provider key: {e}"))?;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    if answer.starts_with(b"HTTP/1.1 201") {
        Ok(())
    } else {
        Err(format!(
            "storing the provider key failed: {}",
            String::from_utf8_lossy(&answer)
        ))
    }
}

async fn wait_ready(addr: std::net::SocketAddr) -> Result<(), String> {
    for _ in 0..300 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tcp
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = tcp.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the gateway did not become ready".to_owned())
}

/// `portcullis_request_log_dropped_total` from the gateway's metrics.
async fn log_dropped(addr: std::net::SocketAddr) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    tcp.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .find_map(|l| l.strip_prefix("portcullis_request_log_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

//! `server-everything` over stdio: started, sandboxed in its environment, restarted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use portcullis_mcp::config::{Limits, StdioSpec};
use portcullis_mcp::upstream::{Status, StdioUpstream, Upstream, UpstreamError};
use serde_json::Value;

use crate::common::{self, CALL, START_WITHIN, call_tool, result, text};

fn spec(env: &[(&str, &str)]) -> StdioSpec {
    StdioSpec {
        command: common::bin("mcp-server-everything")
            .to_string_lossy()
            .into_owned(),
        args: vec!["stdio".to_owned()],
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        cwd: None,
        network: true,
        sandbox: false,
        limits: Limits::default(),
        read_paths: Vec::new(),
        write_paths: Vec::new(),
    }
}

fn start(env: &[(&str, &str)]) -> StdioUpstream {
    StdioUpstream::start("everything".to_owned(), spec(env), CALL).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_lists_and_calls() {
    let upstream = start(&[]);
    common::initializes_lists_and_calls(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_comes_back_with_the_callers_token() {
    let upstream = start(&[]);
    common::progress_comes_back_with_the_callers_token(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_reach_the_request_in_flight() {
    let upstream = start(&[]);
    common::server_requests_reach_the_request_in_flight(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_time_out() {
    let upstream = start(&[]);
    common::slow_calls_time_out(&upstream, || upstream.pending_requests()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gets_its_own_environment_and_none_of_the_gateways() {
    let upstream = start(&[("MCP_TEST_SETTING", "from-the-spec")]);
    common::ready(&upstream).await;
    let env: Value =
        serde_json::from_str(&text(&result(call_tool(&upstream, "get-env", "{}").await))).unwrap();
    let env = env.as_object().unwrap();
    assert_eq!(env["MCP_TEST_SETTING"], "from-the-spec");
    let basic = |name: &str| {
        ["PATH", "HOME", "LANG", "TMPDIR", "MCP_TEST_SETTING"].contains(&name)
            || name.starts_with("LC_")
    };
    let leaked: Vec<&String> = env.keys().filter(|name| !basic(name)).collect();
    assert!(
        leaked.is_empty(),
        "variables the server must not see: {leaked:?}"
    );
    // This process has variables of its own (cargo sets them); none of them reached the server.
    let own: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| !basic(name))
        .collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|name| !env.contains_key(name)));
    if let Some(path) = std::env::var_os("PATH") {
        assert_eq!(env["PATH"], path.to_string_lossy().as_ref());
    }

    // It works in a private directory of its own, removed with the connection.
    let pid = upstream.pid().expect("a running process");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert!(cwd.starts_with(std::env::temp_dir()), "{}", cwd.display());
    assert!(
        cwd.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("portcullis-mcp-everything-")
    );
    upstream.shutdown().await;
    drop(upstream);
    let dropped = Instant::now();
    while cwd.exists() {
        assert!(
            dropped.elapsed() < Duration::from_secs(5),
            "{} is left behind",
            cwd.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_unavailable_then_restarted() {
    let upstream = start(&[]);
    common::ready(&upstream).await;
    let first = upstream.pid().expect("a running process");

    // A call in flight when the process dies fails at once.
    let params = common::raw(
        r#"{"name":"trigger-long-running-operation","arguments":{"duration":10,"steps":2}}"#,
    );
    let in_flight = upstream.request("tools/call", Some(&params), None, CALL);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let group = rustix::process::Pid::from_raw(i32::try_from(first).unwrap()).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    };
    let started = Instant::now();
    let (reply, ()) = tokio::join!(in_flight, kill);
    assert!(
        matches!(reply, Err(UpstreamError::Unavailable { .. })),
        "{reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(upstream.pending_requests(), 0);

    // While it is down, calls fail with Unavailable, fast.
    assert!(
        upstream
            .wait_for(Status::Failing, Duration::from_secs(5))
            .await
            || upstream.status() == Status::Ready
    );
    if upstream.status() == Status::Failing {
        let reply = upstream.request("tools/list", None, None, CALL).await;
        assert!(
            matches!(reply, Err(UpstreamError::Unavailable { .. })),
            "{reply:?}"
        );
    }

    // After the backoff it is back, initialized again, in a new process.
    assert!(upstream.wait_for(Status::Ready, START_WITHIN).await);
    let second = upstream.pid().expect("a running process");
    assert_ne!(first, second);
    let echoed = result(call_tool(&upstream, "echo", r#"{"message":"again"}"#).await);
    assert!(text(&echoed).contains("again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_the_process_and_refuses_calls() {
    let upstream = start(&[]);
    common::ready(&upstream).await;
    let pid = upstream.pid().expect("a running process");
    common::shut_down_connections_refuse_calls(&upstream).await;
    let started = Instant::now();
    loop {
        // Gone, or a zombie waiting to be reaped.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if stat.is_empty() || state == Some('Z') {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "process {pid} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It is not restarted.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(upstream.status(), Status::Stopped);
    assert_eq!(upstream.pid(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_is_not_there_keeps_failing() {
    let mut spec = spec(&[]);
    spec.command = "/nonexistent/mcp-server".to_owned();
    let upstream = StdioUpstream::start("missing".to_owned(), spec, CALL).unwrap();
    assert!(
        upstream
            .wait_for(Status::Failing, Duration::from_secs(5))
            .await
    );
    let reply = upstream.request("tools/list", None, None, CALL).await;
    let Err(UpstreamError::Unavailable { reason, .. }) = reply else {
        panic!("{reply:?}");
    };
    assert!(reason.contains("could not be started"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_notifications_reach_the_broadcast_channel() {
    let upstream = start(&[]);
    common::server_notifications_reach_the_broadcast_channel(&upstream).await;
}

/// A stdio server written for the test: it answers `initialize` with the version in its
/// `VERSION` variable and `tools/list` with no tools, after writing a line that is not JSON
/// and a line longer than 16 MiB before each answer.
fn scripted(version: &str) -> StdioUpstream {
    const SCRIPT: &str = r#"
        const readline = require("readline");
        const lines = readline.createInterface({ input: process.stdin });
        lines.on("line", (line) => {
            const message = JSON.parse(line);
            if (message.id === undefined) return;
            process.stdout.write("this is not JSON\n");
            process.stdout.write("[" + "1,".repeat(9 << 20) + "1]\n");
            const result = message.method === "initialize"
                ? { protocolVersion: process.env.VERSION, capabilities: {}, serverInfo: { name: "scripted", version: "1" } }
                : { tools: [] };
            process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }) + "\n");
        });
    "#;
    let spec = StdioSpec {
        command: "node".to_owned(),
        args: vec!["-e".to_owned(), SCRIPT.to_owned()],
        env: BTreeMap::from([("VERSION".to_owned(), version.to_owned())]),
        cwd: None,
        network: false,
        sandbox: false,
        limits: Limits::default(),
        read_paths: Vec::new(),
        write_paths: Vec::new(),
    };
    StdioUpstream::start("scripted".to_owned(), spec, CALL).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_that_are_not_messages_are_skipped() {
    let upstream = scripted("2025-06-18");
    common::ready(&upstream).await;
    assert_eq!(upstream.info().unwrap().protocol_version, "2025-06-18");
    let list = result(upstream.request("tools/list", None, None, CALL).await);
    assert_eq!(list["tools"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_an_unknown_protocol_version_is_refused() {
    let upstream = scripted("1999-01-01");
    assert!(
        upstream
            .wait_for(Status::Failing, Duration::from_secs(10))
            .await
    );
    assert!(upstream.info().is_none());
    let reply = upstream.request("tools/list", None, None, CALL).await;
    assert!(
        matches!(reply, Err(UpstreamError::Unavailable { .. })),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_are_cancelled_upstream() {
    // Never answers `slow`; lists the cancellations it received on `cancellations`.
    const SCRIPT: &str = r#"
        const readline = require("readline");
        const cancelled = [];
        const reply = (id, result) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", id, result }) + "\n");
        readline.createInterface({ input: process.stdin }).on("line", (line) => {
            const m = JSON.parse(line);
            if (m.method === "initialize") reply(m.id, { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "s", version: "1" } });
            else if (m.method === "notifications/cancelled") cancelled.push(m.params);
            else if (m.method === "cancellations") reply(m.id, { cancelled });
        });
    "#;
    let spec = StdioSpec {
        command: "node".to_owned(),
        args: vec!["-e".to_owned(), SCRIPT.to_owned()],
        env: BTreeMap::new(),
        cwd: None,
        network: false,
        sandbox: false,
        limits: Limits::default(),
        read_paths: Vec::new(),
        write_paths: Vec::new(),
    };
    let upstream = StdioUpstream::start("cancels".to_owned(), spec, CALL).unwrap();
    common::ready(&upstream).await;

    let timed_out = upstream
        .request("slow", None, None, Duration::from_millis(200))
        .await;
    assert!(matches!(timed_out, Err(UpstreamError::Timeout { .. })));
    let dropped = upstream.request("slow", None, None, CALL);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), dropped)
            .await
            .is_err()
    );
    assert_eq!(upstream.pending_requests(), 0);

    let listed = result(upstream.request("cancellations", None, None, CALL).await);
    let cancelled = listed["cancelled"].as_array().unwrap();
    assert_eq!(cancelled.len(), 2, "{listed}");
    assert_ne!(cancelled[0]["requestId"], cancelled[1]["requestId"]);
    assert!(cancelled[0]["requestId"].is_i64());
    assert!(
        cancelled[0]["reason"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert!(cancelled[1]["reason"].is_string());
}

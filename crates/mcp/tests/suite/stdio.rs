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
    assert!(
        matches!(reply, Err(UpstreamError::Unavailable { .. })),
        "{reply:?}"
    );
}

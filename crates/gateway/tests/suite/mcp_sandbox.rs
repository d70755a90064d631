//! Stdio MCP servers in their sandbox, seen through `/mcp` as a client sees them: the files a
//! server may read and write, the network it may reach, the environment it gets, a memory
//! limit it runs into (the gateway stays up and the server comes back), and a server whose
//! sandbox cannot be set up, refused rather than run unprotected. The server is
//! `tests/mcp/probe-server.mjs`, started with the `node` on `PATH`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The probe server's script.
fn probe_server() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mcp/probe-server.mjs");
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .display()
        .to_string()
}

/// An `mcp.servers` entry running the probe server, with `extra` keys (YAML flow mapping
/// entries, such as `network: false`).
fn server(name: &str, extra: &str) -> String {
    format!(
        "    {name}: {{command: node, args: [{script}], timeout: 20s{sep}{extra}}}\n",
        script = probe_server(),
        sep = if extra.is_empty() { "" } else { ", " },
    )
}

fn yaml(servers: &[String]) -> String {
    format!("mcp:\n  servers:\n{}", servers.concat())
}

/// Calls `tool` of `server` with `arguments` on the aggregated endpoint; the whole JSON-RPC
/// answer.
async fn call(gw: &TestGateway, server: &str, tool: &str, arguments: Value) -> Value {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": format!("{server}__{tool}"), "arguments": arguments},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The text of a tool's answer, and whether the tool reported an error.
fn outcome(answer: &Value) -> (String, bool) {
    let result = &answer["result"];
    assert!(result.is_object(), "a tool result: {answer}");
    (
        result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        result["isError"] == true,
    )
}

/// Calls until the server answers with a result (it may be starting or restarting).
async fn call_when_up(
    gw: &TestGateway,
    server: &str,
    tool: &str,
    arguments: Value,
    within: Duration,
) -> (String, bool) {
    let started = Instant::now();
    loop {
        let answer = call(gw, server, tool, arguments.clone()).await;
        if answer["result"].is_object() {
            return outcome(&answer);
        }
        assert!(
            started.elapsed() < within,
            "{server} did not answer within {within:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const START_WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_sandboxed_server_works_in_its_directory_and_cannot_read_outside_it() {
    let work = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("inside.txt"), "inside").unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "outside").unwrap();
    let cwd = format!("cwd: {}", work.path().display());
    let gw = TestGateway::start(&yaml(&[
        server("confined", &cwd),
        server("unconfined", &format!("{cwd}, sandbox: false")),
    ]))
    .await;

    // Inside its working directory: reads, and writes a file the test finds on disk.
    let (text, failed) = call_when_up(
        &gw,
        "confined",
        "read_file",
        json!({"path": "inside.txt"}),
        START_WITHIN,
    )
    .await;
    assert_eq!((text.as_str(), failed), ("inside", false));
    let (text, failed) = outcome(
        &call(
            &gw,
            "confined",
            "write_file",
            json!({"path": "written.txt", "text": "from the server"}),
        )
        .await,
    );
    assert!(!failed, "{text}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("written.txt")).unwrap(),
        "from the server"
    );

    // Outside it: refused by the kernel, reading and writing.
    let (text, failed) = outcome(
        &call(
            &gw,
            "confined",
            "read_file",
            json!({"path": secret.display().to_string()}),
        )
        .await,
    );
    assert!(failed && text.starts_with("EACCES"), "{text}");
    let (text, failed) = outcome(
        &call(
            &gw,
            "confined",
            "write_file",
            json!({"path": outside.path().join("dropped.txt").display().to_string(), "text": "x"}),
        )
        .await,
    );
    assert!(failed && text.starts_with("EACCES"), "{text}");
    assert!(!outside.path().join("dropped.txt").exists());

    // The same server with `sandbox: false` reads it: the refusal is the sandbox's.
    let (text, failed) = call_when_up(
        &gw,
        "unconfined",
        "read_file",
        json!({"path": secret.display().to_string()}),
        START_WITHIN,
    )
    .await;
    assert_eq!((text.as_str(), failed), ("outside", false));
}

#[tokio::test]
async fn without_network_a_server_cannot_reach_even_the_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut count = 0;
        while let Ok((_socket, _)) = listener.accept().await {
            count += 1;
        }
        count
    });
    let gw = TestGateway::start(&yaml(&[
        server("offline", "network: false"),
        server("online", "network: true"),
    ]))
    .await;

    let (text, failed) = call_when_up(
        &gw,
        "offline",
        "connect",
        json!({"port": port}),
        START_WITHIN,
    )
    .await;
    assert!(failed, "connected without network: {text}");
    assert!(
        ["ENETUNREACH", "EACCES", "ECONNREFUSED", "EPERM"]
            .iter()
            .any(|code| text.starts_with(code)),
        "{text}"
    );

    let (text, failed) = call_when_up(
        &gw,
        "online",
        "connect",
        json!({"port": port}),
        START_WITHIN,
    )
    .await;
    assert_eq!((text.as_str(), failed), ("connected", false));
    accepted.abort();
}

#[tokio::test]
async fn a_server_gets_its_entrys_environment_and_none_of_the_gateways() {
    let gw = TestGateway::start(&yaml(&[server(
        "probe",
        "env: {PROBE_SETTING: from-the-entry}",
    )]))
    .await;
    let (text, failed) = call_when_up(&gw, "probe", "env", json!({}), START_WITHIN).await;
    assert!(!failed, "{text}");
    let env: Value = serde_json::from_str(&text).unwrap();
    let env = env.as_object().unwrap();

    assert_eq!(env["PROBE_SETTING"], "from-the-entry");
    for basic in ["PATH", "HOME", "LANG", "TMPDIR"] {
        assert!(env.contains_key(basic), "{basic} is missing: {env:?}");
    }
    // Its home and temporary directories are in its own private directory.
    let private = std::env::temp_dir().join("portcullis-mcp-probe-");
    for dir in ["HOME", "TMPDIR"] {
        let value = env[dir].as_str().unwrap();
        assert!(
            value.starts_with(&*private.to_string_lossy()),
            "{dir}={value}"
        );
    }
    assert!(!env.contains_key("PORTCULLIS_MASTER_KEY"));
    let basic = |name: &str| {
        ["PATH", "HOME", "LANG", "TMPDIR", "PROBE_SETTING"].contains(&name)
            || name.starts_with("LC_")
    };
    let leaked: Vec<&String> = env.keys().filter(|name| !basic(name)).collect();
    assert!(leaked.is_empty(), "variables it must not see: {leaked:?}");
    // The test process has variables of its own (cargo sets them): none reached it.
    let own: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| !basic(name))
        .collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|name| !env.contains_key(name)));
}

#[tokio::test]
async fn a_server_over_its_memory_limit_fails_alone_and_comes_back() {
    let gw = TestGateway::start(&yaml(&[
        server("hungry", "limits: {memory: 128MiB}"),
        server("other", ""),
    ]))
    .await;
    let (_, failed) = call_when_up(&gw, "hungry", "env", json!({}), START_WITHIN).await;
    assert!(!failed);
    let first_pid = hungry_pid().await;

    // 512 MiB under a 128 MiB limit (Node 20 needs more than 64 MiB to start): the call
    // fails with a JSON-RPC error, in time.
    let asked = Instant::now();
    let answer = call(&gw, "hungry", "allocate", json!({"mb": 512})).await;
    assert!(answer["error"].is_object(), "{answer}");
    assert!(asked.elapsed() < Duration::from_secs(20));

    // The gateway and the other server carry on.
    let r = client().get(gw.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, failed) = call_when_up(&gw, "other", "env", json!({}), START_WITHIN).await;
    assert!(!failed);

    // The server is restarted, in a new process, and answers again.
    let (text, failed) =
        call_when_up(&gw, "hungry", "allocate", json!({"mb": 8}), START_WITHIN).await;
    assert_eq!((text.as_str(), failed), ("holding 8 MiB", false));
    assert_ne!(hungry_pid().await, first_pid);
}

/// The process id of the `hungry` server, read from the list of processes (the one running
/// the probe server with a 128 MiB data limit).
async fn hungry_pid() -> u32 {
    let script = probe_server();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&script) {
            continue;
        }
        let limits = std::fs::read_to_string(entry.path().join("limits")).unwrap_or_default();
        let data = limits
            .lines()
            .find(|l| l.starts_with("Max data size"))
            .unwrap_or_default();
        if data.contains(&(128u64 << 20).to_string()) {
            return pid;
        }
    }
    panic!("no probe server runs with a 128 MiB data limit");
}

#[tokio::test]
async fn a_server_whose_sandbox_cannot_be_set_up_is_not_started() {
    let gw = TestGateway::start(&yaml(&[
        server("refused", "read_paths: [/nonexistent/reference]"),
        server("other", ""),
    ]))
    .await;
    let (_, failed) = call_when_up(&gw, "other", "env", json!({}), START_WITHIN).await;
    assert!(!failed);
    let r = client()
        .post(gw.at("/mcp/refused"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("sandbox") && message.contains("/nonexistent/reference"),
        "{answer}"
    );

    // The admin list shows it failing, the other one ready.
    let listed: Value = client()
        .get(gw.at("/admin/mcp-servers"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = |name: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].clone())
    };
    assert_eq!(status("refused"), Some(json!("failing")), "{listed}");
    assert_eq!(status("other"), Some(json!("ready")), "{listed}");
}

/// `@modelcontextprotocol/server-filesystem` from npm, sandboxed without network: it lists
/// its allowed directory, writes and reads back in it through `/mcp`, and what lies outside is
/// refused.
#[tokio::test]
async fn the_reference_filesystem_server_works_in_its_sandbox() {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-filesystem");
    assert!(bin.exists(), "{}: run `npm ci` in tests/mcp", bin.display());
    let parent = tempfile::tempdir().unwrap();
    let work = parent.path().join("box");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(parent.path().join("secret.txt"), "outside").unwrap();
    let work = work.canonicalize().unwrap().display().to_string();
    // The operator trusts what this server returns (its own files): otherwise the listing's
    // output would taint the session and `write_file` (annotated destructive) be withheld.
    let gw = TestGateway::start(&format!(
        "mcp:\n  servers:\n    files: {{command: {bin}, args: [{work}], cwd: {work}, network: false, timeout: 20s}}\n\
         tool_policies:\n  - {{match: \"files__*\", output: trusted}}\n",
        bin = bin.display(),
    ))
    .await;

    let (text, failed) = call_when_up(
        &gw,
        "files",
        "list_allowed_directories",
        json!({}),
        START_WITHIN,
    )
    .await;
    assert!(!failed && text.contains(&work), "{text}");
    let note = format!("{work}/note.md");
    let (text, failed) = outcome(
        &call(
            &gw,
            "files",
            "write_file",
            json!({"path": note, "content": "# through the gateway"}),
        )
        .await,
    );
    assert!(!failed, "{text}");
    assert_eq!(
        std::fs::read_to_string(&note).unwrap(),
        "# through the gateway"
    );
    let (text, failed) =
        outcome(&call(&gw, "files", "read_text_file", json!({"path": note})).await);
    assert_eq!((text.as_str(), failed), ("# through the gateway", false));

    // Outside its directory: refused, and nothing of the file comes back.
    let answer = call(
        &gw,
        "files",
        "read_text_file",
        json!({"path": parent.path().join("secret.txt").display().to_string()}),
    )
    .await;
    assert!(!answer.to_string().contains("\"outside\""), "{answer}");
    let refused = answer["error"].is_object() || answer["result"]["isError"] == true;
    assert!(refused, "{answer}");
}

//! `portcullis serve` as an operator runs it: the real binary, started the way a service
//! manager starts it, poked with signals and flags, its output read the way a log collector
//! reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A running `portcullis serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("gw.db").display())
}

/// Starts `portcullis serve` with a clean environment plus `env`, stdout and stderr piped.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(args)
        .env_clear()
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    Server {
        child: command.spawn().unwrap(),
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn healthz(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_healthy(server: &mut Server) {
    let started = Instant::now();
    loop {
        if healthz(&server.url).await == Some(200) {
            return;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            let mut err = String::new();
            server
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("gateway exited ({status}) before answering /healthz:\n{err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the server with SIGTERM and returns what it printed (stdout, stderr).
fn stop(mut server: Server) -> (String, String) {
    signal(&server, "TERM");
    let started = Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    let mut err = String::new();
    server
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err)
}

fn signal(server: &Server, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_and_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let mut server = spawn(
        &[],
        &[
            ("PORTCULLIS_DATABASE_URL", &db),
            ("PORTCULLIS_MASTER_KEY", "serve-test-master-key-0123456789"),
        ],
    );
    wait_healthy(&mut server).await;
    for _ in 0..3 {
        signal(&server, "HUP");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "SIGHUP stopped the gateway"
        );
        assert_eq!(healthz(&server.url).await, Some(200));
    }
    let (_, err) = stop(server);
    assert!(err.contains("SIGHUP"), "{err}");
    assert!(err.contains("reloading the configuration"), "{err}");
}

#[tokio::test]
async fn a_generated_master_key_goes_to_a_private_file_not_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let mut server = spawn(&[], &[("PORTCULLIS_DATABASE_URL", &db)]);
    wait_healthy(&mut server).await;
    let url = server.url.clone();
    let key_file = dir.path().join("portcullis-master-key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("pk-master-"), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let status = reqwest::Client::new()
        .get(format!("{url}/admin/keys"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let (out, err) = stop(server);
    assert!(!out.contains(&key), "key on stdout:\n{out}");
    assert!(!err.contains(&key), "key on stderr:\n{err}");
    assert!(
        err.contains(&key_file.display().to_string()),
        "the file's path is not logged:\n{err}"
    );

    // A lost key is replaced by configuring one.
    let mut server = spawn(
        &[],
        &[
            ("PORTCULLIS_DATABASE_URL", &db),
            ("PORTCULLIS_MASTER_KEY", "replacement-master-key-0123456789"),
        ],
    );
    wait_healthy(&mut server).await;
    for (bearer, want) in [
        ("replacement-master-key-0123456789", 200),
        (key.as_str(), 401),
    ] {
        let status = reqwest::Client::new()
            .get(format!("{}/admin/keys", server.url))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, want);
    }
}

#[tokio::test]
async fn listen_flag_and_plain_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // PORTCULLIS_LISTEN (set by `spawn`) names another port: the flag wins.
    let mut server = spawn(
        &["--listen", &listen],
        &[
            ("PORTCULLIS_DATABASE_URL", &db),
            ("PORTCULLIS_MASTER_KEY", "serve-test-master-key-0123456789"),
        ],
    );
    server.url = format!("http://{listen}");
    wait_healthy(&mut server).await;
    let (_, err) = stop(server);
    assert!(err.contains(&listen), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "colour codes in a non-terminal log:\n{err}"
    );
}

#[test]
fn help_lists_the_environment_variables() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORTCULLIS_CONFIG",
        "PORTCULLIS_MASTER_KEY",
        "PORTCULLIS_DATABASE_URL",
        "PORTCULLIS_REDIS_URL",
        "PORTCULLIS_LISTEN",
        "PORTCULLIS_SECRET_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ] {
        assert!(help.contains(var), "{var} missing in\n{help}");
    }
}

async fn chat(url: &str, model: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("serve-test-master-key-0123456789")
        .json(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn access_lines_and_upstream_warnings_in_json_logs() {
    use portcullis_test_support::{MockUpstream, Reply};
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            concat!(
                "log:\n  access: on\n",
                "circuit_breaker: {{failures: 1, open_for: 1m}}\n",
                "providers:\n",
                "  openai:\n    api_key: ${{OPENAI_API_KEY}}\n    base_url: {base}\n",
                "  wrongkey:\n    kind: openai\n    api_key: sk-not-the-mock-key\n    base_url: {base}\n",
            ),
            base = mock.openai_base_url()
        ),
    )
    .unwrap();
    let db = sqlite_url(dir.path());
    let config = config.display().to_string();
    let mut server = spawn(
        &["--config", &config],
        &[
            ("PORTCULLIS_DATABASE_URL", &db),
            ("PORTCULLIS_MASTER_KEY", "serve-test-master-key-0123456789"),
            ("PORTCULLIS_LOG_FORMAT", "json"),
            ("OPENAI_API_KEY", "sk-mock-openai"),
        ],
    );
    wait_healthy(&mut server).await;
    assert_eq!(chat(&server.url, "openai/gpt-4o").await, 200);
    assert_eq!(chat(&server.url, "wrongkey/gpt-4o").await, 502);
    mock.push_reply(Reply::json(
        503,
        serde_json::json!({"error": {"message": "overloaded", "type": "server_error"}}),
    ));
    assert_eq!(chat(&server.url, "openai/gpt-4o").await, 503);
    // Routes without a request-log record get their line too (never the query).
    let r = reqwest::get(format!("{}/admin/logs?model=secret-filter", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, err) = stop(server);

    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "portcullis::access")
        .collect();
    let admin: Vec<&serde_json::Value> = access
        .iter()
        .copied()
        .filter(|l| l["fields"]["path"] == "/admin/logs")
        .collect();
    assert_eq!(admin.len(), 1, "{err}");
    assert_eq!(admin[0]["fields"]["method"], "GET");
    assert_eq!(admin[0]["fields"]["status"], 401);
    assert!(!err.contains("secret-filter"), "{err}");
    assert!(
        access.iter().any(|l| l["fields"]["path"] == "/healthz"),
        "{err}"
    );
    let access: Vec<&serde_json::Value> = access
        .into_iter()
        .filter(|l| l["fields"]["path"] == "/v1/chat/completions")
        .collect();
    assert_eq!(access.len(), 3, "{err}");
    let first = &access[0]["fields"];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/v1/chat/completions");
    assert_eq!(first["status"], 200);
    assert_eq!(first["model"], "gpt-4o");
    assert_eq!(first["provider"], "openai");
    assert_eq!(first["subject"], "master");
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(first["request_id"].as_str().unwrap().len(), 36);
    assert_eq!(access[1]["fields"]["status"], 502);
    assert_eq!(access[2]["fields"]["status"], 503);

    let warnings: Vec<String> = lines
        .iter()
        .filter(|l| l["level"] == "WARN")
        .map(|l| {
            l["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let all = warnings.join("\n");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`wrongkey` refused the gateway's credentials (401")),
        "{all}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("`openai` failed (503")),
        "{all}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("circuit breaker opened")),
        "{all}"
    );
    assert!(!err.contains("sk-not-the-mock-key"), "{err}");
    assert!(!err.contains("sk-mock-openai"), "{err}");
}

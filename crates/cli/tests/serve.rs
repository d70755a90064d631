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
async fn sighup_is_logged_and_ignored() {
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
    assert!(err.contains("reload is not supported yet"), "{err}");
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

//! Reloading the configuration of the real `portcullis serve`: a file replaced by a rename is
//! followed, `SIGHUP` re-reads it, an invalid file leaves the old configuration serving and is
//! logged with `portcullis check`'s messages, and a change to `listen` is refused with a
//! restart message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_test_support::MockUpstream;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const MASTER_KEY: &str = "reload-test-master-key-0123456789";

/// A running `portcullis serve` whose log goes to a file; killed when dropped.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The model that served a chat request to `model` (`x-portcullis-model`).
    async fn served_model(&self, model: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(MASTER_KEY)
            .timeout(Duration::from_secs(5))
            .json(&json!({"model": model, "max_tokens": 8,
                          "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", self.log());
        r.headers()["x-portcullis-model"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Waits, up to `limit`, until `smart` is served by `model`.
    async fn wait_for_model(&self, model: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            if self.served_model("smart").await == model {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "`smart` not served by {model} within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits, up to `limit`, until the log contains `text`.
    async fn wait_for_log(&self, text: &str, limit: Duration) {
        let started = Instant::now();
        while !self.log().contains(text) {
            assert!(
                started.elapsed() < limit,
                "the log did not show {text:?} within {limit:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration file: `smart` served by `model`, listening on `port`.
fn config_text(dir: &Path, mock: &MockUpstream, port: u16, model: &str) -> String {
    format!(
        r#"listen: "127.0.0.1:{port}"
master_key: {MASTER_KEY}
database: {{url: "sqlite://{db}?mode=rwc"}}
providers:
  openai:
    api_key: sk-mock-openai
    base_url: {base}
routes:
  smart:
    targets: [openai/{model}]
"#,
        db = dir.join("gw.db").display(),
        base = mock.openai_base_url(),
    )
}

/// Replaces `path` by a new file renamed over it, as editors save.
fn replace_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn the_file_is_followed_across_renames_and_sighup_and_bad_files_change_nothing() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("conf");
    let elsewhere = dir.path().join("data");
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let port = free_port();
    // The configuration is a symlink to a file in another directory.
    let target = elsewhere.join("v1.yaml");
    std::fs::write(&target, config_text(dir.path(), &mock, port, "gpt-4o")).unwrap();
    let path = watched.join("config.yaml");
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let log = dir.path().join("serve.log");
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .env("PORTCULLIS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    server
        .wait_for_log("portcullis is listening", Duration::from_secs(20))
        .await;
    assert_eq!(server.served_model("smart").await, "gpt-4o");

    // SIGHUP applies a re-read configuration within 3 s.
    std::fs::write(&target, config_text(dir.path(), &mock, port, "gpt-4o-mini")).unwrap();
    server.signal("HUP");
    server
        .wait_for_model("gpt-4o-mini", Duration::from_secs(3))
        .await;
    server
        .wait_for_log("configuration reloaded: routes", Duration::from_secs(3))
        .await;

    // Editing the symlink's target in place is applied without a signal.
    std::fs::write(&target, config_text(dir.path(), &mock, port, "gpt-4o")).unwrap();
    server
        .wait_for_model("gpt-4o", Duration::from_secs(5))
        .await;

    // A file renamed over the old one is applied within 5 s.
    replace_by_rename(&path, &config_text(dir.path(), &mock, port, "gpt-4.1"));
    server
        .wait_for_model("gpt-4.1", Duration::from_secs(5))
        .await;

    // An invalid file changes nothing and is logged with `portcullis check`'s messages.
    let invalid = format!(
        "{}unknown_block: 1\nserver: {{max_request_body_bytes: lots}}\n",
        config_text(dir.path(), &mock, port, "gpt-4o")
    );
    replace_by_rename(&path, &invalid);
    let check = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert!(!check.status.success());
    let check_err = String::from_utf8(check.stderr).unwrap();
    let check_lines: Vec<&str> = check_err.lines().filter(|l| !l.is_empty()).collect();
    assert!(check_lines.len() >= 2, "{check_err}");
    for line in &check_lines {
        server.wait_for_log(line, Duration::from_secs(5)).await;
    }
    assert_eq!(server.served_model("smart").await, "gpt-4.1");

    // A change to `listen` is refused with a restart message; the rest applies.
    let other_port = free_port();
    replace_by_rename(&path, &config_text(dir.path(), &mock, other_port, "gpt-4o"));
    server
        .wait_for_model("gpt-4o", Duration::from_secs(5))
        .await;
    server
        .wait_for_log("need a restart: listen", Duration::from_secs(5))
        .await;
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{other_port}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err(),
        "nothing listens on the new address"
    );

    let log = server.log();
    assert!(!log.contains("sk-mock-openai"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

//! `portcullis keys` as an operator uses it: a key created from the command line works against
//! a running `portcullis serve` on the same database, `keys list` never shows secrets, and
//! `keys revoke` stops the key on the running gateway within its poll interval; a key's tool
//! lists (`--tools`, `--tools-denied`) are taken repeated and a bad glob is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_test_support::MockUpstream;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn keys(db: &str, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .env_clear()
        .env("PORTCULLIS_DATABASE_URL", db)
        .env("PORTCULLIS_MASTER_KEY", "cli-test-master-key-0123456789")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn chat(url: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn keys_created_and_revoked_from_the_cli_govern_a_running_gateway() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());

    let created = keys(
        &db,
        &[
            "create",
            "--name",
            "ci",
            "--models",
            "gpt-4o,openai/*",
            "--rpm",
            "100",
        ],
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pk-"));

    let listed = keys(&db, &["list"]);
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret));
    let cli_view = listed["data"][0].clone();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = Server(
        Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("PORTCULLIS_DATABASE_URL", &db)
            .env("PORTCULLIS_MASTER_KEY", "cli-test-master-key-0123456789")
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("OPENAI_API_KEY", "sk-mock-openai")
            .env("OPENAI_BASE_URL", mock.openai_base_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    loop {
        let status = chat(&url, &secret).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gateway did not come up ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CLI shows a key exactly as the admin API does.
    let api: Value = reqwest::Client::new()
        .get(format!("{url}/admin/keys"))
        .bearer_auth("cli-test-master-key-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_view = api["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    for (field, value) in cli_view.as_object().unwrap() {
        assert_eq!(&api_view[field], value, "`{field}` differs from the API's");
    }
    assert_eq!(cli_view["status"], "active");
    assert!(
        cli_view["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{cli_view}"
    );

    let revoked = keys(&db, &["revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    let started = Instant::now();
    loop {
        if chat(&url, &secret).await == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        keys(&db, &["list", "--all"])["data"][0]["status"],
        "revoked"
    );
}

#[test]
fn keys_create_takes_repeated_tool_globs_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());

    let created = keys(
        &db,
        &[
            "create",
            "--name",
            "mcp",
            "--tools",
            "github__*",
            "--tools",
            "fs__read_{file,dir}",
            "--tools-denied",
            "fs__read_dir",
            "--tools-denied",
            "shell_*",
        ],
    );
    assert_eq!(
        created["tools"],
        json!(["github__*", "fs__read_{file,dir}"])
    );
    assert_eq!(created["tools_denied"], json!(["fs__read_dir", "shell_*"]));
    let plain = keys(&db, &["create", "--name", "plain"]);
    assert_eq!(plain["tools"], Value::Null);
    assert_eq!(plain["tools_denied"], Value::Null);
    let listed = keys(&db, &["list"]);
    let mcp = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .unwrap();
    assert_eq!(mcp["tools"], created["tools"]);
    assert_eq!(mcp["tools_denied"], created["tools_denied"]);

    for (flag, field) in [("--tools", "tools"), ("--tools-denied", "tools_denied")] {
        let out = Command::new(BIN)
            .args([
                "keys",
                "create",
                "--name",
                "bad",
                flag,
                "ok__*",
                flag,
                "fs__[read",
            ])
            .env_clear()
            .env("PORTCULLIS_DATABASE_URL", &db)
            .env("PORTCULLIS_MASTER_KEY", "cli-test-master-key-0123456789")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "`{field}[1]` is not a valid glob (`fs__[read`): unclosed character class"
            )),
            "{flag}: {err}"
        );
    }
    assert_eq!(keys(&db, &["list"])["data"].as_array().unwrap().len(), 2);
}

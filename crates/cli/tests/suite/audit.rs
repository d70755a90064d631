//! The decision audit as an operator checks it: the real `portcullis serve` in front of the
//! real `@modelcontextprotocol/server-everything`, MCP tool calls over HTTP, the records read
//! through `GET /admin/audit` (filters, pages), then `portcullis audit verify` run on the
//! database as the gateway left it (exit 0) and after someone changed a record, deleted one or
//! swapped two in SQLite (exit 1, naming the record).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const MASTER_KEY: &str = "audit-master-key-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn everything_bin() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in tests/mcp",
        path.display()
    );
    path.display().to_string()
}

/// `portcullis audit verify` on `config`: (exit code, stdout).
fn verify(config: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .env_clear()
        .env("PORTCULLIS_CONFIG", config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Runs Python's sqlite3 on `db`: `script` sees `db` (a connection) and prints its answer.
fn sql(db: &Path, script: &str) -> String {
    let program = format!(
        "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\n{script}\ndb.commit()\ndb.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn call(url: &str, session: &str, tool: &str, message: &str) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {"message": message}}});
    let r = reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("x-portcullis-session-id", session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn audit(url: &str, query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{url}/admin/audit?{query}"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tool_calls_are_audited_and_verify_finds_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gw.db");
    let config = dir.path().join("portcullis.yaml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmaster_key: {MASTER_KEY}\n\
             database:\n  url: \"sqlite://{db}?mode=rwc\"\n\
             audit:\n  checkpoint_every: 2\n\
             mcp:\n  servers:\n    everything:\n      command: {bin}\n      args: [stdio]\n      timeout: 20s\n",
            db = db.display(),
            bin = everything_bin()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORTCULLIS_CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{url}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not come up"
        );
        assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for i in 0..3 {
        let answer = call(&url, "conv-a", "everything__echo", &format!("a{i}")).await;
        assert!(answer["result"].is_object(), "{answer}");
    }
    call(&url, "conv-b", "everything__echo", "b0").await;
    let refused = call(&url, "conv-b", "everything__no_such_tool", "b1").await;
    assert!(refused["error"].is_object(), "{refused}");

    // The writer stores records a moment after the calls: wait for all five.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = audit(&url, "").await;
        assert_eq!(status, 200, "{page}");
        if page["data"].as_array().unwrap().len() == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "audit records missing: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The records, by session, a page at a time.
    let (status, first) = audit(&url, "session=conv-a&limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = audit(&url, &format!("session=conv-a&limit=2&cursor={cursor}")).await;
    let rest = second["data"].as_array().unwrap();
    assert_eq!(rest.len(), 1, "{second}");
    assert!(second["next_cursor"].is_null());
    let record = &first["data"][0];
    assert_eq!(record["path"], "mcp");
    assert_eq!(record["session"], "conv-a");
    assert_eq!(record["identity"]["auth_method"], "master_key");
    assert_eq!(record["calls"][0]["tool"], "everything__echo");
    assert_eq!(record["calls"][0]["decision"], "allow");
    assert_eq!(
        record["calls"][0]["arguments_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(record["tools_withheld"].as_array().unwrap().is_empty());
    let (_, b) = audit(&url, "session=conv-b").await;
    let decisions: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["calls"][0]["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["refused", "allow"], "{b}");
    assert_eq!(b["data"][0]["calls"][0]["rule"], "access");
    // Filters the API refuses.
    for bad in [
        "since=yesterday",
        "limit=0",
        "limit=5000",
        "cursor=abc",
        "colour=red",
    ] {
        assert_eq!(audit(&url, bad).await.0, 400, "{bad}");
    }
    let (_, none) = audit(&url, "since=2999-01-01T00:00:00Z").await;
    assert!(none["data"].as_array().unwrap().is_empty());
    // Stopped gracefully: everything queued is written and the chain's end is checkpointed.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(15), "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (code, out) = verify(&config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("5 record(s)"), "{out}");
    // `--config` is taken before or after the subcommand.
    for args in [
        ["audit", "--config", config.to_str().unwrap(), "verify"],
        ["audit", "verify", "--config", config.to_str().unwrap()],
    ] {
        let out = Command::new(BIN).args(args).env_clear().output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    sql(&db, "db.execute('PRAGMA wal_checkpoint(TRUNCATE)')");
    let pristine = std::fs::read(&db).unwrap();
    let restore = || std::fs::write(&db, &pristine).unwrap();
    let id_at = |seq: u32| {
        sql(
            &db,
            &format!(
                "print(db.execute('SELECT id FROM audit_records WHERE seq = {seq}').fetchone()[0])"
            ),
        )
    };

    // A field changed (the session, in the sealed body).
    let changed = id_at(2);
    sql(
        &db,
        &format!(
            "db.execute(\"UPDATE audit_records SET body = replace(body, 'conv-a', 'conv-z') WHERE id = '{changed}'\")"
        ),
    );
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("first bad record: {changed}")),
        "{out}"
    );
    restore();
    assert_eq!(verify(&config).0, 0);

    // A record deleted: the one removed is named.
    let removed = id_at(3);
    sql(
        &db,
        &format!("db.execute(\"DELETE FROM audit_records WHERE id = '{removed}'\")"),
    );
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("first bad record: {removed}")),
        "{out}"
    );
    restore();

    // The last record deleted: the checkpoint taken at shutdown names it.
    let last = id_at(5);
    sql(
        &db,
        &format!("db.execute(\"DELETE FROM audit_records WHERE id = '{last}'\")"),
    );
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("first bad record: {last}")), "{out}");
    restore();

    // Two records swapped: the one now out of place is named.
    let moved = id_at(4);
    sql(
        &db,
        "db.execute('UPDATE audit_records SET seq = -1 WHERE seq = 3')\n\
         db.execute('UPDATE audit_records SET seq = 3 WHERE seq = 4')\n\
         db.execute('UPDATE audit_records SET seq = 4 WHERE seq = -1')",
    );
    let (code, out) = verify(&config);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("first bad record: {moved}")), "{out}");
}

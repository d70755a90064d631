//! `portcullis users|teams|provider-keys` and the database they open, as an operator runs
//! them: reads never create a database, and users, teams, memberships and stored provider keys
//! are managed without a running gateway, in the admin API's JSON shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn run(db: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PORTCULLIS_DATABASE_URL", db)
        .env("PORTCULLIS_SECRET_KEY", SECRET_KEY);
    for (k, v) in extra {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn ok(db: &str, args: &[&str], extra: &[(&str, &str)]) -> Value {
    let out = run(db, args, extra);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn read_commands_do_not_create_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.db");
    let db = format!("sqlite://{}?mode=rwc", file.display());
    for args in [
        &["keys", "list"][..],
        &["users", "list"],
        &["teams", "list"],
        &["provider-keys", "list"],
    ] {
        let out = run(&db, args, &[]);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(!file.exists(), "{args:?} created {}", file.display());
    }
    // A command that writes creates it, as `serve` does.
    ok(&db, &["teams", "create", "--name", "Red"], &[]);
    assert!(file.exists());
    assert_eq!(ok(&db, &["teams", "list"], &[])["data"][0]["id"], "red");
}

#[test]
fn users_teams_and_provider_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());

    let team = ok(&db, &["teams", "create", "--name", "Platform Team"], &[]);
    assert_eq!(team["id"], "platform-team");
    assert!(
        team["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    let user = ok(
        &db,
        &[
            "users",
            "create",
            "--email",
            "ada@example.com",
            "--role",
            "viewer",
        ],
        &[],
    );
    assert_eq!(user["id"], "ada@example.com");
    assert_eq!(user["role"], "viewer");
    assert_eq!(user["disabled"], false);

    let member = ok(
        &db,
        &["teams", "add-member", "platform-team", "ada@example.com"],
        &[],
    );
    assert_eq!(member["teams"], serde_json::json!(["platform-team"]));
    let teams = ok(&db, &["teams", "list"], &[]);
    assert_eq!(
        teams["data"][0]["members"],
        serde_json::json!(["ada@example.com"])
    );
    let removed = ok(
        &db,
        &["teams", "remove-member", "platform-team", "ada@example.com"],
        &[],
    );
    assert_eq!(removed["teams"], serde_json::json!([]));
    let out = run(
        &db,
        &["teams", "remove-member", "platform-team", "ada@example.com"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));

    let stored = ok(
        &db,
        &[
            "provider-keys",
            "create",
            "--provider",
            "openai",
            "--alias",
            "platform",
            "--team",
            "platform-team",
            "--key-env",
            "VENDOR_KEY",
        ],
        &[("VENDOR_KEY", "sk-vendor-secret-1234")],
    );
    assert_eq!(stored["owner"]["team"], "platform-team");
    assert_eq!(stored["hint"], "…1234");
    let listed = ok(&db, &["provider-keys", "list"], &[]);
    assert_eq!(listed["data"][0]["alias"], "platform");
    assert!(!listed.to_string().contains("sk-vendor-secret"));
    let id = stored["id"].as_str().unwrap();
    ok(&db, &["provider-keys", "delete", id], &[]);
    assert_eq!(
        ok(&db, &["provider-keys", "list"], &[])["data"],
        serde_json::json!([])
    );

    let disabled = ok(&db, &["users", "disable", "ada@example.com"], &[]);
    assert_eq!(disabled["disabled"], true);
    assert!(
        disabled["disabled_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let users = ok(&db, &["users", "list"], &[]);
    assert_eq!(users["data"][0]["disabled"], true);
}

//! The table of MCP servers added through the admin API, on a real SQLite file and a real
//! PostgreSQL server: create (a taken name refused), replace (its creation time kept), delete,
//! and the tenancy version bumped by every change and only by a change.

use std::sync::Arc;

use portcullis_store::{McpServerRecord, McpServerStore, PostgresStore, SqliteStore, TenancyStore};
use portcullis_test_support::postgres::fresh_schema_url;

fn record(name: &str, config: &str, at: i64) -> McpServerRecord {
    McpServerRecord {
        name: name.to_owned(),
        config: config.to_owned(),
        sealed: Some("c2VhbGVk".to_owned()),
        created_ms: at,
        updated_ms: at,
    }
}

async fn exercise<S: McpServerStore + TenancyStore>(store: &S) {
    let v0 = store.version().await.unwrap();
    assert!(
        store
            .create_mcp_server(&record("b", r#"{"url":"http://b"}"#, 1))
            .await
            .unwrap()
    );
    assert!(
        store
            .create_mcp_server(&record("a", r#"{"command":"x"}"#, 2))
            .await
            .unwrap()
    );
    let v1 = store.version().await.unwrap();
    assert_eq!(v1, v0 + 2, "each change bumps the version");
    assert!(
        !store
            .create_mcp_server(&record("a", "{}", 3))
            .await
            .unwrap(),
        "a taken name"
    );
    assert_eq!(
        store.version().await.unwrap(),
        v1,
        "a refused change bumps nothing"
    );

    let names: Vec<String> = store
        .mcp_servers()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["a", "b"]);

    let mut changed = record("a", r#"{"command":"y"}"#, 9);
    changed.sealed = None;
    assert!(store.replace_mcp_server(&changed).await.unwrap());
    let a = store.mcp_server("a").await.unwrap().unwrap();
    assert_eq!(
        (a.config.as_str(), a.sealed, a.created_ms, a.updated_ms),
        (r#"{"command":"y"}"#, None, 2, 9)
    );
    assert!(
        !store
            .replace_mcp_server(&record("nobody", "{}", 9))
            .await
            .unwrap()
    );

    assert!(store.delete_mcp_server("a").await.unwrap());
    assert!(!store.delete_mcp_server("a").await.unwrap());
    assert!(store.mcp_server("a").await.unwrap().is_none());
    assert_eq!(store.version().await.unwrap(), v1 + 2);
}

#[tokio::test]
async fn mcp_servers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mcp.db").display());
    let store: Arc<SqliteStore> = SqliteStore::connect(&url, 4).await.unwrap();
    exercise(store.as_ref()).await;
}

#[tokio::test]
async fn mcp_servers_on_postgres() {
    let store: Arc<PostgresStore> = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    exercise(store.as_ref()).await;
}

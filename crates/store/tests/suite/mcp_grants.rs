//! The connect flows of upstream MCP OAuth (each taken once, expired ones refused and purged)
//! on both backends, and migration 0018 moving the tool pins of credential instances from the
//! credential's id to what it is for (its owner), so a rotated credential keeps them.

use portcullis_store::McpGrantStore;
use portcullis_store::{PostgresStore, SqliteStore};
use portcullis_test_support::postgres::fresh_schema_url;

async fn a_flow_is_taken_once(store: &dyn McpGrantStore) {
    let now = 1_000_000;
    store
        .begin_mcp_connect("flow-1", "ann", "gh", now + 600_000, now)
        .await
        .unwrap();
    // Only for its own user and server.
    assert!(
        !store
            .finish_mcp_connect("flow-1", "bob", "gh", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_mcp_connect("flow-1", "ann", "other", now)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_mcp_connect("flow-1", "ann", "gh", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_mcp_connect("flow-1", "ann", "gh", now)
            .await
            .unwrap(),
        "a flow completes once"
    );
    // An expired flow is not taken, and a later flow purges it.
    store
        .begin_mcp_connect("flow-2", "ann", "gh", now + 10, now)
        .await
        .unwrap();
    assert!(
        !store
            .finish_mcp_connect("flow-2", "ann", "gh", now + 11)
            .await
            .unwrap()
    );
    store
        .begin_mcp_connect("flow-3", "ann", "gh", now + 600_000, now + 20)
        .await
        .unwrap();
    assert!(
        store
            .finish_mcp_connect("flow-3", "ann", "gh", now + 20)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sqlite_connect_flows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flows.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    a_flow_is_taken_once(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_connect_flows() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    a_flow_is_taken_once(store.as_ref()).await;
}

#[tokio::test]
async fn migration_0018_moves_credential_pin_scopes_to_their_owners() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // A database as 0017 left it: pins of a live credential, of a deleted one, of a user's
    // OAuth instance and of the shared connection.
    let mut migrator = sqlx::migrate::Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"),
    )
    .await
    .unwrap();
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 18)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO mcp_credentials (id, server, owner_kind, owner_id, kind, sealed, names, \
         created_ms) VALUES ('mcpcred_1', 'gh', 'user', 'ann', 'headers', 'x', '[]', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for scope in ["", "mcpcred_1", "mcpcred_gone", "oauth:bob"] {
        sqlx::query(
            "INSERT INTO mcp_tool_pins (server, scope, tool, pinned_fingerprint, \
             pinned_definition, current_fingerprint, current_definition, first_seen_ms, \
             seen_ms) VALUES ('gh', $1, 'echo', 'f', '{}', 'f', '{}', 1, 1)",
        )
        .bind(scope)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let store = SqliteStore::connect(&url, 1).await.unwrap();
    let mut scopes: Vec<String> = portcullis_store::McpPinStore::tool_pins(&*store, None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.scope)
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["", "oauth:bob", "user:ann"]);
}

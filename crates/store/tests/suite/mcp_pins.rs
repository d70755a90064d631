//! MCP tool pins on a real SQLite file and a real PostgreSQL server: first sight pins, a
//! changed definition is recorded beside the pin, approval moves the pin only to the
//! definition reviewed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_store::McpPinStore;
use portcullis_store::mcp_pins::{Approval, SeenTool};
use portcullis_store::{PostgresStore, SqliteStore};
use portcullis_test_support::postgres::fresh_schema_url;

const NOW: i64 = 1_700_000_000_000;

fn seen<'a>(tool: &'a str, fingerprint: &'a str, definition: &'a str) -> SeenTool<'a> {
    SeenTool {
        tool,
        fingerprint,
        definition,
    }
}

async fn pins_follow_changes_and_approvals(store: &dyn McpPinStore) {
    let pinned = store
        .observe_tools("files", &[seen("read", "aa", r#"{"name":"read"}"#)], NOW)
        .await
        .unwrap();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].fingerprint, "aa");
    // The definition changes: the pin stays, the change is recorded with its time.
    let pinned = store
        .observe_tools(
            "files",
            &[seen("read", "bb", "{\"name\":\"read\",\"x\":\"\0\"}")],
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(pinned[0].fingerprint, "aa");
    let pins = store.tool_pins(Some("files")).await.unwrap();
    assert!(pins[0].changed());
    assert_eq!(pins[0].changed_ms, Some(NOW + 1));
    assert_eq!(
        pins[0].current_definition,
        "{\"name\":\"read\",\"x\":\"\0\"}"
    );
    // Seen again unchanged: still changed since the first time.
    store
        .observe_tools("files", &[seen("read", "bb", "{}")], NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store.tool_pins(None).await.unwrap()[0].changed_ms,
        Some(NOW + 1)
    );
    // Approving what is no longer listed is refused; unknown tools are unknown.
    assert_eq!(
        store
            .approve_tool("files", "read", "aa", NOW + 3)
            .await
            .unwrap(),
        Approval::Stale {
            current_fingerprint: "bb".into()
        }
    );
    assert_eq!(
        store
            .approve_tool("files", "write", "bb", NOW + 3)
            .await
            .unwrap(),
        Approval::Unknown
    );
    let Approval::Approved(pin) = store
        .approve_tool("files", "read", "bb", NOW + 3)
        .await
        .unwrap()
    else {
        panic!("not approved");
    };
    assert!(!pin.changed());
    assert_eq!(pin.changed_ms, None);
    assert_eq!(pin.approved_ms, Some(NOW + 3));
    assert_eq!(pin.first_seen_ms, NOW);
    let all = store.pinned_tools().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].fingerprint, "bb");
    // Changing back to the old definition is a change too.
    store
        .observe_tools("files", &[seen("read", "aa", "{}")], NOW + 4)
        .await
        .unwrap();
    assert!(store.tool_pins(None).await.unwrap()[0].changed());
}

#[tokio::test]
async fn sqlite_pins() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pins.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    pins_follow_changes_and_approvals(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_pins() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    pins_follow_changes_and_approvals(store.as_ref()).await;
}

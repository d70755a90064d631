//! MCP tool pins on a real SQLite file and a real PostgreSQL server: first sight pins, a
//! changed definition is recorded beside the pin, approval moves the pin only to the
//! definition reviewed; each credential scope keeps its own pins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_store::McpPinStore;
use portcullis_store::mcp_pins::{Approval, SHARED, SeenTool};
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
        .observe_tools(
            "files",
            SHARED,
            &[seen("read", "aa", r#"{"name":"read"}"#)],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].fingerprint, "aa");
    // The definition changes: the pin stays, the change is recorded with its time.
    let pinned = store
        .observe_tools(
            "files",
            SHARED,
            &[seen("read", "bb", "{\"name\":\"read\",\"x\":\"\0\"}")],
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(pinned[0].fingerprint, "aa");
    let pins = store.tool_pins(Some("files"), None).await.unwrap();
    assert!(pins[0].changed());
    assert_eq!(pins[0].changed_ms, Some(NOW + 1));
    assert_eq!(
        pins[0].current_definition,
        "{\"name\":\"read\",\"x\":\"\0\"}"
    );
    // Seen again unchanged: still changed since the first time.
    store
        .observe_tools("files", SHARED, &[seen("read", "bb", "{}")], NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store.tool_pins(None, None).await.unwrap()[0].changed_ms,
        Some(NOW + 1)
    );
    // Approving what is no longer listed is refused; unknown tools are unknown.
    assert_eq!(
        store
            .approve_tool("files", SHARED, "read", "aa", NOW + 3)
            .await
            .unwrap(),
        Approval::Stale {
            current_fingerprint: "bb".into()
        }
    );
    assert_eq!(
        store
            .approve_tool("files", SHARED, "write", "bb", NOW + 3)
            .await
            .unwrap(),
        Approval::Unknown
    );
    let Approval::Approved(pin) = store
        .approve_tool("files", SHARED, "read", "bb", NOW + 3)
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
        .observe_tools("files", SHARED, &[seen("read", "aa", "{}")], NOW + 4)
        .await
        .unwrap();
    assert!(store.tool_pins(None, None).await.unwrap()[0].changed());
}

async fn each_scope_keeps_its_own_pins(store: &dyn McpPinStore) {
    // The shared connection and a credential's instance list different definitions of `read`:
    // each is pinned in its own scope, neither a change of the other.
    let shared = store
        .observe_tools("docs", SHARED, &[seen("read", "aa", "{}")], NOW)
        .await
        .unwrap();
    let own = store
        .observe_tools("docs", "cred-1", &[seen("read", "bb", "{}")], NOW)
        .await
        .unwrap();
    assert_eq!((shared.len(), shared[0].fingerprint.as_str()), (1, "aa"));
    assert_eq!(own.len(), 1);
    assert_eq!(
        (own[0].scope.as_str(), own[0].fingerprint.as_str()),
        ("cred-1", "bb")
    );
    assert!(
        store
            .tool_pins(Some("docs"), None)
            .await
            .unwrap()
            .iter()
            .all(|p| !p.changed())
    );
    // The instance's definition changes: only its scope records it.
    store
        .observe_tools("docs", "cred-1", &[seen("read", "cc", "{}")], NOW + 1)
        .await
        .unwrap();
    let changed = store.tool_pins(Some("docs"), Some("cred-1")).await.unwrap();
    assert_eq!(changed.len(), 1);
    assert!(changed[0].changed());
    let shared = store.tool_pins(Some("docs"), Some(SHARED)).await.unwrap();
    assert_eq!(shared.len(), 1);
    assert!(!shared[0].changed());
    // Approval is per scope: the shared scope has no `cc` to approve.
    assert_eq!(
        store
            .approve_tool("docs", SHARED, "read", "cc", NOW + 2)
            .await
            .unwrap(),
        Approval::Stale {
            current_fingerprint: "aa".into()
        }
    );
    assert_eq!(
        store
            .approve_tool("docs", "cred-2", "read", "cc", NOW + 2)
            .await
            .unwrap(),
        Approval::Unknown
    );
    let Approval::Approved(pin) = store
        .approve_tool("docs", "cred-1", "read", "cc", NOW + 2)
        .await
        .unwrap()
    else {
        panic!("not approved");
    };
    assert_eq!(
        (pin.scope.as_str(), pin.pinned_fingerprint.as_str()),
        ("cred-1", "cc")
    );
    let mut all = store.pinned_tools().await.unwrap();
    all.retain(|p| p.server == "docs");
    all.sort_by(|a, b| a.scope.cmp(&b.scope));
    let all: Vec<(&str, &str)> = all
        .iter()
        .map(|p| (p.scope.as_str(), p.fingerprint.as_str()))
        .collect();
    assert_eq!(all, [(SHARED, "aa"), ("cred-1", "cc")]);
    // The credential goes: its pins go with it, the shared ones stay.
    assert_eq!(store.forget_tool_pins("docs", SHARED).await.unwrap(), 0);
    assert_eq!(store.forget_tool_pins("docs", "cred-1").await.unwrap(), 1);
    let left = store.tool_pins(Some("docs"), None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].scope, SHARED);
}

#[tokio::test]
async fn sqlite_pins() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("pins.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    pins_follow_changes_and_approvals(store.as_ref()).await;
    each_scope_keeps_its_own_pins(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_pins() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    pins_follow_changes_and_approvals(store.as_ref()).await;
    each_scope_keeps_its_own_pins(store.as_ref()).await;
}

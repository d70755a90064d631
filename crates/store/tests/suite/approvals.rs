//! Held tool calls on both backends: a decision is taken once (the second is refused), an
//! approval is used once, expiry closes pending and approved ones, the request path reads only
//! a session's open approvals for its caller, and pages are newest first by id; a call already
//! pending is held under its approval, not twice; retention deletes only what is done with.

use portcullis_store::{
    ApprovalQuery, ApprovalRecord, ApprovalStatus, ApprovalStore, HeldApproval, PostgresStore,
    SqliteStore,
};
use portcullis_test_support::postgres::fresh_schema_url;

fn held(id: &str, session: &str, subject: &str, expires_ms: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.to_owned(),
        tool: "send_money".to_owned(),
        arguments: r#"{"iban":"DE00","amount":10}"#.to_owned(),
        arguments_truncated: false,
        arguments_sha256: "ab".repeat(32),
        subject: subject.to_owned(),
        identity: format!(r#"{{"subject":"{subject}"}}"#),
        session: session.to_owned(),
        status: "pending".to_owned(),
        reason: "rule 0 (send_money): tainted by read_mail".to_owned(),
        created_ms: 1_000,
        expires_ms,
        decided_ms: None,
        decided_by: None,
        used_ms: None,
    }
}

async fn decisions_and_use_are_taken_once(store: &dyn ApprovalStore) {
    let now = 2_000;
    let mut mail = held("apr_2", "s1", "k1", 10_000);
    mail.tool = "send_mail".to_owned();
    for record in [
        held("apr_1", "s1", "k1", 10_000),
        mail.clone(),
        held("apr_3", "s1", "k2", 10_000),
        held("apr_4", "s2", "k1", 3_000),
    ] {
        assert!(store.hold_approval(&record).await.unwrap().created);
    }
    assert_eq!(
        store.approval("apr_1").await.unwrap().unwrap(),
        held("apr_1", "s1", "k1", 10_000)
    );
    assert_eq!(store.approval("apr_2").await.unwrap().unwrap(), mail);
    assert!(store.approval("apr_nope").await.unwrap().is_none());

    assert!(
        store
            .decide_approval("apr_1", ApprovalStatus::Approved, "admin", now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .decide_approval("apr_1", ApprovalStatus::Denied, "admin", now)
            .await
            .unwrap(),
        "a second decision is refused"
    );
    assert!(
        store
            .decide_approval("apr_2", ApprovalStatus::Denied, "root", now)
            .await
            .unwrap()
    );
    let one = store.approval("apr_1").await.unwrap().unwrap();
    assert_eq!(
        (
            one.status.as_str(),
            one.decided_ms,
            one.decided_by.as_deref()
        ),
        ("approved", Some(now), Some("admin"))
    );

    // The request path sees its own session and caller only.
    let open = store.open_approvals("s1", "k1", now).await.unwrap();
    let seen: Vec<(&str, &str)> = open
        .iter()
        .map(|o| (o.id.as_str(), o.status.as_str()))
        .collect();
    assert_eq!(seen, [("apr_1", "approved"), ("apr_2", "denied")]);

    assert!(store.use_approval("apr_1", now).await.unwrap());
    assert!(
        !store.use_approval("apr_1", now).await.unwrap(),
        "used once"
    );
    assert!(
        !store.use_approval("apr_2", now).await.unwrap(),
        "a denied one is never used"
    );
    assert!(
        store
            .open_approvals("s1", "k1", now)
            .await
            .unwrap()
            .iter()
            .all(|o| o.id != "apr_1")
    );

    // Past its expiry, a pending one can no longer be decided, and the sweep marks it.
    assert!(
        !store
            .decide_approval("apr_4", ApprovalStatus::Approved, "admin", 3_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .open_approvals("s2", "k1", 3_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.expire_approvals(3_000).await.unwrap(), 1);
    assert_eq!(
        store.approval("apr_4").await.unwrap().unwrap().status,
        "expired"
    );

    // Pages, newest first, filtered.
    let q = |status, before: Option<&str>, limit| ApprovalQuery {
        status,
        session: None,
        before_id: before.map(str::to_owned),
        limit,
    };
    let ids = |rows: Vec<ApprovalRecord>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.approvals(&q(None, None, 2)).await.unwrap()),
        ["apr_4", "apr_3"]
    );
    assert_eq!(
        ids(store.approvals(&q(None, Some("apr_3"), 10)).await.unwrap()),
        ["apr_2", "apr_1"]
    );
    assert_eq!(
        ids(store
            .approvals(&q(Some(ApprovalStatus::Pending), None, 10))
            .await
            .unwrap()),
        ["apr_3"]
    );
    let by_session = ApprovalQuery {
        session: Some("s2".to_owned()),
        limit: 10,
        ..ApprovalQuery::default()
    };
    assert_eq!(ids(store.approvals(&by_session).await.unwrap()), ["apr_4"]);
}

async fn one_pending_per_call_and_retention(store: &dyn ApprovalStore) {
    // The same call held again while pending: the first approval, nothing written.
    let first = store
        .hold_approval(&held("apr_a1", "s", "k", 10_000))
        .await
        .unwrap();
    assert_eq!(
        first,
        HeldApproval {
            id: "apr_a1".to_owned(),
            expires_ms: 10_000,
            created: true
        }
    );
    let mut again = held("apr_a2", "s", "k", 20_000);
    again.created_ms = 2_000;
    let joined = store.hold_approval(&again).await.unwrap();
    assert_eq!(
        (joined.id.as_str(), joined.expires_ms, joined.created),
        ("apr_a1", 10_000, false)
    );
    assert!(store.approval("apr_a2").await.unwrap().is_none());
    // Another caller's, session's or arguments' call is its own.
    let mut other = held("apr_a3", "s", "k", 10_000);
    other.arguments_sha256 = "cd".repeat(32);
    assert!(store.hold_approval(&other).await.unwrap().created);
    assert!(
        store
            .hold_approval(&held("apr_a4", "s", "k2", 10_000))
            .await
            .unwrap()
            .created
    );
    // Once decided, the call can be held anew.
    assert!(
        store
            .decide_approval("apr_a1", ApprovalStatus::Denied, "admin", 3_000)
            .await
            .unwrap()
    );
    assert!(store.hold_approval(&again).await.unwrap().created);
    // A pending row past its expiry, not swept yet, no longer holds the call.
    let mut late = held("apr_a5", "s", "k", 25_000);
    late.created_ms = 21_000;
    assert!(store.hold_approval(&late).await.unwrap().created);
    assert_eq!(
        store.approval("apr_a2").await.unwrap().unwrap().status,
        "expired"
    );

    // Retention: at 30 000 with a cutoff of 26 000, what was done with by then goes. Each is
    // held at 1 000 and, unless left pending, decided at 3 000 (and used at 4 000).
    use ApprovalStatus::{Approved, Denied, Pending, Used};
    for (id, tool, expires, status) in [
        // Used at 4 000: goes.
        ("apr_r1", "used", 50_000, Used),
        // Denied, expired at 29 000: goes. Denied, not expired at 30 000: stays.
        ("apr_r2", "denied", 29_000, Denied),
        ("apr_r3", "denied_open", 40_000, Denied),
        // Approved, not used, expired at 20 000: goes; approved and still valid: stays.
        ("apr_r4", "approved_late", 20_000, Approved),
        ("apr_r5", "approved", 40_000, Approved),
        // Pending and expired (unswept) at 20 000: goes; expired at 27 000: not long enough
        // ago; pending and valid: stays.
        ("apr_r6", "pending_late", 20_000, Pending),
        ("apr_r7", "pending_recent", 27_000, Pending),
        ("apr_r8", "pending", 40_000, Pending),
    ] {
        let mut r = held(id, "r", "k", expires);
        r.tool = tool.to_owned();
        assert!(store.hold_approval(&r).await.unwrap().created, "{id}");
        let decision = if status == Used { Approved } else { status };
        if decision != Pending {
            assert!(
                store
                    .decide_approval(id, decision, "admin", 3_000)
                    .await
                    .unwrap(),
                "{id}"
            );
        }
        if status == Used {
            assert!(store.use_approval(id, 4_000).await.unwrap());
        }
    }
    // Four of these, and the five of session `s` (expired by 25 000, or denied and expired).
    assert_eq!(
        store.delete_done_approvals(26_000, 30_000).await.unwrap(),
        9
    );
    assert_eq!(
        ids_in(store, "r").await,
        ["apr_r3", "apr_r5", "apr_r7", "apr_r8"]
    );
    // Pending and approved rows that have not expired stay whatever the cutoff.
    store.delete_done_approvals(30_000, 30_000).await.unwrap();
    assert_eq!(ids_in(store, "r").await, ["apr_r3", "apr_r5", "apr_r8"]);
}

/// The ids of the approvals held in `session`, sorted.
async fn ids_in(store: &dyn ApprovalStore, session: &str) -> Vec<String> {
    let page = ApprovalQuery {
        session: Some(session.to_owned()),
        limit: 100,
        ..ApprovalQuery::default()
    };
    let mut ids: Vec<String> = store
        .approvals(&page)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

/// Pending duplicates of one call, as recorded before migration 0023, then that migration:
/// the oldest stays pending, the others are expired, and the index is in place.
macro_rules! migration_0023_keeps_the_oldest {
    ($store:expr, $migration:literal) => {{
        let store = $store;
        let pool = store.pool();
        sqlx::raw_sql("DROP INDEX approvals_one_pending")
            .execute(pool)
            .await
            .unwrap();
        let digest = "ab".repeat(32);
        for (id, subject, status) in [
            ("apr_m2", "k", "pending"),
            ("apr_m1", "k", "pending"),
            ("apr_m3", "k", "pending"),
            ("apr_m0", "k", "denied"),
            ("apr_m9", "k2", "pending"),
        ] {
            sqlx::raw_sql(&format!(
                "INSERT INTO approvals (id, tool, arguments, arguments_sha256, subject, \
                 identity, session, status, reason, created_ms, expires_ms) VALUES \
                 ('{id}', 'send_money', '{{}}', '{digest}', '{subject}', '{{}}', 'm', \
                 '{status}', 'held', 1000, 10000)"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        sqlx::raw_sql(include_str!(concat!("../../migrations/", $migration)))
            .execute(pool)
            .await
            .unwrap();
        let status =
            |id: &'static str| async move { store.approval(id).await.unwrap().unwrap().status };
        assert_eq!(status("apr_m0").await, "denied");
        assert_eq!(status("apr_m1").await, "pending");
        assert_eq!(status("apr_m2").await, "expired");
        assert_eq!(status("apr_m3").await, "expired");
        assert_eq!(status("apr_m9").await, "pending");
        let joined = store
            .hold_approval(&held("apr_m4", "m", "k", 10_000))
            .await
            .unwrap();
        assert_eq!((joined.id.as_str(), joined.created), ("apr_m1", false));
    }};
}

#[tokio::test]
async fn sqlite_holds_a_call_once_and_deletes_only_what_is_done_with() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    one_pending_per_call_and_retention(store.as_ref()).await;
    migration_0023_keeps_the_oldest!(store.as_ref(), "sqlite/0023_approvals_one_pending.sql");
}

#[tokio::test]
async fn postgres_holds_a_call_once_and_deletes_only_what_is_done_with() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    one_pending_per_call_and_retention(store.as_ref()).await;
    migration_0023_keeps_the_oldest!(store.as_ref(), "postgres/0023_approvals_one_pending.sql");
}

#[tokio::test]
async fn sqlite_takes_each_decision_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    decisions_and_use_are_taken_once(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_takes_each_decision_once() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    decisions_and_use_are_taken_once(store.as_ref()).await;
}

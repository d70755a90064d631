//! Held tool calls on both backends: a decision is taken once (the second is refused), an
//! approval is used once, expiry closes pending and approved ones, the request path reads only
//! a session's open approvals for its caller, and pages are newest first by id.

use portcullis_store::{
    ApprovalQuery, ApprovalRecord, ApprovalStatus, ApprovalStore, PostgresStore, SqliteStore,
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
    store
        .insert_approval(&held("apr_1", "s1", "k1", 10_000))
        .await
        .unwrap();
    store
        .insert_approval(&held("apr_2", "s1", "k1", 10_000))
        .await
        .unwrap();
    store
        .insert_approval(&held("apr_3", "s1", "k2", 10_000))
        .await
        .unwrap();
    store
        .insert_approval(&held("apr_4", "s2", "k1", 3_000))
        .await
        .unwrap();
    assert_eq!(
        store.approval("apr_1").await.unwrap().unwrap(),
        held("apr_1", "s1", "k1", 10_000)
    );
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

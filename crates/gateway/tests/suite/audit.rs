//! The decision audit across replicas and over time: two gateways on one PostgreSQL database
//! audit MCP tool calls at the same time, each in its own chain, and every chain verifies;
//! retention drops old records a checkpoint at a time and what is left still verifies; the
//! writer's counters are in `/metrics`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn everything_bin() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        path.exists(),
        "{} is missing: run `npm ci` in tests/mcp",
        path.display()
    );
    path.display().to_string()
}

fn yaml(audit: &str) -> String {
    format!(
        "audit:\n{audit}\nmcp:\n  servers:\n    everything:\n      command: {bin}\n      args: [stdio]\n      timeout: 20s\n",
        bin = everything_bin()
    )
}

async fn echo(gw: &TestGateway, session: &str, message: String) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "everything__echo", "arguments": {"message": message}}});
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("x-portcullis-session-id", session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["result"].is_object(), "{answer}");
}

async fn audit_ids(gw: &TestGateway) -> Vec<String> {
    let r = client()
        .get(gw.at("/admin/audit?limit=1000"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_replicas_on_postgres_write_chains_that_verify() {
    let db = fresh_postgres_url().await;
    let extra = yaml("  checkpoint_every: 3");
    let a = TestGateway::start_with_db(&db, &extra).await;
    let b = TestGateway::start_with_db(&db, &extra).await;
    let calls = (0..12).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        echo(gw, "shared", format!("m{i}"))
    });
    futures_util::future::join_all(calls).await;
    a.stop().await;
    b.stop().await;
    let stores = portcullis_store::connect(&db, 2).await.unwrap();
    let report = portcullis_store::verify_audit(stores.audit.as_ref())
        .await
        .unwrap();
    assert!(report.bad.is_empty(), "{:?}", report.bad);
    assert_eq!(report.intact.len(), 2, "{:?}", report.intact);
    assert_eq!(report.intact.iter().map(|c| c.records).sum::<u64>(), 12);
    // A record changed in one chain is found, and only that chain is broken.
    sqlx::query("UPDATE audit_records SET hash = 'x' WHERE seq = 2 AND chain_id = (SELECT MIN(chain_id) FROM audit_records)")
        .execute(&sqlx::PgPool::connect(&db).await.unwrap())
        .await
        .unwrap();
    let report = portcullis_store::verify_audit(stores.audit.as_ref())
        .await
        .unwrap();
    assert_eq!(
        (report.bad.len(), report.intact.len()),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.first_bad().unwrap().seq, 2);
}

#[tokio::test]
async fn retention_drops_old_records_and_the_rest_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml("  retention: 2s\n  checkpoint_every: 2")).await;
    for i in 0..4 {
        echo(&gw, "old", format!("o{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let old = audit_ids(&gw).await;
    assert_eq!(old.len(), 4);
    // Past the retention (and a retention pass, every second), newer records arrive.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for i in 0..3 {
        echo(&gw, "new", format!("n{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = audit_ids(&gw).await;
    assert!(
        old.iter().all(|id| !kept.contains(id)),
        "old records kept: {kept:?}"
    );
    assert_eq!(kept.len(), 3, "{kept:?}");
    gw.stop().await;
    let stores = portcullis_store::connect(&db, 2).await.unwrap();
    let report = portcullis_store::verify_audit(stores.audit.as_ref())
        .await
        .unwrap();
    assert!(report.bad.is_empty(), "{:?}", report.bad);
    assert_eq!(report.intact[0].first_seq, 5, "{:?}", report.intact);
    assert_eq!(report.intact[0].records, 3);
}

/// The value of the sample `name` (with its labels, as written) in `/metrics`.
async fn metric(gw: &TestGateway, name: &str) -> Option<f64> {
    metric_sample(&gw.metrics_text().await, name)
}

#[tokio::test]
async fn the_audit_writers_counters_are_in_metrics() {
    let gw = TestGateway::start(&yaml("  checkpoint_every: 2")).await;
    let written = r#"portcullis_audit_records_total{outcome="written"}"#;
    assert_eq!(metric(&gw, written).await, Some(0.0));
    for i in 0..3 {
        echo(&gw, "metered", format!("m{i}")).await;
    }
    // Records are written in the background: the count catches up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&gw, written).await != Some(3.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "written: {:?}",
            metric(&gw, written).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(audit_ids(&gw).await.len(), 3);
    assert_eq!(
        metric(&gw, r#"portcullis_audit_records_total{outcome="accepted"}"#).await,
        Some(3.0)
    );
    for outcome in ["waited", "lost"] {
        let name = format!(r#"portcullis_audit_records_total{{outcome="{outcome}"}}"#);
        assert_eq!(metric(&gw, &name).await, Some(0.0), "{outcome}");
    }
    // A checkpoint after the second record.
    assert!(metric(&gw, "portcullis_audit_checkpoints_total").await >= Some(1.0));
    assert_eq!(
        metric(&gw, "portcullis_audit_queued_records").await,
        Some(0.0)
    );
    gw.stop().await;

    // Without the audit, no audit metrics.
    let off = TestGateway::start(&yaml("  enabled: false")).await;
    echo(&off, "unmetered", "x".to_owned()).await;
    assert_eq!(metric(&off, written).await, None);
    off.stop().await;
}

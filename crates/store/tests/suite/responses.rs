//! The Responses API's stored answers on both backends: kept once, read and deleted only by
//! their owner, and a conversation read back oldest first in one query, stopping at a
//! response that is gone, another owner's, or past the limit.

use portcullis_store::{PostgresStore, ResponseStore, SqliteStore, StoredResponse};
use portcullis_test_support::postgres::fresh_schema_url;

fn response(id: &str, owner: &str, previous: Option<&str>, n: i64) -> StoredResponse {
    StoredResponse {
        id: id.to_owned(),
        owner: owner.to_owned(),
        previous_id: previous.map(str::to_owned),
        created_ms: 1_000 + n,
        input_items: format!(r#"[{{"role":"user","content":"turn {n}"}}]"#),
        output_items: "[]".to_owned(),
        response: format!(r#"{{"id":"{id}","text":"nul \u0000 kept"}}"#),
    }
}

async fn conversations_are_their_owners(store: &dyn ResponseStore) {
    let a1 = response("resp_1", "team:a", None, 1);
    let a2 = response("resp_2", "team:a", Some("resp_1"), 2);
    let a3 = response("resp_3", "team:a", Some("resp_2"), 3);
    // Another tenant continuing a's response: its chain stops at its own.
    let b4 = response("resp_4", "team:b", Some("resp_3"), 4);
    store
        .put_responses(&[a1.clone(), a2.clone()])
        .await
        .unwrap();
    store
        .put_responses(&[a3.clone(), b4.clone()])
        .await
        .unwrap();
    // Kept once: a repeated write changes nothing.
    let mut again = a1.clone();
    again.response = "{}".to_owned();
    store.put_responses(&[again]).await.unwrap();
    assert_eq!(
        store.response("team:a", "resp_1").await.unwrap(),
        Some(a1.clone())
    );

    assert_eq!(store.response("team:b", "resp_1").await.unwrap(), None);
    assert_eq!(store.response("team:a", "resp_9").await.unwrap(), None);
    let ids = |chain: Vec<StoredResponse>| chain.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.response_chain("team:a", "resp_3", 100).await.unwrap()),
        ["resp_1", "resp_2", "resp_3"]
    );
    assert_eq!(
        ids(store.response_chain("team:a", "resp_3", 2).await.unwrap()),
        ["resp_2", "resp_3"]
    );
    assert_eq!(
        ids(store.response_chain("team:b", "resp_4", 100).await.unwrap()),
        ["resp_4"]
    );
    assert!(
        store
            .response_chain("team:b", "resp_3", 100)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(!store.delete_response("team:b", "resp_2").await.unwrap());
    assert!(store.delete_response("team:a", "resp_2").await.unwrap());
    assert!(!store.delete_response("team:a", "resp_2").await.unwrap());
    assert_eq!(
        ids(store.response_chain("team:a", "resp_3", 100).await.unwrap()),
        ["resp_3"]
    );

    // The retention's sweep: every owner's responses created before the cutoff, oldest
    // first, at most `limit` a statement; the newer ones stay.
    let old = response("resp_5", "team:c", None, -10);
    let older = response("resp_6", "team:c", None, -20);
    store.put_responses(&[old, older]).await.unwrap();
    assert_eq!(store.delete_responses_before(1_000, 1).await.unwrap(), 1);
    assert_eq!(store.response("team:c", "resp_6").await.unwrap(), None);
    assert!(store.response("team:c", "resp_5").await.unwrap().is_some());
    assert_eq!(store.delete_responses_before(1_004, 100).await.unwrap(), 3);
    assert_eq!(store.response("team:c", "resp_5").await.unwrap(), None);
    assert_eq!(store.response("team:a", "resp_3").await.unwrap(), None);
    assert!(store.response("team:b", "resp_4").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_stored_responses() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("responses.db").display());
    let store = SqliteStore::connect(&url, 4).await.unwrap();
    conversations_are_their_owners(store.as_ref()).await;
}

#[tokio::test]
async fn postgres_stored_responses() {
    let store = PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap();
    conversations_are_their_owners(store.as_ref()).await;
}

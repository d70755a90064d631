//! The OAuth server's tables on a real SQLite file and a real PostgreSQL server: clients,
//! single-use codes under racing redemptions, refresh-token rotation under racing
//! exchanges, family revocation and pruning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use portcullis_store::oauth::{
    AccessRecord, CODE_RETENTION_MS, ClientRecord, CodeRecord, CodeRedemption, FamilyRevocation,
    Issue, OAuthStore, RefreshRecord,
};
use portcullis_store::{PostgresStore, SqliteStore};
use portcullis_test_support::postgres::fresh_schema_url;

/// A PostgreSQL store in a fresh schema of its own, so tests never see each other's rows.
async fn postgres() -> Arc<PostgresStore> {
    PostgresStore::connect(&fresh_schema_url().await, 4)
        .await
        .unwrap()
}

async fn sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("oauth.db").display());
    (SqliteStore::connect(&url, 4).await.unwrap(), dir)
}

const NOW: i64 = 1_700_000_000_000;

fn hash(seed: &str) -> Vec<u8> {
    // Any 32 bytes do: the store never sees the secrets.
    let mut h = seed.as_bytes().to_vec();
    h.resize(32, 0);
    h
}

fn code(seed: &str, family: &str) -> CodeRecord {
    CodeRecord {
        code_hash: hash(seed),
        family_id: family.to_owned(),
        client_id: "client-1".to_owned(),
        redirect_uri: Some("https://app.example/cb".to_owned()),
        code_challenge: "challenge".to_owned(),
        scope: "models tools".to_owned(),
        resource: Some("https://gw.example/mcp".to_owned()),
        principal: r#"{"subject":"u1"}"#.to_owned(),
        created_ms: NOW,
        expires_ms: NOW + 60_000,
    }
}

fn refresh(seed: &str, family: &str) -> RefreshRecord {
    RefreshRecord {
        token_hash: hash(seed),
        family_id: family.to_owned(),
        client_id: "client-1".to_owned(),
        scope: "models".to_owned(),
        resource: None,
        principal: r#"{"subject":"u1"}"#.to_owned(),
        created_ms: NOW,
        expires_ms: NOW + 86_400_000,
        rotated_ms: None,
        revoked_ms: None,
    }
}

fn access(jti: &str, family: Option<&str>) -> AccessRecord {
    AccessRecord {
        jti: jti.to_owned(),
        family_id: family.map(str::to_owned),
        client_id: "client-1".to_owned(),
        created_ms: NOW,
        expires_ms: NOW + 900_000,
    }
}

async fn clients(store: Arc<dyn OAuthStore>) {
    let public = ClientRecord {
        client_id: "client-1".to_owned(),
        secret_hash: None,
        name: Some("Editor".to_owned()),
        redirect_uris: vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1/cb".to_owned(),
        ],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        scopes: None,
        auth_method: "none".to_owned(),
        service_account: None,
        created_ms: NOW,
    };
    let confidential = ClientRecord {
        client_id: "client-2".to_owned(),
        secret_hash: Some(hash("secret")),
        name: None,
        redirect_uris: Vec::new(),
        grant_types: vec!["client_credentials".to_owned()],
        scopes: Some(vec!["models".to_owned()]),
        auth_method: "client_secret_basic".to_owned(),
        service_account: Some("sa-1".to_owned()),
        created_ms: NOW,
    };
    store.insert_client(&public).await.unwrap();
    store.insert_client(&confidential).await.unwrap();
    assert!(
        store.insert_client(&public).await.is_err(),
        "ids are unique"
    );
    assert_eq!(store.client("client-1").await.unwrap(), Some(public));
    assert_eq!(
        store.client("client-2").await.unwrap(),
        Some(confidential.clone())
    );
    assert_eq!(store.client("nobody").await.unwrap(), None);
    assert!(store.delete_client("client-2").await.unwrap());
    assert!(!store.delete_client("client-2").await.unwrap());
    assert_eq!(store.client("client-2").await.unwrap(), None);
}

/// Two redemptions of one code race; exactly one wins, and the loser learns the family.
async fn racing_codes(store: Arc<dyn OAuthStore>) {
    assert_eq!(
        store.consume_code(&hash("nope"), NOW).await.unwrap(),
        CodeRedemption::Unknown
    );
    for round in 0..20 {
        let family = format!("fam-{round}");
        let c = code(&format!("code-{round}"), &family);
        store.insert_code(&c).await.unwrap();
        let (a, b) = tokio::join!(
            {
                let store = store.clone();
                let h = c.code_hash.clone();
                tokio::spawn(async move { store.consume_code(&h, NOW + 1).await.unwrap() })
            },
            {
                let store = store.clone();
                let h = c.code_hash.clone();
                tokio::spawn(async move { store.consume_code(&h, NOW + 1).await.unwrap() })
            }
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        let won: Vec<_> = outcomes
            .iter()
            .filter(|o| matches!(o, CodeRedemption::Redeemed(_)))
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        assert_eq!(won[0], &CodeRedemption::Redeemed(c.clone()));
        assert!(
            outcomes.contains(&CodeRedemption::AlreadyUsed {
                family_id: family.clone()
            }),
            "round {round}: {outcomes:?}"
        );
        // And every later attempt is a replay.
        assert_eq!(
            store.consume_code(&c.code_hash, NOW + 2).await.unwrap(),
            CodeRedemption::AlreadyUsed { family_id: family }
        );
    }
}

/// Issuance, rotation (racing), reuse, family revocation and pruning.
async fn families(store: Arc<dyn OAuthStore>) {
    store.insert_code(&code("c", "fam")).await.unwrap();
    let first = refresh("r1", "fam");
    assert_eq!(
        store
            .issue_tokens(Some("fam"), Some(&first), &access("a1", Some("fam")), NOW)
            .await
            .unwrap(),
        Issue::Issued
    );
    assert_eq!(
        store.refresh_token(&first.token_hash).await.unwrap(),
        Some(first.clone())
    );
    // A family that does not exist cannot receive tokens.
    assert_eq!(
        store
            .issue_tokens(Some("ghost"), None, &access("ax", Some("ghost")), NOW)
            .await
            .unwrap(),
        Issue::FamilyRevoked
    );

    // Two exchanges of the same refresh token race: one rotates, one is refused.
    let (a, b) = tokio::join!(
        {
            let store = store.clone();
            let old = first.token_hash.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh_token(
                        &old,
                        &refresh("r2a", "fam"),
                        &access("a2a", Some("fam")),
                        NOW + 1,
                    )
                    .await
                    .unwrap()
            })
        },
        {
            let store = store.clone();
            let old = first.token_hash.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh_token(
                        &old,
                        &refresh("r2b", "fam"),
                        &access("a2b", Some("fam")),
                        NOW + 1,
                    )
                    .await
                    .unwrap()
            })
        }
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == Issue::Issued);
    assert_eq!(outcomes, [Issue::AlreadyRotated, Issue::Issued]);
    let old = store
        .refresh_token(&first.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.rotated_ms, Some(NOW + 1));
    let (winner, loser) = if store.refresh_token(&hash("r2a")).await.unwrap().is_some() {
        ("r2a", "r2b")
    } else {
        ("r2b", "r2a")
    };
    assert_eq!(store.refresh_token(&hash(loser)).await.unwrap(), None);
    let current = store.refresh_token(&hash(winner)).await.unwrap().unwrap();
    assert_eq!(current.rotated_ms, None);

    // A client_credentials token, in no family, and a single revoked token.
    assert_eq!(
        store
            .issue_tokens(None, None, &access("cc", None), NOW)
            .await
            .unwrap(),
        Issue::Issued
    );
    store
        .revoke_access_token("cc", NOW + 900_000, NOW + 2)
        .await
        .unwrap();
    store
        .revoke_access_token("cc", NOW + 900_000, NOW + 3)
        .await
        .unwrap();

    // Revoking the family revokes every refresh token and the unexpired access tokens.
    let a2 = format!("a2{}", &winner[2..]);
    let mut revoked = store.revoke_family("fam", NOW + 5).await.unwrap();
    revoked.access_tokens.sort();
    let family_tokens = vec![
        ("a1".to_owned(), NOW + 900_000),
        (a2.clone(), NOW + 900_000),
    ];
    assert_eq!(
        revoked,
        FamilyRevocation {
            refresh_tokens: 2,
            access_tokens: family_tokens.clone(),
        }
    );
    // Again: nothing more is revoked, the family's tokens are still reported.
    let mut again = store.revoke_family("fam", NOW + 6).await.unwrap();
    again.access_tokens.sort();
    assert_eq!(again.refresh_tokens, 0);
    assert_eq!(again.access_tokens, family_tokens);
    let current = store.refresh_token(&hash(winner)).await.unwrap().unwrap();
    assert_eq!(current.revoked_ms, Some(NOW + 5));
    let mut jtis = store.revoked_access_tokens(NOW + 10).await.unwrap();
    jtis.sort();
    let mut expected = vec!["a1".to_owned(), a2, "cc".to_owned()];
    expected.sort();
    assert_eq!(jtis, expected);
    assert!(
        store
            .revoked_access_tokens(NOW + 900_001)
            .await
            .unwrap()
            .is_empty()
    );

    // Nothing more is issued in a revoked family.
    assert_eq!(
        store
            .issue_tokens(Some("fam"), None, &access("a3", Some("fam")), NOW + 7)
            .await
            .unwrap(),
        Issue::FamilyRevoked
    );
    assert_eq!(
        store
            .rotate_refresh_token(
                &hash(winner),
                &refresh("r3", "fam"),
                &access("a3", Some("fam")),
                NOW + 7
            )
            .await
            .unwrap(),
        Issue::FamilyRevoked
    );

    // Pruning: nothing is due yet, then everything once it has all expired.
    assert_eq!(store.prune(NOW + 10).await.unwrap(), 0);
    let later = NOW + 86_400_000 + CODE_RETENTION_MS + 1;
    assert!(store.prune(later).await.unwrap() >= 8);
    assert_eq!(store.refresh_token(&first.token_hash).await.unwrap(), None);
    assert_eq!(
        store.consume_code(&hash("c"), later).await.unwrap(),
        CodeRedemption::Unknown
    );
    assert_eq!(store.prune(later).await.unwrap(), 0);
}

async fn exercise(store: Arc<dyn OAuthStore>) {
    clients(store.clone()).await;
    racing_codes(store.clone()).await;
    families(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tables_on_sqlite() {
    let (store, _dir) = sqlite().await;
    exercise(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tables_on_postgres() {
    exercise(postgres().await).await;
}

//! The issuer's keys: discovery (and its issuer check), a configured `jwks_uri`, key rotation,
//! the rate limit on refetches for unknown key ids, coalesced downloads, an unavailable JWKS.

use std::time::Duration;

use futures_util::future::join_all;
use portcullis_oidc::{JwksError, TokenError, Verifier};
use portcullis_test_support::{MockAlg, MockIssuer};
use serde_json::json;

use crate::common::{AUD, config, verifier};

#[tokio::test]
async fn rotated_keys_are_fetched_when_a_new_kid_appears() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    let before = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    let mut second = mock.claims(AUD);
    second["sub"] = json!("user-2");
    let before_unverified = mock.mint(MockAlg::RS256, &second);
    verifier.verify(&before).await.unwrap();
    assert_eq!(mock.jwks_fetches(), 1);

    let old_kid = mock.kid(MockAlg::RS256);
    mock.rotate();
    assert_ne!(mock.kid(MockAlg::RS256), old_kid);
    for alg in MockAlg::ALL {
        let after = mock.mint(alg, &mock.claims(AUD));
        verifier
            .verify(&after)
            .await
            .unwrap_or_else(|e| panic!("{alg} after rotation: {e}"));
    }
    assert_eq!(mock.jwks_fetches(), 2, "one refetch finds every new key");

    // The old key is no longer published, so a token it signed (not verified before) fails.
    assert_refused!(
        verifier,
        before_unverified,
        TokenError::UnknownKeyId { ref kid, .. } if *kid == old_kid
    );
}

#[tokio::test]
async fn keys_kept_through_a_rotation_still_verify() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    let old = mock.mint(MockAlg::ES256, &mock.claims(AUD));
    mock.rotate_keeping_old();
    let new = mock.mint(MockAlg::ES256, &mock.claims(AUD));
    verifier.verify(&new).await.unwrap();
    verifier.verify(&old).await.unwrap();
    assert_eq!(mock.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_triggers_at_most_one_refetch() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    verifier
        .verify(&mock.mint(MockAlg::RS256, &mock.claims(AUD)))
        .await
        .unwrap();
    assert_eq!(mock.jwks_fetches(), 1);

    let bogus: Vec<String> = (0..50)
        .map(|i| {
            let mut claims = mock.claims(AUD);
            claims["sub"] = json!(format!("attacker-{i}"));
            mock.mint_with_header(
                MockAlg::RS256,
                &json!({"kid": format!("bogus-{i}")}),
                &claims,
            )
        })
        .collect();
    let results = join_all(bogus.iter().map(|t| verifier.verify(t))).await;
    for result in &results {
        assert!(
            matches!(result, Err(TokenError::UnknownKeyId { .. })),
            "{result:?}"
        );
    }
    for token in &bogus {
        assert!(verifier.verify(token).await.is_err());
    }
    assert_eq!(mock.jwks_fetches(), 2, "exactly one refetch in the window");

    // Known keys keep working without any download.
    verifier
        .verify(&mock.mint(MockAlg::EdDSA, &mock.claims(AUD)))
        .await
        .unwrap();
    assert_eq!(mock.jwks_fetches(), 2);
}

#[tokio::test]
async fn refetches_are_allowed_again_after_the_interval() {
    let mock = MockIssuer::start().await;
    let verifier = Verifier::builder(vec![config(&mock)])
        .min_refresh_interval(Duration::from_millis(500))
        .build()
        .unwrap();
    let unknown = mock.mint_with_header(
        MockAlg::RS256,
        &json!({"kid": "unknown"}),
        &mock.claims(AUD),
    );
    // The first try loads the keys; the second refetches them for the unknown kid; the
    // third is within the interval and refused without a download.
    for expected_fetches in [1, 2, 2] {
        assert_refused!(verifier, unknown, TokenError::UnknownKeyId { .. });
        assert_eq!(mock.jwks_fetches(), expected_fetches);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_refused!(verifier, unknown, TokenError::UnknownKeyId { .. });
    assert_eq!(mock.jwks_fetches(), 3);
}

#[tokio::test]
async fn concurrent_first_uses_share_one_download() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    let tokens: Vec<String> = MockAlg::ALL
        .iter()
        .cycle()
        .take(20)
        .map(|alg| mock.mint(*alg, &mock.claims(AUD)))
        .collect();
    let results = join_all(tokens.iter().map(|t| verifier.verify(t))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(mock.discovery_fetches(), 1);
    assert_eq!(mock.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let mock = MockIssuer::start().await;
    mock.set_discovery_issuer(Some("https://impostor.example".to_owned()));
    let verifier = verifier(vec![config(&mock)]);
    let token = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    let error = assert_refused!(
        verifier,
        token,
        TokenError::KeysUnavailable {
            source: JwksError::IssuerMismatch { ref found, .. },
            ..
        } if found == "https://impostor.example"
    );
    assert!(error.is_temporary());
    assert_eq!(mock.discovery_fetches(), 1);
    assert_eq!(
        mock.jwks_fetches(),
        0,
        "keys named by a lying document are not fetched"
    );
}

#[tokio::test]
async fn a_configured_jwks_uri_skips_discovery() {
    let mock = MockIssuer::start().await;
    mock.set_discovery_issuer(Some("https://ignored.example".to_owned()));
    let mut issuer = config(&mock);
    issuer.jwks_uri = Some(mock.jwks_uri());
    let verifier = verifier(vec![issuer]);
    assert!(verifier.preload().await.is_empty());
    assert_eq!(mock.jwks_fetches(), 1);
    verifier
        .verify(&mock.mint(MockAlg::PS256, &mock.claims(AUD)))
        .await
        .unwrap();
    assert_eq!(mock.discovery_fetches(), 0);
    assert_eq!(mock.jwks_fetches(), 1, "preloaded keys are used");
}

#[tokio::test]
async fn an_unavailable_jwks_is_retried_only_after_the_interval() {
    let mock = MockIssuer::start().await;
    mock.set_jwks_status(503);
    let verifier = Verifier::builder(vec![config(&mock)])
        .min_refresh_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    let failures = verifier.preload().await;
    assert!(
        matches!(
            failures.as_slice(),
            [(issuer, JwksError::Status { status: 503, .. })] if *issuer == mock.issuer()
        ),
        "{failures:?}"
    );
    let token = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    let error = assert_refused!(
        verifier,
        token,
        TokenError::KeysUnavailable {
            source: JwksError::Status { status: 503, .. },
            ..
        }
    );
    assert!(error.is_temporary());
    assert_eq!(mock.jwks_fetches(), 1, "the failure is not retried at once");

    mock.set_jwks_status(200);
    tokio::time::sleep(Duration::from_millis(350)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(mock.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_temporary_failure() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mock = MockIssuer::start().await;
    let mut claims = mock.claims(AUD);
    claims["iss"] = json!(issuer);
    let verifier = verifier(vec![portcullis_oidc::IssuerConfig::new(issuer, AUD)]);
    let token = mock.mint(MockAlg::RS256, &claims);
    let error = assert_refused!(
        verifier,
        token,
        TokenError::KeysUnavailable {
            source: JwksError::Http { .. },
            ..
        }
    );
    assert_eq!(error.reason(), "keys_unavailable");
}

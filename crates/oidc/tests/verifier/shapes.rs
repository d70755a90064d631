//! Valid tokens shaped like each provider's, every signature algorithm, claim mapping, the
//! issuer's options (algorithms, leeway, default role) and the cache of verified tokens.

use std::time::Duration;

use portcullis_oidc::{ClaimMapping, IssuerConfig, TokenError, Verifier};
use portcullis_test_support::oidc::unix_now;
use portcullis_test_support::{MockAlg, MockIssuer, MockIssuerOptions};
use serde_json::json;

use crate::common::{AUD, config, verifier};

fn mapping(
    user: &str,
    email: Option<&str>,
    teams: Option<&str>,
    roles: Option<&str>,
) -> ClaimMapping {
    ClaimMapping {
        user: user.to_owned(),
        email: email.map(str::to_owned),
        teams: teams.map(str::to_owned),
        roles: roles.map(str::to_owned),
        ..ClaimMapping::default()
    }
}

#[tokio::test]
async fn okta_groups_become_teams_and_the_default_role_applies() {
    let okta = MockIssuer::start_with(MockIssuerOptions {
        path: "/oauth2/default".to_owned(),
    })
    .await;
    let mut issuer = config(&okta);
    issuer.claims = mapping("sub", Some("email"), Some("groups"), Some("roles"));
    issuer.default_role = Some("member".to_owned());
    let verifier = verifier(vec![issuer]);
    let claims = okta.okta_claims(AUD);
    let token = okta.mint(MockAlg::RS256, &claims);

    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.issuer, okta.issuer());
    assert_eq!(identity.subject, "ada.lovelace@example.com");
    assert_eq!(identity.user, "ada.lovelace@example.com");
    assert_eq!(identity.email.as_deref(), Some("ada.lovelace@example.com"));
    assert_eq!(identity.teams, ["Everyone", "ml-platform", "finance"]);
    assert_eq!(identity.roles, ["member"]);
    assert_eq!(identity.expires_at, claims["exp"].as_i64().unwrap());
}

#[tokio::test]
async fn group_names_can_grant_gateway_roles() {
    let okta = MockIssuer::start().await;
    let mut issuer = config(&okta);
    issuer.claims = mapping("sub", Some("email"), Some("groups"), Some("roles"));
    issuer
        .claims
        .role_values
        .insert("ml-platform".to_owned(), "admin".to_owned());
    issuer
        .claims
        .role_values
        .insert("Contractors".to_owned(), "viewer".to_owned());
    let verifier = verifier(vec![issuer.clone()]);
    let token = okta.mint(MockAlg::RS256, &okta.okta_claims(AUD));
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.roles, ["admin"]);

    issuer
        .claims
        .role_values
        .insert("Everyone".to_owned(), "superuser".to_owned());
    let err = Verifier::new(vec![issuer]).unwrap_err().to_string();
    assert!(err.contains("claims.role_values"), "{err}");
    assert!(err.contains("superuser"), "{err}");
}

#[tokio::test]
async fn entra_object_id_groups_and_app_roles_are_mapped() {
    let entra = MockIssuer::start().await;
    let client_id = "3f6c2d1e-8a7b-4c5d-9e0f-1a2b3c4d5e6f";
    let mut issuer = IssuerConfig::new(entra.issuer(), client_id);
    issuer.claims = mapping(
        "oid",
        Some("preferred_username"),
        Some("groups"),
        Some("roles"),
    );
    issuer.default_role = Some("member".to_owned());
    let verifier = verifier(vec![issuer]);
    let token = entra.mint(MockAlg::PS256, &entra.entra_claims(client_id));

    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.subject, "mK9XQ1aFrFcHm2Bq0T-6qZPdmock");
    assert_eq!(identity.user, "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b");
    assert_eq!(
        identity.email.as_deref(),
        Some("ada@contoso.onmicrosoft.com")
    );
    assert_eq!(
        identity.teams,
        [
            "0b5e3f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "a4c3b2d1-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
        ]
    );
    assert_eq!(identity.roles, ["Gateway.User", "Gateway.Admin"]);
}

#[tokio::test]
async fn auth0_namespaced_claims_and_trailing_slash_issuer() {
    let auth0 = MockIssuer::start_with(MockIssuerOptions {
        path: "/".to_owned(),
    })
    .await;
    assert!(auth0.issuer().ends_with('/'));
    let mut issuer = config(&auth0);
    issuer.claims = mapping(
        "sub",
        Some("https://portcullis.test/email"),
        Some("https://portcullis.test/teams"),
        Some("https://portcullis.test/roles"),
    );
    let verifier = verifier(vec![issuer]);
    let token = auth0.mint(MockAlg::ES256, &auth0.auth0_claims(AUD));

    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.user, "auth0|64b7f0c2d1e3a4b5c6d7e8f9");
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert_eq!(identity.teams, ["research", "platform"]);
    assert_eq!(identity.roles, ["admin", "analyst"]);
    assert_eq!(auth0.discovery_fetches(), 1);
}

#[tokio::test]
async fn keycloak_realm_roles_and_preferred_username() {
    let keycloak = MockIssuer::start_with(MockIssuerOptions {
        path: "/realms/portcullis".to_owned(),
    })
    .await;
    let mut issuer = IssuerConfig::new(keycloak.issuer(), "portcullis");
    issuer.claims = mapping(
        "preferred_username",
        Some("email"),
        Some("groups"),
        Some("realm_access.roles"),
    );
    let verifier = verifier(vec![issuer]);
    let token = keycloak.mint(MockAlg::EdDSA, &keycloak.keycloak_claims("portcullis"));

    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.subject, "f3b2c1d0-9e8f-4a7b-b6c5-d4e3f2a1b0c9");
    assert_eq!(identity.user, "ada");
    assert_eq!(identity.email.as_deref(), Some("ada@example.org"));
    assert_eq!(identity.teams, ["/engineering/ml", "/finance"]);
    assert_eq!(
        identity.roles,
        ["offline_access", "uma_authorization", "gateway-user"]
    );

    // A token without the mapped user claim is refused rather than given another identity.
    let mut nameless = keycloak.keycloak_claims("portcullis");
    nameless
        .as_object_mut()
        .unwrap()
        .remove("preferred_username");
    let token = keycloak.mint(MockAlg::EdDSA, &nameless);
    assert_refused!(verifier, token, TokenError::MissingClaim(ref c) if c == "preferred_username");
}

#[tokio::test]
async fn every_supported_algorithm_verifies_and_the_issuer_can_restrict_them() {
    let mock = MockIssuer::start().await;
    let open = verifier(vec![config(&mock)]);
    for alg in MockAlg::ALL {
        let mut claims = mock.claims(AUD);
        claims["sub"] = json!(format!("user-{alg}"));
        let token = mock.mint(alg, &claims);
        let identity = open
            .verify(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg} refused: {e}"));
        assert_eq!(identity.user, format!("user-{alg}"));
        assert_eq!(identity.email, None);
        assert!(identity.teams.is_empty() && identity.roles.is_empty());
    }
    assert_eq!(mock.jwks_fetches(), 1, "one JWKS download serves every key");

    let mut only_ec = config(&mock);
    only_ec.algorithms = Some(vec!["ES256".to_owned()]);
    let restricted = verifier(vec![only_ec]);
    let es = mock.mint(MockAlg::ES256, &mock.claims(AUD));
    restricted.verify(&es).await.unwrap();
    let rs = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    assert_refused!(restricted, rs, TokenError::AlgorithmNotAllowed { ref alg, .. } if alg == "RS256");
}

#[tokio::test]
async fn audience_may_be_any_configured_one_and_leeway_tolerates_skew() {
    let mock = MockIssuer::start().await;
    let mut issuer = config(&mock);
    issuer.audience = vec!["other-api".to_owned(), AUD.to_owned()];
    issuer.leeway = Some("2m".to_owned());
    let verifier = verifier(vec![issuer]);
    let now = unix_now();

    let mut skewed = mock.claims(AUD);
    skewed["aud"] = json!(["unrelated", AUD]);
    skewed["exp"] = json!(now - 90);
    skewed["nbf"] = json!(now + 90);
    skewed["iat"] = json!(now + 90);
    verifier
        .verify(&mock.mint(MockAlg::ES256, &skewed))
        .await
        .unwrap();

    skewed["exp"] = json!(now - 200);
    assert_refused!(
        verifier,
        mock.mint(MockAlg::ES256, &skewed),
        TokenError::Expired
    );
}

#[tokio::test]
async fn verified_tokens_are_cached_until_they_expire() {
    let mock = MockIssuer::start().await;
    let cached = verifier(vec![config(&mock)]);
    let uncached = Verifier::builder(vec![config(&mock)])
        .cache_ttl(Duration::ZERO)
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let token = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    let mut other_claims = mock.claims(AUD);
    other_claims["sub"] = json!("user-2");
    let other = mock.mint(MockAlg::RS256, &other_claims);
    let first = cached.verify(&token).await.unwrap();
    uncached.verify(&token).await.unwrap();

    // The signing key disappears (a token with a new key id makes both verifiers download
    // the new key set): only the remembered verification still succeeds.
    mock.rotate();
    let rotated = mock.mint(MockAlg::RS256, &mock.claims(AUD));
    cached.verify(&rotated).await.unwrap();
    uncached.verify(&rotated).await.unwrap();
    assert_eq!(cached.verify(&token).await.unwrap(), first);
    assert_refused!(cached, other, TokenError::UnknownKeyId { .. });
    assert_refused!(uncached, token, TokenError::UnknownKeyId { .. });

    // A remembered token is still checked against its expiry.
    let mut short = mock.claims(AUD);
    short["exp"] = json!(unix_now() + 1);
    let mut strict = config(&mock);
    strict.leeway = Some("0s".to_owned());
    let strict = verifier(vec![strict]);
    let short = mock.mint(MockAlg::EdDSA, &short);
    strict.verify(&short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused!(strict, short, TokenError::Expired);
}

#[tokio::test]
async fn one_verifier_serves_several_issuers() {
    let (a, b) = tokio::join!(MockIssuer::start(), MockIssuer::start());
    let verifier = verifier(vec![config(&a), config(&b)]);
    let from_a = verifier
        .verify(&a.mint(MockAlg::RS256, &a.claims(AUD)))
        .await
        .unwrap();
    let from_b = verifier
        .verify(&b.mint(MockAlg::ES256, &b.claims(AUD)))
        .await
        .unwrap();
    assert_eq!(from_a.issuer, a.issuer());
    assert_eq!(from_b.issuer, b.issuer());
    assert_eq!(
        verifier.issuers().collect::<Vec<_>>(),
        [a.issuer(), b.issuer()]
    );
}

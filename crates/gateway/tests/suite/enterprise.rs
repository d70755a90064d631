//! Enterprise identity through the gateway: bearer JWTs from an OIDC issuer started by the
//! test (Keycloak-, Okta- and Entra-shaped), users and teams provisioned on first sight, the
//! team's provider key used for them, usage per user; hostile tokens refused with 401 and a
//! reason in the log; and the gateway's own OAuth server — client credentials for a service
//! account, its access token accepted by the model endpoints, revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::common::{MASTER_KEY, TestGateway, client, providers_yaml};
use portcullis_test_support::oidc::{encode_segment, mint_hs256, mint_unsigned, unix_now};
use portcullis_test_support::{MockAlg, MockIssuer, MockOptions, MockUpstream};
use serde_json::{Value, json};

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const AUDIENCE: &str = "portcullis";

fn issuers_yaml(kc: &MockIssuer, okta: &MockIssuer) -> String {
    format!(
        r#"identity:
  issuers:
    - issuer: {kc}
      audience: {AUDIENCE}
      claims:
        user: preferred_username
        email: email
        teams: groups
        roles: realm_access.roles
    - issuer: {okta}
      audience: api://portcullis
      default_role: viewer
      claims:
        user: sub
        teams: groups
"#,
        kc = kc.issuer(),
        okta = okta.issuer(),
    )
}

async fn chat(gw: &TestGateway, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &TestGateway, token: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn enterprise_tokens_provision_users_and_use_their_teams_provider_key() {
    let kc = MockIssuer::start().await;
    let okta = MockIssuer::start().await;
    let mock = MockUpstream::start_with(MockOptions {
        extra_api_keys: vec!["sk-ml-team-key-42".into()],
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\n{}{}",
        issuers_yaml(&kc, &okta),
        providers_yaml(&mock)
    ))
    .await;

    // A Keycloak user in /engineering/ml: provisioned on first sight.
    let token = kc.mint(MockAlg::RS256, &kc.keycloak_claims(AUDIENCE));
    let (s, h, body) = chat(&gw, &token).await;
    assert_eq!(s, 200, "{body}");
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["auth_method"], "jwt");
    assert_eq!(rec["user"], "ada");
    assert_eq!(rec["team"], "/engineering/ml");
    let (s, users) = get(&gw, MASTER_KEY, "/admin/users").await;
    assert_eq!(s, 200);
    let ada = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "ada")
        .unwrap()
        .clone();
    assert_eq!(ada["issuer"], kc.issuer());
    assert_eq!(ada["email"], "ada@example.org");
    assert_eq!(ada["teams"], json!(["/engineering/ml", "/finance"]));
    assert_eq!(ada["role"], "member");

    // The team's provider key is used for its members.
    let r = client()
        .post(gw.at("/admin/provider-keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"provider": "openai", "alias": "ml", "secret": "sk-ml-team-key-42", "team": "/engineering/ml"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, h, _) = chat(&gw, &token).await;
    assert_eq!(s, 200);
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-ml-team-key-42"
    );
    assert!(
        h["x-portcullis-provider-key"]
            .to_str()
            .unwrap()
            .starts_with("cred_")
    );

    // An Okta user with no role claim gets the issuer's default role (viewer here); viewers
    // read their team's usage but not the admin API.
    let okta_token = okta.mint(MockAlg::ES256, &okta.okta_claims("api://portcullis"));
    // Its request is accounted to the team it names in `x-portcullis-team`.
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(&okta_token)
        .header("x-portcullis-team", "ml-platform")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = get(&gw, &okta_token, "/admin/keys").await;
    assert_eq!(s, 403);
    gw.logs("team=ml-platform", 1).await;
    let (s, usage) = get(
        &gw,
        &okta_token,
        "/admin/usage?team=ml-platform&group_by=user",
    )
    .await;
    assert_eq!(s, 200, "{usage}");
    assert_eq!(usage["data"][0]["group"], "ada.lovelace@example.com");

    // Per-user usage for the admin.
    gw.logs("", 3).await;
    let (_, usage) = get(&gw, MASTER_KEY, "/admin/usage?group_by=user").await;
    let users: Vec<&str> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["group"].as_str())
        .collect();
    assert!(
        users.contains(&"ada") && users.contains(&"ada.lovelace@example.com"),
        "{users:?}"
    );

    // A Keycloak admin (role claim) may use the admin API with the same kind of token.
    let mut admin_claims = kc.keycloak_claims(AUDIENCE);
    admin_claims["sub"] = json!("admin-sub");
    admin_claims["preferred_username"] = json!("root");
    admin_claims["email"] = json!("root@example.org");
    admin_claims["realm_access"]["roles"] = json!(["portcullis-admin"]);
    let admin_token = kc.mint(MockAlg::EdDSA, &admin_claims);
    let (s, v) = get(&gw, &admin_token, "/admin/keys").await;
    assert_eq!(s, 200, "{v}");

    // Disabling the user refuses their tokens at once.
    let r = client()
        .delete(gw.at("/admin/users/ada"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, body) = chat(&gw, &token).await;
    assert_eq!(s, 403, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_a_reason_and_never_crash() {
    let kc = MockIssuer::start().await;
    let okta = MockIssuer::start().await;
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "{}{}",
        issuers_yaml(&kc, &okta),
        providers_yaml(&mock)
    ))
    .await;
    let good = kc.keycloak_claims(AUDIENCE);
    let now = unix_now();
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let valid = kc.mint(MockAlg::RS256, &good);
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    parts[1] = encode_segment(&with(json!({"preferred_username": "mallory"})));
    let tampered = parts.join(".");
    let other = MockIssuer::start().await;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            mint_unsigned(&json!({"alg": "none", "typ": "JWT"}), &good),
            "alg_none",
        ),
        (
            "RS/HS confusion",
            mint_hs256(
                kc.rsa_public_key_pem().as_bytes(),
                &json!({"alg": "HS256", "kid": kc.kid(MockAlg::RS256)}),
                &good,
            ),
            "alg_symmetric",
        ),
        (
            "expired",
            kc.mint(
                MockAlg::RS256,
                &with(json!({"exp": now - 3600, "iat": now - 7200})),
            ),
            "expired",
        ),
        (
            "not yet valid",
            kc.mint(MockAlg::RS256, &with(json!({"nbf": now + 3600}))),
            "not_yet_valid",
        ),
        (
            "wrong audience",
            kc.mint(MockAlg::RS256, &with(json!({"aud": "someone-else"}))),
            "aud_mismatch",
        ),
        (
            "unknown issuer",
            other.mint(MockAlg::RS256, &other.keycloak_claims(AUDIENCE)),
            "unknown_issuer",
        ),
        ("tampered", tampered, "bad_signature"),
        (
            "wrong kid",
            kc.mint_with_header(MockAlg::RS256, &json!({"kid": "not-a-kid"}), &good),
            "unknown_kid",
        ),
        (
            "oversized",
            format!("eyJ{}.eyJ{}.sig", "A".repeat(10_000), "B".repeat(10_000)),
            "too_large",
        ),
    ];
    for (name, token, reason) in &cases {
        let (s, h, body) = chat(&gw, token).await;
        assert_eq!(s, 401, "{name}: {body}");
        assert_eq!(body["error"]["type"], "authentication_error", "{name}");
        assert_eq!(body["error"]["code"], "invalid_token", "{name}");
        let rec = gw
            .log_of(h["x-portcullis-request-id"].to_str().unwrap())
            .await;
        assert_eq!(rec["status"], 401);
        let message = rec["error_message"].as_str().unwrap().to_lowercase();
        assert!(message.contains(reason), "{name}: log says `{message}`");
        assert!(
            !message.contains(&token[..20.min(token.len())]),
            "{name}: the token is not logged"
        );
    }
    // Still serving.
    assert_eq!(chat(&gw, &valid).await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn oauth_client_credentials_tokens_are_accepted_and_revocable() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\noauth:\n  issuer: http://gateway.test\n{}",
        providers_yaml(&mock)
    ))
    .await;
    let c = client();
    // Metadata and JWKS are published.
    let meta: Value = c
        .get(gw.at("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], "http://gateway.test");
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    let jwks: Value = c
        .get(gw.at("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);

    // A service account with client credentials, created by the admin.
    let r = c
        .post(gw.at("/admin/teams"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "Batch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(gw.at("/admin/service-accounts"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "nightly-evals", "name": "Nightly evals", "team": "batch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(gw.at("/admin/service-accounts/nightly-evals/clients"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"scopes": ["models"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let creds: Value = r.json().await.unwrap();
    let (id, secret) = (
        creds["client_id"].as_str().unwrap(),
        creds["client_secret"].as_str().unwrap(),
    );

    let token_response = |secret: String| {
        let c = c.clone();
        let url = gw.at("/oauth/token");
        let id = id.to_owned();
        async move {
            c.post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials"), ("scope", "models")])
                .send()
                .await
                .unwrap()
        }
    };
    let bad = token_response("wrong".into()).await;
    assert_eq!(bad.status(), 401);
    let tokens: Value = token_response(secret.to_owned())
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let (s, h, body) = chat(&gw, &access).await;
    assert_eq!(s, 200, "{body}");
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["auth_method"], "oauth");
    assert_eq!(rec["subject"], "nightly-evals");
    assert_eq!(rec["team"], "batch");
    // The token's scopes do not include the admin API.
    let (s, _) = get(&gw, &access, "/admin/logs").await;
    assert_eq!(s, 403);

    // Revoked: refused within moments.
    let r = c
        .post(gw.at("/oauth/revoke"))
        .basic_auth(id, Some(secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let started = std::time::Instant::now();
    loop {
        if chat(&gw, &access).await.0 == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a revoked token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The account's clients are listed without secrets; a second one replaces the first,
    // which is then revoked: no token for it any more, while the new one works.
    let second: Value = c
        .post(gw.at("/admin/service-accounts/nightly-evals/clients"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "rotated", "scopes": ["models"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, listed) = get(
        &gw,
        MASTER_KEY,
        "/admin/service-accounts/nightly-evals/clients",
    )
    .await;
    assert_eq!(s, 200, "{listed}");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id) && ids.contains(&second["client_id"].as_str().unwrap()));
    assert!(!listed.to_string().contains(secret), "never a secret");
    assert!(!listed.to_string().contains("secret"), "{listed}");
    let revoke = |path: String| {
        let c = c.clone();
        async move {
            c.delete(path)
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Another account's path does not reach it.
    let r = c
        .post(gw.at("/admin/service-accounts"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "other", "name": "Other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let other = gw.at(&format!("/admin/service-accounts/other/clients/{id}"));
    assert_eq!(revoke(other).await, 404);
    let own = gw.at(&format!(
        "/admin/service-accounts/nightly-evals/clients/{id}"
    ));
    assert_eq!(revoke(own.clone()).await, 200);
    assert_eq!(revoke(own).await, 404);
    assert_eq!(token_response(secret.to_owned()).await.status(), 401);
    let fresh = c
        .post(gw.at("/oauth/token"))
        .basic_auth(
            second["client_id"].as_str().unwrap(),
            Some(second["client_secret"].as_str().unwrap()),
        )
        .form(&[("grant_type", "client_credentials"), ("scope", "models")])
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);

    // A forged token claiming the gateway as issuer is refused.
    let forged = format!(
        "{}.{}.c2ln",
        encode_segment(&json!({"alg": "EdDSA", "typ": "at+jwt"})),
        encode_segment(
            &json!({"iss": "http://gateway.test", "sub": "root", "exp": unix_now() + 60})
        )
    );
    assert_eq!(chat(&gw, &forged).await.0, 401);
    gw.stop().await;
}

/// Follows one redirect as a browser would, mapping the gateway's public issuer URL
/// (`http://gateway.test`) to the test's listener and sending the gateway's cookie back.
async fn follow(gw: &TestGateway, cookie: &mut Option<String>, url: &str) -> reqwest::Response {
    let (url, to_gateway) = match url.strip_prefix("http://gateway.test") {
        Some(path) => (gw.at(path), true),
        None => (url.to_owned(), false),
    };
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = c.get(url);
    if to_gateway && let Some(v) = cookie.as_deref() {
        req = req.header("cookie", v);
    }
    let r = req.send().await.unwrap();
    if let Some(set) = r.headers().get("set-cookie") {
        *cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
    }
    r
}

fn location_of(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_team_signs_in_through_its_idp_and_its_agent_calls_models_with_the_team_key() {
    let kc = MockIssuer::start().await;
    let mock = MockUpstream::start_with(MockOptions {
        extra_api_keys: vec!["sk-ml-team-key-7".into()],
        ..MockOptions::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        r#"secret_key: {SECRET_KEY}
identity:
  issuers:
    - issuer: {kc}
      audience: {AUDIENCE}
      claims:
        user: preferred_username
        email: email
        teams: groups
        roles: realm_access.roles
oauth:
  issuer: http://gateway.test
  sign_in:
    local: false
    oidc:
      issuer: {kc}
      client_id: portcullis
      client_secret: provider-side-secret
      name: Keycloak
{providers}"#,
        kc = kc.issuer(),
        providers = providers_yaml(&mock),
    ))
    .await;
    kc.register_client(
        "portcullis",
        Some("provider-side-secret"),
        "http://gateway.test/oauth/authorize/callback",
    );
    kc.sign_in_as(Some(json!({
        "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "preferred_username": "grace",
        "email": "grace@example.org",
        "groups": ["/engineering/ml"],
        "realm_access": {"roles": ["offline_access"]},
    })));
    let c = client();

    // The agent registers itself (as MCP clients do) and sends its user to sign in.
    let app_redirect = "http://127.0.0.1:33418/callback";
    let r = c
        .post(gw.at("/oauth/register"))
        .json(&json!({
            "client_name": "Research agent",
            "redirect_uris": [app_redirect],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let verifier = "a-verifier-of-the-agent-that-is-long-enough-0123456789";
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()),
    );
    let mut authorize = url::Url::parse("http://gateway.test/oauth/authorize").unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", app_redirect)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "models")
        .append_pair("state", "s1");

    // Browser: gateway → Keycloak → gateway callback → consent → back to the agent.
    let mut cookie = None;
    let r = follow(&gw, &mut cookie, authorize.as_str()).await;
    assert_eq!(r.status(), 302);
    assert!(location_of(&r).starts_with(&kc.issuer()));
    let r = follow(&gw, &mut cookie, &location_of(&r)).await;
    assert_eq!(r.status(), 302);
    let r = follow(&gw, &mut cookie, &location_of(&r)).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("grace@example.org"), "{html}");
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let request = &html[start..start + html[start..].find('"').unwrap()];
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .post(gw.at("/oauth/authorize/consent"))
        .header("cookie", cookie.clone().unwrap())
        .form(&[("request", request), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let back = url::Url::parse(&location_of(&r)).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    // The agent exchanges the code and calls a model with the user's token.
    let tokens: Value = c
        .post(gw.at("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", app_redirect),
            ("client_id", &client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Signing in provisioned the user and their team; the admin gives the team its key.
    let r = c
        .post(gw.at("/admin/provider-keys"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"provider": "openai", "alias": "ml", "secret": "sk-ml-team-key-7", "team": "/engineering/ml"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, h, body) = chat(&gw, &access).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-ml-team-key-7"
    );
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert_eq!(rec["auth_method"], "oauth");
    assert_eq!(rec["user"], "grace");
    assert_eq!(rec["team"], "/engineering/ml");

    // The user was provisioned from the ID token, bound to the IdP.
    let (_, users) = get(&gw, MASTER_KEY, "/admin/users").await;
    let grace = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "grace")
        .unwrap()
        .clone();
    assert_eq!(grace["issuer"], kc.issuer());
    assert_eq!(grace["teams"], json!(["/engineering/ml"]));

    // Out of the team, the same access token no longer speaks for it: no team key, no team
    // billing.
    let r = c
        .patch(gw.at("/admin/users/grace"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"teams": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, h, body) = chat(&gw, &access).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-mock-openai"
    );
    let rec = gw
        .log_of(h["x-portcullis-request-id"].to_str().unwrap())
        .await;
    assert!(rec["team"].is_null(), "{rec}");
    let r = c
        .patch(gw.at("/admin/users/grace"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"teams": ["/engineering/ml"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Per-user usage, and disabling the user ends their grant at the next refresh.
    gw.logs("user=grace", 1).await;
    let (_, usage) = get(&gw, MASTER_KEY, "/admin/usage?group_by=user").await;
    assert!(
        usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["group"] == "grace")
    );
    let r = c
        .delete(gw.at("/admin/users/grace"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, _) = chat(&gw, &access).await;
    assert_eq!(s, 403, "a disabled user's access token stops at once");
    gw.stop().await;
}

#[tokio::test]
async fn an_idp_group_mapped_to_admin_opens_the_admin_api() {
    let okta = MockIssuer::start().await;
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"identity:
  issuers:
    - issuer: {okta}
      audience: api://portcullis
      default_role: member
      claims:
        user: sub
        teams: groups
        role_values: {{ml-platform: admin}}
{providers}"#,
        okta = okta.issuer(),
        providers = providers_yaml(&mock),
    ))
    .await;
    // Okta-shaped claims: groups Everyone, ml-platform, finance.
    let admin = okta.mint(MockAlg::RS256, &okta.okta_claims("api://portcullis"));
    let (s, body) = get(&gw, &admin, "/admin/keys").await;
    assert_eq!(s, 200, "{body}");

    let mut claims = okta.okta_claims("api://portcullis");
    claims["sub"] = json!("grace@example.com");
    claims["groups"] = json!(["Everyone"]);
    let member = okta.mint(MockAlg::RS256, &claims);
    let (s, _) = get(&gw, &member, "/admin/users").await;
    assert_eq!(s, 403);
    // A member reaches only its own keys (none yet), not the admin's.
    let (s, body) = get(&gw, &member, "/admin/keys").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"], json!([]));
    gw.stop().await;
}

#[tokio::test]
async fn local_sign_in_failures_lock_out_only_the_address_they_come_from() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\noauth:\n  issuer: http://gateway.test\n  trusted_proxies: [127.0.0.1]\n{}",
        providers_yaml(&mock)
    ))
    .await;
    let c = client();
    let r = c
        .post(gw.at("/admin/users"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "lena", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let app_redirect = "http://127.0.0.1:33418/callback";
    let r = c
        .post(gw.at("/oauth/register"))
        .json(&json!({"redirect_uris": [app_redirect], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut authorize = url::Url::parse("http://gateway.test/oauth/authorize").unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", app_redirect)
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "models");
    let mut cookie = None;
    let r = follow(&gw, &mut cookie, authorize.as_str()).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let request = html[start..start + html[start..].find('"').unwrap()].to_owned();
    let sign_in = |from: &'static str, username: &'static str, password: &'static str| {
        let req = c
            .post(gw.at("/oauth/authorize/login"))
            .header("cookie", cookie.clone().unwrap())
            .header("x-forwarded-for", from)
            .form(&[
                ("request", request.as_str()),
                ("username", username),
                ("password", password),
            ]);
        async move { req.send().await.unwrap() }
    };
    // Unknown and known usernames are refused alike.
    let r = sign_in("203.0.113.9", "nobody-here", "wrong password!").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Invalid username or password")
    );
    for _ in 0..3 {
        let r = sign_in("203.0.113.9", "lena", "wrong password!").await;
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Invalid username or password")
        );
    }
    // The stranger's address now waits; Lena, elsewhere, signs in at once.
    let r = sign_in("203.0.113.9", "lena", "correct horse battery").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = sign_in("198.51.100.7", "lena", "correct horse battery").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().contains("decision"),
        "the consent page"
    );
    gw.stop().await;
}

//! The authorization server over real HTTP, driven as an OAuth client and a browser would
//! drive it, on a real SQLite file (and the main flow once on PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_core::AccessRole;
use portcullis_oauth::{
    AccessClaims, MemoryDirectory, OAuthConfig, OAuthError, OAuthServer, Principal,
};
use portcullis_store::oauth::OAuthStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: [u8; 32] = [42; 32];
const REDIRECT: &str = "http://127.0.0.1:7777/callback";

// --- harness ------------------------------------------------------------------------------

struct Harness {
    base: String,
    server: OAuthServer,
    store: Arc<dyn OAuthStore>,
    directory: MemoryDirectory,
    http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

fn directory() -> MemoryDirectory {
    let d = MemoryDirectory::new();
    d.add_user(
        "alice",
        "correct horse",
        Principal {
            subject: "user:alice".to_owned(),
            user: Some("u-alice".to_owned()),
            team: Some("t-search".to_owned()),
            teams: vec!["t-search".to_owned(), "t-infra".to_owned()],
            role: AccessRole::Member,
            service_account: None,
        },
    );
    d.add_service_account(Principal {
        subject: "sa:batch".to_owned(),
        user: None,
        team: Some("t-infra".to_owned()),
        teams: vec!["t-infra".to_owned()],
        role: AccessRole::Member,
        service_account: Some("sa-batch".to_owned()),
    });
    d
}

async fn sqlite_store() -> (Arc<dyn OAuthStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("oauth.db").display());
    let stores = portcullis_store::connect(&url, 4).await.unwrap();
    (stores.oauth, dir)
}

/// A PostgreSQL store in a fresh schema of its own.
async fn postgres_store() -> Arc<dyn OAuthStore> {
    let url = portcullis_test_support::postgres::fresh_schema_url().await;
    portcullis_store::PostgresStore::connect(&url, 4)
        .await
        .unwrap()
}

async fn serve(
    store: Arc<dyn OAuthStore>,
    config: OAuthConfig,
    dir: Option<tempfile::TempDir>,
) -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let directory = directory();
    let server = OAuthServer::new(
        &config,
        &base,
        &SECRET,
        store.clone(),
        Arc::new(directory.clone()),
        None,
    )
    .await
    .unwrap();
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Harness {
        base,
        server,
        store,
        directory,
        http,
        _dir: dir,
    }
}

async fn start() -> Harness {
    start_with(OAuthConfig::default()).await
}

async fn start_with(config: OAuthConfig) -> Harness {
    let (store, dir) = sqlite_store().await;
    serve(store, config, Some(dir)).await
}

/// A PKCE pair: (verifier, S256 challenge).
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_bytes() -> [u8; 32] {
    rand::random()
}

/// The value of the hidden `request` field of a page.
fn hidden_request(html: &str) -> String {
    let start = html
        .find("name=\"request\" value=\"")
        .unwrap_or_else(|| panic!("no request field in {html}"))
        + "name=\"request\" value=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// The query parameters of a Location header.
fn location_params(response: &reqwest::Response) -> (String, Vec<(String, String)>) {
    let location = response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location; status {}", response.status()))
        .to_str()
        .unwrap();
    let url = url::Url::parse(location).unwrap();
    let base = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap(),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path();
    (base, url.query_pairs().into_owned().collect())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A browser: keeps the one cookie the flow sets.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn register_public(&self) -> String {
        let r = self
            .http
            .post(self.url("/oauth/register"))
            .json(&json!({
                "client_name": "Test <Editor>",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        assert!(body.get("client_secret").is_none());
        body["client_id"].as_str().unwrap().to_owned()
    }

    /// GET /oauth/authorize with `query`.
    async fn authorize(&self, browser: &mut Browser, query: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(self.url("/oauth/authorize")).query(query);
        if let Some(c) = &browser.cookie {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        if let Some(set) = r.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"));
            browser.cookie = Some(set.split(';').next().unwrap().to_owned());
        }
        r
    }

    async fn post_form(
        &self,
        browser: &Browser,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(c) = &browser.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    /// Starts an authorization for `client_id` and returns the sign-in form's request.
    async fn sign_in_page(
        &self,
        browser: &mut Browser,
        client_id: &str,
        challenge: &str,
    ) -> String {
        let r = self
            .authorize(
                browser,
                &[
                    ("response_type", "code"),
                    ("client_id", client_id),
                    ("redirect_uri", REDIRECT),
                    ("code_challenge", challenge),
                    ("code_challenge_method", "S256"),
                    ("state", "xyz-state"),
                    ("scope", "models tools"),
                    // The LLM API, the default audience (RFC 8707).
                    ("resource", &self.base),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("Sign in"), "{html}");
        assert!(
            html.contains("Test &lt;Editor&gt;"),
            "client name escaped: {html}"
        );
        hidden_request(&html)
    }

    /// Signs in as alice and returns the consent form's request.
    async fn consent_page(&self, browser: &Browser, login_request: &str) -> String {
        let r = self
            .post_form(
                browser,
                "/oauth/authorize/login",
                &[
                    ("request", login_request),
                    ("username", "alice"),
                    ("password", "correct horse"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("Authorize"), "{html}");
        assert!(
            html.contains("<strong>models</strong>") && html.contains("<strong>tools</strong>")
        );
        assert!(html.contains("alice"));
        hidden_request(&html)
    }

    /// Runs the browser part of the flow; returns the code.
    async fn code_for(&self, client_id: &str, challenge: &str) -> String {
        let mut browser = Browser::default();
        let login = self.sign_in_page(&mut browser, client_id, challenge).await;
        let consent = self.consent_page(&browser, &login).await;
        let r = self
            .post_form(
                &browser,
                "/oauth/authorize/consent",
                &[("request", &consent), ("decision", "approve")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let (target, params) = location_params(&r);
        assert_eq!(target, REDIRECT);
        assert_eq!(param(&params, "state"), Some("xyz-state"));
        assert_eq!(param(&params, "iss"), Some(self.base.as_str()));
        param(&params, "code").unwrap().to_owned()
    }

    /// POST /oauth/token; returns the status and the JSON body, checking `no-store`.
    async fn token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url("/oauth/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store");
        let status = r.status();
        if status == StatusCode::UNAUTHORIZED {
            assert!(r.headers().contains_key("www-authenticate"));
        }
        (status, r.json().await.unwrap())
    }

    async fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        verifier: &str,
    ) -> (StatusCode, Value) {
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
                ("client_id", client_id),
            ],
            None,
        )
        .await
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> (StatusCode, Value) {
        self.token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ],
            None,
        )
        .await
    }

    async fn revoke(&self, client_id: &str, token: &str) -> StatusCode {
        self.http
            .post(self.url("/oauth/revoke"))
            .form(&[("token", token), ("client_id", client_id)])
            .send()
            .await
            .unwrap()
            .status()
    }

    /// A public client with tokens: (client_id, token response).
    async fn tokens(&self) -> (String, Value) {
        let client_id = self.register_public().await;
        let (verifier, challenge) = pkce();
        let code = self.code_for(&client_id, &challenge).await;
        let (status, body) = self.exchange_code(&client_id, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (client_id, body)
    }
}

fn assert_oauth_error(status: StatusCode, body: &Value, expected_status: StatusCode, error: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}

fn access(body: &Value) -> &str {
    body["access_token"].as_str().unwrap()
}

fn refresh_of(body: &Value) -> &str {
    body["refresh_token"].as_str().unwrap()
}

// --- the main flow ------------------------------------------------------------------------

/// Discovery, registration, sign-in, consent, code exchange, verification (by the server and
/// by the published JWKS), refresh.
async fn full_flow(h: &Harness) {
    // Discover.
    let r = h
        .http
        .get(h.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["issuer"], h.base);
    assert_eq!(meta["authorization_endpoint"], h.url("/oauth/authorize"));
    assert_eq!(meta["token_endpoint"], h.url("/oauth/token"));
    assert_eq!(meta["registration_endpoint"], h.url("/oauth/register"));
    assert_eq!(meta["revocation_endpoint"], h.url("/oauth/revoke"));
    assert_eq!(meta["jwks_uri"], h.url("/oauth/jwks"));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        meta["scopes_supported"],
        json!(["models", "tools", "admin"])
    );
    let resource: Value = h
        .http
        .get(h.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resource["authorization_servers"], json!([h.base]));

    // Register, authorize, exchange.
    let client_id = h.register_public().await;
    let (verifier, challenge) = pkce();
    let code = h.code_for(&client_id, &challenge).await;
    let (status, body) = h.exchange_code(&client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "models tools");
    let token = access(&body).to_owned();
    let refresh = refresh_of(&body).to_owned();

    // The server verifies it...
    let claims = h.server.verify_access_token(&token).unwrap();
    assert_eq!(claims.iss, h.base);
    assert_eq!(claims.aud, h.base);
    assert_eq!(claims.sub, "user:alice");
    assert_eq!(claims.client_id, client_id);
    assert_eq!(claims.user_id.as_deref(), Some("u-alice"));
    assert_eq!(claims.team_id.as_deref(), Some("t-search"));
    assert_eq!(claims.teams, vec!["t-search", "t-infra"]);
    assert_eq!(claims.role(), AccessRole::Member);
    assert!(claims.has_scope("models") && claims.has_scope("tools") && !claims.has_scope("admin"));
    assert!(claims.exp - claims.iat == 900);
    let identity = claims.identity();
    assert_eq!(identity.subject, "user:alice");
    assert_eq!(identity.scopes.as_deref().unwrap(), ["models", "tools"]);

    // ...and so does anyone with the published JWKS.
    let jwks: JwkSet = h
        .http
        .get(h.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&h.base]);
    validation.set_audience(&[&h.base]);
    let external: AccessClaims =
        jsonwebtoken::decode(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(external, claims);
    assert_eq!(h.server.jwks(), serde_json::to_value(&jwks).unwrap());

    // Refresh: new tokens, rotated refresh token.
    let (status, body) = h.refresh(&client_id, &refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new_refresh = refresh_of(&body).to_owned();
    assert_ne!(new_refresh, refresh);
    let new_claims = h.server.verify_access_token(access(&body)).unwrap();
    assert_ne!(new_claims.jti, claims.jti);
    assert_eq!(new_claims.sub, "user:alice");
    // A narrower scope may be asked for; a wider one may not.
    let (status, body) = h
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &new_refresh),
                ("client_id", &client_id),
                ("scope", "models"),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "models");
    let (status, body) = h
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_of(&body)),
                ("client_id", &client_id),
                ("scope", "admin"),
            ],
            None,
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");
}

#[tokio::test]
async fn authorization_code_flow_on_sqlite() {
    let h = start().await;
    full_flow(&h).await;
}

#[tokio::test]
async fn authorization_code_flow_on_postgres() {
    let h = serve(postgres_store().await, OAuthConfig::default(), None).await;
    full_flow(&h).await;
}

// --- failures -----------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let code = h.code_for(&client_id, &challenge).await;
    let (status, body) = h.exchange_code(&client_id, &code, &other_verifier).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // A missing verifier is a malformed request.
    let (status, body) = h
        .token(
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", &client_id),
            ],
            None,
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn plain_pkce_and_missing_challenges_are_refused() {
    let h = start().await;
    let client_id = h.register_public().await;
    let mut browser = Browser::default();
    let verifier = "a".repeat(43);
    for query in [
        vec![
            ("code_challenge", verifier.as_str()),
            ("code_challenge_method", "plain"),
        ],
        vec![("code_challenge", verifier.as_str())],
        vec![],
    ] {
        let mut q = vec![
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "s1"),
        ];
        q.extend(query);
        let r = h.authorize(&mut browser, &q).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        let (target, params) = location_params(&r);
        assert_eq!(target, REDIRECT);
        assert_eq!(param(&params, "error"), Some("invalid_request"));
        assert_eq!(param(&params, "state"), Some("s1"));
        assert!(param(&params, "code").is_none());
    }
    // Other redirectable errors.
    let (_, challenge) = pkce();
    let base = [
        ("client_id", client_id.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let mut token_type = base.to_vec();
    token_type.push(("response_type", "token"));
    let r = h.authorize(&mut browser, &token_type).await;
    assert_eq!(
        param(&location_params(&r).1, "error"),
        Some("unsupported_response_type")
    );
    let mut bad_scope = base.to_vec();
    bad_scope.extend([("response_type", "code"), ("scope", "models root")]);
    let r = h.authorize(&mut browser, &bad_scope).await;
    assert_eq!(
        param(&location_params(&r).1, "error"),
        Some("invalid_scope")
    );
}

#[tokio::test]
async fn a_replayed_code_fails_and_revokes_the_tokens_it_issued() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (verifier, challenge) = pkce();
    let code = h.code_for(&client_id, &challenge).await;
    let (status, first) = h.exchange_code(&client_id, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.server.verify_access_token(access(&first)).is_ok());

    let (status, body) = h.exchange_code(&client_id, &code, &verifier).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(matches!(
        h.server.verify_access_token(access(&first)),
        Err(OAuthError::TokenRevoked)
    ));
    let (status, body) = h.refresh(&client_id, refresh_of(&first)).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // An unknown code is simply refused.
    let (status, body) = h.exchange_code(&client_id, "not-a-code", &verifier).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family() {
    let h = start().await;
    let (client_id, first) = h.tokens().await;
    let r1 = refresh_of(&first).to_owned();
    let (status, second) = h.refresh(&client_id, &r1).await;
    assert_eq!(status, StatusCode::OK);
    let r2 = refresh_of(&second).to_owned();
    let a2 = access(&second).to_owned();
    assert!(h.server.verify_access_token(&a2).is_ok());

    // r1 again: refused, and everything of the family goes.
    let (status, body) = h.refresh(&client_id, &r1).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = h.refresh(&client_id, &r2).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    for token in [access(&first), a2.as_str()] {
        assert!(matches!(
            h.server.verify_access_token(token),
            Err(OAuthError::TokenRevoked)
        ));
    }
}

#[tokio::test]
async fn client_and_redirect_errors_are_shown_not_redirected() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    for (client, redirect) in [
        (client_id.as_str(), "http://127.0.0.1:7777/elsewhere"),
        (client_id.as_str(), "https://evil.example/callback"),
        ("pc-unknown", REDIRECT),
    ] {
        let r = h
            .authorize(
                &mut browser,
                &[
                    ("response_type", "code"),
                    ("client_id", client),
                    ("redirect_uri", redirect),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("location").is_none());
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let html = r.text().await.unwrap();
        assert!(html.contains("<h1>"), "{html}");
    }
    // A loopback redirect may use another port (RFC 8252).
    let r = h
        .authorize(
            &mut browser,
            &[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", "http://127.0.0.1:40000/callback"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn declining_consent_redirects_with_access_denied() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let login = h.sign_in_page(&mut browser, &client_id, &challenge).await;
    let consent = h.consent_page(&browser, &login).await;
    let r = h
        .post_form(
            &browser,
            "/oauth/authorize/consent",
            &[("request", &consent), ("decision", "deny")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (target, params) = location_params(&r);
    assert_eq!(target, REDIRECT);
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(param(&params, "state"), Some("xyz-state"));
    assert!(param(&params, "code").is_none());
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let login = h.sign_in_page(&mut browser, &client_id, &challenge).await;
    for (user, password) in [("alice", "wrong"), ("mallory", "correct horse")] {
        let r = h
            .post_form(
                &browser,
                "/oauth/authorize/login",
                &[
                    ("request", &login),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("Invalid username or password."), "{html}");
        assert!(!html.contains("Authorize"), "{html}");
        assert_eq!(hidden_request(&html), login);
    }
    // The right password still works with the same form.
    h.consent_page(&browser, &login).await;
}

#[tokio::test]
async fn forms_are_bound_to_the_browser_and_their_step() {
    let h = start().await;
    let client_id = h.register_public().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let login = h.sign_in_page(&mut browser, &client_id, &challenge).await;
    // Without the browser's cookie (a forged cross-site post), or from another browser.
    let mut other = Browser::default();
    h.sign_in_page(&mut other, &client_id, &challenge).await;
    for b in [&Browser::default(), &other] {
        let r = h
            .post_form(
                b,
                "/oauth/authorize/login",
                &[
                    ("request", &login),
                    ("username", "alice"),
                    ("password", "correct horse"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
    // A sign-in form is not a consent form, and a tampered one is refused.
    let r = h
        .post_form(
            &browser,
            "/oauth/authorize/consent",
            &[("request", &login), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    let consent = h.consent_page(&browser, &login).await;
    let tampered = format!("x{consent}");
    let r = h
        .post_form(
            &browser,
            "/oauth/authorize/consent",
            &[("request", &tampered), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn client_credentials_for_a_service_account() {
    let h = start().await;
    assert!(matches!(
        h.server.create_client("ghost", "sa-missing", None).await,
        Err(OAuthError::UnknownServiceAccount(_))
    ));
    let creds = h
        .server
        .create_client("batch jobs", "sa-batch", Some(vec!["models".to_owned()]))
        .await
        .unwrap();
    assert!(!format!("{creds:?}").contains(&creds.client_secret));

    // client_secret_basic
    let (status, body) = h
        .token(
            &[("grant_type", "client_credentials")],
            Some((&creds.client_id, &creds.client_secret)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "models");
    let claims = h.server.verify_access_token(access(&body)).unwrap();
    assert_eq!(claims.sub, "sa:batch");
    assert_eq!(claims.service_account.as_deref(), Some("sa-batch"));
    assert_eq!(claims.client_id, creds.client_id);

    // client_secret_post
    let (status, body) = h
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &creds.client_id),
                ("client_secret", &creds.client_secret),
            ],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A bad secret, a missing one, both methods at once, a scope beyond the client's.
    let (status, body) = h
        .token(
            &[("grant_type", "client_credentials")],
            Some((&creds.client_id, "not-the-secret")),
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let (status, body) = h
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &creds.client_id),
            ],
            None,
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let (status, body) = h
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &creds.client_secret),
            ],
            Some((&creds.client_id, &creds.client_secret)),
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = h
        .token(
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            Some((&creds.client_id, &creds.client_secret)),
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_scope");

    // A public client may not use the grant; an unknown grant is named as such.
    let public = h.register_public().await;
    let (status, body) = h
        .token(
            &[("grant_type", "client_credentials"), ("client_id", &public)],
            None,
        )
        .await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    let (status, body) = h
        .token(&[("grant_type", "password"), ("client_id", &public)], None)
        .await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );

    // Deleting the client ends its access.
    assert!(h.server.delete_client(&creds.client_id).await.unwrap());
    let (status, body) = h
        .token(
            &[("grant_type", "client_credentials")],
            Some((&creds.client_id, &creds.client_secret)),
        )
        .await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn revoking_an_access_token_stops_it_on_every_replica() {
    let h = start().await;
    // A second replica over the same database, serving nothing.
    let replica = OAuthServer::new(
        &OAuthConfig::default(),
        &h.base,
        &SECRET,
        h.store.clone(),
        Arc::new(h.directory.clone()),
        None,
    )
    .await
    .unwrap();
    let (client_id, body) = h.tokens().await;
    let token = access(&body).to_owned();
    assert!(replica.verify_access_token(&token).is_ok());

    // Another client cannot revoke it (and learns nothing: 200).
    let other = h.register_public().await;
    assert_eq!(h.revoke(&other, &token).await, StatusCode::OK);
    assert!(h.server.verify_access_token(&token).is_ok());

    assert_eq!(h.revoke(&client_id, &token).await, StatusCode::OK);
    assert!(matches!(
        h.server.verify_access_token(&token),
        Err(OAuthError::TokenRevoked)
    ));
    let started = Instant::now();
    while replica.verify_access_token(&token).is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the replica still accepts a revoked token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The refresh token is untouched by revoking the access token; revoking it ends it.
    let (status, body) = h.refresh(&client_id, refresh_of(&body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        h.revoke(&client_id, refresh_of(&body)).await,
        StatusCode::OK
    );
    let (status, refused) = h.refresh(&client_id, refresh_of(&body)).await;
    assert_oauth_error(status, &refused, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(matches!(
        h.server.verify_access_token(access(&body)),
        Err(OAuthError::TokenRevoked)
    ));
    // Unknown tokens: 200.
    assert_eq!(
        h.revoke(&client_id, "nothing-like-a-token").await,
        StatusCode::OK
    );
    assert_eq!(h.revoke(&client_id, "a.b.c").await, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let h = start_with(OAuthConfig {
        code_ttl: Duration::from_secs(1),
        ..OAuthConfig::default()
    })
    .await;
    let client_id = h.register_public().await;
    let (verifier, challenge) = pkce();
    let code = h.code_for(&client_id, &challenge).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = h.exchange_code(&client_id, &code, &verifier).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn registration_validates_metadata_and_confidential_clients_authenticate() {
    let h = start().await;
    let register = |body: Value| {
        let req = h.http.post(h.url("/oauth/register")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    for (body, error) in [
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://app.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "scope": "root"}),
            "invalid_client_metadata",
        ),
    ] {
        let (status, answer) = register(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert_eq!(answer["error"], error, "{body} → {answer}");
    }

    // A confidential client: the secret is shown once and required at the token endpoint.
    let (status, client) = register(json!({
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "client_secret_post",
        "scope": "models",
        "unknown_metadata": "ignored",
    }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client_id = client["client_id"].as_str().unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    assert_eq!(client["scope"], "models");
    let (verifier, challenge) = pkce();
    let mut browser = Browser::default();
    let r = h
        .authorize(
            &mut browser,
            &[
                ("response_type", "code"),
                ("client_id", client_id),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the only redirect URI is implied"
    );
    let login = hidden_request(&r.text().await.unwrap());
    let r = h
        .post_form(
            &browser,
            "/oauth/authorize/login",
            &[
                ("request", &login),
                ("username", "alice"),
                ("password", "correct horse"),
            ],
        )
        .await;
    let consent = hidden_request(&r.text().await.unwrap());
    let r = h
        .post_form(
            &browser,
            "/oauth/authorize/consent",
            &[("request", &consent), ("decision", "approve")],
        )
        .await;
    let (_, params) = location_params(&r);
    let code = param(&params, "code").unwrap().to_owned();
    assert!(param(&params, "state").is_none());
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", client_id),
    ];
    let (status, body) = h.token(&form, None).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    form.push(("client_secret", secret));
    let (status, body) = h.token(&form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "models");
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh_token grant registered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_code_redemptions_never_both_succeed() {
    let h = start().await;
    let client_id = h.register_public().await;
    for _ in 0..5 {
        let (verifier, challenge) = pkce();
        let code = h.code_for(&client_id, &challenge).await;
        let (a, b) = tokio::join!(
            h.exchange_code(&client_id, &code, &verifier),
            h.exchange_code(&client_id, &code, &verifier)
        );
        let ok: Vec<&Value> = [&a, &b]
            .into_iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, body)| body)
            .collect();
        assert!(ok.len() <= 1, "{a:?} {b:?}");
        // The loser was a replay: whatever the winner got is revoked.
        for body in ok {
            assert!(matches!(
                h.server.verify_access_token(access(body)),
                Err(OAuthError::TokenRevoked)
            ));
            let (status, _) = h.refresh(&client_id, refresh_of(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }
}

#[tokio::test]
async fn native_apps_register_private_use_schemes_and_loopback_redirects_on_any_port() {
    let h = start().await;
    let r = h
        .http
        .post(h.url("/oauth/register"))
        .json(&json!({
            "client_name": "Editor",
            "redirect_uris": [
                "cursor://anysphere.cursor-retrieval/oauth/callback",
                "com.example.app:/oauth2redirect",
                "http://127.0.0.1/callback",
                "http://[::1]:8123/",
            ],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    let client: Value = r.json().await.unwrap();
    assert_eq!(
        client["redirect_uris"].as_array().unwrap().len(),
        4,
        "{client}"
    );
    let client_id = client["client_id"].as_str().unwrap();
    let (_, challenge) = pkce();
    for (redirect, accepted) in [
        ("cursor://anysphere.cursor-retrieval/oauth/callback", true),
        ("com.example.app:/oauth2redirect", true),
        ("http://127.0.0.1:49152/callback", true),
        ("http://[::1]:60001/", true),
        ("cursor://anysphere.cursor-retrieval/elsewhere", false),
        ("http://127.0.0.1:49152/other", false),
    ] {
        let mut browser = Browser::default();
        let r = h
            .authorize(
                &mut browser,
                &[
                    ("response_type", "code"),
                    ("client_id", client_id),
                    ("redirect_uri", redirect),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                    ("state", "s"),
                ],
            )
            .await;
        let status = r.status();
        let page = r.text().await.unwrap();
        if accepted {
            assert_eq!(status, StatusCode::OK, "{redirect}: {page}");
            assert!(page.contains("password"), "{redirect}: the sign-in page");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect}");
        }
    }
    for bad in ["javascript:alert(1)", "data:text/html,x", "file:///tmp/x"] {
        let r = h
            .http
            .post(h.url("/oauth/register"))
            .json(&json!({"redirect_uris": [bad], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_redirect_uri", "{bad}");
    }
}

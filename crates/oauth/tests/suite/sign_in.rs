//! Sign-in on the authorization page: delegated to an OpenID Connect provider (an in-process
//! provider over real HTTP) and the protections of the local form and of registration, driven
//! as a browser and an OAuth client would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::AccessRole;
use portcullis_oauth::{
    MemoryDirectory, OAuthConfig, OAuthServer, OidcSignInConfig, Principal, SignInConfig,
};
use portcullis_oidc::{IssuerConfig, Verifier};
use portcullis_test_support::oidc::MockIssuer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: [u8; 32] = [7; 32];
const APP_REDIRECT: &str = "http://127.0.0.1:7777/callback";
const GATEWAY_CLIENT: &str = "portcullis-gateway";
const GATEWAY_SECRET: &str = "provider-secret-of-the-gateway";

struct Harness {
    base: String,
    idp: MockIssuer,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn ada(role: AccessRole) -> Principal {
    Principal {
        subject: "u-ada".to_owned(),
        user: Some("u-ada".to_owned()),
        team: Some("ml-platform".to_owned()),
        teams: vec!["ml-platform".to_owned()],
        role,
        service_account: None,
    }
}

/// The gateway's authorization server with sign-in delegated to a fresh provider.
async fn start(local: bool, role: AccessRole, tune: impl FnOnce(&mut OAuthConfig)) -> Harness {
    let idp = MockIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("oauth.db").display());
    let stores = portcullis_store::connect(&url, 4).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());

    let mut issuer = IssuerConfig::new(idp.issuer(), "api://gateway");
    issuer.claims.email = Some("email".to_owned());
    issuer.claims.teams = Some("groups".to_owned());
    let verifier = Verifier::new(vec![issuer]).unwrap();
    let mut oidc = OidcSignInConfig::new(idp.issuer(), GATEWAY_CLIENT);
    oidc.client_secret = Some(GATEWAY_SECRET.to_owned());
    oidc.name = Some("Okta".to_owned());
    let mut config = OAuthConfig {
        sign_in: SignInConfig {
            local,
            oidc: Some(oidc),
        },
        ..OAuthConfig::default()
    };
    tune(&mut config);

    let directory = MemoryDirectory::new();
    directory.add_external_user(&idp.issuer(), "00u-ada", ada(role));
    directory.add_user("alice", "correct horse battery", ada(AccessRole::Member));
    let server = OAuthServer::new(
        &config,
        &base,
        &SECRET,
        stores.oauth.clone(),
        Arc::new(directory),
        Some(verifier),
    )
    .await
    .unwrap();
    let router = server.router();
    // As the gateway's server does, requests carry the connection's peer address.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    idp.register_client(
        GATEWAY_CLIENT,
        Some(GATEWAY_SECRET),
        &format!("{base}/oauth/authorize/callback"),
    );
    idp.sign_in_as(Some(json!({
        "sub": "00u-ada",
        "email": "ada@example.com",
        "groups": ["ml-platform"],
    })));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Harness {
        base,
        idp,
        http,
        _dir: dir,
    }
}

fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn location(r: &reqwest::Response) -> url::Url {
    let l = r
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location; status {}", r.status()))
        .to_str()
        .unwrap();
    url::Url::parse(l).unwrap()
}

fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn hidden_request(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no request field in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// An HTML attribute's value as the browser reads it.
fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// A browser: follows what it is told and keeps the gateway's cookie.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    async fn get(&mut self, h: &Harness, url: &str) -> reqwest::Response {
        let mut req = h.http.get(url);
        if url.starts_with(&h.base)
            && let Some(c) = &self.cookie
        {
            req = req.header("cookie", c);
        }
        let r = req.send().await.unwrap();
        if let Some(set) = r.headers().get("set-cookie") {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        r
    }

    async fn post(&self, h: &Harness, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = h.http.post(format!("{}{path}", h.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }
}

impl Harness {
    async fn register_app(&self) -> String {
        let r = self
            .http
            .post(format!("{}/oauth/register", self.base))
            .json(&json!({
                "client_name": "Agent",
                "redirect_uris": [APP_REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "none",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["client_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn authorize_url(&self, client_id: &str, challenge: &str, scope: &str) -> String {
        let mut url = url::Url::parse(&format!("{}/oauth/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", APP_REDIRECT)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "app-state")
            .append_pair("scope", scope);
        url.to_string()
    }

    /// From the application's authorization request to the gateway's callback: returns the
    /// browser and the callback URL the provider sent it to.
    async fn through_provider(&self, client_id: &str, challenge: &str) -> (Browser, String) {
        let mut browser = Browser::default();
        let r = browser
            .get(self, &self.authorize_url(client_id, challenge, "models"))
            .await;
        assert_eq!(r.status(), StatusCode::FOUND, "straight to the provider");
        let to_idp = location(&r);
        assert!(to_idp.as_str().starts_with(&self.idp.issuer()));
        let r = browser.get(self, to_idp.as_str()).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        let back = location(&r);
        assert!(
            back.as_str()
                .starts_with(&format!("{}/oauth/authorize/callback", self.base)),
            "{back}"
        );
        (browser, back.to_string())
    }
}

#[tokio::test]
async fn a_user_signs_in_through_the_identity_provider_and_the_client_gets_tokens() {
    let h = start(false, AccessRole::Member, |_| {}).await;
    let client_id = h.register_app().await;
    let (verifier, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "models"))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let to_idp = location(&r);

    // What the provider was asked: the code flow with PKCE S256 and a nonce, for the
    // gateway's own client and callback; the PKCE verifier never travels.
    assert_eq!(query(&to_idp, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&to_idp, "client_id").as_deref(), Some(GATEWAY_CLIENT));
    assert_eq!(
        query(&to_idp, "redirect_uri"),
        Some(format!("{}/oauth/authorize/callback", h.base))
    );
    assert_eq!(
        query(&to_idp, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&to_idp, "code_challenge").unwrap().len(), 43);
    assert!(query(&to_idp, "nonce").unwrap().len() >= 32);
    assert_eq!(
        query(&to_idp, "scope").as_deref(),
        Some("openid profile email")
    );
    assert!(!to_idp.as_str().contains("code_verifier"));

    let r = browser.get(&h, to_idp.as_str()).await;
    let back = location(&r);
    let r = browser.get(&h, back.as_str()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Authorize Agent?"), "{html}");
    assert!(html.contains("ada@example.com"), "{html}");
    assert_eq!(h.idp.token_requests(), 1);

    let r = browser
        .post(
            &h,
            "/oauth/authorize/consent",
            &[("request", &hidden_request(&html)), ("decision", "approve")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to_app = location(&r);
    assert!(to_app.as_str().starts_with(APP_REDIRECT));
    assert_eq!(query(&to_app, "state").as_deref(), Some("app-state"));
    let code = query(&to_app, "code").unwrap();

    let r = h
        .http
        .post(format!("{}/oauth/token", h.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", APP_REDIRECT),
            ("client_id", &client_id),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["sub"], "u-ada");
    assert_eq!(payload["scope"], "models");
    assert!(body["refresh_token"].is_string());
}

#[tokio::test]
async fn the_sign_in_page_offers_both_ways_when_local_users_are_enabled() {
    let h = start(true, AccessRole::Member, |_| {}).await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "models"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Sign in with Okta"), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");

    // The button goes through the gateway to the provider, and on to the consent page.
    let start = html.find("id=\"sso\" href=\"").unwrap() + "id=\"sso\" href=\"".len();
    let end = html[start..].find('"').unwrap() + start;
    let button = unescape(&html[start..end]);
    let r = browser.get(&h, &button).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let r = browser.get(&h, location(&r).as_str()).await;
    let r = browser.get(&h, location(&r).as_str()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("ada@example.com"));

    // The local form still works beside it.
    let r = browser
        .post(
            &h,
            "/oauth/authorize/login",
            &[
                ("request", &hidden_request(&html)),
                ("username", "alice"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Authorize Agent?"));
}

#[tokio::test]
async fn hostile_or_failed_answers_from_the_provider_are_refused() {
    let h = start(false, AccessRole::Member, |_| {}).await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();

    // An ID token for another nonce (a replayed or injected token).
    h.idp
        .override_id_token_claims(Some(json!({"nonce": "someone-elses"})));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    let r = browser.get(&h, &callback).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("could not be verified"));

    // An ID token issued to another client.
    h.idp
        .override_id_token_claims(Some(json!({"aud": "another-app"})));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(
        browser.get(&h, &callback).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Several audiences without `azp` naming the gateway.
    h.idp.override_id_token_claims(Some(
        json!({"aud": [GATEWAY_CLIENT, "another-app"], "azp": "another-app"}),
    ));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(
        browser.get(&h, &callback).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // An expired ID token.
    h.idp
        .override_id_token_claims(Some(json!({"exp": 1_000_000_000})));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(
        browser.get(&h, &callback).await.status(),
        StatusCode::UNAUTHORIZED
    );
    h.idp.override_id_token_claims(None);

    // The callback replayed: the provider refuses the used code.
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(browser.get(&h, &callback).await.status(), StatusCode::OK);
    assert_eq!(
        browser.get(&h, &callback).await.status(),
        StatusCode::BAD_GATEWAY
    );

    // The callback opened in another browser (no cookie): refused before any exchange.
    let (_, callback) = h.through_provider(&client_id, &challenge).await;
    let before = h.idp.token_requests();
    let mut other = Browser::default();
    assert_eq!(
        other.get(&h, &callback).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(h.idp.token_requests(), before);

    // A tampered state.
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    let mut url = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("x{}", &v[1..])
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    assert_eq!(
        browser.get(&h, url.as_str()).await.status(),
        StatusCode::BAD_REQUEST
    );

    // An answer claiming to come from another issuer (mix-up, RFC 9207).
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    let r = browser
        .get(&h, &format!("{callback}&iss=https%3A%2F%2Fevil.example"))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The user declines at the provider: the application hears access_denied.
    h.idp.refuse_sign_in(Some("access_denied"));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    let r = browser.get(&h, &callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to_app = location(&r);
    assert!(to_app.as_str().starts_with(APP_REDIRECT));
    assert_eq!(query(&to_app, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&to_app, "state").as_deref(), Some("app-state"));
    h.idp.refuse_sign_in(None);

    // Someone the directory does not know (or has disabled).
    h.idp.sign_in_as(Some(json!({"sub": "00u-mallory"})));
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(
        browser.get(&h, &callback).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_wrong_client_secret_at_the_provider_fails_the_sign_in_cleanly() {
    let h = start(false, AccessRole::Member, |c| {
        if let Some(oidc) = &mut c.sign_in.oidc {
            oidc.client_secret = Some("not-the-secret".to_owned());
        }
    })
    .await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    let r = browser.get(&h, &callback).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let html = r.text().await.unwrap();
    assert!(html.contains("did not complete the sign-in"), "{html}");
    assert!(!html.contains("not-the-secret"));
}

#[tokio::test]
async fn client_secret_post_is_supported() {
    let h = start(false, AccessRole::Member, |c| {
        if let Some(oidc) = &mut c.sign_in.oidc {
            oidc.token_endpoint_auth = "client_secret_post".to_owned();
        }
    })
    .await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let (mut browser, callback) = h.through_provider(&client_id, &challenge).await;
    assert_eq!(browser.get(&h, &callback).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn only_administrators_are_granted_the_admin_scope() {
    for (role, granted) in [
        (AccessRole::Member, "models"),
        (AccessRole::Admin, "models admin"),
    ] {
        let h = start(false, role, |_| {}).await;
        let client_id = h.register_app().await;
        let (_, challenge) = pkce();
        let mut browser = Browser::default();
        let r = browser
            .get(&h, &h.authorize_url(&client_id, &challenge, "models admin"))
            .await;
        let r = browser.get(&h, location(&r).as_str()).await;
        let r = browser.get(&h, location(&r).as_str()).await;
        let html = r.text().await.unwrap();
        assert!(html.contains("<strong>models</strong>"), "{html}");
        assert_eq!(
            html.contains("<strong>admin</strong>"),
            granted.contains("admin"),
            "{role:?}: {html}"
        );
    }

    // A request for `admin` alone, by a member: nothing can be granted.
    let h = start(false, AccessRole::Member, |_| {}).await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "admin"))
        .await;
    let r = browser.get(&h, location(&r).as_str()).await;
    let r = browser.get(&h, location(&r).as_str()).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        query(&location(&r), "error").as_deref(),
        Some("invalid_scope")
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_username_for_a_while() {
    let h = start(true, AccessRole::Member, |c| c.max_failed_sign_ins = 3).await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "models"))
        .await;
    let request = hidden_request(&r.text().await.unwrap());
    let attempt = |username: &'static str, password: &'static str| {
        let request = request.clone();
        let browser = &browser;
        let h = &h;
        async move {
            browser
                .post(
                    h,
                    "/oauth/authorize/login",
                    &[
                        ("request", &request),
                        ("username", username),
                        ("password", password),
                    ],
                )
                .await
        }
    };
    for _ in 0..3 {
        let r = attempt("Alice", "wrong password!").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("Invalid username or password")
        );
    }
    // Locked: even the right password is refused, whatever the case of the username.
    let r = attempt("alice", "correct horse battery").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
}

#[tokio::test]
async fn unauthenticated_client_registration_is_rate_limited() {
    let h = start(true, AccessRole::Member, |c| c.registrations_per_minute = 2).await;
    h.register_app().await;
    h.register_app().await;
    let r = h
        .http
        .post(format!("{}/oauth/register", h.base))
        .json(&json!({"redirect_uris": [APP_REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

/// Posts the local sign-in form as a browser behind a proxy would (`X-Forwarded-For`).
async fn sign_in_from(
    h: &Harness,
    browser: &Browser,
    request: &str,
    forwarded_for: Option<&str>,
    password: &str,
) -> reqwest::Response {
    let mut req = h
        .http
        .post(format!("{}/oauth/authorize/login", h.base))
        .form(&[
            ("request", request),
            ("username", "alice"),
            ("password", password),
        ]);
    if let Some(c) = &browser.cookie {
        req = req.header("cookie", c);
    }
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", format!("{ip}, 127.0.0.1"));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_stranger_guessing_passwords_locks_out_only_their_own_address() {
    let h = start(true, AccessRole::Member, |c| {
        c.max_failed_sign_ins = 5;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "models"))
        .await;
    let request = hidden_request(&r.text().await.unwrap());
    let stranger = Some("203.0.113.9");
    for _ in 0..3 {
        let r = sign_in_from(&h, &browser, &request, stranger, "wrong password!").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The stranger now waits between attempts, even with the right password…
    let r = sign_in_from(&h, &browser, &request, stranger, "correct horse battery").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins"));
    // …while the user, elsewhere, signs in at once.
    let r = sign_in_from(
        &h,
        &browser,
        &request,
        Some("198.51.100.7"),
        "correct horse battery",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text().await.unwrap().contains("consent"),
        "the consent page"
    );
    // The delay grows with each failure and then passes.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let r = sign_in_from(&h, &browser, &request, stranger, "still wrong!!").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = sign_in_from(&h, &browser, &request, stranger, "correct horse battery").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let h = start(true, AccessRole::Member, |c| c.max_failed_sign_ins = 3).await;
    let client_id = h.register_app().await;
    let (_, challenge) = pkce();
    let mut browser = Browser::default();
    let r = browser
        .get(&h, &h.authorize_url(&client_id, &challenge, "models"))
        .await;
    let request = hidden_request(&r.text().await.unwrap());
    for spoofed in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let r = sign_in_from(&h, &browser, &request, Some(spoofed), "wrong password!").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Every attempt counted against the connection's address: a new spoofed one is locked too.
    let r = sign_in_from(
        &h,
        &browser,
        &request,
        Some("203.0.113.4"),
        "correct horse battery",
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

//! The console's single sign-on through the gateway's own OAuth server: a local user signs in
//! on the server's page and comes back to the console with a session that the admin API
//! accepts under the user's role; forged, replayed or unbound callbacks and foreign `next`
//! addresses get nowhere.

use std::collections::BTreeMap;

use crate::common::{MASTER_KEY, TestGateway, client, providers_yaml};
use portcullis_test_support::{MockIssuer, MockUpstream};
use serde_json::{Value, json};

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const ISSUER: &str = "http://gateway.test";

/// A browser without redirects followed: its cookies for the gateway (by name; paths are not
/// told apart), the gateway's public issuer URL mapped to the test's listener.
struct Browser<'a> {
    gw: &'a TestGateway,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(gw: &'a TestGateway) -> Self {
        Self {
            gw,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    /// The address to send a request for `url` to, and whether it is the gateway's.
    fn url(&self, url: &str) -> (String, bool) {
        match url.strip_prefix(ISSUER) {
            Some(path) => (self.gw.at(path), true),
            None if url.starts_with('/') => (self.gw.at(url), true),
            None => (url.to_owned(), false),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for set in r.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let (url, to_gateway) = self.url(url);
        let mut req = self.http.get(url);
        if to_gateway {
            req = req.header("cookie", self.cookie_header());
        }
        let r = req.send().await.unwrap();
        if to_gateway {
            self.keep_cookies(&r);
        }
        r
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let r = self
            .http
            .post(self.url(url).0)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Starts the console's single sign-on for `next` and signs in on the OAuth server's
    /// page as `user`: the callback URL the server sends the browser to.
    async fn sign_in_until_callback(&mut self, next: &str, user: &str, password: &str) -> String {
        let mut start = url::Url::parse("http://gateway.test/ui/auth/oauth").unwrap();
        start.query_pairs_mut().append_pair("next", next);
        let r = self.get(start.as_str()).await;
        assert_eq!(r.status(), 303);
        let authorize = location(&r);
        assert!(
            authorize.starts_with("http://gateway.test/oauth/authorize?"),
            "{authorize}"
        );
        assert!(self.cookies.contains_key("portcullis_console_oauth"));
        let set = r.headers()["set-cookie"].to_str().unwrap();
        assert!(
            set.contains("HttpOnly")
                && set.contains("SameSite=Lax")
                && set.contains("Path=/ui/auth/"),
            "{set}"
        );
        let query: BTreeMap<String, String> = url::Url::parse(&authorize)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(query["client_id"], "portcullis-console");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(
            query["redirect_uri"],
            "http://gateway.test/ui/auth/callback"
        );
        assert!(!authorize.contains("code_verifier"));

        let r = self.get(&authorize).await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        let request = hidden(&html, "request");
        let r = self
            .post_form(
                "http://gateway.test/oauth/authorize/login",
                &[
                    ("request", request.as_str()),
                    ("username", user),
                    ("password", password),
                ],
            )
            .await;
        // The console is the gateway's own client: no consent page.
        assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
        let callback = location(&r);
        assert!(
            callback.starts_with("http://gateway.test/ui/auth/callback?code="),
            "{callback}"
        );
        callback
    }
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// The `error` a redirect to the sign-in page carries.
fn sign_in_error(r: &reqwest::Response) -> String {
    let to = location(r);
    assert!(to.starts_with("/ui/sign-in?"), "{to}");
    url::Url::parse(&format!("http://x{to}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

async fn admin_post(gw: &TestGateway, path: &str, body: Value) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{path}: {}", r.text().await.unwrap());
}

async fn get_with_session(gw: &TestGateway, session: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(gw.at(path))
        .header("cookie", format!("portcullis_console={session}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn start() -> (MockUpstream, TestGateway) {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}\noauth:\n  issuer: {ISSUER}\n{}",
        providers_yaml(&mock)
    ))
    .await;
    admin_post(&gw, "/admin/teams", json!({"id": "ml", "name": "ML"})).await;
    admin_post(
        &gw,
        "/admin/users",
        json!({"id": "ada", "role": "admin", "password": "correct horse battery"}),
    )
    .await;
    admin_post(
        &gw,
        "/admin/users",
        json!({"id": "vic", "email": "vic@example.com", "role": "viewer", "teams": ["ml"],
               "password": "staple battery horse"}),
    )
    .await;
    (mock, gw)
}

#[tokio::test]
async fn an_admin_signs_in_to_the_console_through_the_oauth_server() {
    let (_mock, gw) = start().await;
    let methods: Value = client()
        .get(gw.at("/ui/api/sign-in-methods"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(methods["oauth"], true, "{methods}");

    let mut browser = Browser::new(&gw);
    let callback = browser
        .sign_in_until_callback("/ui/logs?status=error", "ada", "correct horse battery")
        .await;
    let secret = browser.cookies["portcullis_console_oauth"].clone();
    let r = browser.get(&callback).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/ui/logs?status=error");
    let cookies = set_cookies(&r);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis_console=") && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis_console_oauth=;") && c.contains("Max-Age=0")),
        "the sign-in's cookie is cleared: {cookies:?}"
    );
    let session = browser.cookies["portcullis_console"].clone();

    let (status, me) = get_with_session(&gw, &session, "/ui/api/session").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "ada");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["method"], "oauth");
    assert_eq!(me["admin"], true);
    let (status, logs) = get_with_session(&gw, &session, "/admin/logs?limit=5").await;
    assert_eq!(status, 200, "{logs}");
    assert!(logs["data"].is_array());
    let (status, _) = get_with_session(&gw, &session, "/admin/users").await;
    assert_eq!(status, 200);

    // The same callback again, its browser cookie restored: the code was used, nothing is
    // signed in.
    let mut replay = Browser::new(&gw);
    replay
        .cookies
        .insert("portcullis_console_oauth".into(), secret);
    let r = replay.get(&callback).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        sign_in_error(&r),
        "The sign-in could not be completed: start again"
    );
    assert!(!replay.cookies.contains_key("portcullis_console"));
    // The first session is unaffected.
    let (status, _) = get_with_session(&gw, &session, "/ui/api/session").await;
    assert_eq!(status, 200);
    gw.stop().await;
}

/// A started sign-in's browser secret and authorize URL (the browser is dropped).
async fn browser_secret_of(gw: &TestGateway, next: &str) -> (String, String) {
    let mut b = Browser::new(gw);
    let r = b
        .get(&format!("http://gateway.test/ui/auth/oauth?next={next}"))
        .await;
    (b.cookies["portcullis_console_oauth"].clone(), location(&r))
}

#[tokio::test]
async fn a_viewer_signed_in_by_single_sign_on_reads_only_its_teams_logs() {
    let (_mock, gw) = start().await;
    let mut browser = Browser::new(&gw);
    let callback = browser
        .sign_in_until_callback("/ui/", "vic@example.com", "staple battery horse")
        .await;
    let r = browser.get(&callback).await;
    assert_eq!(location(&r), "/ui/");
    let session = browser.cookies["portcullis_console"].clone();
    let (status, me) = get_with_session(&gw, &session, "/ui/api/session").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "vic");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["admin"], false);
    assert_eq!(me["teams"], json!(["ml"]));
    let (status, _) = get_with_session(&gw, &session, "/admin/logs").await;
    assert_eq!(status, 200);
    let (status, body) = get_with_session(&gw, &session, "/admin/logs?team=other").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = get_with_session(&gw, &session, "/admin/users").await;
    assert_eq!(status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn forged_unbound_and_foreign_callbacks_are_refused() {
    let (_mock, gw) = start().await;

    // No browser cookie: refused — and the code is not spent, so the browser that started the
    // sign-in still finishes it.
    let mut browser = Browser::new(&gw);
    let callback = browser
        .sign_in_until_callback("/ui/keys", "ada", "correct horse battery")
        .await;
    let started = browser.cookies.clone();
    let mut stranger = Browser::new(&gw);
    let r = stranger.get(&callback).await;
    assert_eq!(r.status(), 303);
    assert!(
        sign_in_error(&r).contains("another browser"),
        "{}",
        location(&r)
    );
    assert!(
        location(&r).contains("next=%2Fui%2Fkeys"),
        "the sign-in page keeps where the user was going: {}",
        location(&r)
    );
    assert!(!stranger.cookies.contains_key("portcullis_console"));
    // Another browser's own sign-in cookie does not fit either.
    let (other_secret, _) = browser_secret_of(&gw, "/ui/").await;
    stranger
        .cookies
        .insert("portcullis_console_oauth".into(), other_secret);
    let r = stranger.get(&callback).await;
    assert!(sign_in_error(&r).contains("another browser"));
    assert!(!stranger.cookies.contains_key("portcullis_console"));

    // A forged state: the seal breaks.
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged.query_pairs().into_owned().collect();
    {
        let mut q = forged.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            if k == "state" {
                let (payload, tag) = v.split_once('.').unwrap();
                let mut json: Value = serde_json::from_slice(
                    &base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        payload,
                    )
                    .unwrap(),
                )
                .unwrap();
                json["next"] = json!("/ui/settings");
                let payload = base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    serde_json::to_vec(&json).unwrap(),
                );
                q.append_pair(k, &format!("{payload}.{tag}"));
            } else {
                q.append_pair(k, v);
            }
        }
    }
    let r = browser.get(forged.as_str()).await;
    assert!(sign_in_error(&r).contains("another browser"));
    assert!(!browser.cookies.contains_key("portcullis_console"));

    // The console's code is no use at the token endpoint.
    let code = pairs.iter().find(|(k, _)| k == "code").unwrap().1.clone();
    let r = client()
        .post(gw.at("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "portcullis-console"),
            ("code", &code),
            ("code_verifier", &"a".repeat(43)),
            ("redirect_uri", "http://gateway.test/ui/auth/callback"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    // The browser that started it (its cookie restored) finishes it.
    let mut fresh = Browser::new(&gw);
    fresh.cookies = started;
    let r = fresh.get(&callback).await;
    assert_eq!(location(&r), "/ui/keys");
    assert!(fresh.cookies.contains_key("portcullis_console"));

    // A sign-in asked to end elsewhere ends in the console.
    for next in [
        "https://evil.example",
        "//evil.example/ui/",
        "/admin/keys",
        "/ui/../admin/keys",
    ] {
        let mut b = Browser::new(&gw);
        let callback = b
            .sign_in_until_callback(next, "ada", "correct horse battery")
            .await;
        let r = b.get(&callback).await;
        assert_eq!(location(&r), "/ui/", "next={next}");
        assert!(b.cookies.contains_key("portcullis_console"));
    }

    // The server's error answers become a message on the sign-in page; its description is
    // never shown.
    let (secret, authorize) = browser_secret_of(&gw, "/ui/").await;
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut denied = url::Url::parse("http://gateway.test/ui/auth/callback").unwrap();
    denied
        .query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "Call +1 555 0100 to unlock your account",
        )
        .append_pair("state", &state);
    let mut b = Browser::new(&gw);
    b.cookies.insert("portcullis_console_oauth".into(), secret);
    let r = b.get(denied.as_str()).await;
    let message = sign_in_error(&r);
    assert_eq!(message, "Sign-in was cancelled or refused");
    assert!(!b.cookies.contains_key("portcullis_console"));

    // A wrong password stays on the server's page, which says so.
    let mut b = Browser::new(&gw);
    let r = b.get("http://gateway.test/ui/auth/oauth").await;
    let r = b.get(&location(&r)).await;
    let request = hidden(&r.text().await.unwrap(), "request");
    let r = b
        .post_form(
            "http://gateway.test/oauth/authorize/login",
            &[
                ("request", request.as_str()),
                ("username", "ada"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Invalid username or password")
    );
    gw.stop().await;
}

#[tokio::test]
async fn without_an_oauth_block_there_is_no_single_sign_on() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    let methods: Value = client()
        .get(gw.at("/ui/api/sign-in-methods"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(methods["oauth"], false);
    for path in [
        "/ui/auth/oauth?next=/ui/",
        "/ui/auth/callback?code=x&state=y",
    ] {
        let r = client().get(gw.at(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("oauth"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_user_of_the_identity_provider_signs_in_to_the_console() {
    let idp = MockIssuer::start().await;
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&format!(
        r#"secret_key: {SECRET_KEY}
identity:
  issuers:
    - issuer: {idp}
      audience: portcullis
      claims:
        user: preferred_username
        email: email
oauth:
  issuer: {ISSUER}
  sign_in:
    local: false
    oidc:
      issuer: {idp}
      client_id: portcullis
      client_secret: provider-side-secret
{providers}"#,
        idp = idp.issuer(),
        providers = providers_yaml(&mock),
    ))
    .await;
    idp.register_client(
        "portcullis",
        Some("provider-side-secret"),
        "http://gateway.test/oauth/authorize/callback",
    );
    idp.sign_in_as(Some(json!({
        "sub": "2f6c0a1e-5b9d-4c43-9d3e-6f1f3d2e9a10",
        "preferred_username": "grace",
        "email": "grace@example.org",
    })));

    // Console → gateway's authorize → provider → gateway's provider callback → console.
    let mut browser = Browser::new(&gw);
    let r = browser
        .get("http://gateway.test/ui/auth/oauth?next=/ui/usage")
        .await;
    let r = browser.get(&location(&r)).await;
    assert_eq!(r.status(), 302);
    let at_provider = location(&r);
    assert!(at_provider.starts_with(&idp.issuer()), "{at_provider}");
    let r = browser.get(&at_provider).await;
    let r = browser.get(&location(&r)).await;
    assert_eq!(r.status(), 303, "no consent page");
    let callback = location(&r);
    assert!(callback.starts_with("http://gateway.test/ui/auth/callback?"));
    let r = browser.get(&callback).await;
    assert_eq!(location(&r), "/ui/usage");
    let session = browser.cookies["portcullis_console"].clone();
    let (status, me) = get_with_session(&gw, &session, "/ui/api/session").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"], "grace");
    assert_eq!(me["method"], "oauth");
    gw.stop().await;
}

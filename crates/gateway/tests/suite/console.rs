//! The web console over HTTP, as a browser meets it: pages served with strict security and
//! caching headers, sign-in with the master key or a local user's password, a session cookie
//! that is `HttpOnly` and `SameSite=Strict`, the admin API accepting that session under the
//! user's role and teams, anti-CSRF and origin checks on every state-changing call, sign-out,
//! and sessions that end (expiry, idleness, a disabled user, a new master key).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common::{MASTER_KEY, TestGateway, client, providers_yaml};
use portcullis_test_support::MockUpstream;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// A browser's view of the console: its cookie and anti-CSRF token once signed in.
struct Browser<'a> {
    gw: &'a TestGateway,
    origin: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(gw: &'a TestGateway) -> Self {
        Self {
            gw,
            origin: gw.url.clone(),
            cookie: None,
            csrf: None,
        }
    }

    /// Signs in with `body`; answers the status, the session (or error) and the headers.
    async fn sign_in(&mut self, body: Value) -> (u16, Value, HeaderMap) {
        let r = client()
            .post(self.gw.at("/ui/api/session"))
            .header("origin", &self.origin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let v: Value = r.json().await.unwrap();
        if status == 200 {
            let set = headers["set-cookie"].to_str().unwrap();
            self.cookie = Some(set.split(';').next().unwrap().to_owned());
            self.csrf = Some(v["csrf_token"].as_str().unwrap().to_owned());
        }
        (status, v, headers)
    }

    /// A request with the session cookie; state-changing ones carry the token and the origin
    /// as the console's script sends them.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with(method, path, body, self.csrf.as_deref(), Some(&self.origin))
            .await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        csrf: Option<&str>,
        origin: Option<&str>,
    ) -> (u16, Value) {
        let c = client();
        let mut req = match method {
            "GET" => c.get(self.gw.at(path)),
            "POST" => c.post(self.gw.at(path)),
            "PATCH" => c.patch(self.gw.at(path)),
            "DELETE" => c.delete(self.gw.at(path)),
            _ => unreachable!(),
        };
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        if method != "GET" {
            if let Some(t) = csrf {
                req = req.header("x-portcullis-csrf", t);
            }
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

async fn admin(gw: &TestGateway, method: &str, path: &str, body: Value) -> (u16, Value) {
    let c = client();
    let req = match method {
        "POST" => c.post(gw.at(path)).json(&body),
        "PATCH" => c.patch(gw.at(path)).json(&body),
        "DELETE" => c.delete(gw.at(path)),
        _ => c.get(gw.at(path)),
    };
    let r = req.bearer_auth(MASTER_KEY).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn pages_are_served_with_strict_headers_and_cached_by_version() {
    let gw = TestGateway::start("").await;
    let c = client();

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects.get(gw.at("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/ui/");

    for path in ["/ui/", "/ui/logs", "/ui/logs/0193aa", "/ui/keys"] {
        let r = c.get(gw.at(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-cache");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
    }

    let html = c
        .get(gw.at("/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let end = html.find("/app.js\"").unwrap() + "/app.js".len();
    let app_js = &html[html[..end].rfind("/ui/static/").unwrap()..end];
    assert!(app_js.ends_with("/app.js"), "{app_js}");
    assert!(!html.contains("<script>"), "no inline script");

    let r = c
        .get(gw.at(app_js))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = r.headers()["etag"].clone();
    let r = c
        .get(gw.at(app_js))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c.get(gw.at("/ui/static/x/nope.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(gw.at("/ui/api/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn master_key_sign_in_sets_a_strict_cookie_the_admin_api_accepts() {
    let gw = TestGateway::start("").await;
    let mut b = Browser::new(&gw);

    let (status, body, _) = b
        .sign_in(json!({"master_key": "not-the-key-0123456789"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "sign_in_failed");
    assert!(!body.to_string().contains("not-the-key"), "never echoed");

    // Sign-in from another origin is refused (login CSRF).
    let mut evil = Browser::new(&gw);
    evil.origin = "http://evil.example".to_owned();
    let (status, body, _) = evil.sign_in(json!({"master_key": MASTER_KEY})).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "csrf_failed");

    let (status, session, headers) = b.sign_in(json!({"master_key": MASTER_KEY})).await;
    assert_eq!(status, 200, "{session}");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("portcullis_console="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(cookie.contains("Path=/") && cookie.contains("Max-Age="));
    assert!(!cookie.contains(MASTER_KEY));
    assert_eq!(session["role"], "admin");
    assert_eq!(session["admin"], true);
    assert_eq!(session["method"], "master_key");
    assert_eq!(headers["cache-control"], "no-store");

    // Over HTTPS (as a proxy in front says) the cookie is Secure and __Host-.
    let r = client()
        .post(gw.at("/ui/api/session"))
        .header("origin", gw.url.as_str())
        .header("x-forwarded-proto", "https")
        .json(&json!({"master_key": MASTER_KEY}))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-portcullis_console=") && cookie.contains("; Secure"));

    let (status, me) = b.call("GET", "/ui/api/session", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["signed_in"], true);
    assert_eq!(me["csrf_token"], session["csrf_token"]);
    let (status, nobody) = Browser::new(&gw).call("GET", "/ui/api/session", None).await;
    assert_eq!((status, &nobody["signed_in"]), (200, &json!(false)));
    let (status, logs) = b.call("GET", "/admin/logs?limit=5", None).await;
    assert_eq!(status, 200, "{logs}");
    let (status, _) = b.call("GET", "/admin/keys", None).await;
    assert_eq!(status, 200);

    // The LLM API takes explicit credentials only: the cookie alone is no key.
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .header("cookie", b.cookie.as_deref().unwrap())
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A malformed sign-in is a 400, not a 5xx.
    let (status, _, _) = b
        .sign_in(json!({"master_key": MASTER_KEY, "user": "x"}))
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = b.sign_in(json!({"nope": 1})).await;
    assert_eq!(status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn state_changing_calls_need_the_sessions_token_and_the_consoles_origin() {
    let gw = TestGateway::start("").await;
    let mut b = Browser::new(&gw);
    b.sign_in(json!({"master_key": MASTER_KEY})).await;
    let team = json!({"id": "t-csrf", "name": "CSRF"});

    let (status, body) = b
        .call_with(
            "POST",
            "/admin/teams",
            Some(team.clone()),
            None,
            Some(&gw.url),
        )
        .await;
    assert_eq!(status, 403, "no token: {body}");
    assert_eq!(body["error"]["code"], "csrf_failed");
    let (status, _) = b
        .call_with(
            "POST",
            "/admin/teams",
            Some(team.clone()),
            Some("forged"),
            Some(&gw.url),
        )
        .await;
    assert_eq!(status, 403, "a wrong token");
    let csrf = b.csrf.clone().unwrap();
    let (status, _) = b
        .call_with(
            "POST",
            "/admin/teams",
            Some(team.clone()),
            Some(&csrf),
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(status, 403, "another origin, even with the token");
    let (status, _) = b
        .call_with(
            "POST",
            "/admin/teams",
            Some(team.clone()),
            Some(&csrf),
            None,
        )
        .await;
    assert_eq!(status, 403, "no origin at all");
    // Nothing was created by the refused calls.
    let (status, _) = admin(&gw, "GET", "/admin/teams/t-csrf", Value::Null).await;
    assert_eq!(status, 404);

    let (status, body) = b.call("POST", "/admin/teams", Some(team)).await;
    assert_eq!(status, 201, "{body}");

    // Another session's token does not pass for this one.
    let mut other = Browser::new(&gw);
    other.sign_in(json!({"master_key": MASTER_KEY})).await;
    let (status, _) = b
        .call_with(
            "DELETE",
            "/admin/teams/t-csrf",
            None,
            other.csrf.as_deref(),
            Some(&gw.url),
        )
        .await;
    assert_eq!(status, 403);

    // A key in the Authorization header needs no token (not a browser session).
    let (status, _) = admin(&gw, "DELETE", "/admin/teams/t-csrf", Value::Null).await;
    assert!(status == 200 || status == 204, "{status}");
    gw.stop().await;
}

#[tokio::test]
async fn a_users_session_follows_the_users_role_and_teams() {
    let gw = TestGateway::start("").await;
    for team in ["alpha", "beta"] {
        let (s, body) = admin(
            &gw,
            "POST",
            "/admin/teams",
            json!({"id": team, "name": team}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, body) = admin(
        &gw,
        "POST",
        "/admin/users",
        json!({"id": "vera", "email": "vera@example.com", "role": "viewer",
               "password": "correct horse battery", "teams": ["alpha"]}),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    let mut b = Browser::new(&gw);
    let (status, _, _) = b
        .sign_in(json!({"user": "vera", "password": "wrong password here"}))
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = b
        .sign_in(json!({"user": "nobody", "password": "correct horse battery"}))
        .await;
    assert_eq!(status, 401);
    let (status, session, _) = b
        .sign_in(json!({"user": "vera@example.com", "password": "correct horse battery"}))
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"], "vera");
    assert_eq!(session["role"], "viewer");
    assert_eq!(session["admin"], false);
    assert_eq!(session["teams"], json!(["alpha"]));

    // A viewer reads its own team's logs, not another's, and changes nothing.
    let (status, _) = b.call("GET", "/admin/logs?limit=5", None).await;
    assert_eq!(status, 200);
    let (status, _) = b.call("GET", "/admin/logs?team=beta", None).await;
    assert_eq!(status, 403);
    let (status, _) = b.call("GET", "/admin/usage?team=alpha", None).await;
    assert_eq!(status, 200);
    let (status, _) = b.call("GET", "/admin/keys", None).await;
    assert_eq!(status, 403);
    let (status, body) = b
        .call(
            "POST",
            "/admin/keys",
            Some(json!({"name": "sneaky", "team": "alpha"})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "admin_required");

    // Made an admin, the same session may change things at once; disabled, it has ended.
    let (s, _) = admin(&gw, "PATCH", "/admin/users/vera", json!({"role": "admin"})).await;
    assert_eq!(s, 200);
    let (status, body) = b
        .call("POST", "/admin/keys", Some(json!({"name": "now allowed"})))
        .await;
    assert_eq!(status, 201, "{body}");
    let (s, _) = admin(&gw, "DELETE", "/admin/users/vera", Value::Null).await;
    assert!(s == 200 || s == 204);
    let (status, body) = b.call("GET", "/admin/logs", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, me) = b.call("GET", "/ui/api/session", None).await;
    assert_eq!((status, &me["signed_in"]), (200, &json!(false)));
    gw.stop().await;
}

#[tokio::test]
async fn sessions_end_on_sign_out_expiry_idleness_and_a_new_master_key() {
    let gw = TestGateway::start("").await;
    let mut b = Browser::new(&gw);
    b.sign_in(json!({"master_key": MASTER_KEY})).await;

    // Sign-out needs the token too (a forged sign-out is refused), then ends the session.
    let (status, _) = b
        .call_with("DELETE", "/ui/api/session", None, None, Some(&gw.url))
        .await;
    assert_eq!(status, 403);
    let r = client()
        .delete(gw.at("/ui/api/session"))
        .header("cookie", b.cookie.as_deref().unwrap())
        .header("x-portcullis-csrf", b.csrf.as_deref().unwrap())
        .header("origin", gw.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, body) = b.call("GET", "/admin/logs", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "session_ended");

    // Expired and idle sessions have ended (their rows aged in the database).
    let store = gw.state.stores.console_sessions.clone();
    for (expires_ago, idle_for) in [(1_000, 0), (-3_600_000, 3 * 3_600_000)] {
        let mut b = Browser::new(&gw);
        b.sign_in(json!({"master_key": MASTER_KEY})).await;
        let token = b
            .cookie
            .as_deref()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        let digest = portcullis_console::session::token_digest(&token);
        let mut row = store.console_session(&digest).await.unwrap().unwrap();
        let now = row.last_seen_ms;
        row.expires_ms = now - expires_ago;
        row.last_seen_ms = now - idle_for;
        store.delete_console_session(&digest).await.unwrap();
        store.put_console_session(&row).await.unwrap();
        let (status, _) = b.call("GET", "/admin/logs", None).await;
        assert_eq!(status, 401, "expired {expires_ago} idle {idle_for}");
        assert!(store.console_session(&digest).await.unwrap().is_none());
    }

    // A session begun with another master key has ended.
    let mut b = Browser::new(&gw);
    b.sign_in(json!({"master_key": MASTER_KEY})).await;
    let token = b
        .cookie
        .as_deref()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let digest = portcullis_console::session::token_digest(&token);
    let mut row = store.console_session(&digest).await.unwrap().unwrap();
    row.master_digest = Some("00".repeat(16));
    store.delete_console_session(&digest).await.unwrap();
    store.put_console_session(&row).await.unwrap();
    let (status, _) = b.call("GET", "/admin/logs", None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}

/// A model call with `key`; the request id it was logged under.
async fn chat_with(gw: &TestGateway, key: &str) -> String {
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "openai/gpt-4o-mini", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(status, 200, "{}", r.text().await.unwrap());
    id
}

#[tokio::test]
async fn a_member_sees_its_own_requests_and_manages_its_own_keys_only() {
    let mock = MockUpstream::start().await;
    let gw = TestGateway::start(&providers_yaml(&mock)).await;
    for team in ["alpha", "beta"] {
        let (s, body) = admin(
            &gw,
            "POST",
            "/admin/teams",
            json!({"id": team, "name": team}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    for (id, team) in [("mia", "alpha"), ("max", "alpha")] {
        let (s, body) = admin(
            &gw,
            "POST",
            "/admin/users",
            json!({"id": id, "email": format!("{id}@example.com"), "role": "member",
                   "password": "correct horse battery", "teams": [team]}),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, maxs_key) = admin(
        &gw,
        "POST",
        "/admin/keys",
        json!({"name": "max's", "user": "max", "team": "alpha"}),
    )
    .await;
    assert_eq!(s, 201, "{maxs_key}");
    let maxs_key_id = maxs_key["id"].as_str().unwrap().to_owned();
    let maxs_request = chat_with(&gw, maxs_key["key"].as_str().unwrap()).await;

    let mut b = Browser::new(&gw);
    let (status, session, _) = b
        .sign_in(json!({"user": "mia", "password": "correct horse battery"}))
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (&session["role"], &session["admin"]),
        (&json!("member"), &json!(false))
    );

    // A key for itself, in its own team: the key acts as mia.
    let (status, mine) = b
        .call(
            "POST",
            "/admin/keys",
            Some(json!({"name": "mine", "team": "alpha"})),
        )
        .await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["user"], "mia");
    assert!(mine["key"].as_str().unwrap().starts_with("pk-"));
    let my_key = mine["key"].as_str().unwrap().to_owned();
    let my_key_id = mine["id"].as_str().unwrap().to_owned();
    // Nothing beyond that.
    for (body, param) in [
        (json!({"name": "x", "user": "max"}), "user"),
        (json!({"name": "x", "team": "beta"}), "team"),
        (
            json!({"name": "x", "service_account": "sa"}),
            "service_account",
        ),
        (
            json!({"name": "x", "allow_custom_cost": true}),
            "allow_custom_cost",
        ),
    ] {
        let (status, e) = b.call("POST", "/admin/keys", Some(body)).await;
        assert_eq!(status, 403, "{e}");
        assert_eq!(e["error"]["code"], "not_allowed_for_member");
        assert_eq!(e["error"]["param"], param);
    }

    // Its own keys only; another's is unknown to it, whatever it tries.
    let (status, list) = b.call("GET", "/admin/keys", None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [my_key_id.as_str()]);
    let (status, _) = b.call("GET", "/admin/keys?user=max", None).await;
    assert_eq!(status, 403);
    let other = format!("/admin/keys/{maxs_key_id}");
    for (method, path, body) in [
        ("GET", other.clone(), None),
        ("PATCH", other.clone(), Some(json!({"name": "mine now"}))),
        ("POST", format!("{other}/rotate"), None),
        ("DELETE", other.clone(), None),
    ] {
        let (status, e) = b.call(method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {e}");
    }
    let (status, edited) = b
        .call(
            "PATCH",
            &format!("/admin/keys/{my_key_id}"),
            Some(json!({"name": "renamed", "models": ["openai/*"]})),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["name"], "renamed");
    let (status, _) = b
        .call(
            "PATCH",
            &format!("/admin/keys/{my_key_id}"),
            Some(json!({"allow_custom_cost": true})),
        )
        .await;
    assert_eq!(status, 403);

    // Its own requests: those of its key, not max's.
    let my_request = chat_with(&gw, &my_key).await;
    gw.logs("", 2).await;
    let (status, logs) = b.call("GET", "/admin/logs", None).await;
    assert_eq!(status, 200, "{logs}");
    let ids: Vec<&str> = logs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [my_request.as_str()]);
    let (status, _) = b
        .call("GET", &format!("/admin/logs/{my_request}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = b
        .call("GET", &format!("/admin/logs/{maxs_request}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = b.call("GET", "/admin/logs?user=max", None).await;
    assert_eq!(status, 403);
    let (status, usage) = b.call("GET", "/admin/usage?group_by=key", None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["totals"]["requests"], 1);
    assert_eq!(usage["data"][0]["group"], my_key_id.as_str());

    // The rest of the admin API stays closed, and so does the admin API to its key.
    for path in [
        "/admin/users",
        "/admin/teams",
        "/admin/provider-keys",
        "/admin/providers",
    ] {
        let (status, _) = b.call("GET", path, None).await;
        assert_eq!(status, 403, "{path}");
    }
    let r = client()
        .get(gw.at("/admin/logs"))
        .bearer_auth(&my_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a member's virtual key reads nothing");
    let r = client()
        .post(gw.at("/admin/keys"))
        .bearer_auth(&my_key)
        .json(&json!({"name": "minted by a key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "nor mints keys");

    // Revoked by its owner, the key is refused.
    let (status, revoked) = b
        .call("DELETE", &format!("/admin/keys/{my_key_id}"), None)
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let r = client()
        .post(gw.at("/v1/chat/completions"))
        .bearer_auth(&my_key)
        .json(&json!({"model": "openai/gpt-4o-mini",
                      "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn failed_sign_ins_slow_down_and_lock_the_address_not_the_user() {
    let gw = TestGateway::start("").await;
    let (s, body) = admin(
        &gw,
        "POST",
        "/admin/users",
        json!({"id": "tess", "role": "viewer", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let mut b = Browser::new(&gw);
    for _ in 0..3 {
        let (status, _, _) = b
            .sign_in(json!({"user": "tess", "password": "guess guess guess"}))
            .await;
        assert_eq!(status, 401);
    }
    // After the free failures, the next attempt must wait — even with the right password.
    let (status, e, headers) = b
        .sign_in(json!({"user": "TESS", "password": "correct horse battery"}))
        .await;
    assert_eq!(status, 429, "{e}");
    assert_eq!(e["error"]["code"], "sign_in_throttled");
    assert_eq!(headers["retry-after"], "1");
    // Another user, and the master key, are counted apart.
    let (status, _, _) = b.sign_in(json!({"master_key": MASTER_KEY})).await;
    assert_eq!(status, 200);
    // Once the wait is over, the right password signs in and clears the count.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (status, session, _) = b
        .sign_in(json!({"user": "tess", "password": "correct horse battery"}))
        .await;
    assert_eq!(status, 200, "{session}");
    let (status, _, _) = b
        .sign_in(json!({"user": "tess", "password": "guess guess guess"}))
        .await;
    assert_eq!(status, 401, "a fresh count after a sign-in");
    gw.stop().await;
}

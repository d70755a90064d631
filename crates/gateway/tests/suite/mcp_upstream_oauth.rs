//! Upstream MCP servers that need OAuth, over real HTTP: a user's call without a grant gets a
//! JSON-RPC error with the connect link; following it (sign-in on the gateway's page, the mock
//! authorization server's approval, the callback) stores a sealed grant, and the user's calls
//! then carry their own upstream token, never another user's; an expiring token is refreshed
//! first; a refused refresh drops the grant and asks for consent again.

use std::time::Duration;

use portcullis_store::McpGrantStore;
use portcullis_test_support::mcp_oauth::{CLIENT_ID, CLIENT_SECRET, MockOAuthMcp};
use serde_json::{Value, json};

use crate::common::*;

const SECRET_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn yaml(mock: &MockOAuthMcp) -> String {
    format!(
        "secret_key: {SECRET_KEY}\nmcp:\n  servers:\n    gh:\n      url: {}\n      oauth:\n        \
         client_id: {CLIENT_ID}\n        client_secret: {CLIENT_SECRET}\n        scopes: [repo]\n",
        mock.url()
    )
}

async fn admin(gw: &TestGateway, path: &str, body: Value) -> Value {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

/// Users `ann` and `bob` with passwords, and a key of each.
async fn people(gw: &TestGateway) -> (String, String) {
    let mut keys = Vec::new();
    for user in ["ann", "bob"] {
        admin(
            gw,
            "/admin/users",
            json!({"id": user, "role": "member", "password": format!("{user}-password-1")}),
        )
        .await;
        let key = admin(
            gw,
            "/admin/keys",
            json!({"name": format!("{user}-agent"), "user": user}),
        )
        .await;
        keys.push(key["key"].as_str().unwrap().to_owned());
    }
    (keys[0].clone(), keys[1].clone())
}

async fn call(gw: &TestGateway, key: &str) -> Value {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "gh__echo", "arguments": {"q": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

/// The connect link of a consent error.
fn link_of(answer: &Value) -> String {
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    let link = answer["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        answer["error"]["message"].as_str().unwrap().contains(&link),
        "{answer}"
    );
    link
}

/// Follows `link` as a browser would: the sign-in page, the form, the authorization server,
/// the callback. The callback's status and page.
async fn connect(link: &str, user: &str, password: &str) -> (u16, String) {
    match connect_flow(link, user, password).await {
        Ok(landed) => (landed.status, landed.page),
        Err(refused) => refused,
    }
}

/// A sign-in that reached the callback: its answer, and what a replay needs.
struct Landed {
    status: u16,
    page: String,
    /// The callback URL the authorization server sent the browser to.
    callback: String,
    /// The browser's cookie binding it to the flow.
    cookie: String,
    /// The authorization request (with the flow's `state`).
    authorize: String,
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// [`connect`], keeping what a replay needs; the sign-in's status and page when it stopped
/// before the authorization server.
async fn connect_flow(link: &str, user: &str, password: &str) -> Result<Landed, (u16, String)> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(link).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let form_cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // A sign-in posted from elsewhere (without the page's cookie) is refused.
    let forged = browser
        .post(link)
        .form(&[("username", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let signed_in = browser
        .post(link)
        .header("cookie", &form_cookie)
        .form(&[("username", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    if signed_in.status().as_u16() != 303 {
        return Err((signed_in.status().as_u16(), signed_in.text().await.unwrap()));
    }
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize = signed_in.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let approved = browser.get(&authorize).send().await.unwrap();
    assert_eq!(approved.status().as_u16(), 302);
    let callback = approved.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with(&format!("{link}/callback?")),
        "{callback}"
    );
    // Another browser (without the cookie) cannot land the grant.
    let stranger = browser.get(&callback).send().await.unwrap();
    assert_eq!(stranger.status().as_u16(), 400);
    let landed = browser
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    Ok(Landed {
        status: landed.status().as_u16(),
        page: landed.text().await.unwrap(),
        callback,
        cookie,
        authorize,
    })
}

#[tokio::test]
async fn each_user_consents_once_and_calls_with_their_own_upstream_token() {
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, bob) = people(&gw).await;

    // No grant yet: a JSON-RPC error with the link, and nothing reaches the server.
    let answer = call(&gw, &ann).await;
    let link = link_of(&answer);
    assert_eq!(link, gw.at("/mcp/connect/gh"));
    assert!(mock.calls().is_empty());

    // A wrong password stays on the page.
    let (status, page) = connect(&link, "ann", "wrong").await;
    assert_eq!(status, 401, "{page}");
    let (status, page) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("connected"), "{page}");
    // Discovered endpoints; the token is bound to the server (RFC 8707).
    assert_eq!(mock.resources(), [mock.url()]);

    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let ann_token = mock.issued()[0].clone();
    assert_eq!(mock.calls(), [Some(ann_token.clone())]);

    // Bob has no grant: Ann's never serves him.
    let answer = call(&gw, &bob).await;
    link_of(&answer);
    assert_eq!(mock.calls().len(), 1);
    let (status, _) = connect(&link, "bob", "bob-password-1").await;
    assert_eq!(status, 200);
    let bob_token = mock.issued()[1].clone();
    for key in [&bob, &ann, &bob] {
        let answer = call(&gw, key).await;
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    assert_eq!(
        mock.calls()[1..],
        [
            Some(bob_token.clone()),
            Some(ann_token.clone()),
            Some(bob_token.clone())
        ]
    );

    // A key without a user cannot consent for anyone.
    let answer = call(&gw, MASTER_KEY).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");

    // The stored grants are sealed: no token in the database.
    let store = portcullis_store::SqliteStore::connect(&db, 1)
        .await
        .unwrap();
    let grants = store.mcp_grants("gh").await.unwrap();
    assert_eq!(grants.len(), 2);
    for g in &grants {
        assert!(!g.sealed.contains("mock-at") && !g.sealed.contains("mock-rt"));
        assert!(!g.sealed.contains(&ann_token) && !g.sealed.contains(&bob_token));
    }

    // Admins see who has a grant, never a token; a user may drop their own grant only.
    let listed = client()
        .get(gw.at("/admin/mcp-servers/gh/grants"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let listed = listed.text().await.unwrap();
    assert!(
        listed.contains("\"ann\"") && listed.contains("\"bob\""),
        "{listed}"
    );
    assert!(
        !listed.contains("mock-at") && !listed.contains("mock-rt"),
        "{listed}"
    );
    let delete = |key: &str, user: &str| {
        client()
            .delete(gw.at(&format!("/admin/mcp-servers/gh/grants/{user}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(delete(&ann, "bob").await.unwrap().status().as_u16(), 403);
    let listed = client()
        .get(gw.at("/admin/mcp-servers/gh/grants"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 403);
    assert_eq!(delete(&bob, "bob").await.unwrap().status().as_u16(), 200);
    assert_eq!(
        delete(MASTER_KEY, "bob").await.unwrap().status().as_u16(),
        404
    );
    assert_eq!(link_of(&call(&gw, &bob).await), link);
    assert_eq!(call(&gw, &ann).await["result"]["isError"], false);
    gw.stop().await;
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_a_refused_refresh_asks_for_consent_again() {
    let mock = MockOAuthMcp::start().await.unwrap();
    // Tokens with less than a minute left are refreshed before use.
    mock.set_access_ttl(Duration::from_secs(30));
    let db = fresh_postgres_url().await;
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, _) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);
    let first = mock.issued()[0].clone();

    mock.set_access_ttl(Duration::from_secs(3600));
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(mock.refreshes(), 1);
    let refreshed = mock.issued()[1].clone();
    assert_ne!(refreshed, first);
    assert_eq!(mock.calls(), [Some(refreshed.clone())]);
    // The fresh token lasts: no refresh on the next call.
    call(&gw, &ann).await;
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(mock.calls().len(), 2);

    // Once the token nears its end and the refresh token is refused, the user is asked again.
    mock.set_access_ttl(Duration::from_secs(1));
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);
    mock.revoke_refresh_tokens();
    let answer = call(&gw, &ann).await;
    assert_eq!(link_of(&answer), link);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("again"),
        "{answer}"
    );
    assert_eq!(mock.calls().len(), 2, "nothing reached the server");
    let store = portcullis_store::PostgresStore::connect(&db, 1)
        .await
        .unwrap();
    assert!(store.mcp_grant("ann", "gh").await.unwrap().is_none());
    gw.stop().await;
}

#[tokio::test]
async fn a_server_added_through_the_admin_api_keeps_its_client_secret_sealed() {
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &format!("secret_key: {SECRET_KEY}\n")).await;
    let (ann, _) = people(&gw).await;
    let created = admin(
        &gw,
        "/admin/mcp-servers",
        json!({"name": "gh", "url": mock.url(), "oauth": {"client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "scopes": ["repo"]}}),
    )
    .await;
    assert!(!created.to_string().contains(CLIENT_SECRET), "{created}");
    assert_eq!(created["oauth"]["client_secret_set"], true, "{created}");
    assert_eq!(created["oauth"]["mode"], "user_grant", "{created}");
    let store = portcullis_store::SqliteStore::connect(&db, 1)
        .await
        .unwrap();
    let row = portcullis_store::McpServerStore::mcp_server(&*store, "gh")
        .await
        .unwrap()
        .unwrap();
    assert!(row.config.contains(CLIENT_ID), "{}", row.config);
    assert!(!row.config.contains(CLIENT_SECRET) && row.sealed.is_some());
    assert!(!row.sealed.unwrap().contains(CLIENT_SECRET));

    // The secret is opened for the token requests (the mock checks it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let link = loop {
        let answer = call(&gw, &ann).await;
        if answer["error"]["code"] == -32042 {
            break link_of(&answer);
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, page) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(mock.calls().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_enterprise_token_is_exchanged_for_the_servers_own_and_kept_until_it_expires() {
    use portcullis_test_support::{MockAlg, MockIssuer};
    let mock = MockOAuthMcp::start().await.unwrap();
    let kc = MockIssuer::start().await;
    let yaml = format!(
        "secret_key: {SECRET_KEY}\nidentity:\n  issuers:\n    - issuer: {}\n      audience: \
         portcullis\n      claims:\n        user: preferred_username\n        teams: groups\n\
         mcp:\n  servers:\n    gh:\n      url: {}\n      oauth:\n        client_id: {CLIENT_ID}\n        \
         client_secret: {CLIENT_SECRET}\n        mode: token_exchange\n",
        kc.issuer(),
        mock.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let token = kc.mint(MockAlg::RS256, &kc.keycloak_claims("portcullis"));
    for _ in 0..2 {
        let answer = call(&gw, &token).await;
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    // One exchange of the caller's own token, bound to the server; its result used twice.
    assert_eq!(mock.exchanged(), [token]);
    assert_eq!(mock.resources(), [mock.url()]);
    let issued = mock.issued()[0].clone();
    assert_eq!(mock.calls(), [Some(issued.clone()), Some(issued)]);

    // A token near its end is not kept: each call exchanges again.
    mock.set_access_ttl(Duration::from_secs(30));
    let mut claims = kc.keycloak_claims("portcullis");
    claims["preferred_username"] = json!("grace");
    claims["sub"] = json!("grace-subject");
    let grace = kc.mint(MockAlg::RS256, &claims);
    for _ in 0..2 {
        let answer = call(&gw, &grace).await;
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    assert_eq!(mock.exchanged()[1..], [grace.clone(), grace]);
    assert_eq!(mock.calls().len(), 4);
    assert_eq!(mock.calls()[3].as_ref(), mock.issued().last());

    // A virtual key is never passed on, even one bound to a user.
    let (_, bob) = people(&gw).await;
    let answer = call(&gw, &bob).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token exchange"),
        "{answer}"
    );
    assert_eq!(mock.exchanged().len(), 3);
    assert_eq!(mock.calls().len(), 4);
    gw.stop().await;
}

async fn tool_names(gw: &TestGateway, key: &str) -> Vec<String> {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_server_that_needs_a_token_for_everything_is_listed_through_each_users_own() {
    let mock = MockOAuthMcp::start().await.unwrap();
    mock.require_token_everywhere();
    let gw = TestGateway::start(&yaml(&mock)).await;
    let (ann, bob) = people(&gw).await;
    // Without a grant, nothing of it is listed, and a call gets the consent link.
    assert!(!tool_names(&gw, &ann).await.contains(&"gh__echo".to_owned()));
    let link = link_of(&call(&gw, &ann).await);
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);
    // Ann's own connection lists and calls it; Bob still sees nothing of it.
    assert_eq!(tool_names(&gw, &ann).await, ["gh__echo"]);
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(mock.calls(), [Some(mock.issued()[0].clone())]);
    assert!(tool_names(&gw, &bob).await.is_empty());
    link_of(&call(&gw, &bob).await);
    assert_eq!(mock.calls().len(), 1);
    gw.stop().await;
}

async fn rpc(gw: &TestGateway, key: &str, method: &str) -> Value {
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_grant_is_kept_in_memory_a_short_while_and_its_deletion_here_is_followed_at_once() {
    use portcullis_gateway::mcp_grants::GRANT_TTL;
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, _) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");

    // Deleted behind this replica's back (another replica, or by hand in the database): still
    // used from memory for a moment, then no more within the bound.
    let store = portcullis_store::SqliteStore::connect(&db, 1)
        .await
        .unwrap();
    assert!(store.delete_mcp_grant("ann", "gh").await.unwrap());
    let deleted = tokio::time::Instant::now();
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    loop {
        let answer = call(&gw, &ann).await;
        if answer.get("error").is_some() {
            assert_eq!(link_of(&answer), link);
            break;
        }
        assert!(
            deleted.elapsed() < GRANT_TTL + Duration::from_secs(2),
            "a grant deleted elsewhere is still used after {:?}",
            deleted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Connected again, then disconnected through the admin API: not used once more.
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let calls = mock.calls().len();
    let r = client()
        .delete(gw.at("/admin/mcp-servers/gh/grants/ann"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(link_of(&call(&gw, &ann).await), link);
    assert_eq!(mock.calls().len(), calls);
    gw.stop().await;
}

/// `initialize` and `ping`, answered by the gateway.
async fn handshake(gw: &TestGateway, key: &str) {
    let answer = rpc(gw, key, "initialize").await;
    assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");
    let answer = rpc(gw, key, "ping").await;
    assert!(answer["result"].is_object(), "{answer}");
}

#[tokio::test]
async fn calls_of_a_connected_user_and_requests_answered_by_the_gateway_do_not_read_grants() {
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, bob) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, _) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200);

    // Bob's initialize and ping need no grant: none is looked up for them (else his lack of
    // one would be remembered, and his call below would get the consent link).
    handshake(&gw, &bob).await;

    // The grants' table goes away: whoever needs a grant read from it now fails.
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("DROP TABLE mcp_grants")
        .execute(&pool)
        .await
        .unwrap();
    // Ann's grant is in memory: her calls go on.
    for _ in 0..3 {
        let answer = call(&gw, &ann).await;
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    let token = mock.issued()[0].clone();
    assert_eq!(mock.calls(), vec![Some(token); 3]);
    // Bob's handshake still works; his call reads his grant, and says why it fails.
    handshake(&gw, &bob).await;
    let answer = call(&gw, &bob).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("grant store is unavailable"),
        "{answer}"
    );
    assert_eq!(mock.calls().len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_sign_in_completes_once_and_a_replayed_callback_never_replaces_the_grant() {
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, _) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let landed = connect_flow(&link, "ann", "ann-password-1")
        .await
        .unwrap_or_else(|(status, page)| panic!("{status}: {page}"));
    assert_eq!(landed.status, 200, "{}", landed.page);
    let first = mock.issued()[0].clone();
    let token_requests = mock.resources().len();

    // The same answer again, from the same browser: refused, the server is not asked.
    let replayed = browser()
        .get(&landed.callback)
        .header("cookie", &landed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 400);
    let page = replayed.text().await.unwrap();
    assert!(page.contains("already completed"), "{page}");
    assert_eq!(mock.resources().len(), token_requests);

    // The same `state` with a fresh code the authorization server gives for it: refused too,
    // and the grant stays the first one.
    let approved = browser().get(&landed.authorize).send().await.unwrap();
    assert_eq!(approved.status().as_u16(), 302);
    let fresh = approved.headers()["location"].to_str().unwrap().to_owned();
    assert_ne!(fresh, landed.callback);
    let replayed = browser()
        .get(&fresh)
        .header("cookie", &landed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 400);
    assert_eq!(mock.resources().len(), token_requests);
    assert_eq!(mock.issued(), std::slice::from_ref(&first));
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(mock.calls(), [Some(first.clone())]);

    // Another replica on the same database knows the sign-in was taken.
    let other = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let elsewhere = landed.callback.replace(&gw.at(""), &other.at(""));
    assert_ne!(elsewhere, landed.callback);
    let replayed = browser()
        .get(&elsewhere)
        .header("cookie", &landed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status().as_u16(), 400);
    assert!(replayed.text().await.unwrap().contains("already completed"));
    assert_eq!(mock.resources().len(), token_requests);
    other.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn a_disabled_users_grants_are_deleted_and_not_inherited_when_enabled_again() {
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, bob) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    for user in ["ann", "bob"] {
        let (status, page) = connect(&link, user, &format!("{user}-password-1")).await;
        assert_eq!(status, 200, "{page}");
    }
    assert_eq!(call(&gw, &ann).await["result"]["isError"], false);
    let store = portcullis_store::SqliteStore::connect(&db, 1)
        .await
        .unwrap();
    assert_eq!(store.mcp_grants("gh").await.unwrap().len(), 2);

    // Disabled (DELETE): her grant goes with her, Bob's stays.
    let r = client()
        .delete(gw.at("/admin/users/ann"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let users: Vec<String> = store
        .mcp_grants("gh")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.user_id)
        .collect();
    assert_eq!(users, ["bob"]);
    let r = client()
        .post(gw.at("/mcp"))
        .bearer_auth(&ann)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a disabled user's key is refused");

    // Enabled again, she starts over: the consent link, nothing sent with her old token.
    let calls = mock.calls().len();
    let r = client()
        .patch(gw.at("/admin/users/ann"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(link_of(&call(&gw, &ann).await), link);
    assert_eq!(mock.calls().len(), calls);
    assert_eq!(call(&gw, &bob).await["result"]["isError"], false);

    // Disabled through PATCH too.
    let r = client()
        .patch(gw.at("/admin/users/bob"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(store.mcp_grant("bob", "gh").await.unwrap().is_none());
    gw.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_gets_http_basic_when_the_authorization_server_asks_for_it() {
    let mock = MockOAuthMcp::start().await.unwrap();
    // The server takes client credentials only in an Authorization header.
    mock.set_client_auth_methods(&["client_secret_basic"]);
    mock.set_access_ttl(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, _) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, page) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    // The code exchange, then the refresh of the short-lived token, both with Basic.
    let answer = call(&gw, &ann).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(mock.refreshes(), 1);
    assert_eq!(
        mock.client_auths(),
        ["client_secret_basic", "client_secret_basic"]
    );
    gw.stop().await;

    // Configured: the setting wins over what the metadata prefers.
    let mock = MockOAuthMcp::start().await.unwrap();
    mock.set_client_auth_methods(&["client_secret_basic", "client_secret_post"]);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let configured = format!(
        "{}        token_endpoint_auth_method: client_secret_post\n",
        yaml(&mock)
    );
    let gw = TestGateway::start_with_db(&db, &configured).await;
    let (ann, _) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, page) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(mock.client_auths(), ["client_secret_post"]);
    let shown = client()
        .get(gw.at("/admin/mcp-servers/gh"))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        shown["oauth"]["token_endpoint_auth_method"], "client_secret_post",
        "{shown}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_list_change_on_a_users_own_token_instance_reaches_their_get_stream() {
    use futures_util::StreamExt;
    let mock = MockOAuthMcp::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display());
    let gw = TestGateway::start_with_db(&db, &yaml(&mock)).await;
    let (ann, bob) = people(&gw).await;
    let link = link_of(&call(&gw, &ann).await);
    let (status, page) = connect(&link, "ann", "ann-password-1").await;
    assert_eq!(status, 200, "{page}");
    // Her call starts her instance, which opens its own GET stream with her token.
    assert_eq!(call(&gw, &ann).await["result"]["isError"], false);
    let token = mock.issued()[0].clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !mock.listening().contains(&token) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no GET stream upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let open = |key: String| {
        let url = gw.at("/mcp");
        async move {
            let r = client()
                .get(url)
                .bearer_auth(key)
                .header("accept", "text/event-stream")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes_stream()
        }
    };
    let mut hers = open(ann.clone()).await;
    let mut his = open(bob.clone()).await;
    // The streams follow running instances within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mock.announce_tools_changed(&token);

    let mut seen = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = hers.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(heard, Ok(true), "{seen}");
    // Bob has no instance of hers: his stream hears nothing of it.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), async {
        let mut his_seen = String::new();
        while let Some(chunk) = his.next().await {
            his_seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if his_seen.contains("list_changed") {
                return his_seen;
            }
        }
        his_seen
    })
    .await;
    assert!(quiet.is_err(), "{quiet:?}");
    gw.stop().await;
}

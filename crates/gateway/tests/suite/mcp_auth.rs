//! Authorization of the MCP endpoints over real HTTP: the gateway's OAuth access tokens are
//! bound to the resource they were asked for (RFC 8707) — a token for `/mcp/a` is refused on
//! `/mcp/b`, on `/mcp` and on the LLM API, a token asked without a resource is the LLM API's
//! and is refused on every MCP endpoint, a resource that is not the gateway's is
//! `invalid_target` — through `client_credentials`, the authorization code flow and refresh;
//! and no credential of the caller ever reaches an upstream server.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::common::*;

const SECRET_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
const BASE: &str = "http://gateway.test";

/// A Streamable HTTP MCP server with one tool, `echo`, that records the headers of every
/// request it gets.
struct RecordingServer {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl RecordingServer {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/", axum::routing::post(answer).get(not_allowed))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen }
    }

    /// Every header value of every request received so far.
    fn header_values(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .flat_map(|h| {
                h.iter()
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

async fn not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

async fn answer(
    State(seen): State<Arc<Mutex<Vec<HeaderMap>>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    seen.lock().unwrap().push(headers);
    let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = message.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match message["method"].as_str().unwrap_or("") {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "recording", "version": "1.0.0"},
        }),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Echoes its text.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        }]}),
        "tools/call" => json!({
            "content": [{"type": "text", "text": message["params"]["arguments"]["text"]}],
            "isError": false,
        }),
        _ => json!({}),
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

struct Setup {
    gw: TestGateway,
    a: RecordingServer,
    b: RecordingServer,
}

async fn setup() -> Setup {
    let (a, b) = (
        RecordingServer::start().await,
        RecordingServer::start().await,
    );
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}
oauth:
  issuer: {BASE}
mcp:
  public_url: {BASE}
  servers:
    a:
      url: {a}
    b:
      url: {b}
",
        a = a.url,
        b = b.url,
    ))
    .await;
    Setup { gw, a, b }
}

/// A service account with a confidential client: its id and secret.
async fn service_client(gw: &TestGateway) -> (String, String) {
    let c = client();
    let r = c
        .post(gw.at("/admin/service-accounts"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "agent", "name": "Agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = c
        .post(gw.at("/admin/service-accounts/agent/clients"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let creds: Value = r.json().await.unwrap();
    (
        creds["client_id"].as_str().unwrap().to_owned(),
        creds["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// The token endpoint's answer to a `client_credentials` request naming `resource`.
async fn client_credentials(
    gw: &TestGateway,
    (id, secret): &(String, String),
    resource: Option<&str>,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", "models tools"),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    let r = client()
        .post(gw.at("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token_for(gw: &TestGateway, creds: &(String, String), resource: Option<&str>) -> String {
    let (status, body) = client_credentials(gw, creds, resource).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `tools/list` on `path` with `token`: the status, the `WWW-Authenticate` header, the body.
async fn list_tools(gw: &TestGateway, path: &str, token: &str) -> (u16, String, Value) {
    let r = client()
        .post(gw.at(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = sse_or_json(&text);
    (status, challenge, body)
}

fn sse_or_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        sse_events(text)
            .last()
            .map(|(_, data)| serde_json::from_str(data).unwrap())
            .unwrap_or(Value::Null)
    })
}

fn tool_names(body: &Value) -> Vec<String> {
    body["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_token_is_accepted_only_by_the_resource_it_was_issued_for() {
    let Setup { gw, a: _a, b: _b } = setup().await;
    let creds = service_client(&gw).await;
    // Each endpoint's resource metadata names it and the gateway's authorization server.
    for path in ["/mcp", "/mcp/a"] {
        let meta: Value = client()
            .get(gw.at(&format!("/.well-known/oauth-protected-resource{path}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["resource"], format!("{BASE}{path}"));
        assert_eq!(meta["authorization_servers"], json!([BASE]));
        assert_eq!(meta["scopes_supported"], json!(["tools"]));
    }

    // A token for /mcp/a lists a's tools there, and nowhere else.
    let for_a = token_for(&gw, &creds, Some(&format!("{BASE}/mcp/a"))).await;
    let (status, _, body) = list_tools(&gw, "/mcp/a", &for_a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tool_names(&body), ["echo"]);
    for path in ["/mcp/b", "/mcp"] {
        let (status, challenge, body) = list_tools(&gw, path, &for_a).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(
            challenge,
            format!(
                "Bearer error=\"invalid_token\", resource_metadata=\"{BASE}/.well-known/oauth-protected-resource{path}\""
            )
        );
        assert_eq!(body["error"]["code"], -32600, "{body}");
    }
    // Nor by the LLM API.
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(&for_a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A token for /mcp is the aggregated endpoint's only: both servers' tools there, and the
    // one-server endpoints (other resources, with their own metadata) refuse it.
    let for_all = token_for(&gw, &creds, Some(&format!("{BASE}/mcp/"))).await;
    let (status, _, body) = list_tools(&gw, "/mcp", &for_all).await;
    assert_eq!(status, 200, "{body}");
    let mut names = tool_names(&body);
    names.sort();
    assert_eq!(names, ["a__echo", "b__echo"]);
    assert_eq!(list_tools(&gw, "/mcp/a", &for_all).await.0, 401);

    // A token asked without a resource is the LLM API's (the default audience): MCP clients
    // must name the endpoint (the MCP authorization spec), so every MCP endpoint refuses it.
    let plain = token_for(&gw, &creds, None).await;
    for path in ["/mcp", "/mcp/a"] {
        assert_eq!(list_tools(&gw, path, &plain).await.0, 401, "{path}");
    }
    let r = client()
        .get(gw.at("/v1/models"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Naming the LLM API explicitly is the same.
    let explicit = token_for(&gw, &creds, Some(&format!("{BASE}/"))).await;
    assert_eq!(list_tools(&gw, "/mcp", &explicit).await.0, 401);

    // A token without the `tools` scope is refused with insufficient_scope.
    let r = client()
        .post(gw.at("/oauth/token"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "models"),
            ("resource", &format!("{BASE}/mcp")),
        ])
        .send()
        .await
        .unwrap();
    let models_only = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, challenge, _) = list_tools(&gw, "/mcp", &models_only).await;
    assert_eq!(status, 403);
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"tools\""),
        "{challenge}"
    );

    // No credential at all: the challenge names no error.
    let r = client()
        .post(gw.at("/mcp/b"))
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{BASE}/.well-known/oauth-protected-resource/mcp/b\"")
            .as_str()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_resource_that_is_not_the_gateways_is_an_invalid_target() {
    let Setup { gw, a: _a, b: _b } = setup().await;
    let creds = service_client(&gw).await;
    for bad in [
        "mcp/a".to_owned(),
        format!("{BASE}/mcp/a#section"),
        format!("{BASE}/mcp/a?x=1"),
        format!("{BASE}/mcp/unknown"),
        format!("{BASE}/v1/chat/completions"),
        "https://elsewhere.example/mcp".to_owned(),
        "https://gateway.test/mcp".to_owned(),
    ] {
        let (status, body) = client_credentials(&gw, &creds, Some(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_target", "{bad}: {body}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn upstream_servers_never_see_the_callers_credentials() {
    let Setup { gw, a, b: _b } = setup().await;
    let creds = service_client(&gw).await;
    let token = token_for(&gw, &creds, Some(&format!("{BASE}/mcp/a"))).await;
    for (path, credential, tool) in [
        ("/mcp/a", token.as_str(), "echo"),
        ("/mcp", MASTER_KEY, "a__echo"),
    ] {
        let r = client()
            .post(gw.at(path))
            .bearer_auth(credential)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-api-key", credential)
            .body(
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                    "params": {"name": tool, "arguments": {"text": "hello"}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = sse_or_json(&r.text().await.unwrap());
        assert_eq!(body["result"]["content"][0]["text"], "hello", "{body}");
    }
    let seen = a.header_values();
    assert!(!seen.is_empty());
    for line in &seen {
        assert!(
            !line.contains(&token) && !line.contains(MASTER_KEY),
            "a credential reached the server: {line}"
        );
        assert!(
            !line.starts_with("authorization") && !line.starts_with("x-api-key"),
            "{line}"
        );
    }
    gw.stop().await;
}

/// The authorization code flow of a public client, as a browser and an MCP client would run
/// it: returns the code sent to the redirect URI (or the whole redirect when there is none).
async fn authorize(gw: &TestGateway, client_id: &str, redirect: &str, resource: &str) -> String {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = url::Url::parse(&gw.at("/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("scope", "tools")
        .append_pair("state", "xyz")
        .append_pair("resource", resource);
    let r = no_redirects.get(url.as_str()).send().await.unwrap();
    if r.status() == 302 {
        return r.headers()["location"].to_str().unwrap().to_owned();
    }
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    let r = no_redirects
        .post(gw.at("/oauth/authorize/login"))
        .header("cookie", &cookie)
        .form(&[
            ("request", hidden_request(&html).as_str()),
            ("username", "mara"),
            ("password", "correct horse battery"),
        ])
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(
        html.contains(resource),
        "the consent page names the resource"
    );
    let r = no_redirects
        .post(gw.at("/oauth/authorize/consent"))
        .header("cookie", &cookie)
        .form(&[
            ("request", hidden_request(&html).as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn hidden_request(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn token_request(gw: &TestGateway, form: &[(&str, &str)]) -> (u16, Value) {
    let r = client()
        .post(gw.at("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_authorization_code_and_its_refresh_tokens_stay_bound_to_one_resource() {
    let Setup { gw, a: _a, b: _b } = setup().await;
    let c = client();
    let r = c
        .post(gw.at("/admin/users"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "mara", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let redirect = "http://127.0.0.1:33418/callback";
    let r = c
        .post(gw.at("/oauth/register"))
        .json(
            &json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"]}),
        )
        .send()
        .await
        .unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let for_a = format!("{BASE}/mcp/a");
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    // An authorization request naming a resource that is not the gateway's goes back to the
    // client as invalid_target.
    let location = authorize(&gw, &client_id, redirect, "https://elsewhere.example/mcp").await;
    assert!(location.starts_with(redirect), "{location}");
    assert!(location.contains("error=invalid_target"), "{location}");

    // A code for /mcp/a cannot be exchanged for another resource.
    let code = authorize(&gw, &client_id, redirect, &for_a).await;
    let (status, body) = token_request(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", &client_id),
            ("resource", &format!("{BASE}/mcp/b")),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // Exchanged for its own resource: a token for /mcp/a, refused on /mcp/b.
    let code = authorize(&gw, &client_id, redirect, &for_a).await;
    let (status, tokens) = token_request(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", &client_id),
            ("resource", &for_a),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (status, _, body) = list_tools(&gw, "/mcp/a", access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(list_tools(&gw, "/mcp/b", access).await.0, 401);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw
        .logs("limit=100", 0)
        .await
        .iter()
        .any(|r| r["endpoint"] == "mcp" && r["user"] == "mara" && r["status"] == 200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the MCP request is logged under the user"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Refreshing keeps the resource; asking another is invalid_target.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, body) = token_request(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
            ("resource", &format!("{BASE}/mcp")),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
    let (status, refreshed) = token_request(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(list_tools(&gw, "/mcp/a", access).await.0, 200);
    assert_eq!(list_tools(&gw, "/mcp", access).await.0, 401);
    gw.stop().await;
}

/// A client's metadata document served over HTTP on a loopback port, counting its fetches.
struct DocumentHost {
    base: String,
    fetches: Arc<Mutex<u32>>,
}

impl DocumentHost {
    /// Serves `/client.json` (naming itself, `redirect`) and `/impostor.json` (naming another
    /// URL as its client_id).
    async fn start(redirect: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fetches = Arc::new(Mutex::new(0));
        let (counted, own, redirect) = (fetches.clone(), base.clone(), redirect.to_owned());
        let app = axum::Router::new().route(
            "/{name}",
            axum::routing::get(
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let (counted, own, redirect) = (counted.clone(), own.clone(), redirect.clone());
                    async move {
                        *counted.lock().unwrap() += 1;
                        let id = match name.as_str() {
                            "client.json" => format!("{own}/client.json"),
                            _ => "https://someone-else.example/client.json".to_owned(),
                        };
                        (
                            [("cache-control", "public, max-age=60")],
                            axum::Json(json!({
                                "client_id": id,
                                "client_name": "Doc Agent",
                                "client_uri": "https://agent.example",
                                "redirect_uris": [redirect],
                                "grant_types": ["authorization_code", "refresh_token"],
                                "response_types": ["code"],
                                "token_endpoint_auth_method": "none",
                            })),
                        )
                    }
                },
            ),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, fetches }
    }
}

/// The sign-in page (or error page) an authorization request for `client_id` gets.
async fn authorization_page(gw: &TestGateway, client_id: &str, redirect: &str) -> (u16, String) {
    let mut url = url::Url::parse(&gw.at("/oauth/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &format!("{BASE}/mcp"));
    let r = client().get(url.as_str()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_client_known_by_its_metadata_document_signs_a_user_in_and_reaches_mcp() {
    let redirect = "http://127.0.0.1:33419/callback";
    let docs = DocumentHost::start(redirect).await;
    let a = RecordingServer::start().await;
    let gw = TestGateway::start(&format!(
        "secret_key: {SECRET_KEY}
oauth:
  issuer: {BASE}
  client_metadata_documents:
    allow_http_loopback: true
mcp:
  public_url: {BASE}
  servers:
    a:
      url: {a}
",
        a = a.url,
    ))
    .await;
    let meta: Value = client()
        .get(gw.at("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    let r = client()
        .post(gw.at("/admin/users"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"id": "mara", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let client_id = format!("{}/client.json", docs.base);

    // The sign-in page names the client as its document does.
    let (status, html) = authorization_page(&gw, &client_id, redirect).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Doc Agent"), "{html}");
    // A redirect URI the document does not list is refused, on a page.
    let (status, html) = authorization_page(&gw, &client_id, "http://evil.example/callback").await;
    assert_eq!(status, 400, "{html}");
    // A document that names another client_id is refused.
    let (status, html) =
        authorization_page(&gw, &format!("{}/impostor.json", docs.base), redirect).await;
    assert_eq!(status, 400);
    assert!(html.contains("not its own URL"), "{html}");

    // The whole flow: sign-in, consent, code + PKCE, a token for /mcp, tools listed.
    let resource = format!("{BASE}/mcp");
    let code = authorize(&gw, &client_id, redirect, &resource).await;
    let (status, tokens) = token_request(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
            ("client_id", &client_id),
            ("resource", &resource),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    let (status, _, body) = list_tools(&gw, "/mcp", access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tool_names(&body), ["a__echo"]);
    // The refresh token works for the same client.
    let (status, refreshed) = token_request(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    // The document was fetched once per URL and then kept (max-age=60).
    assert_eq!(*docs.fetches.lock().unwrap(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn metadata_documents_on_private_addresses_are_not_fetched_by_default() {
    let redirect = "http://127.0.0.1:33419/callback";
    let docs = DocumentHost::start(redirect).await;
    let Setup { gw, a: _a, b: _b } = setup().await;
    // Plain http is not a document URL without the flag: no such registered client.
    let (status, html) =
        authorization_page(&gw, &format!("{}/client.json", docs.base), redirect).await;
    assert_eq!(status, 400);
    assert!(html.contains("No application is registered"), "{html}");
    // https to a loopback (or private) address is refused before any connection.
    for private in [
        docs.base.replace("http://", "https://"),
        "https://10.0.0.1".to_owned(),
        "https://169.254.169.254".to_owned(),
        "https://localhost".to_owned(),
    ] {
        let (status, html) =
            authorization_page(&gw, &format!("{private}/client.json"), redirect).await;
        assert_eq!(status, 400, "{private}: {html}");
        assert!(html.contains("public"), "{private}: {html}");
    }
    assert_eq!(*docs.fetches.lock().unwrap(), 0);
    gw.stop().await;
}

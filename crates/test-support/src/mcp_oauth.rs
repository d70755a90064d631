//! [`MockOAuthMcp`]: an MCP server protected by OAuth, with its own authorization server, for
//! tests of a gateway that is the server's OAuth client on its users' behalf.
//!
//! One listener serves the resource's metadata (RFC 9728, at
//! `/.well-known/oauth-protected-resource/mcp`), the authorization server's metadata (RFC 8414),
//! `/authorize` (authorization code with PKCE S256, approved at once: the user "consents" by
//! following the redirect), `/token` (`authorization_code`, `refresh_token` with rotation, and
//! RFC 8693 token exchange) and `/mcp` (Streamable HTTP: `initialize`, `tools/list` with one
//! tool `echo`, `tools/call`). `tools/call` needs `Authorization: Bearer <an issued, unexpired
//! token>` (401 otherwise) and each call's token is recorded. Token lifetimes are set per test
//! ([`MockOAuthMcp::set_access_ttl`]); refresh tokens can be revoked at once
//! ([`MockOAuthMcp::revoke_refresh_tokens`]). The client authenticates at `/token` as the
//! metadata's `token_endpoint_auth_methods_supported` says — `client_secret_post` unless a
//! test sets others ([`MockOAuthMcp::set_client_auth_methods`]) — and any other way is
//! `invalid_client`; the method each token request used is recorded. A `GET /mcp` with a valid
//! token opens the standalone SSE stream of that token's session, on which
//! [`MockOAuthMcp::announce_tools_changed`] sends `notifications/tools/list_changed`; without
//! one it is 405, as before (no stream offered).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::Digest;

use crate::reply::MockBody;

/// The client id the mock's authorization server knows.
pub const CLIENT_ID: &str = "portcullis-gateway";
/// That client's secret.
pub const CLIENT_SECRET: &str = "mock-client-s3cret";

#[derive(Debug, Default)]
struct State {
    /// Codes: code → (redirect_uri, code_challenge, resource).
    codes: HashMap<String, (String, String, String)>,
    /// Access tokens: token → expiry.
    access: HashMap<String, Instant>,
    /// Live refresh tokens.
    refresh: std::collections::HashSet<String>,
    /// Every access token issued, in order.
    issued: Vec<String>,
    /// The bearer token of each `tools/call` (None: none or refused).
    calls: Vec<Option<String>>,
    /// Refresh grants answered with a token.
    refreshes: usize,
    /// Subject tokens of token exchanges.
    exchanged: Vec<String>,
    /// The `resource` of each token request.
    resources: Vec<String>,
    access_ttl: Duration,
    counter: u64,
    /// Whether every MCP request (not only `tools/call`) needs a token.
    everywhere: bool,
    /// The client authentication methods advertised and accepted at `/token`.
    auth_methods: Vec<String>,
    /// The method each accepted token request authenticated with.
    client_auths: Vec<String>,
    /// Events for the GET streams, by the token each stream was opened with.
    announcements: Option<tokio::sync::broadcast::Sender<(String, Bytes)>>,
    /// The token of each GET stream opened, in order.
    listening: Vec<String>,
}

/// A running mock OAuth-protected MCP server with its authorization server.
#[derive(Debug)]
pub struct MockOAuthMcp {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for MockOAuthMcp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl MockOAuthMcp {
    /// Starts it on a free loopback port; access tokens live an hour unless set.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            access_ttl: Duration::from_secs(3600),
            auth_methods: vec!["client_secret_post".to_owned()],
            announcements: Some(tokio::sync::broadcast::channel(16).0),
            ..State::default()
        }));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, addr, &state).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
        })
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Its authorization server's issuer.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s)
    }

    /// Access tokens issued from now on live `ttl`.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.with(|s| s.access_ttl = ttl);
    }

    /// Every MCP request needs a valid token from now on, not only `tools/call` (as most
    /// servers protected by OAuth do).
    pub fn require_token_everywhere(&self) {
        self.with(|s| s.everywhere = true);
    }

    /// Every refresh token issued so far stops working.
    pub fn revoke_refresh_tokens(&self) {
        self.with(|s| s.refresh.clear());
    }

    /// The bearer token each `tools/call` carried, in order (None: refused without one valid).
    pub fn calls(&self) -> Vec<Option<String>> {
        self.with(|s| s.calls.clone())
    }

    /// Every access token issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.with(|s| s.issued.clone())
    }

    /// Refreshes answered with a new token.
    pub fn refreshes(&self) -> usize {
        self.with(|s| s.refreshes)
    }

    /// The `resource` parameter of each token request.
    pub fn resources(&self) -> Vec<String> {
        self.with(|s| s.resources.clone())
    }

    /// The token endpoint advertises and accepts only these client authentication methods
    /// from now on (`client_secret_basic`, `client_secret_post`).
    pub fn set_client_auth_methods(&self, methods: &[&str]) {
        self.with(|s| s.auth_methods = methods.iter().map(|m| (*m).to_owned()).collect());
    }

    /// How each token request the client authenticated was authenticated, in order.
    pub fn client_auths(&self) -> Vec<String> {
        self.with(|s| s.client_auths.clone())
    }

    /// The tokens the GET streams opened so far were opened with, in order.
    pub fn listening(&self) -> Vec<String> {
        self.with(|s| s.listening.clone())
    }

    /// Sends `notifications/tools/list_changed` on the GET streams opened with `token`.
    pub fn announce_tools_changed(&self, token: &str) {
        let event = Bytes::from(format!(
            "event: message\ndata: {}\n\n",
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        ));
        self.with(|s| {
            if let Some(tx) = &s.announcements {
                let _ = tx.send((token.to_owned(), event));
            }
        });
    }

    /// The subject tokens of the token exchanges answered.
    pub fn exchanged(&self) -> Vec<String> {
        self.with(|s| s.exchanged.clone())
    }
}

type Request = http::Request<Incoming>;

fn full(body: impl Into<Bytes>) -> MockBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn oauth_error(code: &str) -> Response<MockBody> {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": code}))
}

/// `application/x-www-form-urlencoded` or query text as pairs.
fn pairs(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn issue(s: &mut State) -> Value {
    s.counter += 1;
    let access = format!("mock-at-{}-{}", s.counter, random());
    let refresh = format!("mock-rt-{}-{}", s.counter, random());
    s.access
        .insert(access.clone(), Instant::now() + s.access_ttl);
    s.refresh.insert(refresh.clone());
    s.issued.push(access.clone());
    json!({"access_token": access, "token_type": "Bearer",
        "expires_in": s.access_ttl.as_secs(), "refresh_token": refresh})
}

fn random() -> String {
    let mut bytes = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn handle(req: Request, addr: SocketAddr, state: &Mutex<State>) -> Response<MockBody> {
    let base = format!("http://{addr}");
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return oauth_error("invalid_request"),
    };
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/.well-known/oauth-protected-resource/mcp") => json_response(
            StatusCode::OK,
            &json!({"resource": format!("{base}/mcp"), "authorization_servers": [base]}),
        ),
        ("GET", "/.well-known/oauth-authorization-server") => json_response(
            StatusCode::OK,
            &json!({
                "token_endpoint_auth_methods_supported": lock().auth_methods.clone(),
                "issuer": base,
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token",
                    "urn:ietf:params:oauth:grant-type:token-exchange"],
                "code_challenge_methods_supported": ["S256"],
            }),
        ),
        ("GET", "/authorize") => {
            let q = pairs(&query);
            let get = |k: &str| q.get(k).cloned().unwrap_or_default();
            if get("client_id") != CLIENT_ID
                || get("response_type") != "code"
                || get("code_challenge_method") != "S256"
                || get("code_challenge").is_empty()
                || get("redirect_uri").is_empty()
                || get("resource") != format!("{base}/mcp")
            {
                return oauth_error("invalid_request");
            }
            let code = format!("mock-code-{}", random());
            lock().codes.insert(
                code.clone(),
                (get("redirect_uri"), get("code_challenge"), get("resource")),
            );
            let location = format!(
                "{}?code={code}&state={}",
                get("redirect_uri"),
                url::form_urlencoded::byte_serialize(get("state").as_bytes()).collect::<String>()
            );
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                r.headers_mut().insert(http::header::LOCATION, v);
            }
            r
        }
        ("POST", "/token") => token(
            &pairs(&String::from_utf8_lossy(&body)),
            &headers,
            &mut lock(),
        ),
        ("POST", "/mcp") => mcp(&body, &headers, &base, &mut lock()),
        ("GET", "/mcp") => {
            let mut s = lock();
            let token = bearer(&headers).filter(|t| {
                s.access
                    .get(t)
                    .is_some_and(|expiry| *expiry > Instant::now())
            });
            match (token, &s.announcements) {
                (Some(token), Some(tx)) => {
                    let changes = tx.subscribe();
                    s.listening.push(token.clone());
                    listen(token, changes)
                }
                _ => {
                    let mut r = Response::new(full(Bytes::new()));
                    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                    r
                }
            }
        }
        _ => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// The client id and secret of an `Authorization: Basic` header, each form-decoded (RFC 6749
/// §2.3.1).
fn basic_client(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |part: &str| -> String {
        url::form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

fn token(
    form: &HashMap<String, String>,
    headers: &http::HeaderMap,
    s: &mut State,
) -> Response<MockBody> {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let allows = |m: &str| s.auth_methods.iter().any(|a| a == m);
    let basic = basic_client(headers);
    let method = match basic {
        // A client authenticates one way only (RFC 6749 §2.3).
        Some(_) if form.contains_key("client_secret") => None,
        Some((id, secret)) if allows("client_secret_basic") => (id == CLIENT_ID
            && secret == CLIENT_SECRET
            && (get("client_id").is_empty() || get("client_id") == CLIENT_ID))
            .then_some("client_secret_basic"),
        None if allows("client_secret_post") => (get("client_id") == CLIENT_ID
            && get("client_secret") == CLIENT_SECRET)
            .then_some("client_secret_post"),
        _ => None,
    };
    let Some(method) = method else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client"}),
        );
    };
    s.client_auths.push(method.to_owned());
    s.resources.push(get("resource"));
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some((redirect, challenge, resource)) = s.codes.remove(&get("code")) else {
                return oauth_error("invalid_grant");
            };
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            if redirect != get("redirect_uri")
                || computed != challenge
                || resource != get("resource")
            {
                return oauth_error("invalid_grant");
            }
            json_response(StatusCode::OK, &issue(s))
        }
        "refresh_token" => {
            if !s.refresh.remove(&get("refresh_token")) {
                return oauth_error("invalid_grant");
            }
            s.refreshes += 1;
            json_response(StatusCode::OK, &issue(s))
        }
        "urn:ietf:params:oauth:grant-type:token-exchange" => {
            let subject = get("subject_token");
            if subject.is_empty() || get("subject_token_type").is_empty() {
                return oauth_error("invalid_request");
            }
            s.exchanged.push(subject);
            let mut answer = issue(s);
            if let Some(a) = answer.as_object_mut() {
                a.remove("refresh_token");
                a.insert(
                    "issued_token_type".to_owned(),
                    json!("urn:ietf:params:oauth:token-type:access_token"),
                );
            }
            json_response(StatusCode::OK, &answer)
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

/// The bearer token of a request, if any.
fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// The GET stream of `token`: the events announced for it, until the server stops.
fn listen(
    token: String,
    changes: tokio::sync::broadcast::Receiver<(String, Bytes)>,
) -> Response<MockBody> {
    use tokio::sync::broadcast::error::RecvError;
    let events = futures_util::stream::unfold(changes, move |mut changes| {
        let token = token.clone();
        async move {
            loop {
                match changes.recv().await {
                    Ok((to, event)) if to == token => {
                        return Some((Ok(hyper::body::Frame::data(event)), changes));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(events)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    r
}

fn mcp(body: &[u8], headers: &http::HeaderMap, base: &str, s: &mut State) -> Response<MockBody> {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return oauth_error("invalid_request");
    };
    let Some(id) = message.get("id").cloned() else {
        let mut r = Response::new(full(Bytes::new()));
        *r.status_mut() = StatusCode::ACCEPTED;
        return r;
    };
    let method = message["method"].as_str().unwrap_or("");
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let valid = bearer
        .as_ref()
        .and_then(|t| s.access.get(t))
        .is_some_and(|expiry| *expiry > Instant::now());
    let unauthorized = || {
        let mut r = json_response(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
        if let Ok(v) = http::HeaderValue::from_str(&format!(
            "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
        )) {
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        r
    };
    if s.everywhere && !valid && method != "tools/call" {
        return unauthorized();
    }
    let result = match method {
        "initialize" => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": "mock-oauth-mcp", "version": "1.0.0"},
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{"name": "echo", "description": "Echoes its arguments",
            "inputSchema": {"type": "object"}}]}),
        "tools/call" => {
            s.calls.push(bearer.filter(|_| valid));
            if !valid {
                return unauthorized();
            }
            let arguments = message["params"]["arguments"].to_string();
            json!({"content": [{"type": "text", "text": arguments}], "isError": false})
        }
        other => {
            return json_response(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": format!("Method not found: {other}")}}),
            );
        }
    };
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

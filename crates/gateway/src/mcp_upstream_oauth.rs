//! Upstream MCP servers that need OAuth (`mcp.servers.<name>.oauth`): the gateway is their
//! OAuth client on each user's behalf.
//!
//! A user's first call of such a server without a grant gets a JSON-RPC error (-32042, MCP's
//! "URL elicitation required" error) with a link to `<base>/mcp/connect/<server>`, where
//! `crate::mcp_connect` has them consent and stores the grant through [`save`]: the access and
//! refresh tokens sealed by the vault per (user, server) (`portcullis_store::mcp_grants`),
//! bound to both.
//!
//! Calls then go through an instance of the server of the user's own
//! (`portcullis_mcp::credentials`), whose requests carry `Authorization: Bearer <token>`: an
//! instance is keyed by the user and a digest of the token, so a token never travels through
//! another user's connection. An access token with less than [`REFRESH_MARGIN`] left is
//! refreshed first, one refresh at a time per grant on a replica; a refused refresh
//! (`invalid_grant`) drops the grant and the call gets the consent link again. Endpoints not
//! configured are discovered once per server URL from its protected-resource metadata (RFC 9728)
//! and its authorization server's metadata (RFC 8414).
//!
//! The hot path does not wait on the database for a grant it has just read: each (user, server)
//! lookup, "no grant" included, is kept opened in memory ([`GrantCache`](crate::mcp_grants::GrantCache), at most
//! [`GRANT_CACHE_ENTRIES`](crate::mcp_grants::GRANT_CACHE_ENTRIES) entries, each for [`GRANT_TTL`](crate::mcp_grants::GRANT_TTL)). This replica's own saves, refreshes
//! and deletions update it at once; a grant deleted or replaced on another replica (or directly
//! in the database) stops being used here within that time. Requests the gateway answers
//! itself (`initialize`, `ping`, …) do not look grants up at all.
//!
//! At the token endpoint the gateway authenticates as `oauth.token_endpoint_auth_method` says,
//! else as the authorization server's metadata lists (`client_secret_basic` first), else with
//! HTTP Basic, RFC 6749 §2.3.1's default (the client id and secret form-encoded first). What it
//! keeps across requests — discovered endpoints, refresh locks, exchanged tokens, its HTTP
//! client — is its own state's (`crate::mcp_grants::OAuthClientMemory`), so two gateways in
//! one process share nothing.
//!
//! With `mode: token_exchange` there is no consent: the caller's bearer token, when it is a JWT
//! of an enterprise issuer the gateway verified, is exchanged (RFC 8693) at the server's token
//! endpoint for one of the server's, kept in memory per caller token until near its expiry.
//! Virtual keys are never sent, nor the gateway's own access tokens (bound to the gateway's
//! endpoints, they never leave it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::Identity;
use portcullis_identity::Vault;
use portcullis_mcp::config::{OAuthMode, OAuthSpec, ServerSpec, TokenEndpointAuth, Transport};
use portcullis_mcp::credentials::Overlay;
use portcullis_mcp::hub::Server;
use portcullis_mcp::jsonrpc::{ErrorObject, UPSTREAM_ERROR};
use portcullis_mcp::upstream::Upstream;
use portcullis_providers::Secret;
use portcullis_store::McpGrantRecord;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::now_ms;
use crate::mcp_endpoint::McpEndpoint;
use crate::mcp_grants::{ClientAuth, Endpoints, Exchanged, HttpClient, OAuthClientMemory, Tokens};
use crate::state::AppState;

/// The JSON-RPC code of a call that needs the user to visit a URL first (MCP's
/// `URLElicitationRequiredError`).
pub const CONSENT_REQUIRED: i64 = -32042;
/// A token with less than this left is refreshed before use.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Largest token or metadata response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Time allowed for a token or metadata request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn grant_seal_id(user: &str, server: &str) -> String {
    format!("mcp-grant:{user}:{server}")
}

pub(crate) fn http_url(spec: &ServerSpec) -> Option<&str> {
    match &spec.transport {
        Transport::StreamableHttp(h) | Transport::Sse(h) => Some(&h.url),
        Transport::Stdio(_) => None,
    }
}

fn failure(message: impl Into<String>) -> ErrorObject {
    ErrorObject::new(UPSTREAM_ERROR, message)
}

/// The error telling the caller to connect their account first.
fn consent_required(link: &str, server: &str, why: &str) -> ErrorObject {
    let message = format!(
        "MCP server `{server}` needs your consent{why}: open {link} to connect your account, \
         then call again"
    );
    let mut e = ErrorObject::new(CONSENT_REQUIRED, message.clone());
    let data = serde_json::json!({
        "elicitations": [{
            "mode": "url",
            "elicitationId": format!("connect-{server}"),
            "url": link,
            "message": message,
        }]
    });
    e.data = serde_json::value::to_raw_value(&data).ok();
    e
}

pub(crate) fn connect_link(endpoint: &McpEndpoint, headers: &HeaderMap, server: &str) -> String {
    format!("{}/mcp/connect/{server}", endpoint.base_url(headers))
}

/// The instance of `server` carrying `who`'s token, when the server needs OAuth: `None` when
/// it does not (the caller's own credential or the shared connection serve them).
pub async fn upstream_for(
    state: &AppState,
    endpoint: &McpEndpoint,
    headers: &HeaderMap,
    who: &Identity,
    server: &Server,
) -> Option<Result<Arc<dyn Upstream>, ErrorObject>> {
    let oauth = server.spec.oauth.as_ref()?;
    Some(
        user_upstream(state, endpoint, headers, who, server, oauth)
            .await
            .map(|instance| instance.upstream.clone()),
    )
}

/// The caller's instances of the servers that need OAuth, for the router to read their lists
/// and names through (`crate::mcp_endpoint::CallerInstances`): the instance carrying their
/// token where they have one; where they do not, nothing when the server's shared connection
/// is up (its lists serve them, and their call gets the consent error), else the error.
pub async fn instances(
    state: &AppState,
    endpoint: &McpEndpoint,
    headers: &HeaderMap,
    who: &Identity,
) -> HashMap<String, Result<Arc<Server>, ErrorObject>> {
    let mut out = HashMap::new();
    for server in endpoint.hub.servers() {
        let Some(oauth) = server.spec.oauth.as_ref() else {
            continue;
        };
        match user_upstream(state, endpoint, headers, who, server, oauth).await {
            Ok(instance) => {
                out.insert(server.name().to_owned(), Ok(instance));
            }
            Err(_) if server.status() == portcullis_mcp::upstream::Status::Ready => {}
            Err(e) => {
                out.insert(server.name().to_owned(), Err(e));
            }
        }
    }
    out
}

/// The scope (and instance owner) of `user`'s instances of a server through their grant.
fn grant_scope(user: &str) -> String {
    format!("oauth:{user}")
}

/// The scope of `owner`'s instances of a server through exchanged tokens.
fn exchange_scope(owner: &str) -> String {
    format!("exchange:{owner}")
}

/// `who`'s instances of `server`, when it needs OAuth, that are running now (through their
/// grant, or their exchanged token), for their GET stream to hear them; never starts one.
pub fn running_instances(
    endpoint: &McpEndpoint,
    who: &Identity,
    server: &Server,
) -> Vec<Arc<Server>> {
    let Some(oauth) = server.spec.oauth.as_ref() else {
        return Vec::new();
    };
    let scope = match oauth.mode {
        OAuthMode::UserGrant => match who.user.as_deref() {
            Some(user) => grant_scope(user),
            None => return Vec::new(),
        },
        OAuthMode::TokenExchange => exchange_scope(who.user.as_deref().unwrap_or(&who.subject)),
    };
    endpoint
        .credentialed
        .running_in_scope(server.name(), &scope)
}

async fn user_upstream(
    state: &AppState,
    endpoint: &McpEndpoint,
    headers: &HeaderMap,
    who: &Identity,
    server: &Server,
    oauth: &OAuthSpec,
) -> Result<Arc<Server>, ErrorObject> {
    let name = server.name();
    if oauth.mode == OAuthMode::TokenExchange {
        return exchanged_upstream(&state.mcp_oauth, endpoint, headers, who, server, oauth).await;
    }
    let Some(user) = who.user.as_deref() else {
        return Err(failure(format!(
            "MCP server `{name}` acts for a user: call it as a user (a key bound to a user, or \
             a user's OAuth token)"
        )));
    };
    let directory = state
        .auth
        .directory()
        .ok_or_else(|| failure("user grants need the identity store"))?;
    let vault = directory
        .vault()
        .ok_or_else(|| failure("user grants need PORTCULLIS_SECRET_KEY to seal them"))?;
    let link = connect_link(endpoint, headers, name);
    let store = &state.stores.mcp_grants;
    let read = |record: Option<McpGrantRecord>| -> Option<Tokens> {
        let record = record?;
        let text = vault
            .open(&grant_seal_id(user, name), &record.sealed)
            .ok()?;
        serde_json::from_str(text.expose()).ok()
    };
    let cached = match state.mcp_grants.get(user, name).await {
        Some(cached) => cached,
        None => {
            let record = store
                .mcp_grant(user, name)
                .await
                .map_err(|_| failure("the grant store is unavailable"))?;
            let opened = read(record).map(Arc::new);
            state.mcp_grants.put(user, name, opened.clone()).await;
            opened
        }
    };
    let Some(mut tokens) = cached else {
        return Err(consent_required(&link, name, ""));
    };
    if expiring(&tokens) {
        let lock = state
            .mcp_oauth
            .flights
            .lock()
            .entry((user.to_owned(), name.to_owned()))
            .or_default()
            .clone();
        let _held = lock.lock().await;
        // Another call may have refreshed it meanwhile (here or on another replica).
        let record = store
            .mcp_grant(user, name)
            .await
            .map_err(|_| failure("the grant store is unavailable"))?;
        let Some(current) = read(record).map(Arc::new) else {
            state.mcp_grants.forget(user, name).await;
            return Err(consent_required(&link, name, ""));
        };
        tokens = current;
        if expiring(&tokens) {
            match refresh(&state.mcp_oauth, &server.spec, oauth, &tokens).await {
                Ok(fresh) => {
                    save(state, vault, user, name, &fresh).await?;
                    tokens = Arc::new(fresh);
                }
                Err(RefreshError::Refused) => {
                    let _ = store.delete_mcp_grant(user, name).await;
                    state.mcp_grants.forget(user, name).await;
                    return Err(consent_required(
                        &link,
                        name,
                        " again (your authorization expired or was revoked)",
                    ));
                }
                Err(RefreshError::Failed(why)) => {
                    return Err(failure(format!(
                        "MCP server `{name}`: the token could not be refreshed ({why})"
                    )));
                }
            }
        } else {
            state.mcp_grants.put(user, name, Some(tokens.clone())).await;
        }
    }
    instance(endpoint, server, &grant_scope(user), &tokens.access_token)
}

/// The instance of `server` whose requests carry `token`, for `owner` alone: keyed by the owner
/// and a digest of the token, so it is never shared with another caller, and a new token gets
/// a new instance (the old one is stopped once idle).
fn instance(
    endpoint: &McpEndpoint,
    server: &Server,
    owner: &str,
    token: &str,
) -> Result<Arc<Server>, ErrorObject> {
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let id: Arc<str> = format!("{owner}:{}", &digest[..16]).into();
    // Its tools are pinned under the owner, which stays as their token is refreshed.
    let scope: Arc<str> = owner.into();
    let overlay: BTreeMap<String, String> =
        [("Authorization".to_owned(), format!("Bearer {token}"))].into();
    endpoint
        .credentialed
        .instance_in(server, &id, &scope, Overlay::Headers(&overlay))
        .map_err(|e| failure(e.to_string()))
}

/// RFC 8693's token type of a JWT.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Token exchange (RFC 8693): the caller's token of an enterprise issuer (a JWT the gateway
/// verified) is exchanged at the server's token endpoint for a token of the server. Virtual
/// keys are never sent, nor the gateway's own access tokens, which are bound to the gateway's
/// endpoints and never leave it.
async fn exchanged_upstream(
    memory: &OAuthClientMemory,
    endpoint: &McpEndpoint,
    headers: &HeaderMap,
    who: &Identity,
    server: &Server,
    oauth: &OAuthSpec,
) -> Result<Arc<Server>, ErrorObject> {
    let name = server.name();
    let subject = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|_| who.method == portcullis_core::AuthMethod::Jwt);
    let Some(subject) = subject else {
        return Err(failure(format!(
            "MCP server `{name}` takes the caller's identity by token exchange: call it with a \
             token of your organization's identity provider (keys and the gateway's own tokens \
             are never passed on)"
        )));
    };
    let owner = who.user.as_deref().unwrap_or(&who.subject);
    let key = (
        hex::encode(Sha256::digest(subject.as_bytes())),
        name.to_owned(),
    );
    let fresh = |e: &Exchanged| {
        e.expires_ms.is_none_or(|at| {
            at - now_ms() >= i64::try_from(REFRESH_MARGIN.as_millis()).unwrap_or(60_000)
        })
    };
    if let Some(e) = memory.exchanged.lock().get(&key).filter(|e| fresh(e)) {
        return instance(endpoint, server, &exchange_scope(owner), &e.token);
    }
    let lock = memory
        .flights
        .lock()
        .entry(key.clone())
        .or_default()
        .clone();
    let _held = lock.lock().await;
    if let Some(e) = memory.exchanged.lock().get(&key).filter(|e| fresh(e)) {
        return instance(endpoint, server, &exchange_scope(owner), &e.token);
    }
    let endpoints = endpoints(memory, &server.spec, oauth)
        .await
        .map_err(|why| failure(format!("MCP server `{name}`: {why}")))?;
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
        ),
        ("subject_token", subject.to_owned()),
        ("subject_token_type", JWT_TOKEN_TYPE.to_owned()),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token".to_owned(),
        ),
        (
            "resource",
            http_url(&server.spec).unwrap_or_default().to_owned(),
        ),
    ];
    if !oauth.scopes.is_empty() {
        form.push(("scope", oauth.scopes.join(" ")));
    }
    let tokens = match token_request(memory, &endpoints, oauth, form).await {
        Ok(t) => t,
        Err(TokenError::Refused(code)) => {
            return Err(failure(format!(
                "MCP server `{name}` refused to exchange your token ({code})"
            )));
        }
        Err(TokenError::Failed(why)) => {
            return Err(failure(format!(
                "MCP server `{name}`: the token exchange failed ({why})"
            )));
        }
    };
    let upstream = instance(
        endpoint,
        server,
        &exchange_scope(owner),
        &tokens.access_token,
    );
    let mut cache = memory.exchanged.lock();
    cache.retain(|_, e| e.expires_ms.is_none_or(|at| at > now_ms()));
    cache.insert(
        key,
        Exchanged {
            token: tokens.access_token,
            // A token without a stated lifetime is asked for again after five minutes.
            expires_ms: tokens.expires_ms.or(Some(now_ms() + 5 * 60 * 1000)),
        },
    );
    upstream
}

fn expiring(tokens: &Tokens) -> bool {
    let margin = i64::try_from(REFRESH_MARGIN.as_millis()).unwrap_or(60_000);
    tokens.expires_ms.is_some_and(|at| at - now_ms() < margin)
}

pub(crate) async fn save(
    state: &AppState,
    vault: &Vault,
    user: &str,
    server: &str,
    tokens: &Tokens,
) -> Result<(), ErrorObject> {
    let text = serde_json::to_string(tokens).map_err(|_| failure("the grant is not storable"))?;
    let sealed = vault
        .seal(&grant_seal_id(user, server), &Secret::new(text))
        .map_err(|_| failure("the grant could not be sealed"))?;
    let now = now_ms();
    state
        .stores
        .mcp_grants
        .put_mcp_grant(&McpGrantRecord {
            user_id: user.to_owned(),
            server: server.to_owned(),
            sealed,
            expires_ms: tokens.expires_ms,
            created_ms: now,
            updated_ms: now,
        })
        .await
        .map_err(|_| failure("the grant store is unavailable"))?;
    state
        .mcp_grants
        .put(user, server, Some(Arc::new(tokens.clone())))
        .await;
    Ok(())
}

enum RefreshError {
    /// The authorization server refused the refresh token (or there is none).
    Refused,
    /// It could not be asked.
    Failed(String),
}

async fn refresh(
    memory: &OAuthClientMemory,
    spec: &ServerSpec,
    oauth: &OAuthSpec,
    old: &Tokens,
) -> Result<Tokens, RefreshError> {
    let Some(refresh_token) = old.refresh_token.clone() else {
        return Err(RefreshError::Refused);
    };
    let endpoints = endpoints(memory, spec, oauth)
        .await
        .map_err(RefreshError::Failed)?;
    let resource = http_url(spec).unwrap_or_default().to_owned();
    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.clone()),
        ("resource", resource),
    ];
    if !oauth.scopes.is_empty() {
        form.push(("scope", oauth.scopes.join(" ")));
    }
    match token_request(memory, &endpoints, oauth, form).await {
        Ok(mut tokens) => {
            // A server that does not rotate refresh tokens keeps the old one good.
            if tokens.refresh_token.is_none() {
                tokens.refresh_token = Some(refresh_token);
            }
            Ok(tokens)
        }
        Err(TokenError::Refused(code)) if code == "invalid_grant" || code == "invalid_token" => {
            Err(RefreshError::Refused)
        }
        Err(TokenError::Refused(code)) => Err(RefreshError::Failed(code)),
        Err(TokenError::Failed(why)) => Err(RefreshError::Failed(why)),
    }
}

pub(crate) enum TokenError {
    /// The token endpoint answered with this OAuth error code.
    Refused(String),
    /// No usable answer.
    Failed(String),
}

fn client(memory: &OAuthClientMemory) -> Option<&HttpClient> {
    memory
        .client
        .get_or_init(|| {
            let tls = portcullis_core::tls::client_config().ok()?;
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_connect_timeout(Some(HTTP_TIMEOUT));
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http);
            Some(Client::builder(TokioExecutor::new()).build(https))
        })
        .as_ref()
}

/// Sends a request; the status and at most [`MAX_RESPONSE`] bytes of body.
async fn send(
    memory: &OAuthClientMemory,
    request: http::Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let client = client(memory).ok_or("no TLS configuration")?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|_| "the server could not be reached".to_owned())?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|_| "the answer could not be read".to_owned())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

/// A token request to `endpoints.token` with `form`, the client authenticated as
/// `endpoints.auth` says (RFC 6749 §2.3.1): a public client (no secret) names itself in the
/// form; a confidential one sends its secret in a Basic `Authorization` header or in the form.
pub(crate) async fn token_request(
    memory: &OAuthClientMemory,
    endpoints: &Endpoints,
    oauth: &OAuthSpec,
    mut form: Vec<(&'static str, String)>,
) -> Result<Tokens, TokenError> {
    let mut request = http::Request::post(&endpoints.token)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    match (&oauth.client_secret, endpoints.auth) {
        (Some(secret), ClientAuth::Basic) => {
            request = request.header(
                header::AUTHORIZATION,
                basic_credentials(&oauth.client_id, secret),
            );
        }
        (Some(secret), ClientAuth::Post) => {
            form.push(("client_id", oauth.client_id.clone()));
            form.push(("client_secret", secret.clone()));
        }
        (None, _) => form.push(("client_id", oauth.client_id.clone())),
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| TokenError::Failed("the token endpoint is not a valid URL".to_owned()))?;
    let (status, body) = send(memory, request).await.map_err(TokenError::Failed)?;
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        refresh_token: Option<String>,
        expires_in: Option<i64>,
        error: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| TokenError::Failed(format!("the token endpoint answered {status}")))?;
    match (status.is_success(), answer.access_token, answer.error) {
        (true, Some(access_token), _) => Ok(Tokens {
            access_token,
            refresh_token: answer.refresh_token,
            expires_ms: answer
                .expires_in
                .map(|s| now_ms().saturating_add(s.saturating_mul(1000))),
        }),
        (_, _, Some(code)) => Err(TokenError::Refused(code)),
        _ => Err(TokenError::Failed(format!(
            "the token endpoint answered {status}"
        ))),
    }
}

/// `Authorization: Basic` credentials of a client (RFC 6749 §2.3.1): the client id and secret
/// each encoded with `application/x-www-form-urlencoded`, joined by `:`, in base64.
fn basic_credentials(client_id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// How to authenticate at the token endpoint: as configured; else the first of
/// `client_secret_basic` and `client_secret_post` the authorization server's metadata lists;
/// else `client_secret_basic`, which RFC 8414 makes the default and RFC 6749 requires servers
/// to support.
fn client_auth(oauth: &OAuthSpec, metadata: Option<&serde_json::Value>) -> ClientAuth {
    let chosen = oauth.token_endpoint_auth.or_else(|| {
        let listed = metadata?
            .get("token_endpoint_auth_methods_supported")?
            .as_array()?;
        let lists = |m: TokenEndpointAuth| listed.iter().any(|v| v.as_str() == Some(m.as_str()));
        [
            TokenEndpointAuth::ClientSecretBasic,
            TokenEndpointAuth::ClientSecretPost,
        ]
        .into_iter()
        .find(|m| lists(*m))
    });
    match chosen {
        Some(TokenEndpointAuth::ClientSecretPost) => ClientAuth::Post,
        Some(TokenEndpointAuth::ClientSecretBasic) | None => ClientAuth::Basic,
    }
}

/// The server's endpoints: configured, else discovered (and kept) from its metadata.
pub(crate) async fn endpoints(
    memory: &OAuthClientMemory,
    spec: &ServerSpec,
    oauth: &OAuthSpec,
) -> Result<Endpoints, String> {
    if let (Some(authorize), Some(token)) = (&oauth.authorization_endpoint, &oauth.token_endpoint) {
        return Ok(Endpoints {
            authorize: authorize.clone(),
            token: token.clone(),
            auth: client_auth(oauth, None),
        });
    }
    let url = http_url(spec).ok_or("not an HTTP server")?;
    if let Some(found) = memory.endpoints.lock().get(url) {
        return Ok(found.clone());
    }
    let resource = get_json(memory, &well_known(url, "oauth-protected-resource")?).await?;
    let issuer = resource
        .get("authorization_servers")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .ok_or("its resource metadata names no authorization server")?;
    let metadata = get_json(memory, &well_known(issuer, "oauth-authorization-server")?).await?;
    let field = |name: &str| {
        oauth
            .authorization_endpoint
            .clone()
            .filter(|_| name == "authorization_endpoint")
            .or_else(|| {
                oauth
                    .token_endpoint
                    .clone()
                    .filter(|_| name == "token_endpoint")
            })
            .or_else(|| {
                metadata
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("its authorization server's metadata has no {name}"))
    };
    let found = Endpoints {
        authorize: field("authorization_endpoint")?,
        token: field("token_endpoint")?,
        auth: client_auth(oauth, Some(&metadata)),
    };
    memory
        .endpoints
        .lock()
        .insert(url.to_owned(), found.clone());
    Ok(found)
}

/// `<origin>/.well-known/<doc><path>` of `url` (RFC 8414 / RFC 9728 path insertion).
fn well_known(url: &str, doc: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL".to_owned())?;
    let scheme = uri.scheme_str().ok_or("not a valid URL")?;
    let authority = uri.authority().ok_or("not a valid URL")?;
    let path = uri.path().trim_end_matches('/');
    Ok(format!("{scheme}://{authority}/.well-known/{doc}{path}"))
}

async fn get_json(memory: &OAuthClientMemory, url: &str) -> Result<serde_json::Value, String> {
    let request = http::Request::get(url)
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|_| "not a valid metadata URL".to_owned())?;
    let (status, body) = send(memory, request).await?;
    if !status.is_success() {
        return Err(format!("its metadata answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|_| "its metadata is not JSON".to_owned())
}

/// `application/x-www-form-urlencoded` encoding (as RFC 6749's appendix B asks of client
/// credentials): a space is `+`, everything but `*-._`, letters and digits is percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') => {
                out.push(char::from(b));
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_inserts_the_path() {
        assert_eq!(
            well_known("http://127.0.0.1:9/mcp", "oauth-protected-resource").ok(),
            Some("http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp".to_owned())
        );
        assert_eq!(
            well_known("https://as.example", "oauth-authorization-server").ok(),
            Some("https://as.example/.well-known/oauth-authorization-server".to_owned())
        );
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn basic_credentials_form_encode_the_id_and_secret_first() {
        // RFC 6749 §2.3.1: `:` in the id and secret cannot be confused with the separator.
        let header = basic_credentials("my client", "s3:cr%t+");
        let encoded = header.strip_prefix("Basic ").unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&decoded),
            "my+client:s3%3Acr%25t%2B"
        );
    }

    #[test]
    fn the_client_authentication_follows_the_setting_then_the_metadata() {
        let spec = |method: Option<TokenEndpointAuth>| OAuthSpec {
            client_id: "c".into(),
            client_secret: Some("s".into()),
            authorization_endpoint: None,
            token_endpoint: None,
            scopes: Vec::new(),
            mode: OAuthMode::UserGrant,
            token_endpoint_auth: method,
        };
        let post_only =
            serde_json::json!({"token_endpoint_auth_methods_supported": ["client_secret_post"]});
        let both = serde_json::json!({"token_endpoint_auth_methods_supported":
            ["private_key_jwt", "client_secret_post", "client_secret_basic"]});
        assert_eq!(client_auth(&spec(None), Some(&post_only)), ClientAuth::Post);
        assert_eq!(client_auth(&spec(None), Some(&both)), ClientAuth::Basic);
        assert_eq!(
            client_auth(&spec(None), Some(&serde_json::json!({}))),
            ClientAuth::Basic
        );
        assert_eq!(client_auth(&spec(None), None), ClientAuth::Basic);
        assert_eq!(
            client_auth(
                &spec(Some(TokenEndpointAuth::ClientSecretBasic)),
                Some(&post_only)
            ),
            ClientAuth::Basic
        );
    }
}

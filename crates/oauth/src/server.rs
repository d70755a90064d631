//! [`OAuthServer`]: the shared state behind every endpoint, its router, the admin-facing API
//! (clients bound to service accounts), access-token verification for the request path, and
//! the background task that reloads revocations and prunes the tables.

use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_store::oauth::{AccessRecord, ClientRecord, OAuthStore, RefreshRecord};
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::client_metadata::{ClientDocuments, DocumentError};
use crate::config::{OAuthConfig, check_base_url};
use crate::directory::{Directory, Principal};
use crate::error::{OAuthError, ProtocolError};
use crate::first_party::{self, FirstPartyError, FirstPartyKey, FirstPartySignIn, FirstPartyStart};
use crate::keys::{AccessClaims, Signer};
use crate::resource::Resources;
use crate::revocation::Revocations;
use crate::secrets::{Sealer, derive_key, random_id, random_token, sha256};
use crate::throttle::SignInThrottle;
use crate::upstream::{Upstream, UpstreamError};
use crate::{authorize, metadata, register, revoke, token, upstream};

/// How often revocations are reloaded from the store.
pub(crate) const REVOCATION_RELOAD: Duration = Duration::from_secs(1);

/// How often expired rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Largest request body any endpoint accepts.
const BODY_LIMIT: usize = 64 * 1024;

/// Current time, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The credentials of a confidential client, shown once when it is created.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret; only its SHA-256 digest is stored.
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// The state every endpoint shares.
pub(crate) struct Inner {
    pub(crate) config: OAuthConfig,
    /// The issuer URL, without a trailing slash.
    pub(crate) issuer: String,
    pub(crate) audience: String,
    /// Whether cookies are marked `Secure` (the issuer is https).
    pub(crate) secure_cookies: bool,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) signer: Signer,
    pub(crate) sealer: Sealer,
    /// Derives the PKCE verifiers of the gateway's own client.
    pub(crate) first_party_key: FirstPartyKey,
    pub(crate) store: Arc<dyn OAuthStore>,
    pub(crate) directory: Arc<dyn Directory>,
    pub(crate) revocations: Revocations,
    /// Sign-in delegated to an identity provider, when configured.
    pub(crate) upstream: Option<Upstream>,
    pub(crate) sign_in_throttle: SignInThrottle,
    /// Unauthenticated dynamic client registrations, per replica.
    pub(crate) registrations: governor::DefaultDirectRateLimiter,
    /// Clients known by the URL of their metadata document.
    pub(crate) client_documents: ClientDocuments,
    /// The protected resources besides `audience` (RFC 8707), once the gateway says.
    pub(crate) resources: OnceLock<Arc<dyn Resources>>,
    maintenance: OnceLock<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.maintenance.get() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthServer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.signer.kid())
            .finish_non_exhaustive()
    }
}

/// A freshly minted access token and what the store remembers of it.
pub(crate) struct Minted {
    pub(crate) token: String,
    pub(crate) record: AccessRecord,
}

impl Inner {
    /// `{issuer}{path}`.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The client `client_id` names: the gateway's own console, a registered one, or the one
    /// its metadata document describes. `Ok(None)`: no such registered client.
    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, ClientError> {
        if first_party::is_first_party(client_id) {
            return Ok(Some(first_party::console_client(self)));
        }
        if self.client_documents.is_document_id(client_id) {
            return Ok(Some(self.client_documents.client(client_id).await?));
        }
        Ok(self.store.client(client_id).await?)
    }

    /// The other protected resources, if the gateway named them.
    pub(crate) fn resources(&self) -> Option<&dyn Resources> {
        self.resources.get().map(|r| &**r)
    }

    /// A `resource` parameter checked ([`crate::resource::resolve`]).
    pub(crate) fn resolve_resource(
        &self,
        requested: Option<&str>,
    ) -> Result<Option<String>, ProtocolError> {
        crate::resource::resolve(requested, &self.audience, self.resources())
    }

    /// Signs an access token for `principal`, for `resource` (`None`: the default audience).
    pub(crate) fn mint_access(
        &self,
        principal: &Principal,
        client_id: &str,
        scope: &str,
        resource: Option<&str>,
        family_id: Option<&str>,
    ) -> Result<Minted, OAuthError> {
        let now = now_ms();
        let iat = now / 1000;
        let exp = iat.saturating_add(millis(self.config.access_token_ttl) / 1000);
        let jti = Uuid::now_v7().to_string();
        let claims = AccessClaims::new(
            &self.issuer,
            resource.unwrap_or(&self.audience),
            principal,
            client_id,
            scope,
            iat,
            exp,
            jti.clone(),
        );
        let token = self.signer.sign(&claims)?;
        Ok(Minted {
            token,
            record: AccessRecord {
                jti,
                family_id: family_id.map(str::to_owned),
                client_id: client_id.to_owned(),
                created_ms: now,
                expires_ms: exp.saturating_mul(1000),
            },
        })
    }

    /// A new refresh token in `family_id`: the token and its stored record.
    pub(crate) fn new_refresh(
        &self,
        family_id: &str,
        client_id: &str,
        scope: &str,
        resource: Option<&str>,
        principal: &Principal,
    ) -> (String, RefreshRecord) {
        let token = random_token();
        let now = now_ms();
        let record = RefreshRecord {
            token_hash: sha256(token.as_bytes()),
            family_id: family_id.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            resource: resource.map(str::to_owned),
            principal: principal.to_json(),
            created_ms: now,
            expires_ms: now.saturating_add(millis(self.config.refresh_token_ttl)),
            rotated_ms: None,
            revoked_ms: None,
        };
        (token, record)
    }

    /// Lifetime of access tokens, seconds.
    pub(crate) fn access_ttl_secs(&self) -> u64 {
        self.config.access_token_ttl.as_secs()
    }

    /// Lifetime of codes, milliseconds.
    pub(crate) fn code_ttl_ms(&self) -> i64 {
        millis(self.config.code_ttl)
    }

    /// Revokes every token of a family; this replica stops accepting its access tokens at
    /// once, the others within [`REVOCATION_RELOAD`].
    pub(crate) async fn revoke_family(&self, family_id: &str) -> Result<(), OAuthError> {
        let revoked = self.store.revoke_family(family_id, now_ms()).await?;
        tracing::info!(
            family_id,
            refresh_tokens = revoked.refresh_tokens,
            access_tokens = revoked.access_tokens.len(),
            "revoked an OAuth token family"
        );
        for (jti, expires_ms) in revoked.access_tokens {
            self.revocations.add_local(jti, expires_ms);
        }
        Ok(())
    }

    /// The scopes granted for a request naming `requested` (space-separated), by `client`.
    /// A request naming none gets the client's registered scopes, or the defaults.
    pub(crate) fn resolve_scope(
        &self,
        requested: Option<&str>,
        client: &ClientRecord,
    ) -> Result<String, ProtocolError> {
        let allowed = |s: &str| {
            self.config.scopes.iter().any(|c| c == s)
                && client
                    .scopes
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|c| c == s))
        };
        let mut granted: Vec<&str> = Vec::new();
        match requested.map(str::trim).filter(|s| !s.is_empty()) {
            Some(requested) => {
                for s in requested.split(' ').filter(|s| !s.is_empty()) {
                    if !allowed(s) {
                        return Err(ProtocolError::invalid_scope(format!(
                            "scope `{s}` is not available to this client"
                        )));
                    }
                    if !granted.contains(&s) {
                        granted.push(s);
                    }
                }
            }
            None => {
                let defaults = client.scopes.as_ref().unwrap_or(&self.default_scopes);
                granted.extend(defaults.iter().map(String::as_str).filter(|s| allowed(s)));
            }
        }
        if granted.is_empty() {
            return Err(ProtocolError::invalid_scope("no scope requested"));
        }
        Ok(granted.join(" "))
    }
}

/// The gateway's OAuth 2.1 authorization server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OAuthServer {
    inner: Arc<Inner>,
}

impl OAuthServer {
    /// Builds the server and loads the revoked access tokens; spawns (on the current Tokio
    /// runtime) a task that reloads revocations every second and prunes expired rows, ended
    /// when the last clone of the server (and of its router) is dropped.
    ///
    /// `default_issuer` is used when `config.issuer` is unset (the gateway derives it from its
    /// listen address); `signing_secret` is the 32-byte secret every replica shares, from
    /// which the token signing key and the form-sealing key are derived. `issuers` verifies
    /// the ID tokens of `config.sign_in.oidc`'s provider; it is required when that is set.
    pub async fn new(
        config: &OAuthConfig,
        default_issuer: &str,
        signing_secret: &[u8; 32],
        store: Arc<dyn OAuthStore>,
        directory: Arc<dyn Directory>,
        issuers: Option<portcullis_oidc::Verifier>,
    ) -> Result<Self, OAuthError> {
        let issues = config.validate();
        if !issues.is_empty() {
            return Err(OAuthError::Config(issues.join("; ")));
        }
        let issuer = config
            .issuer
            .as_deref()
            .unwrap_or(default_issuer)
            .trim_end_matches('/')
            .to_owned();
        check_base_url(&issuer).map_err(|e| OAuthError::Config(format!("issuer: {e}")))?;
        let audience = config
            .audience
            .as_deref()
            .map(|a| a.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| issuer.clone());
        let signer = Signer::new(signing_secret, &issuer, &audience)?;
        let sealer = Sealer::new(derive_key(signing_secret, "authorization-form-seal"))
            .ok_or_else(|| OAuthError::Signing("cannot key the form seal".to_owned()))?;
        let upstream = match (&config.sign_in.oidc, issuers) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(OAuthError::Config(
                    "sign_in.oidc: the identity provider must also be configured under identity.issuers"
                        .to_owned(),
                ));
            }
            (Some(oidc), Some(verifier)) => Some(
                Upstream::new(
                    oidc.clone(),
                    verifier,
                    derive_key(signing_secret, "upstream-sign-in"),
                )
                .map_err(|e: UpstreamError| OAuthError::Config(e.to_string()))?,
            ),
        };
        let client_documents = ClientDocuments::new(config.client_metadata_documents.clone())
            .map_err(OAuthError::Config)?;
        let per_minute = std::num::NonZeroU32::new(config.registrations_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let inner = Arc::new(Inner {
            upstream,
            sign_in_throttle: SignInThrottle::new(config.max_failed_sign_ins),
            registrations: governor::RateLimiter::direct(governor::Quota::per_minute(per_minute)),
            config: config.clone(),
            secure_cookies: issuer.starts_with("https://"),
            default_scopes: config.effective_default_scopes(),
            issuer,
            audience,
            signer,
            sealer,
            first_party_key: FirstPartyKey::new(derive_key(signing_secret, "first-party-client")),
            store,
            directory,
            revocations: Revocations::default(),
            resources: OnceLock::new(),
            client_documents,
            maintenance: OnceLock::new(),
        });
        inner.revocations.reload(&inner.store, now_ms()).await?;
        let task = tokio::spawn(maintain(Arc::downgrade(&inner)));
        let _ = inner.maintenance.set(task.abort_handle());
        Ok(Self { inner })
    }

    /// The failed-sign-in counts of the sign-in page, for every other place that checks a
    /// local user's password to share.
    pub fn sign_in_throttle(&self) -> SignInThrottle {
        self.inner.sign_in_throttle.clone()
    }

    /// The proxies whose `X-Forwarded-For` names the client (`trusted_proxies`).
    pub fn trusted_proxies(&self) -> &[std::net::IpAddr] {
        &self.inner.config.trusted_proxies
    }

    /// The issuer URL (`iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The default audience of access tokens (the LLM API).
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Names the protected resources, besides the default audience, that clients may ask
    /// tokens for with RFC 8707's `resource` parameter. Takes effect once; later calls are
    /// ignored. Until then only the default audience is a resource.
    pub fn set_resources(&self, resources: Arc<dyn Resources>) {
        let _ = self.inner.resources.set(resources);
    }

    /// The public signing keys, as published at `/oauth/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::to_value(self.inner.signer.jwks()).unwrap_or_default()
    }

    /// The routes, to be mounted at the root of the gateway:
    ///
    /// - `GET /.well-known/oauth-authorization-server` (RFC 8414),
    /// - `GET /.well-known/oauth-protected-resource` (RFC 9728),
    /// - `GET /oauth/jwks`,
    /// - `POST /oauth/register` (RFC 7591),
    /// - `GET /oauth/authorize`, `POST /oauth/authorize/login`,
    ///   `POST /oauth/authorize/consent` (the browser steps), and `GET
    ///   /oauth/authorize/upstream`, `GET /oauth/authorize/callback` (sign-in delegated to an
    ///   identity provider),
    /// - `POST /oauth/token`,
    /// - `POST /oauth/revoke` (RFC 7009).
    ///
    /// The JSON endpoints answer cross-origin requests (browser-based clients).
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata::authorization_server).options(preflight),
            )
            .route(
                "/.well-known/oauth-protected-resource",
                get(metadata::protected_resource).options(preflight),
            )
            .route("/oauth/jwks", get(metadata::jwks).options(preflight))
            .route(
                "/oauth/register",
                post(register::register).options(preflight),
            )
            .route("/oauth/token", post(token::token).options(preflight))
            .route("/oauth/revoke", post(revoke::revoke).options(preflight))
            .layer(map_response(allow_any_origin));
        let pages = Router::new()
            .route("/oauth/authorize", get(authorize::start))
            .route("/oauth/authorize/login", post(authorize::login))
            .route("/oauth/authorize/consent", post(authorize::consent))
            .route("/oauth/authorize/upstream", get(upstream::begin))
            .route("/oauth/authorize/callback", get(upstream::callback));
        api.merge(pages)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.inner.clone())
    }

    /// The claims of a valid access token: signed by this gateway's key, of type `at+jwt`,
    /// for this issuer and the default audience, unexpired, and not revoked (checked against
    /// the in-memory set, so this never waits on the database).
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, OAuthError> {
        let claims = self.inner.signer.verify(token)?;
        if self.inner.revocations.contains(&claims.jti) {
            return Err(OAuthError::TokenRevoked);
        }
        Ok(claims)
    }

    /// [`OAuthServer::verify_access_token`] for a token presented to `resource`: its audience
    /// must be that resource exactly (canonical forms compared, RFC 8707), so a token issued
    /// for one MCP endpoint is refused by every other and by the LLM API.
    pub fn verify_access_token_for(
        &self,
        token: &str,
        resource: &str,
    ) -> Result<AccessClaims, OAuthError> {
        let audience = crate::resource::canonical_resource(resource)
            .ok_or_else(|| OAuthError::InvalidToken("wrong audience".to_owned()))?;
        let claims = self.inner.signer.verify_for(token, &audience)?;
        if self.inner.revocations.contains(&claims.jti) {
            return Err(OAuthError::TokenRevoked);
        }
        Ok(claims)
    }

    /// Starts a sign-in of the gateway's own console ([`first_party`](crate::first_party)):
    /// where to send the browser, and the secret to keep in its cookie until the callback.
    /// `next` comes back from [`OAuthServer::finish_first_party`] as given.
    pub fn begin_first_party(&self, next: &str) -> Result<FirstPartyStart, OAuthError> {
        first_party::begin(&self.inner, next)
    }

    /// Finishes a console sign-in at its callback: `state` must be intact, unexpired and bound
    /// to `browser_secret` (the cookie [`OAuthServer::begin_first_party`] asked for), and
    /// `code` a code issued to the console for it. The code is exchanged in-process; the
    /// answer holds the access token's claims and the `next` the sign-in began with.
    pub async fn finish_first_party(
        &self,
        state: &str,
        code: &str,
        browser_secret: Option<&str>,
    ) -> Result<FirstPartySignIn, FirstPartyError> {
        first_party::finish(&self.inner, state, code, browser_secret).await
    }

    /// The `next` of a console sign-in's `state`, if it is intact and unexpired (to go on with
    /// after an error response).
    pub fn first_party_next(&self, state: &str) -> Option<String> {
        first_party::next_of(&self.inner, state)
    }

    /// Creates a confidential client that obtains tokens for the service account
    /// `service_account` with the `client_credentials` grant, limited to `scopes` (`None`:
    /// any scope the server offers). The secret is returned once; only its digest is kept.
    pub async fn create_client(
        &self,
        name: &str,
        service_account: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<ClientCredentials, OAuthError> {
        let inner = &self.inner;
        if let Some(list) = &scopes {
            if list.is_empty() {
                return Err(OAuthError::InvalidClient("no scopes given".to_owned()));
            }
            if let Some(s) = list.iter().find(|s| !inner.config.scopes.contains(s)) {
                return Err(OAuthError::InvalidClient(format!("unknown scope `{s}`")));
            }
        }
        if inner
            .directory
            .service_account(service_account)
            .await?
            .is_none()
        {
            return Err(OAuthError::UnknownServiceAccount(
                service_account.to_owned(),
            ));
        }
        let client_id = new_client_id();
        let client_secret = random_token();
        let name = name.trim();
        inner
            .store
            .insert_client(&ClientRecord {
                client_id: client_id.clone(),
                secret_hash: Some(sha256(client_secret.as_bytes())),
                name: (!name.is_empty()).then(|| name.to_owned()),
                redirect_uris: Vec::new(),
                grant_types: vec!["client_credentials".to_owned()],
                scopes,
                auth_method: "client_secret_basic".to_owned(),
                service_account: Some(service_account.to_owned()),
                created_ms: now_ms(),
            })
            .await?;
        Ok(ClientCredentials {
            client_id,
            client_secret,
        })
    }

    /// The clients that obtain tokens for `service_account`, newest first (their secrets are
    /// only ever kept as digests).
    pub async fn service_account_clients(
        &self,
        service_account: &str,
    ) -> Result<Vec<ClientRecord>, OAuthError> {
        Ok(self
            .inner
            .store
            .service_account_clients(service_account)
            .await?)
    }

    /// Deletes a client; whether it existed. Its refresh tokens and client credentials stop
    /// working at once; access tokens already issued run until they expire.
    pub async fn delete_client(&self, client_id: &str) -> Result<bool, OAuthError> {
        Ok(self.inner.store.delete_client(client_id).await?)
    }
}

/// Why a client cannot be looked up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
    /// The client's metadata document cannot be used.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// A new client id.
pub(crate) fn new_client_id() -> String {
    format!("pc-{}", random_id())
}

/// Reloads revocations every [`REVOCATION_RELOAD`] and prunes every [`PRUNE_EVERY`], for as
/// long as the server exists.
async fn maintain(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REVOCATION_RELOAD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = now_ms();
        if let Err(error) = inner.revocations.reload(&inner.store, now).await {
            tracing::warn!(%error, "cannot reload revoked OAuth access tokens");
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            match inner.store.prune(now).await {
                Ok(n) => tracing::debug!(rows = n, "pruned OAuth tables"),
                Err(error) => tracing::warn!(%error, "cannot prune OAuth tables"),
            }
        }
    }
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

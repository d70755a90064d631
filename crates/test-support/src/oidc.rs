//! A mock OpenID Connect issuer for tests of bearer-JWT validation.
//!
//! [`MockIssuer`] is one HTTP server on `127.0.0.1:0` serving an OIDC discovery document
//! (`{issuer}/.well-known/openid-configuration`) and a JWKS (`{issuer}/keys`). It holds one
//! signing key per [`MockAlg`] (two RSA keys for RS256 and PS256, a P-256 key, an Ed25519 key),
//! generated at start, and signs tokens with them itself (RSA, ECDSA and EdDSA straight from
//! the RustCrypto crates), so it is independent of the JWT library under test.
//!
//! Tests mint tokens ([`MockIssuer::mint`], [`MockIssuer::mint_with_header`]), rotate keys
//! ([`MockIssuer::rotate`]), count JWKS downloads ([`MockIssuer::jwks_fetches`]), make the
//! discovery document lie about its issuer or the JWKS endpoint fail, and build claims shaped
//! like the tokens of real identity providers (Okta, Entra ID, Auth0, Keycloak). The free
//! functions [`mint_unsigned`] and [`mint_hs256`] build the hostile tokens no honest issuer
//! signs.
//!
//! It is also an OpenID Provider for browser sign-in (OpenID Connect Core 1.0, authorization
//! code flow): clients are registered with [`MockIssuer::register_client`], the user "signed
//! in at the provider" is chosen with [`MockIssuer::sign_in_as`] (so `GET {issuer}/authorize`
//! answers at once with a redirect carrying a code, as a provider with a live session does),
//! and `POST {issuer}/token` exchanges the code, checking client authentication
//! (`client_secret_basic` or `client_secret_post`), `redirect_uri` and the PKCE verifier, and
//! returns an RS256 ID token carrying the request's `nonce`. Errors follow RFC 6749 §4.1.2.1
//! and §5.2.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::reply::{MockBody, json_response};

/// The signing algorithms the mock issuer holds a key for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MockAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit key).
    RS256,
    /// RSASSA-PSS with SHA-256 (2048-bit key, salt as long as the hash).
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl MockAlg {
    /// Every algorithm, in a fixed order.
    pub const ALL: [MockAlg; 4] = [
        MockAlg::RS256,
        MockAlg::PS256,
        MockAlg::ES256,
        MockAlg::EdDSA,
    ];

    /// The JOSE name (`RS256`, …).
    pub fn name(self) -> &'static str {
        match self {
            MockAlg::RS256 => "RS256",
            MockAlg::PS256 => "PS256",
            MockAlg::ES256 => "ES256",
            MockAlg::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for MockAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of a mock issuer.
#[derive(Debug, Clone, Default)]
pub struct MockIssuerOptions {
    /// Path of the issuer URL after `http://127.0.0.1:PORT`: empty (the default), `/` for an
    /// Auth0-style trailing slash, or e.g. `/realms/portcullis` for a Keycloak realm.
    pub path: String,
}

enum KeyMaterial {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

struct MockKey {
    alg: MockAlg,
    kid: String,
    material: KeyMaterial,
}

impl MockKey {
    fn generate(alg: MockAlg) -> MockKey {
        let material = match alg {
            MockAlg::RS256 | MockAlg::PS256 => KeyMaterial::Rsa(Box::new(generate_rsa())),
            MockAlg::ES256 => KeyMaterial::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            MockAlg::EdDSA => KeyMaterial::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
        };
        let mut id = [0u8; 6];
        OsRng.fill_bytes(&mut id);
        let kid = format!("{}-{}", alg.name().to_ascii_lowercase(), hex(&id));
        MockKey { alg, kid, material }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        match (&self.material, self.alg) {
            (KeyMaterial::Rsa(key), MockAlg::PS256) => {
                let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new((**key).clone());
                signer.sign_with_rng(&mut OsRng, message).to_vec()
            }
            (KeyMaterial::Rsa(key), _) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new((**key).clone());
                signer.sign(message).to_vec()
            }
            (KeyMaterial::P256(key), _) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            (KeyMaterial::Ed25519(key), _) => key.sign(message).to_bytes().to_vec(),
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk = match &self.material {
            KeyMaterial::Rsa(key) => json!({
                "kty": "RSA",
                "n": b64(&key.n().to_bytes_be()),
                "e": b64(&key.e().to_bytes_be()),
            }),
            KeyMaterial::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                    "y": b64(point.y().map(|y| y.as_slice()).unwrap_or_default()),
                })
            }
            KeyMaterial::Ed25519(key) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(key.verifying_key().as_bytes()),
            }),
        };
        if let Some(map) = jwk.as_object_mut() {
            map.insert("kid".to_owned(), json!(self.kid));
            map.insert("use".to_owned(), json!("sig"));
            map.insert("alg".to_owned(), json!(self.alg.name()));
        }
        jwk
    }
}

fn generate_rsa() -> rsa::RsaPrivateKey {
    // A 2048-bit key always generates; the loop only satisfies the no-panic lint.
    loop {
        if let Ok(key) = rsa::RsaPrivateKey::new(&mut OsRng, 2048) {
            return key;
        }
    }
}

/// Generates one key per algorithm, the two RSA keys in parallel (the slow part).
fn generate_keys() -> Vec<Arc<MockKey>> {
    std::thread::scope(|scope| {
        let ps = scope.spawn(|| MockKey::generate(MockAlg::PS256));
        let rs = MockKey::generate(MockAlg::RS256);
        let ps = ps
            .join()
            .unwrap_or_else(|_| MockKey::generate(MockAlg::PS256));
        vec![
            Arc::new(rs),
            Arc::new(ps),
            Arc::new(MockKey::generate(MockAlg::ES256)),
            Arc::new(MockKey::generate(MockAlg::EdDSA)),
        ]
    })
}

struct KeyRing {
    current: Vec<Arc<MockKey>>,
    /// Keys replaced by a rotation that are still published.
    retired: Vec<Arc<MockKey>>,
}

/// A client registered at the provider.
struct ProviderClient {
    secret: Option<String>,
    redirect_uri: String,
}

/// An authorization code the provider issued and has not yet exchanged.
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    nonce: Option<String>,
    claims: Value,
}

/// The browser sign-in side of the provider.
#[derive(Default)]
struct SignInState {
    clients: std::collections::HashMap<String, ProviderClient>,
    /// Who is signed in at the provider; `None` answers `login_required`.
    user: Option<Value>,
    /// An `error` to answer every authorization request with (`access_denied`, …).
    refuse_with: Option<String>,
    /// Members merged over every ID token's claims (for hostile-token tests).
    id_token_override: Option<Value>,
    codes: std::collections::HashMap<String, IssuedCode>,
    /// The last authorization request's query parameters.
    last_authorize: Vec<(String, String)>,
}

struct IssuerShared {
    issuer: String,
    base: String,
    keys: Mutex<KeyRing>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
    token_requests: AtomicU64,
    discovery_issuer: Mutex<Option<String>>,
    jwks_status: AtomicU16,
    sign_in: Mutex<SignInState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running mock OIDC issuer. Dropping it stops the server.
pub struct MockIssuer {
    addr: SocketAddr,
    shared: Arc<IssuerShared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl fmt::Debug for MockIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockIssuer")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl MockIssuer {
    /// Starts an issuer at `http://127.0.0.1:PORT` with fresh keys.
    pub async fn start() -> MockIssuer {
        Self::start_with(MockIssuerOptions::default()).await
    }

    /// Starts an issuer with `options`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test environment).
    pub async fn start_with(options: MockIssuerOptions) -> MockIssuer {
        #[allow(clippy::expect_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the mock issuer");
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let current = tokio::task::spawn_blocking(generate_keys)
            .await
            .unwrap_or_else(|_| generate_keys());
        let issuer = format!("http://{addr}{}", options.path);
        let base = issuer.trim_end_matches('/').to_owned();
        let shared = Arc::new(IssuerShared {
            issuer,
            base,
            keys: Mutex::new(KeyRing {
                current,
                retired: Vec::new(),
            }),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            discovery_issuer: Mutex::new(None),
            jwks_status: AtomicU16::new(200),
            sign_in: Mutex::new(SignInState::default()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, shared.clone(), stopped));
        MockIssuer {
            addr,
            shared,
            _stop: stop,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer identifier: the `iss` of its tokens and the discovery document's `issuer`.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The URL of the discovery document.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.shared.base)
    }

    /// The URL of the JWKS.
    pub fn jwks_uri(&self) -> String {
        format!("{}/keys", self.shared.base)
    }

    /// The key id of the current key for `alg`.
    pub fn kid(&self, alg: MockAlg) -> String {
        self.key(alg).kid.clone()
    }

    /// The JWKS as currently published.
    pub fn jwks(&self) -> Value {
        jwks_document(&self.shared)
    }

    /// The public half of the current RS256 key as an SPKI PEM (`-----BEGIN PUBLIC KEY-----`),
    /// the bytes an RS/HS confusion attack uses as an HMAC secret.
    pub fn rsa_public_key_pem(&self) -> String {
        use rsa::pkcs8::EncodePublicKey;
        match &self.key(MockAlg::RS256).material {
            KeyMaterial::Rsa(key) => key
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// A token with `claims`, signed with the current key for `alg`; the header is
    /// `{"alg", "typ": "JWT", "kid"}`.
    pub fn mint(&self, alg: MockAlg, claims: &Value) -> String {
        self.mint_with_header(alg, &json!({}), claims)
    }

    /// Like [`MockIssuer::mint`], with `header` merged over the default header: a member set to
    /// `null` is removed (`{"kid": null}` mints a token without a key id), any other value
    /// replaces or adds that member. The signature is always made with `alg`'s current key.
    pub fn mint_with_header(&self, alg: MockAlg, header: &Value, claims: &Value) -> String {
        let key = self.key(alg);
        let mut full = json!({"alg": alg.name(), "typ": "JWT", "kid": key.kid});
        if let (Some(full), Some(extra)) = (full.as_object_mut(), header.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    full.remove(name);
                } else {
                    full.insert(name.clone(), value.clone());
                }
            }
        }
        let message = format!("{}.{}", encode_segment(&full), encode_segment(claims));
        let signature = key.sign(message.as_bytes());
        format!("{message}.{}", b64(&signature))
    }

    /// Replaces every key by a new one (new key ids) and publishes only the new keys.
    pub fn rotate(&self) {
        self.rotate_inner(false);
    }

    /// Replaces every key by a new one and publishes both the new and the old keys.
    pub fn rotate_keeping_old(&self) {
        self.rotate_inner(true);
    }

    fn rotate_inner(&self, keep_old: bool) {
        let fresh = generate_keys();
        let mut ring = lock(&self.shared.keys);
        let old = std::mem::replace(&mut ring.current, fresh);
        if keep_old {
            ring.retired.extend(old);
        } else {
            ring.retired.clear();
        }
    }

    /// How many times the JWKS was downloaded.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was downloaded.
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Makes the discovery document name `issuer` instead of the real one (`None` restores it).
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        *lock(&self.shared.discovery_issuer) = issuer;
    }

    /// Makes the JWKS endpoint answer with `status` (and an error body) when it is not 200.
    pub fn set_jwks_status(&self, status: u16) {
        self.shared.jwks_status.store(status, Ordering::SeqCst);
    }

    /// Registers an OAuth client for browser sign-in: a confidential one when `secret` is
    /// given, a public one (PKCE only) otherwise; `redirect_uri` must match exactly.
    pub fn register_client(&self, client_id: &str, secret: Option<&str>, redirect_uri: &str) {
        lock(&self.shared.sign_in).clients.insert(
            client_id.to_owned(),
            ProviderClient {
                secret: secret.map(str::to_owned),
                redirect_uri: redirect_uri.to_owned(),
            },
        );
    }

    /// Signs a user in at the provider: the claims (`sub`, `email`, `groups`, …) the next ID
    /// tokens carry, besides `iss`, `aud`, `iat`, `exp` and `nonce`. `None` signs them out, so
    /// authorization requests are answered with `login_required`.
    pub fn sign_in_as(&self, claims: Option<Value>) {
        lock(&self.shared.sign_in).user = claims;
    }

    /// Makes every authorization request fail with `error` (such as `access_denied`, as when
    /// the user declines at the provider); `None` restores normal answers.
    pub fn refuse_sign_in(&self, error: Option<&str>) {
        lock(&self.shared.sign_in).refuse_with = error.map(str::to_owned);
    }

    /// Merges `claims` over every ID token the provider issues from now on (`{"nonce":
    /// "other"}`, `{"aud": "someone-else"}`, …); a member set to `null` is removed. `None`
    /// restores honest tokens.
    pub fn override_id_token_claims(&self, claims: Option<Value>) {
        lock(&self.shared.sign_in).id_token_override = claims;
    }

    /// The query parameters of the last authorization request the provider received.
    pub fn last_authorization_request(&self) -> Vec<(String, String)> {
        lock(&self.shared.sign_in).last_authorize.clone()
    }

    /// How many token requests the provider received.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    fn key(&self, alg: MockAlg) -> Arc<MockKey> {
        let ring = lock(&self.shared.keys);
        ring.current
            .iter()
            .find(|k| k.alg == alg)
            .cloned()
            .unwrap_or_else(|| Arc::new(MockKey::generate(alg)))
    }

    /// Minimal valid claims: `iss`, `sub`, `aud`, `iat`, `exp` (in one hour).
    pub fn claims(&self, audience: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer(),
            "sub": "user-1",
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// Claims shaped like an Okta access token from a custom authorization server: `uid`,
    /// `cid`, `scp` array, `groups` array, `sub` the user's login (an e-mail address).
    pub fn okta_claims(&self, audience: &str) -> Value {
        let now = unix_now();
        json!({
            "ver": 1,
            "jti": "AT.mock-okta-jti",
            "iss": self.issuer(),
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
            "cid": "0oa1mockclient2ABC3d4",
            "uid": "00u1mockuser5EFG6h7",
            "scp": ["openid", "profile", "email"],
            "auth_time": now - 60,
            "sub": "ada.lovelace@example.com",
            "email": "ada.lovelace@example.com",
            "groups": ["Everyone", "ml-platform", "finance"],
        })
    }

    /// Claims shaped like an Entra ID (Azure AD) v2.0 access token for an application whose
    /// client id is `client_id` (a GUID, the token's `aud`): `oid`, `tid`, a pairwise `sub`,
    /// `preferred_username`, `groups` as object-id GUIDs, app `roles`, `nbf`.
    pub fn entra_claims(&self, client_id: &str) -> Value {
        let now = unix_now();
        json!({
            "aud": client_id,
            "iss": self.issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "aio": "AXQAi/8TAAAAmock",
            "azp": "e9b1c1a4-3d6f-4c1e-9a55-7b0f2c3d4e5f",
            "azpacr": "0",
            "name": "Ada Lovelace",
            "oid": "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
            "preferred_username": "ada@contoso.onmicrosoft.com",
            "rh": "0.AXQAmock.",
            "scp": "access_as_user",
            "sub": "mK9XQ1aFrFcHm2Bq0T-6qZPdmock",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "uti": "mockuti",
            "ver": "2.0",
            "groups": [
                "0b5e3f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                "a4c3b2d1-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
            ],
            "roles": ["Gateway.User", "Gateway.Admin"],
        })
    }

    /// Claims shaped like an Auth0 access token for API `audience`: `sub` like `auth0|…`, an
    /// `aud` array (the API and `/userinfo`), `scope` string, `permissions`, and namespaced
    /// custom claims `https://portcullis.test/roles`, `…/email` and `…/teams`.
    pub fn auth0_claims(&self, audience: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.issuer(),
            "sub": "auth0|64b7f0c2d1e3a4b5c6d7e8f9",
            "aud": [audience, format!("{}/userinfo", self.shared.base)],
            "iat": now,
            "exp": now + 86_400,
            "azp": "mockAuth0ClientId123",
            "scope": "openid profile email",
            "permissions": ["chat:write", "models:read"],
            "https://portcullis.test/roles": ["admin", "analyst"],
            "https://portcullis.test/email": "ada@example.com",
            "https://portcullis.test/teams": "research,platform",
        })
    }

    /// Claims shaped like a Keycloak access token: `realm_access.roles`,
    /// `resource_access.<client>.roles`, `preferred_username`, `groups` paths, an `aud` array,
    /// `typ: Bearer`, a space-separated `scope`.
    pub fn keycloak_claims(&self, audience: &str) -> Value {
        let now = unix_now();
        json!({
            "exp": now + 300,
            "iat": now,
            "auth_time": now - 10,
            "jti": "onrtac:mock-keycloak-jti",
            "iss": self.issuer(),
            "aud": [audience, "account"],
            "sub": "f3b2c1d0-9e8f-4a7b-b6c5-d4e3f2a1b0c9",
            "typ": "Bearer",
            "azp": "portcullis-cli",
            "sid": "mock-session",
            "acr": "1",
            "realm_access": {"roles": ["offline_access", "uma_authorization", "gateway-user"]},
            "resource_access": {"portcullis": {"roles": ["chat"]}, "account": {"roles": ["view-profile"]}},
            "scope": "openid email profile",
            "email_verified": true,
            "name": "Ada Lovelace",
            "preferred_username": "ada",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "email": "ada@example.org",
            "groups": ["/engineering/ml", "/finance"],
        })
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Base64url without padding, as every JWS segment is written.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One JWS segment: `value` as compact JSON, base64url-encoded.
pub fn encode_segment(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap_or_default())
}

/// An unsecured JWS (`header.payload.` with an empty signature), as `alg: none` tokens are.
pub fn mint_unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", encode_segment(header), encode_segment(claims))
}

/// A token MACed with HMAC-SHA-256 under `secret`, whatever `header` says.
pub fn mint_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    use hmac::Mac;
    let message = format!("{}.{}", encode_segment(header), encode_segment(claims));
    let tag = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{message}.{}", b64(&tag))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn jwks_document(shared: &IssuerShared) -> Value {
    let ring = lock(&shared.keys);
    let keys: Vec<Value> = ring
        .current
        .iter()
        .chain(ring.retired.iter())
        .map(|k| k.jwk())
        .collect();
    json!({ "keys": keys })
}

fn discovery_document(shared: &IssuerShared) -> Value {
    let issuer = lock(&shared.discovery_issuer)
        .clone()
        .unwrap_or_else(|| shared.issuer.clone());
    let base = &shared.base;
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email"],
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<IssuerShared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(shared: &IssuerShared, req: Request<Incoming>) -> Response<MockBody> {
    let path = req.uri().path().to_owned();
    let prefix = shared
        .base
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("");
    let local = path.strip_prefix(prefix).unwrap_or("");
    match (req.method().clone(), local) {
        (http::Method::GET, "/.well-known/openid-configuration") => {
            shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json_response(200, &discovery_document(shared), &[])
        }
        (http::Method::GET, "/keys") => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let status = shared.jwks_status.load(Ordering::SeqCst);
            if status == 200 {
                json_response(200, &jwks_document(shared), &[])
            } else {
                json_response(status, &json!({"error": "temporarily_unavailable"}), &[])
            }
        }
        (http::Method::GET, "/authorize") => {
            let query = req.uri().query().unwrap_or("").to_owned();
            authorize(shared, &query)
        }
        (http::Method::POST, "/token") => {
            shared.token_requests.fetch_add(1, Ordering::SeqCst);
            let authorization = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = http_body_util::BodyExt::collect(req.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            token(shared, authorization.as_deref(), &body)
        }
        (_, "/.well-known/openid-configuration" | "/keys" | "/authorize" | "/token") => {
            json_response(405, &json!({"error": "method_not_allowed"}), &[])
        }
        _ => json_response(404, &json!({"error": "not_found"}), &[]),
    }
}

fn form_pairs(text: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn redirect(location: &str) -> Response<MockBody> {
    let mut response = json_response(302, &json!({}), &[]);
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// `GET /authorize`: the user is already signed in at the provider, so the answer is a
/// redirect to the client at once.
fn authorize(shared: &IssuerShared, query: &str) -> Response<MockBody> {
    let pairs = form_pairs(query.as_bytes());
    let mut state = lock(&shared.sign_in);
    state.last_authorize = pairs.clone();
    let client_id = param(&pairs, "client_id").unwrap_or_default();
    let Some(client) = state.clients.get(client_id) else {
        return json_response(400, &json!({"error": "invalid_client"}), &[]);
    };
    let redirect_uri = param(&pairs, "redirect_uri").unwrap_or_default();
    if redirect_uri != client.redirect_uri {
        return json_response(400, &json!({"error": "invalid_redirect_uri"}), &[]);
    }
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return json_response(400, &json!({"error": "invalid_redirect_uri"}), &[]);
    };
    let back = |target: &mut url::Url, pairs_out: &[(&str, &str)]| {
        let mut query = target.query_pairs_mut();
        for (k, v) in pairs_out {
            query.append_pair(k, v);
        }
        if let Some(s) = param(&pairs, "state") {
            query.append_pair("state", s);
        }
        drop(query);
        redirect(target.as_str())
    };
    let scopes = param(&pairs, "scope").unwrap_or_default();
    if param(&pairs, "response_type") != Some("code") {
        return back(&mut target, &[("error", "unsupported_response_type")]);
    }
    if !scopes.split(' ').any(|s| s == "openid") {
        return back(
            &mut target,
            &[
                ("error", "invalid_scope"),
                ("error_description", "openid is required"),
            ],
        );
    }
    let challenge = param(&pairs, "code_challenge").map(str::to_owned);
    if challenge.is_some() && param(&pairs, "code_challenge_method") != Some("S256") {
        return back(
            &mut target,
            &[
                ("error", "invalid_request"),
                ("error_description", "only S256"),
            ],
        );
    }
    if let Some(error) = state.refuse_with.clone() {
        return back(&mut target, &[("error", &error)]);
    }
    let Some(claims) = state.user.clone() else {
        return back(&mut target, &[("error", "login_required")]);
    };
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let code = b64(&raw);
    state.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge,
            nonce: param(&pairs, "nonce").map(str::to_owned),
            claims,
        },
    );
    back(&mut target, &[("code", &code)])
}

/// A token-endpoint error (RFC 6749 §5.2).
fn token_error(status: u16, error: &str, description: &str) -> Response<MockBody> {
    let mut headers = vec![("cache-control".to_owned(), "no-store".to_owned())];
    if status == 401 {
        headers.push((
            "www-authenticate".to_owned(),
            "Basic realm=\"mock-issuer\"".to_owned(),
        ));
    }
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
        &headers,
    )
}

/// The client's credentials: HTTP Basic (each part form-urlencoded, RFC 6749 §2.3.1) or
/// form members.
fn client_credentials(
    authorization: Option<&str>,
    pairs: &[(String, String)],
) -> Option<(String, Option<String>)> {
    if let Some(basic) = authorization.and_then(|a| a.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((unescape(id)?, Some(unescape(secret)?)));
    }
    let id = param(pairs, "client_id")?.to_owned();
    Some((id, param(pairs, "client_secret").map(str::to_owned)))
}

/// `POST /token`: the authorization-code grant.
fn token(shared: &IssuerShared, authorization: Option<&str>, body: &[u8]) -> Response<MockBody> {
    let pairs = form_pairs(body);
    let Some((client_id, secret)) = client_credentials(authorization, &pairs) else {
        return token_error(401, "invalid_client", "client authentication is required");
    };
    let mut state = lock(&shared.sign_in);
    let Some(client) = state.clients.get(&client_id) else {
        return token_error(401, "invalid_client", "unknown client");
    };
    if client.secret.is_some() && client.secret != secret {
        return token_error(401, "invalid_client", "wrong client secret");
    }
    if param(&pairs, "grant_type") != Some("authorization_code") {
        return token_error(400, "unsupported_grant_type", "authorization_code only");
    }
    let override_claims = state.id_token_override.clone();
    let Some(issued) = param(&pairs, "code").and_then(|c| state.codes.remove(c)) else {
        return token_error(400, "invalid_grant", "unknown or used code");
    };
    if issued.client_id != client_id {
        return token_error(400, "invalid_grant", "code issued to another client");
    }
    if param(&pairs, "redirect_uri") != Some(issued.redirect_uri.as_str()) {
        return token_error(400, "invalid_grant", "redirect_uri does not match");
    }
    if let Some(challenge) = &issued.challenge {
        let verifier = param(&pairs, "code_verifier").unwrap_or_default();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes());
        if b64(&digest) != *challenge {
            return token_error(400, "invalid_grant", "PKCE verification failed");
        }
    }
    drop(state);
    let now = unix_now();
    let mut claims = json!({
        "iss": shared.issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + 300,
        "auth_time": now - 5,
    });
    if let (Some(all), Some(user)) = (claims.as_object_mut(), issued.claims.as_object()) {
        for (k, v) in user {
            all.insert(k.clone(), v.clone());
        }
        if let Some(nonce) = issued.nonce {
            all.insert("nonce".to_owned(), Value::String(nonce));
        }
        for (k, v) in override_claims
            .iter()
            .filter_map(Value::as_object)
            .flatten()
        {
            if v.is_null() {
                all.remove(k);
            } else {
                all.insert(k.clone(), v.clone());
            }
        }
    }
    let key = {
        let ring = lock(&shared.keys);
        ring.current
            .iter()
            .find(|k| k.alg == MockAlg::RS256)
            .cloned()
    };
    let Some(key) = key else {
        return token_error(500, "server_error", "no signing key");
    };
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key.kid});
    let message = format!("{}.{}", encode_segment(&header), encode_segment(&claims));
    let id_token = format!("{message}.{}", b64(&key.sign(message.as_bytes())));
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    json_response(
        200,
        &json!({
            "access_token": b64(&raw),
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "openid profile email",
            "id_token": id_token,
        }),
        &[
            ("cache-control".to_owned(), "no-store".to_owned()),
            ("pragma".to_owned(), "no-cache".to_owned()),
        ],
    )
}

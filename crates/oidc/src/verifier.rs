//! [`Verifier`]: the validation of one bearer token, from its bytes to a [`VerifiedToken`], and
//! the cache that makes a repeated token cost a hash and a lookup.
//!
//! The order of the checks is part of the security: size first (nothing is parsed beyond
//! [`MAX_TOKEN_BYTES`]), then the header's algorithm against the allow-list (so `none` and
//! HMAC are refused before any key is looked up), then the unverified `iss` only to choose among
//! the configured issuers, then the key by `kid`, the signature, and only then the claims
//! (`exp` required, `nbf`, `iat`, `iss`, `aud`, with the issuer's leeway).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, IssuerConfig, IssuerSettings, settings};
use crate::error::{JwksError, TokenError, sanitize};
use crate::jwks::{Fetcher, IssuerKeys, KeyPolicy, ProviderMetadata};
use crate::{MAX_TOKEN_BYTES, claims};

/// How long a discovery or JWKS download may take, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Minimum time between two key refetches for unknown key ids, per issuer, by default.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Age after which an issuer's keys are downloaded again on next use, by default.
pub const DEFAULT_MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// How long a verified token is remembered at most (never beyond its `exp`), by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// How many verified tokens are remembered, by default.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;

/// A verified token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The issuer (`iss`), exactly as configured.
    pub issuer: String,
    /// The subject (`sub`).
    pub subject: String,
    /// The user, from the issuer's `claims.user` claim (`sub` by default).
    pub user: String,
    /// The e-mail address, from `claims.email`, when the token has one.
    pub email: Option<String>,
    /// The teams, from `claims.teams` (empty when unmapped or absent).
    pub teams: Vec<String>,
    /// The roles, from `claims.roles`; the issuer's `default_role` when none.
    pub roles: Vec<String>,
    /// When the token expires (`exp`), in seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Validates bearer JWTs against the configured issuers. Cheap to clone: clones share the
/// keys and the cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<Issuer>,
    fetcher: Fetcher,
    policy: KeyPolicy,
    cache: moka::future::Cache<[u8; 32], Arc<CachedToken>>,
    cache_ttl: Duration,
}

struct Issuer {
    settings: IssuerSettings,
    keys: IssuerKeys,
    /// The discovery document, once read for a browser sign-in, and when.
    metadata: parking_lot::Mutex<Option<(std::time::Instant, Arc<ProviderMetadata>)>>,
}

/// Whose audience a token must name.
#[derive(Clone, Copy)]
enum Audience<'a> {
    /// The issuer's configured `audience` (API access tokens).
    Configured,
    /// An OAuth client's id (ID tokens issued to that client).
    Client(&'a str),
}

struct CachedToken {
    token: VerifiedToken,
    leeway: i64,
    ttl: Duration,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "issuers",
                &self
                    .inner
                    .issuers
                    .iter()
                    .map(|i| i.settings.issuer.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`Verifier`] with non-default settings.
#[must_use]
pub struct VerifierBuilder {
    issuers: Vec<IssuerConfig>,
    http: Option<reqwest::Client>,
    fetch_timeout: Duration,
    policy: KeyPolicy,
    cache_ttl: Duration,
    cache_capacity: u64,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuers", &self.issuers)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("policy", &self.policy)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Downloads discovery documents and keys with `client` instead of a client of its own
    /// (proxy or CA settings). Each download still has its own time limit.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Time limit of one discovery or JWKS download (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Minimum time between two refetches of an issuer's keys for unknown key ids, and between
    /// a failed download and the next attempt (default 30 s).
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.policy.min_refresh_interval = interval;
        self
    }

    /// Age after which an issuer's keys are downloaded again on next use (default 1 h); the old
    /// keys stay in use if that download fails.
    pub fn max_key_age(mut self, age: Duration) -> Self {
        self.policy.max_key_age = age;
        self
    }

    /// How long a verified token is remembered at most (default 5 min; never beyond `exp`).
    /// Zero turns the cache off.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many verified tokens are remembered (default 10 000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Validates the issuers and builds the verifier. No network access happens here: keys are
    /// downloaded on first use (or by [`Verifier::preload`]).
    pub fn build(self) -> Result<Verifier, ConfigError> {
        let issuers = settings(&self.issuers)?;
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(self.fetch_timeout)
                .timeout(self.fetch_timeout)
                .redirect(reqwest::redirect::Policy::limited(3))
                .user_agent(concat!("portcullis-oidc/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?,
        };
        for issuer in &issuers {
            if !issuer.issuer.starts_with("https://") {
                tracing::warn!(
                    issuer = %issuer.issuer,
                    "OIDC issuer is not an https URL: its keys are downloaded without TLS"
                );
            }
        }
        let issuers = issuers
            .into_iter()
            .map(|settings| Issuer {
                keys: IssuerKeys::new(settings.issuer.clone(), settings.jwks_uri.clone()),
                settings,
                metadata: parking_lot::Mutex::new(None),
            })
            .collect();
        let cache = moka::future::Cache::builder()
            .max_capacity(self.cache_capacity)
            .expire_after(CacheExpiry)
            .build();
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                fetcher: Fetcher {
                    http,
                    timeout: self.fetch_timeout,
                },
                policy: self.policy,
                cache,
                cache_ttl: self.cache_ttl,
            }),
        })
    }
}

/// Each cached token lives until its `exp` (plus leeway) or its TTL, whichever comes first.
struct CacheExpiry;

impl moka::Expiry<[u8; 32], Arc<CachedToken>> for CacheExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value
            .token
            .expires_at
            .saturating_add(value.leeway)
            .saturating_sub(unix_now());
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        Some(left.min(value.ttl))
    }
}

/// The JOSE header members read before the signature is checked.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// A verifier for `issuers` with default settings and an HTTP client of its own.
    pub fn new(issuers: Vec<IssuerConfig>) -> Result<Self, ConfigError> {
        Self::builder(issuers).build()
    }

    /// A builder for `issuers`, to change the HTTP client, the refresh rules or the cache.
    pub fn builder(issuers: Vec<IssuerConfig>) -> VerifierBuilder {
        VerifierBuilder {
            issuers,
            http: None,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            policy: KeyPolicy {
                min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
                max_key_age: DEFAULT_MAX_KEY_AGE,
            },
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.inner
            .issuers
            .iter()
            .map(|i| i.settings.issuer.as_str())
    }

    /// Downloads every issuer's keys now (at start-up, so that the first request does not
    /// wait and a misconfigured issuer shows in the log at once). Returns the issuers whose
    /// keys could not be had; they are retried on use.
    pub async fn preload(&self) -> Vec<(String, JwksError)> {
        let mut failed = Vec::new();
        for issuer in &self.inner.issuers {
            if let Err(error) = issuer
                .keys
                .preload(&self.inner.fetcher, &self.inner.policy)
                .await
            {
                failed.push((issuer.settings.issuer.clone(), error));
            }
        }
        failed
    }

    /// Validates `token` (the bearer credential, without `Bearer `) and maps its claims.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.inner.cache.get(&digest).await {
            if hit.token.expires_at.saturating_add(hit.leeway) < unix_now() {
                self.inner.cache.invalidate(&digest).await;
                return Err(TokenError::Expired);
            }
            return Ok(hit.token.clone());
        }
        let (verified, leeway, _) = self.verify_uncached(token, Audience::Configured).await?;
        if !self.inner.cache_ttl.is_zero() {
            let entry = CachedToken {
                token: verified.clone(),
                leeway,
                ttl: self.inner.cache_ttl,
            };
            self.inner.cache.insert(digest, Arc::new(entry)).await;
        }
        Ok(verified)
    }

    /// Validates an OpenID Connect ID token (Core 1.0 §3.1.3.7) that `issuer` issued to the
    /// OAuth client `client_id` in answer to a sign-in request carrying `nonce`: the same
    /// checks as [`Verifier::verify`], but the audience must be `client_id` (and, when the
    /// token names several audiences, `azp` too), `iss` must be `issuer`, and `nonce` must
    /// match. Never cached: an ID token is used once.
    pub async fn verify_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
        nonce: &str,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let (verified, _, claims) = self
            .verify_uncached(token, Audience::Client(client_id))
            .await?;
        if verified.issuer != issuer {
            return Err(TokenError::IssuerMismatch);
        }
        if let Some(Value::Array(audiences)) = claims.get("aud")
            && audiences.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(client_id)
        {
            return Err(TokenError::InvalidClaim {
                claim: "azp".to_owned(),
                reason: "does not name this client",
            });
        }
        let nonce_matches = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| bool::from(subtle_eq(n.as_bytes(), nonce.as_bytes())));
        if !nonce_matches {
            return Err(TokenError::InvalidClaim {
                claim: "nonce".to_owned(),
                reason: "does not match the sign-in request",
            });
        }
        Ok(verified)
    }

    /// The discovery document of the configured issuer `issuer` (its authorization and token
    /// endpoints, for a browser sign-in), read once and again after the key age.
    pub async fn provider_metadata(
        &self,
        issuer: &str,
    ) -> Result<Arc<ProviderMetadata>, JwksError> {
        let Some(configured) = self
            .inner
            .issuers
            .iter()
            .find(|i| i.settings.issuer == issuer)
        else {
            return Err(JwksError::IssuerMismatch {
                expected: "a configured issuer".to_owned(),
                found: sanitize(issuer, 200),
            });
        };
        if let Some((read, metadata)) = configured.metadata.lock().as_ref()
            && read.elapsed() < self.inner.policy.max_key_age
        {
            return Ok(metadata.clone());
        }
        let metadata = Arc::new(self.inner.fetcher.metadata(issuer).await?);
        *configured.metadata.lock() = Some((std::time::Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    async fn verify_uncached(
        &self,
        token: &str,
        audience: Audience<'_>,
    ) -> Result<(VerifiedToken, i64, Map<String, Value>), TokenError> {
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed("not three dot-separated segments"));
        };
        let header: Header = decode_segment(header).ok_or(TokenError::Malformed(
            "header is not base64url-encoded JSON",
        ))?;
        let alg = allowed_algorithm(&header.alg)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        if signature.is_empty() {
            return Err(TokenError::Malformed("signature is empty"));
        }
        let unverified: Map<String, Value> = decode_segment(payload).ok_or(
            TokenError::Malformed("payload is not a base64url-encoded JSON object"),
        )?;
        let iss = match unverified.get("iss") {
            None | Some(Value::Null) => return Err(TokenError::MissingIssuer),
            Some(Value::String(iss)) => iss,
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: "iss".to_owned(),
                    reason: "not a string",
                });
            }
        };
        let Some(issuer) = self
            .inner
            .issuers
            .iter()
            .find(|i| i.settings.issuer == *iss)
        else {
            return Err(TokenError::UnknownIssuer(sanitize(iss, 200)));
        };
        let settings = &issuer.settings;
        if !settings.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed {
                alg: format!("{alg:?}"),
                issuer: settings.issuer.clone(),
            });
        }
        let key = issuer
            .keys
            .key_for(
                &self.inner.fetcher,
                &self.inner.policy,
                header.kid.as_deref(),
                alg,
            )
            .await?;

        let mut validation = Validation::new(alg);
        validation.leeway = settings.leeway;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&settings.issuer]);
        match audience {
            Audience::Configured => validation.set_audience(&settings.audience),
            Audience::Client(client_id) => validation.set_audience(&[client_id]),
        }
        let verified = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::InvalidSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::AudienceMismatch,
                ErrorKind::InvalidIssuer => TokenError::IssuerMismatch,
                // Present but unreadable (an `exp` string, an `aud` number) counts as missing
                // for the library; say which.
                ErrorKind::MissingRequiredClaim(claim)
                    if unverified.get(&claim).is_some_and(|v| !v.is_null()) =>
                {
                    TokenError::InvalidClaim {
                        claim,
                        reason: "has the wrong type",
                    }
                }
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
                ErrorKind::InvalidClaimFormat(claim) => TokenError::InvalidClaim {
                    claim,
                    reason: "not a NumericDate",
                },
                ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => TokenError::UnusableKey {
                    kid: key
                        .kid
                        .as_deref()
                        .map(|k| sanitize(k, 64))
                        .unwrap_or_default(),
                    issuer: settings.issuer.clone(),
                },
                ErrorKind::InvalidAlgorithm => TokenError::KeyAlgorithmMismatch {
                    kid: key
                        .kid
                        .as_deref()
                        .map(|k| sanitize(k, 64))
                        .unwrap_or_default(),
                    alg: format!("{alg:?}"),
                    issuer: settings.issuer.clone(),
                },
                _ => TokenError::Malformed("token could not be decoded"),
            })?;
        let claims = verified.claims;
        let leeway = i64::try_from(settings.leeway).unwrap_or(i64::MAX);
        let now = unix_now();
        match claims.get("iat") {
            None | Some(Value::Null) => {}
            Some(Value::Number(iat)) => {
                let iat = iat.as_f64().unwrap_or(f64::INFINITY);
                if iat > now.saturating_add(leeway) as f64 {
                    return Err(TokenError::IssuedInFuture);
                }
            }
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: "iat".to_owned(),
                    reason: "not a NumericDate",
                });
            }
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp.floor().clamp(0.0, i64::MAX as f64) as i64)
            .ok_or_else(|| TokenError::MissingClaim("exp".to_owned()))?;
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            None | Some(Value::Null) => return Err(TokenError::MissingClaim("sub".to_owned())),
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: "sub".to_owned(),
                    reason: "not a non-empty string",
                });
            }
        };
        let mapping = &settings.claims;
        let user = claims::lookup(&claims, &mapping.user)
            .and_then(claims::single)
            .ok_or_else(|| TokenError::MissingClaim(mapping.user.clone()))?;
        let email = mapping
            .email
            .as_deref()
            .and_then(|path| claims::lookup(&claims, path))
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty())
            .map(|e| e.trim().to_owned());
        let list = |path: &Option<String>| {
            path.as_deref()
                .and_then(|path| claims::lookup(&claims, path))
                .map(claims::list)
                .unwrap_or_default()
        };
        let teams = list(&mapping.teams);
        let mut roles = list(&mapping.roles);
        if !mapping.role_values.is_empty() {
            let granted: Vec<String> = roles
                .iter()
                .chain(&teams)
                .filter_map(|v| mapping.role_values.get(v).cloned())
                .collect();
            roles.extend(granted);
        }
        if roles.is_empty()
            && let Some(role) = &settings.default_role
        {
            roles.push(role.clone());
        }
        Ok((
            VerifiedToken {
                issuer: settings.issuer.clone(),
                subject,
                user,
                email,
                teams,
                roles,
                expires_at,
            },
            leeway,
            claims,
        ))
    }
}

/// Constant-time equality of two byte strings.
fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

/// Checks the header's `alg` against the allow-list, naming the reason for a refusal.
fn allowed_algorithm(name: &str) -> Result<Algorithm, TokenError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgorithmNone);
    }
    match Algorithm::from_str(name) {
        Ok(alg) if alg.family() == AlgorithmFamily::Hmac => {
            Err(TokenError::SymmetricAlgorithm(name.to_owned()))
        }
        Ok(alg) => Ok(alg),
        Err(_) if name.len() >= 2 && name[..2].eq_ignore_ascii_case("HS") => {
            Err(TokenError::SymmetricAlgorithm(sanitize(name, 16)))
        }
        Err(_) => Err(TokenError::UnsupportedAlgorithm(sanitize(name, 16))),
    }
}

/// A base64url (unpadded) segment holding JSON.
fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

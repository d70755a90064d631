//! Issuers' signing keys: OIDC discovery, JWKS download and parsing into verification keys,
//! and the per-issuer key cache with its refresh rules.
//!
//! Keys are downloaded on first use and kept. A token whose `kid` is not among them triggers a
//! refetch, at most once per [`KeyPolicy::min_refresh_interval`] per issuer, so a flood of
//! invented key ids cannot hammer the identity provider; concurrent callers wait for the one
//! download in flight instead of starting their own. A download that fails is retried no sooner
//! than that interval either; keys older than [`KeyPolicy::max_key_age`] are downloaded again
//! on next use, and kept if the download fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{JwksError, TokenError, sanitize};

/// The largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The most keys taken from one JWKS.
const MAX_KEYS: usize = 100;

/// Smallest and largest RSA moduli accepted, in bytes (2048 and 4096 bits).
const RSA_MODULUS_BYTES: std::ops::RangeInclusive<usize> = 256..=512;

/// When keys are downloaded again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyPolicy {
    /// Minimum time between two refetches for unknown key ids, and between a failed download
    /// and the next attempt.
    pub(crate) min_refresh_interval: Duration,
    /// Keys older than this are downloaded again on next use.
    pub(crate) max_key_age: Duration,
}

/// The curve or key type of a verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    fn verifies(self, alg: Algorithm) -> bool {
        match self {
            KeyType::Rsa => alg.family() == AlgorithmFamily::Rsa,
            KeyType::P256 => alg == Algorithm::ES256,
            KeyType::P384 => alg == Algorithm::ES384,
            KeyType::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// One published signing key.
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    key_type: KeyType,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl VerificationKey {
    fn verifies(&self, alg: Algorithm) -> bool {
        self.key_type.verifies(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// What a key lookup found.
pub(crate) enum Lookup {
    Found(Arc<VerificationKey>),
    /// No key with that id (or, without an id, no key for the algorithm).
    NotFound,
    /// Keys with that id exist, none for the token's algorithm.
    Mismatch,
    /// No id, and several keys for the algorithm.
    Ambiguous(usize),
}

/// An issuer's keys as of one download.
pub(crate) struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
    fetched_at: Instant,
}

impl KeySet {
    /// Parses a JWKS, keeping the keys usable for signature verification and skipping (with a
    /// log line) the others: encryption keys, symmetric keys, unknown types and malformed keys.
    pub(crate) fn parse(body: &[u8], url: &str) -> Result<KeySet, JwksError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Value>,
        }
        let invalid = |reason: String| JwksError::Invalid {
            url: url.to_owned(),
            what: "JWKS",
            reason,
        };
        let document: Document =
            serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        let mut keys = Vec::new();
        for (index, raw) in document.keys.into_iter().enumerate().take(MAX_KEYS) {
            match parse_jwk(raw) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(why) => tracing::debug!(jwks = url, index, why, "skipping JWKS key"),
            }
        }
        if keys.is_empty() {
            tracing::warn!(jwks = url, "JWKS has no usable signing key");
        }
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }

    fn is_stale(&self, max_age: Duration) -> bool {
        self.fetched_at.elapsed() >= max_age
    }

    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Lookup::NotFound;
                }
                named
                    .find(|k| k.verifies(alg))
                    .map_or(Lookup::Mismatch, |k| Lookup::Found(k.clone()))
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.verifies(alg));
                match (usable.next(), usable.count()) {
                    (None, _) => Lookup::NotFound,
                    (Some(key), 0) => Lookup::Found(key.clone()),
                    (Some(_), more) => Lookup::Ambiguous(more + 1),
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

fn parse_jwk(raw: Value) -> Result<VerificationKey, &'static str> {
    let jwk: RawJwk = serde_json::from_value(raw).map_err(|_| "not a JWK")?;
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (use)");
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err("not a verification key (key_ops)");
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if alg.family() != AlgorithmFamily::Hmac => Some(alg),
            _ => return Err("algorithm is not an accepted signature algorithm"),
        },
    };
    let component = |value: &Option<String>| value.as_deref().and_then(decode_component);
    let (key_type, key) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let (Some(n), Some(e)) = (component(&jwk.n), component(&jwk.e)) else {
                return Err("RSA key without n and e");
            };
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if !RSA_MODULUS_BYTES.contains(&n.len()) {
                return Err("RSA modulus is not 2048 to 4096 bits");
            }
            if e.is_empty() || e.len() > 8 {
                return Err("RSA exponent out of range");
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(n, e))
        }
        ("EC", Some(curve @ ("P-256" | "P-384"))) => {
            let (key_type, size) = if curve == "P-256" {
                (KeyType::P256, 32)
            } else {
                (KeyType::P384, 48)
            };
            let (Some(x), Some(y)) = (component(&jwk.x), component(&jwk.y)) else {
                return Err("EC key without x and y");
            };
            if x.len() != size || y.len() != size {
                return Err("EC coordinates of the wrong length");
            }
            // An uncompressed SEC1 point, which is what the ECDSA verifier reads.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        ("OKP", Some("Ed25519")) => {
            let Some(x) = component(&jwk.x) else {
                return Err("OKP key without x");
            };
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length");
            }
            // The raw 32-byte public key, which is what the EdDSA verifier reads.
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        _ => return Err("unsupported key type or curve"),
    };
    if let Some(alg) = alg
        && !key_type.verifies(alg)
    {
        return Err("alg does not match the key type");
    }
    Ok(VerificationKey {
        kid: jwk.kid,
        key_type,
        alg,
        key,
    })
}

/// Decodes a base64url JWK member (padding tolerated).
fn decode_component(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The members of an OpenID Provider's discovery document (OpenID Connect Discovery 1.0 §3)
/// the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer, exactly as its tokens' `iss`.
    pub issuer: String,
    /// Where its signing keys are published.
    pub jwks_uri: String,
    /// Where a browser is sent to sign in (absent for issuers that only mint API tokens).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Where authorization codes are exchanged for tokens.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// How a client may authenticate at the token endpoint (`client_secret_basic` when
    /// absent, per the specification).
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Downloads discovery documents and key sets.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) http: reqwest::Client,
    pub(crate) timeout: Duration,
}

impl Fetcher {
    async fn get(&self, url: &str) -> Result<Vec<u8>, JwksError> {
        let http_error = |e: reqwest::Error| JwksError::Http {
            url: url.to_owned(),
            reason: e.without_url().to_string(),
        };
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(http_error)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let too_large = || JwksError::TooLarge {
            url: url.to_owned(),
            max: MAX_DOCUMENT_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The discovery document of `issuer`, which must name `issuer` itself.
    pub(crate) async fn metadata(&self, issuer: &str) -> Result<ProviderMetadata, JwksError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let document: ProviderMetadata =
            serde_json::from_slice(&body).map_err(|e| JwksError::Invalid {
                url: url.clone(),
                what: "discovery document",
                reason: e.to_string(),
            })?;
        if document.issuer != issuer {
            return Err(JwksError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: sanitize(&document.issuer, 200),
            });
        }
        let endpoints = [
            ("jwks_uri", Some(&document.jwks_uri)),
            (
                "authorization_endpoint",
                document.authorization_endpoint.as_ref(),
            ),
            ("token_endpoint", document.token_endpoint.as_ref()),
        ];
        for (name, endpoint) in endpoints {
            if let Some(endpoint) = endpoint
                && !reqwest::Url::parse(endpoint)
                    .is_ok_and(|u| matches!(u.scheme(), "https" | "http"))
            {
                return Err(JwksError::Invalid {
                    url,
                    what: "discovery document",
                    reason: format!("{name} is not an http(s) URL"),
                });
            }
        }
        Ok(document)
    }

    /// Finds the JWKS URL of `issuer` through its discovery document.
    async fn discover(&self, issuer: &str) -> Result<String, JwksError> {
        Ok(self.metadata(issuer).await?.jwks_uri)
    }

    async fn jwks(&self, url: &str) -> Result<KeySet, JwksError> {
        let body = self.get(url).await?;
        KeySet::parse(&body, url)
    }
}

struct RefreshState {
    /// The JWKS URL found through discovery.
    discovered_uri: Option<String>,
    /// When a refetch for an unknown key id was last made.
    last_refetch: Option<Instant>,
    /// The last failed download, until a download succeeds.
    last_failure: Option<(Instant, JwksError)>,
}

/// One issuer's keys and their refresh state.
pub(crate) struct IssuerKeys {
    issuer: String,
    configured_uri: Option<String>,
    current: parking_lot::RwLock<Option<Arc<KeySet>>>,
    /// Bumped by every successful download.
    generation: AtomicU64,
    refresh: tokio::sync::Mutex<RefreshState>,
}

enum Need {
    /// No keys yet, or stale keys.
    Load,
    /// Fresh keys without the token's key id.
    Refetch,
}

impl IssuerKeys {
    pub(crate) fn new(issuer: String, configured_uri: Option<String>) -> Self {
        Self {
            issuer,
            configured_uri,
            current: parking_lot::RwLock::new(None),
            generation: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState {
                discovered_uri: None,
                last_refetch: None,
                last_failure: None,
            }),
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().clone()
    }

    /// Downloads the keys now unless they are fresh or a failed download is too recent.
    pub(crate) async fn preload(
        &self,
        fetcher: &Fetcher,
        policy: &KeyPolicy,
    ) -> Result<(), JwksError> {
        let mut state = self.refresh.lock().await;
        if self
            .snapshot()
            .is_some_and(|set| !set.is_stale(policy.max_key_age))
        {
            return Ok(());
        }
        if let Some((at, error)) = &state.last_failure
            && at.elapsed() < policy.min_refresh_interval
        {
            return Err(error.clone());
        }
        self.download(&mut state, fetcher).await.map(|_| ())
    }

    /// The key that verifies a token signed with `alg` under key id `kid`.
    pub(crate) async fn key_for(
        &self,
        fetcher: &Fetcher,
        policy: &KeyPolicy,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerificationKey>, TokenError> {
        let seen = self.generation.load(Ordering::Acquire);
        if let Some(set) = self.snapshot()
            && !set.is_stale(policy.max_key_age)
        {
            match set.find(kid, alg) {
                Lookup::NotFound => {}
                found => return self.resolve(found, kid, alg),
            }
        }

        // Slow path: one caller at a time per issuer; the others wait here and then use what
        // it downloaded.
        let mut state = self.refresh.lock().await;
        let current = self.snapshot();
        let need = match &current {
            Some(set) if !set.is_stale(policy.max_key_age) => {
                match set.find(kid, alg) {
                    Lookup::NotFound => {}
                    found => return self.resolve(found, kid, alg),
                }
                let downloaded_meanwhile = self.generation.load(Ordering::Acquire) != seen;
                let refetched_recently = state
                    .last_refetch
                    .is_some_and(|at| at.elapsed() < policy.min_refresh_interval);
                if downloaded_meanwhile || refetched_recently {
                    return self.resolve(Lookup::NotFound, kid, alg);
                }
                Need::Refetch
            }
            _ => {
                if let Some((at, error)) = &state.last_failure
                    && at.elapsed() < policy.min_refresh_interval
                {
                    return match &current {
                        Some(stale) => self.resolve(stale.find(kid, alg), kid, alg),
                        None => Err(self.unavailable(error.clone())),
                    };
                }
                Need::Load
            }
        };
        if matches!(need, Need::Refetch) {
            tracing::debug!(
                issuer = %self.issuer,
                kid = kid.map(|k| sanitize(k, 64)),
                "unknown key id: downloading the issuer's keys again"
            );
            state.last_refetch = Some(Instant::now());
        }
        match self.download(&mut state, fetcher).await {
            Ok(set) => self.resolve(set.find(kid, alg), kid, alg),
            // Keep using the keys we have (stale, or fresh but without this key id).
            Err(error) => match current {
                Some(set) => self.resolve(set.find(kid, alg), kid, alg),
                None => Err(self.unavailable(error)),
            },
        }
    }

    async fn download(
        &self,
        state: &mut RefreshState,
        fetcher: &Fetcher,
    ) -> Result<Arc<KeySet>, JwksError> {
        let result = self.download_inner(state, fetcher).await;
        match &result {
            Ok(set) => {
                *self.current.write() = Some(set.clone());
                self.generation.fetch_add(1, Ordering::AcqRel);
                state.last_failure = None;
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, %error, "cannot download the issuer's signing keys");
                state.last_failure = Some((Instant::now(), error.clone()));
            }
        }
        result
    }

    async fn download_inner(
        &self,
        state: &mut RefreshState,
        fetcher: &Fetcher,
    ) -> Result<Arc<KeySet>, JwksError> {
        let uri = match (&self.configured_uri, &state.discovered_uri) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let uri = fetcher.discover(&self.issuer).await?;
                state.discovered_uri = Some(uri.clone());
                uri
            }
        };
        match fetcher.jwks(&uri).await {
            Ok(set) => Ok(Arc::new(set)),
            Err(error) => {
                // Discover again next time: the provider may have moved its keys.
                state.discovered_uri = None;
                Err(error)
            }
        }
    }

    fn unavailable(&self, source: JwksError) -> TokenError {
        TokenError::KeysUnavailable {
            issuer: self.issuer.clone(),
            source,
        }
    }

    fn resolve(
        &self,
        lookup: Lookup,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerificationKey>, TokenError> {
        let alg_name = || format!("{alg:?}");
        match (lookup, kid) {
            (Lookup::Found(key), _) => Ok(key),
            (Lookup::NotFound, Some(kid)) => Err(TokenError::UnknownKeyId {
                kid: sanitize(kid, 64),
                issuer: self.issuer.clone(),
            }),
            (Lookup::NotFound, None) => Err(TokenError::NoKeyId {
                alg: alg_name(),
                issuer: self.issuer.clone(),
                candidates: 0,
            }),
            (Lookup::Ambiguous(candidates), _) => Err(TokenError::NoKeyId {
                alg: alg_name(),
                issuer: self.issuer.clone(),
                candidates,
            }),
            (Lookup::Mismatch, kid) => Err(TokenError::KeyAlgorithmMismatch {
                kid: sanitize(kid.unwrap_or_default(), 64),
                alg: alg_name(),
                issuer: self.issuer.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(kid: &str, alg: Option<&str>) -> Value {
        let mut n = vec![0xC5u8; 256];
        n[255] = 0x01;
        let mut jwk = json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB", "use": "sig"});
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn set(keys: Vec<Value>) -> KeySet {
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        KeySet::parse(&body, "https://idp.example/keys").unwrap()
    }

    fn found_kid(lookup: Lookup) -> Option<String> {
        match lookup {
            Lookup::Found(key) => key.kid.clone(),
            _ => None,
        }
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let keys = set(vec![
            rsa_jwk("good", Some("RS256")),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "small", "n": b64(&[0xC5; 128]), "e": "AQAB"}),
            json!({"kty": "OKP", "kid": "short-ed", "crv": "Ed25519", "x": b64(&[1; 16])}),
            json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "kid": "liar", "alg": "RS256", "crv": "P-256",
                   "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
            json!("not an object"),
        ]);
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(
            found_kid(keys.find(Some("good"), Algorithm::RS256)).as_deref(),
            Some("good")
        );
        assert!(matches!(
            keys.find(Some("hmac"), Algorithm::HS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn the_key_type_and_alg_must_agree_with_the_token() {
        let keys = set(vec![
            rsa_jwk("rs", Some("RS256")),
            rsa_jwk("any-rsa", None),
            json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
        ]);
        assert!(matches!(
            keys.find(Some("rs"), Algorithm::PS256),
            Lookup::Mismatch
        ));
        assert!(matches!(
            keys.find(Some("rs"), Algorithm::ES256),
            Lookup::Mismatch
        ));
        assert!(matches!(
            keys.find(Some("ec"), Algorithm::ES384),
            Lookup::Mismatch
        ));
        assert!(found_kid(keys.find(Some("any-rsa"), Algorithm::PS512)).is_some());
        assert!(matches!(
            keys.find(Some("nope"), Algorithm::RS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn without_a_kid_only_a_single_usable_key_is_chosen() {
        let keys = set(vec![
            rsa_jwk("rs", Some("RS256")),
            rsa_jwk("rs2", Some("RS256")),
            json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(&[7; 32])}),
        ]);
        assert_eq!(
            found_kid(keys.find(None, Algorithm::EdDSA)).as_deref(),
            Some("ed")
        );
        assert!(matches!(
            keys.find(None, Algorithm::RS256),
            Lookup::Ambiguous(2)
        ));
        assert!(matches!(
            keys.find(None, Algorithm::ES256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn a_document_without_keys_is_invalid() {
        let err = KeySet::parse(b"{\"issuer\": \"x\"}", "https://idp.example/keys").err();
        assert!(matches!(err, Some(JwksError::Invalid { what: "JWKS", .. })));
        assert!(KeySet::parse(b"<html>", "u").is_err());
    }
}

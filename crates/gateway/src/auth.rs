//! Authentication: who is calling.
//!
//! Callers send `Authorization: Bearer <key>` or `x-api-key: <key>` (what the Anthropic SDK
//! sends). The master key is held only as a SHA-256 digest and compared in constant time.
//! When no master key is configured, one is generated on first start, its digest stored, and
//! the key printed once. The caller's credential is never forwarded upstream: providers build
//! upstream requests from their own credentials only.

use base64::Engine;
use http::HeaderMap;
use portcullis_core::{GatewayError, Identity};
use portcullis_providers::Secret;
use portcullis_store::{SettingsStore, StoreError};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const MASTER_KEY_SETTING: &str = "master_key_sha256";

/// Verifies callers' credentials.
#[derive(Debug, Clone)]
pub struct Authenticator {
    master_digest: [u8; 32],
}

/// How the master key was obtained at startup.
#[derive(Debug)]
pub enum MasterKeyOrigin {
    /// From the configuration or `PORTCULLIS_MASTER_KEY`.
    Configured,
    /// A previously generated key, whose digest was found in the database.
    Stored,
    /// Generated now: the key, to be shown once.
    Generated(Secret),
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Authenticator {
    /// An authenticator for a known master key.
    pub fn with_master_key(key: &Secret) -> Self {
        Self {
            master_digest: digest(key.expose()),
        }
    }

    /// Sets up the master key: the configured one, else the stored digest, else a new key
    /// (stored as a digest; replicas racing here agree on the first one stored).
    pub async fn bootstrap(
        configured: Option<&Secret>,
        settings: &dyn SettingsStore,
    ) -> Result<(Self, MasterKeyOrigin), StoreError> {
        if let Some(key) = configured {
            return Ok((Self::with_master_key(key), MasterKeyOrigin::Configured));
        }
        if let Some(stored) = settings.get(MASTER_KEY_SETTING).await? {
            return Ok((Self::from_hex(&stored)?, MasterKeyOrigin::Stored));
        }
        let key = generate_key("pk-master-");
        let hex_digest = hex::encode(digest(key.expose()));
        let stored = settings
            .put_if_absent(MASTER_KEY_SETTING, &hex_digest)
            .await?;
        if stored == hex_digest {
            Ok((Self::from_hex(&stored)?, MasterKeyOrigin::Generated(key)))
        } else {
            // Another replica generated one first; it printed it.
            Ok((Self::from_hex(&stored)?, MasterKeyOrigin::Stored))
        }
    }

    fn from_hex(stored: &str) -> Result<Self, StoreError> {
        let bytes = hex::decode(stored.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                StoreError::Migration("the stored master key digest is corrupt".into())
            })?;
        Ok(Self {
            master_digest: bytes,
        })
    }

    /// Resolves the caller of a request, or refuses it with 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, GatewayError> {
        let presented = credential(headers).ok_or_else(|| {
            GatewayError::unauthorized(
                "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            )
        })?;
        if bool::from(digest(presented).ct_eq(&self.master_digest)) {
            Ok(Identity::master())
        } else {
            Err(GatewayError::unauthorized("Invalid API key"))
        }
    }
}

/// The credential a request presents: a Bearer token, else `x-api-key`.
fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION)
        && let Ok(s) = v.to_str()
    {
        let s = s.trim();
        if let Some(token) = s
            .strip_prefix("Bearer ")
            .or_else(|| s.strip_prefix("bearer "))
        {
            let token = token.trim();
            if !token.is_empty() {
                return Some(token);
            }
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A new random key with 256 bits of entropy.
pub fn generate_key(prefix: &str) -> Secret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accepts_bearer_or_x_api_key_and_refuses_the_rest() {
        let auth = Authenticator::with_master_key(&Secret::new("sk-master-1234567890"));
        assert!(
            auth.authenticate(&headers(&[(
                "authorization",
                "Bearer sk-master-1234567890"
            )]))
            .is_ok()
        );
        assert!(
            auth.authenticate(&headers(&[("x-api-key", "sk-master-1234567890")]))
                .is_ok()
        );
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer nope")]),
            headers(&[("authorization", "Basic sk-master-1234567890")]),
            headers(&[("x-api-key", "")]),
        ] {
            let e = auth.authenticate(&bad).unwrap_err();
            assert_eq!(e.status().as_u16(), 401);
        }
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key("pk-");
        let b = generate_key("pk-");
        assert_ne!(a, b);
        assert!(a.expose().len() >= 40);
    }
}

//! Virtual-key secrets: generation, the visible prefix, and the digest that is stored.
//!
//! A key reads `pk-` followed by 43 base64url characters (256 random bits). Only the SHA-256
//! digest of the whole key is stored; with 256 bits of entropy a fast digest is as strong as a
//! slow one, and lookups stay in microseconds. The first [`PREFIX_LEN`] characters are kept
//! visible so that people can tell keys apart in listings.

use base64::Engine;
use portcullis_providers::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What every virtual key starts with.
pub const KEY_MARK: &str = "pk-";
/// Characters of a key shown in listings.
pub const PREFIX_LEN: usize = 10;

/// A freshly generated key: the secret (shown once), its visible prefix and its digest.
#[derive(Debug)]
pub struct NewSecret {
    /// The full key.
    pub secret: Secret,
    /// Its visible start.
    pub prefix: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
}

/// Generates a new key.
pub fn generate() -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{KEY_MARK}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let prefix = secret.chars().take(PREFIX_LEN).collect();
    let hash = digest_hex(&secret);
    NewSecret {
        secret: Secret::new(secret),
        prefix,
        hash,
    }
}

/// The raw digest of a presented key.
pub fn digest(presented: &str) -> [u8; 32] {
    Sha256::digest(presented.as_bytes()).into()
}

/// The stored (hex) digest of a presented key.
pub fn digest_hex(presented: &str) -> String {
    hex::encode(digest(presented))
}

/// Whether a presented credential has the shape of a virtual key (cheap pre-check).
pub fn looks_like_key(presented: &str) -> bool {
    presented.len() == KEY_MARK.len() + 43 && presented.starts_with(KEY_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(looks_like_key(a.secret.expose()));
        assert!(a.secret.expose().starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), PREFIX_LEN);
        assert_eq!(a.hash, digest_hex(a.secret.expose()));
        assert_eq!(a.hash.len(), 64);
        assert!(!looks_like_key("sk-master"));
    }
}

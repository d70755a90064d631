//! The provider-key vault's cryptography: secrets sealed with AES-256-GCM under a
//! key-encryption key (KEK) taken from `PORTCULLIS_SECRET_KEY`.
//!
//! The KEK is 32 bytes given as base64 or hex, or a passphrase of at least 32 characters
//! stretched with HKDF-SHA-256. Each secret is sealed with a fresh random 96-bit nonce and
//! bound to its credential id as associated data, so a sealed value copied onto another row
//! does not open. Other keys the gateway needs (e.g. the OAuth signing key) are derived from
//! the same KEK with HKDF under their own labels, so every replica agrees on them.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use portcullis_providers::Secret;
use rand::RngCore;
use sha2::Sha256;

use crate::config::{KeyText, read_key_text};

const NONCE_LEN: usize = 12;
const PASSPHRASE_SALT: &[u8] = b"portcullis/vault/passphrase/v1";

/// Why a vault could not be set up or a secret not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The KEK is too short to be a key or a passphrase.
    #[error(
        "PORTCULLIS_SECRET_KEY must be 32 bytes in base64 or hex, or a passphrase of at least 32 characters"
    )]
    WeakKey,
    /// A sealed value is malformed, was sealed under another KEK, or was tampered with.
    #[error("a stored secret cannot be opened: it was sealed under another key or altered")]
    Unsealable,
}

/// Seals and opens secrets under the KEK.
#[derive(Clone)]
pub struct Vault {
    cipher: Aes256Gcm,
    kek: [u8; 32],
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// A vault under the KEK `text` (the value of `PORTCULLIS_SECRET_KEY`).
    pub fn from_key_text(text: &str) -> Result<Vault, VaultError> {
        let text = text.trim();
        let kek: [u8; 32] = match read_key_text(text) {
            Some(KeyText::Bytes(bytes)) => bytes,
            Some(KeyText::Passphrase) => {
                let mut out = [0u8; 32];
                Hkdf::<Sha256>::new(Some(PASSPHRASE_SALT), text.as_bytes())
                    .expand(b"kek", &mut out)
                    .map_err(|_| VaultError::WeakKey)?;
                out
            }
            None => return Err(VaultError::WeakKey),
        };
        Ok(Vault {
            cipher: Aes256Gcm::new(&kek.into()),
            kek,
        })
    }

    /// Seals `secret`, bound to `id`: `base64(nonce || ciphertext || tag)`.
    pub fn seal(&self, id: &str, secret: &Secret) -> Result<String, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Unsealable)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Opens a value sealed for `id`.
    pub fn open(&self, id: &str, sealed: &str) -> Result<Secret, VaultError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| VaultError::Unsealable)?;
        if bytes.len() <= NONCE_LEN {
            return Err(VaultError::Unsealable);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Unsealable)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| VaultError::Unsealable)
    }

    /// A 32-byte key derived from the KEK for `label` (e.g. the OAuth signing seed).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA-256 output length.
        let _ = Hkdf::<Sha256>::new(Some(b"portcullis/derive/v1"), &self.kek)
            .expand(label.as_bytes(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn seals_and_opens_bound_to_the_id() {
        let v = Vault::from_key_text(KEY_B64).unwrap();
        let sealed = v.seal("cred_1", &Secret::new("sk-upstream-123")).unwrap();
        assert!(!sealed.contains("sk-upstream"));
        assert_eq!(
            v.open("cred_1", &sealed).unwrap().expose(),
            "sk-upstream-123"
        );
        assert_eq!(v.open("cred_2", &sealed), Err(VaultError::Unsealable));
        // Same plaintext, fresh nonce: different ciphertext.
        assert_ne!(
            sealed,
            v.seal("cred_1", &Secret::new("sk-upstream-123")).unwrap()
        );
    }

    #[test]
    fn another_key_or_a_flipped_bit_does_not_open() {
        let v = Vault::from_key_text(KEY_B64).unwrap();
        let other = Vault::from_key_text(&"ab".repeat(32)).unwrap();
        let sealed = v.seal("c", &Secret::new("s3cret")).unwrap();
        assert_eq!(other.open("c", &sealed), Err(VaultError::Unsealable));
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            v.open("c", &STANDARD.encode(bytes)),
            Err(VaultError::Unsealable)
        );
        assert_eq!(v.open("c", "not base64!"), Err(VaultError::Unsealable));
        assert_eq!(v.open("c", ""), Err(VaultError::Unsealable));
    }

    #[test]
    fn weak_keys_are_refused_and_passphrases_stretched() {
        assert_eq!(
            Vault::from_key_text("short").unwrap_err(),
            VaultError::WeakKey
        );
        let a = Vault::from_key_text("correct horse battery staple, many words").unwrap();
        let b = Vault::from_key_text("correct horse battery staple, many words").unwrap();
        let sealed = a.seal("x", &Secret::new("v")).unwrap();
        assert_eq!(b.open("x", &sealed).unwrap().expose(), "v");
        assert_eq!(a.derive("oauth"), b.derive("oauth"));
        assert_ne!(a.derive("oauth"), a.derive("other"));
        assert_eq!(format!("{a:?}"), "Vault(..)");
    }
}

//! Passwords of local users (for the OAuth login page of small setups): Argon2id digests in
//! PHC format, verified in constant time by the `argon2` crate.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

/// A password that cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short.
    #[error("passwords must have at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// Hashing failed.
    #[error("the password could not be hashed")]
    Hashing,
}

/// The PHC digest of `password`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hashing)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Whether `password` matches the stored digest (false for a malformed digest).
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_verify_and_refuse() {
        let h = hash("a long enough password").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("a long enough password", &h));
        assert!(!verify("a long enough passworD", &h));
        assert!(!verify("x", "garbage"));
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
    }
}

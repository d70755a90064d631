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

/// An Argon2id digest (the crate's default parameters, the ones [`hash`] uses) of a random
/// password nobody knows: checked when a sign-in names an unknown user, or one without a
/// password, so that such a sign-in takes as long as a wrong password for a real user.
const DUMMY_DIGEST: &str = "$argon2id$v=19$m=19456,t=2,p=1$8EsDMBXF8Qh2xlUMrs0mJw$ZS6pzkeDmlNnd3XKS+Hz/nvW+lPPnVLjcZlKYybWYRE";

/// Spends the time of checking `password` against a real digest, and answers false: the
/// sign-in path for unknown usernames, so that their answer takes as long as a known one's.
pub fn verify_unknown(password: &str) -> bool {
    let _ = verify(password, DUMMY_DIGEST);
    false
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

    #[test]
    fn the_dummy_digest_costs_what_a_real_one_does() {
        let dummy = PasswordHash::new(DUMMY_DIGEST).unwrap();
        let real_text = hash("a long enough password").unwrap();
        let real = PasswordHash::new(&real_text).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(!verify_unknown("a long enough password"));
    }
}

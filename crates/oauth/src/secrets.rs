//! The small cryptographic pieces: random tokens, their SHA-256 digests, constant-time
//! comparisons, the PKCE S256 check, keys derived from the gateway's secret, and sealing
//! (HMAC-signing) the state the login and consent forms carry.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// A random 256-bit value, base64url without padding (43 characters).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random 128-bit value, base64url without padding (22 characters).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of `s`.
pub(crate) fn sha256(s: &[u8]) -> Vec<u8> {
    Sha256::digest(s).to_vec()
}

/// Whether two byte strings are equal, in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `s` is a PKCE code verifier (RFC 7636 §4.1): 43 to 128 unreserved characters.
pub(crate) fn is_code_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `s` is an S256 code challenge: the base64url of a SHA-256 digest.
pub(crate) fn is_s256_challenge(s: &str) -> bool {
    s.len() == 43 && URL_SAFE_NO_PAD.decode(s).is_ok_and(|d| d.len() == 32)
}

/// The S256 challenge of a verifier.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` answers `challenge` (S256).
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    is_code_verifier(verifier) && ct_eq(s256(verifier).as_bytes(), challenge.as_bytes())
}

/// A 32-byte key for one purpose, derived from the gateway's secret: SHA-256 over a label
/// naming the purpose and the secret, so one secret yields independent keys.
pub(crate) fn derive_key(secret: &[u8; 32], purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"portcullis-oauth\0");
    h.update(purpose.as_bytes());
    h.update(b"\0");
    h.update(secret);
    h.finalize().into()
}

/// Signs values so they can travel through the browser and come back unchanged.
#[derive(Clone)]
pub(crate) struct Sealer {
    mac: HmacSha256,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer keyed with `key` (`None` only if HMAC refused the key, which it never does).
    pub(crate) fn new(key: [u8; 32]) -> Option<Self> {
        let mac = <HmacSha256 as Mac>::new_from_slice(&key).ok()?;
        Some(Self { mac })
    }

    fn mac(&self, purpose: &str, payload: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    /// `value` as `payload.tag`, both base64url; the tag covers `purpose` too.
    pub(crate) fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(purpose, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The value sealed for `purpose`, if `sealed` is intact.
    pub(crate) fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, tag) = sealed.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, payload).verify_slice(&tag).ok()?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_example() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
        assert!(is_s256_challenge(challenge));
        assert!(!is_s256_challenge("plain-challenge"));
    }

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert_eq!(sha256(a.as_bytes()).len(), 32);
    }

    #[test]
    fn sealing_detects_tampering_and_purpose() {
        let s = Sealer::new(derive_key(&[7; 32], "test")).unwrap();
        let sealed = s.seal("login", &vec![1, 2, 3]);
        assert_eq!(s.open::<Vec<i32>>("login", &sealed), Some(vec![1, 2, 3]));
        assert_eq!(s.open::<Vec<i32>>("consent", &sealed), None);
        let mut tampered = sealed.clone();
        tampered.insert(1, 'A');
        assert_eq!(s.open::<Vec<i32>>("login", &tampered), None);
        let other = Sealer::new(derive_key(&[8; 32], "test")).unwrap();
        assert_eq!(other.open::<Vec<i32>>("login", &sealed), None);
        assert_ne!(derive_key(&[7; 32], "a"), derive_key(&[7; 32], "b"));
    }
}

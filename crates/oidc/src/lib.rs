//! Validation of bearer JWTs from configured enterprise identity providers (Okta, Entra ID,
//! Auth0, Keycloak, any OpenID Connect issuer).
//!
//! A [`Verifier`] is built from the `identity.issuers[]` configuration ([`IssuerConfig`]) and
//! turns a token into a [`VerifiedToken`] (issuer, subject, mapped user, e-mail, teams, roles,
//! expiry) or a [`TokenError`] that names the rule it broke. Module map:
//! - [`config`]: the issuers as written in YAML, validated with key paths;
//! - [`verifier`]: the checks, in order, and the cache of verified tokens;
//! - `jwks` (private): discovery, key download and parsing, the per-issuer key cache with
//!   its rate-limited refresh ([`VerifierBuilder`] sets its intervals);
//! - `claims` (private): dotted claim paths and the reading of names and lists;
//! - [`error`]: [`TokenError`] and [`JwksError`].
//!
//! Rules kept throughout: only asymmetric algorithms (RS*, PS*, ES256/384, EdDSA), with `none`
//! and HMAC refused before any key lookup; the key's type and `alg` must agree with the
//! header; `exp` is required; a token longer than [`MAX_TOKEN_BYTES`] is not parsed; no input
//! panics; errors never contain the token.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use portcullis_oidc::{IssuerConfig, Verifier, looks_like_jwt};
//!
//! let mut okta = IssuerConfig::new("https://example.okta.com/oauth2/default", "api://portcullis");
//! okta.claims.teams = Some("groups".to_owned());
//! let verifier = Verifier::new(vec![okta])?;
//! let bearer = "eyJ…";
//! if looks_like_jwt(bearer) {
//!     let identity = verifier.verify(bearer).await?;
//!     println!("{} in {:?}", identity.user, identity.teams);
//! }
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "runtime")]
mod claims;
pub mod config;
#[cfg(feature = "runtime")]
pub mod error;
#[cfg(feature = "runtime")]
mod jwks;
#[cfg(feature = "runtime")]
pub mod verifier;

pub use config::{ClaimMapping, ConfigError, IssuerConfig, validate_issuers, validate_issuers_at};
#[cfg(feature = "runtime")]
pub use error::{JwksError, TokenError};
#[cfg(feature = "runtime")]
pub use jwks::ProviderMetadata;
#[cfg(feature = "runtime")]
pub use verifier::{VerifiedToken, Verifier, VerifierBuilder};

/// The longest token accepted, in bytes; longer ones are refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Whether `token` has the shape of a JWS in compact serialization: three base64url segments
/// separated by dots, the first (the header, a JSON object) starting with `ey`, the signature
/// possibly empty. Cheap (one pass over the bytes, no decoding); tells JWTs from opaque API
/// keys, which then go to their own check. A `true` says nothing about validity.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    header.starts_with("ey")
        && !payload.is_empty()
        && base64url(header)
        && base64url(payload)
        && base64url(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shapes_are_told_from_api_keys() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(!looks_like_jwt("sk-portcullis-0123456789abcdef"));
        assert!(!looks_like_jwt("pk_live.abc.def"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"));
        assert!(!looks_like_jwt("eyJh.eyJz.c2ln.extra"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9..c2ln"));
        assert!(!looks_like_jwt("eyJh bGci.eyJz.c2ln"));
        assert!(!looks_like_jwt("eyJh+bGci.eyJz.c2ln/"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt(".."));
    }
}

//! Shared helpers: the audience every test uses, building verifiers, and the assertion that a
//! token is refused for one specific reason without the error repeating the token.

use portcullis_oidc::{IssuerConfig, TokenError, Verifier};
use portcullis_test_support::MockIssuer;

/// The audience the tests configure and mint.
pub const AUD: &str = "api://portcullis";

/// `mock` as an issuer with audience [`AUD`] and default settings.
pub fn config(mock: &MockIssuer) -> IssuerConfig {
    IssuerConfig::new(mock.issuer(), AUD)
}

/// A verifier with default settings.
pub fn verifier(issuers: Vec<IssuerConfig>) -> Verifier {
    Verifier::new(issuers).expect("a valid issuer configuration")
}

/// Fails when the error message contains any sizeable part of the token.
pub fn assert_no_leak(error: &TokenError, token: &str) {
    let message = format!("{error} {error:?}");
    for segment in token.split('.').filter(|s| s.len() >= 12) {
        assert!(
            !message.contains(segment),
            "the error repeats part of the token: {message}"
        );
    }
}

/// Verifies `$token` and asserts it is refused with an error matching `$pattern`; evaluates
/// to the error.
macro_rules! assert_refused {
    ($verifier:expr, $token:expr, $pattern:pat $(if $guard:expr)?) => {{
        let token: &str = &$token;
        match $verifier.verify(token).await {
            Ok(accepted) => panic!("token accepted: {accepted:?}"),
            Err(error) => {
                assert!(
                    matches!(error, $pattern $(if $guard)?),
                    "refused for the wrong reason: {error:?} ({error})"
                );
                $crate::common::assert_no_leak(&error, token);
                error
            }
        }
    }};
}

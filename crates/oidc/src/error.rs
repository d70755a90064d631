//! Why a token was refused ([`TokenError`]) and why an issuer's keys could not be had
//! ([`JwksError`]). Messages are meant for logs: they name the rule that failed and never
//! contain the token; values taken from the token (issuer, key id, algorithm) are shortened
//! and stripped of control characters.

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`crate::MAX_TOKEN_BYTES`]; it was not parsed.
    #[error("token is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a JWS in compact serialization with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none`: an unsigned token.
    #[error("algorithm none is not allowed")]
    AlgorithmNone,
    /// The header names an HMAC algorithm, refused before any key lookup (this is what defeats
    /// the RS/HS confusion attack).
    #[error("symmetric algorithm {0} is not allowed")]
    SymmetricAlgorithm(String),
    /// The header names an algorithm outside the allow-list.
    #[error("algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
    /// The algorithm is supported but the issuer's configuration does not allow it.
    #[error("algorithm {alg} is not allowed for issuer {issuer}")]
    AlgorithmNotAllowed {
        /// The header's algorithm.
        alg: String,
        /// The issuer.
        issuer: String,
    },
    /// The header lists critical extensions (`crit`), none of which are understood.
    #[error("token header has critical extensions (crit), which are not supported")]
    CriticalHeader,
    /// The token has no `iss` claim.
    #[error("token has no iss claim")]
    MissingIssuer,
    /// The token's `iss` is not a configured issuer.
    #[error("unknown issuer `{0}`")]
    UnknownIssuer(String),
    /// No key of the issuer has the token's `kid`, even after refreshing the JWKS (or a
    /// refresh was not allowed yet).
    #[error("unknown key id `{kid}` for issuer {issuer}")]
    UnknownKeyId {
        /// The header's key id.
        kid: String,
        /// The issuer.
        issuer: String,
    },
    /// The token has no `kid` and the issuer does not publish exactly one key for its
    /// algorithm.
    #[error(
        "token has no key id and issuer {issuer} publishes {candidates} keys usable with {alg}"
    )]
    NoKeyId {
        /// The header's algorithm.
        alg: String,
        /// The issuer.
        issuer: String,
        /// How many published keys could verify `alg`.
        candidates: usize,
    },
    /// The key named by `kid` is of another type or algorithm than the header's `alg`.
    #[error("key `{kid}` of issuer {issuer} is not a {alg} key")]
    KeyAlgorithmMismatch {
        /// The header's key id.
        kid: String,
        /// The header's algorithm.
        alg: String,
        /// The issuer.
        issuer: String,
    },
    /// The issuer's key could not be used to verify (a malformed published key).
    #[error("key `{kid}` of issuer {issuer} is unusable")]
    UnusableKey {
        /// The key id (empty when the key has none).
        kid: String,
        /// The issuer.
        issuer: String,
    },
    /// The signature does not verify with the issuer's key.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid (nbf is in the future)")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    /// No audience of the token is one of the issuer's configured audiences.
    #[error("audience mismatch")]
    AudienceMismatch,
    /// The `iss` claim does not match the issuer whose key verified the token.
    #[error("issuer mismatch")]
    IssuerMismatch,
    /// A required claim (`exp`, `aud`, `sub`, or the mapped user claim) is absent.
    #[error("required claim `{0}` is missing")]
    MissingClaim(String),
    /// A claim has the wrong type (`exp` not a number, `sub` not a string, …).
    #[error("claim `{claim}` is invalid: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The issuer's signing keys could not be downloaded; the token may well be valid.
    #[error("signing keys of issuer {issuer} are unavailable: {source}")]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
        /// Why.
        #[source]
        source: JwksError,
    },
}

impl TokenError {
    /// A short, stable code for metrics and log fields, like `expired` or `alg_none`.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::AlgorithmNone => "alg_none",
            TokenError::SymmetricAlgorithm(_) => "alg_symmetric",
            TokenError::UnsupportedAlgorithm(_) => "alg_unsupported",
            TokenError::AlgorithmNotAllowed { .. } => "alg_not_allowed",
            TokenError::CriticalHeader => "crit_header",
            TokenError::MissingIssuer => "missing_iss",
            TokenError::UnknownIssuer(_) => "unknown_issuer",
            TokenError::UnknownKeyId { .. } => "unknown_kid",
            TokenError::NoKeyId { .. } => "no_kid",
            TokenError::KeyAlgorithmMismatch { .. } => "key_alg_mismatch",
            TokenError::UnusableKey { .. } => "unusable_key",
            TokenError::InvalidSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "iat_in_future",
            TokenError::AudienceMismatch => "aud_mismatch",
            TokenError::IssuerMismatch => "iss_mismatch",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InvalidClaim { .. } => "invalid_claim",
            TokenError::KeysUnavailable { .. } => "keys_unavailable",
        }
    }

    /// Whether the failure is the identity provider's, not the token's (its keys could not be
    /// downloaded): a gateway may answer 503 rather than 401.
    pub fn is_temporary(&self) -> bool {
        matches!(self, TokenError::KeysUnavailable { .. })
    }
}

/// Why an issuer's discovery document or JWKS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The request failed (connection, TLS, timeout).
    #[error("GET {url} failed: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("GET {url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body is larger than the limit.
    #[error("GET {url} answered more than {max} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        max: usize,
    },
    /// The body is not the expected document.
    #[error("{url} is not a valid {what}: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// `discovery document` or `JWKS`.
        what: &'static str,
        /// The parse error.
        reason: String,
    },
    /// The discovery document names another issuer than the configured one (a misconfigured
    /// or impersonating provider).
    #[error("discovery document names issuer `{found}`, expected `{expected}`")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
}

/// `value` for a log line: at most `max` characters, control characters replaced.
pub(crate) fn sanitize(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if value.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_shortens_and_strips_control_characters() {
        assert_eq!(sanitize("abc", 10), "abc");
        assert_eq!(sanitize("abcdef", 3), "abc…");
        assert_eq!(sanitize("a\nb\u{1b}[31m", 20), "a\u{FFFD}b\u{FFFD}[31m");
    }

    #[test]
    fn only_unavailable_keys_are_temporary() {
        let down = TokenError::KeysUnavailable {
            issuer: "https://idp.example".into(),
            source: JwksError::Status {
                url: "https://idp.example/keys".into(),
                status: 503,
            },
        };
        assert!(down.is_temporary());
        assert_eq!(down.reason(), "keys_unavailable");
        assert_eq!(
            down.to_string(),
            "signing keys of issuer https://idp.example are unavailable: \
             GET https://idp.example/keys answered HTTP 503"
        );
        assert!(!TokenError::Expired.is_temporary());
    }
}

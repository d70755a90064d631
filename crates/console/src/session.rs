//! The console session's secrets and browser-facing rules.
//!
//! A session is a random 256-bit token carried by an `HttpOnly` cookie; the database keeps only
//! its SHA-256 digest, so a leaked table signs nobody in. The anti-CSRF token is derived from
//! the session token (a keyed digest), so any replica checks it without a lookup, and a page on
//! another origin can neither read it (the cookie is `HttpOnly`, the token is served only to
//! same-origin script) nor guess it. State-changing calls must also come from the console's own
//! origin ([`same_origin`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::{COOKIE, HOST, ORIGIN};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name over plain HTTP.
pub const COOKIE_NAME: &str = "portcullis_console";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes the browser refuse it
/// unless it is `Secure`, host-only and for `/`.
pub const SECURE_COOKIE_NAME: &str = "__Host-portcullis_console";
/// The request header that carries the anti-CSRF token.
pub const CSRF_HEADER: &str = "x-portcullis-csrf";

/// A new session token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session token: its SHA-256, hex.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The anti-CSRF token of the session whose token is `token`.
pub fn csrf_token(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"portcullis console anti-csrf\0");
    h.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `presented` is the anti-CSRF token of the session `token`, compared in constant
/// time.
pub fn csrf_matches(token: &str, presented: &str) -> bool {
    let expected = csrf_token(token);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The session token a request's cookies carry, if any (either cookie name).
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME || *name == SECURE_COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value that starts a session: `HttpOnly`, `SameSite=Strict`, for the whole
/// gateway (the admin API is under `/admin/`), `Secure` and `__Host-` over HTTPS, and gone when
/// the session's absolute lifetime ends.
pub fn set_cookie(token: &str, secure: bool, max_age_secs: u64) -> String {
    if secure {
        format!(
            "{SECURE_COOKIE_NAME}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Strict"
        )
    } else {
        format!("{COOKIE_NAME}={token}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Strict")
    }
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    if secure {
        format!("{SECURE_COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
    } else {
        format!("{COOKIE_NAME}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
    }
}

/// Whether the request came to the gateway over HTTPS as the browser sees it: its `Origin`
/// is `https://…`, or a proxy in front says so (`X-Forwarded-Proto: https`). Used only to make
/// the cookie stricter, never to trust a request more.
pub fn is_https(headers: &HeaderMap) -> bool {
    let origin_https = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.len() > 8 && o[..8].eq_ignore_ascii_case("https://"));
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    origin_https || forwarded_https
}

/// Whether a browser request comes from the page's own origin: its `Origin` names the host the
/// request was sent to (or `public_url`, the gateway's address behind a proxy); without an
/// `Origin`, `Sec-Fetch-Site: same-origin` says so. A request with neither is refused, as is
/// `Origin: null`.
pub fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(origin) = headers.get(ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        if public_url.is_some_and(|u| u.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
            return true;
        }
        let Some((_, origin_host)) = origin.split_once("://") else {
            return false;
        };
        return headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(origin_host));
    }
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_digests() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_digest(&a).len(), 64);
        assert_ne!(token_digest(&a), a);
        assert_eq!(token_digest(&a), token_digest(&a));
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_only() {
        let (a, b) = (new_token(), new_token());
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_matches(&a, &a));
    }

    #[test]
    fn the_cookie_is_found_among_others_under_either_name() {
        let h = headers(&[("cookie", "a=1; portcullis_console=tok; b=2")]);
        assert_eq!(session_token(&h), Some("tok"));
        let h = headers(&[
            ("cookie", "x=y"),
            ("cookie", "__Host-portcullis_console=t2"),
        ]);
        assert_eq!(session_token(&h), Some("t2"));
        assert_eq!(
            session_token(&headers(&[("cookie", "portcullis_console=")])),
            None
        );
        assert_eq!(session_token(&headers(&[])), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let c = set_cookie("t", false, 60);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        let c = set_cookie("t", true, 60);
        assert!(c.starts_with("__Host-") && c.contains("; Secure") && c.contains("Path=/"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn only_the_pages_own_origin_passes() {
        let own = headers(&[
            ("host", "127.0.0.1:8800"),
            ("origin", "http://127.0.0.1:8800"),
        ]);
        assert!(same_origin(&own, None));
        let foreign = headers(&[
            ("host", "127.0.0.1:8800"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!same_origin(&foreign, None));
        let null = headers(&[("host", "127.0.0.1:8800"), ("origin", "null")]);
        assert!(!same_origin(&null, None));
        let proxied = headers(&[
            ("host", "10.0.0.5:8800"),
            ("origin", "https://gw.example.com"),
        ]);
        assert!(same_origin(&proxied, Some("https://gw.example.com/")));
        assert!(!same_origin(&proxied, Some("https://other.example.com")));
        let fetch_meta = headers(&[("host", "h"), ("sec-fetch-site", "same-origin")]);
        assert!(same_origin(&fetch_meta, None));
        let cross = headers(&[("host", "h"), ("sec-fetch-site", "cross-site")]);
        assert!(!same_origin(&cross, None));
        assert!(!same_origin(&headers(&[("host", "h")]), None));
    }
}

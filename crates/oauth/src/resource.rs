//! RFC 8707 resource indicators: the `resource` parameter of authorization and token
//! requests, checked (an absolute URI without fragment or query, naming one of the gateway's
//! protected resources) and turned into the audience of the access tokens a grant yields.
//!
//! The server's default audience (`oauth.audience`, else the issuer: the LLM API) is always a
//! resource; which others exist is the gateway's to say, through [`Resources`] (the MCP
//! endpoints). A grant bound to the default audience stores no resource.

use url::Url;

use crate::error::ProtocolError;

/// The protected resources, besides the server's default audience, tokens may be issued for.
pub trait Resources: Send + Sync + std::fmt::Debug {
    /// Whether `resource` (absolute, without fragment or query) is one of them.
    fn recognizes(&self, resource: &Url) -> bool;
}

/// The canonical form of a resource URI: scheme and host lower-cased, default port dropped,
/// no trailing slash. `None` when it is not an absolute URI.
pub fn canonical_resource(resource: &str) -> Option<String> {
    let url = Url::parse(resource.trim()).ok()?;
    if url.cannot_be_a_base() {
        return None;
    }
    Some(url.as_str().trim_end_matches('/').to_owned())
}

/// Checks a `resource` parameter: `Ok(None)` for none or the default audience `audience`
/// (canonical), `Ok(Some(canonical))` for another resource `others` recognizes, else
/// `invalid_target`.
pub(crate) fn resolve(
    requested: Option<&str>,
    audience: &str,
    others: Option<&dyn Resources>,
) -> Result<Option<String>, ProtocolError> {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let url = Url::parse(requested)
        .ok()
        .filter(|u| !u.cannot_be_a_base())
        .ok_or_else(|| ProtocolError::invalid_target("resource must be an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(ProtocolError::invalid_target(
            "resource must not have a fragment",
        ));
    }
    if url.query().is_some() {
        return Err(ProtocolError::invalid_target(
            "resource must not have a query",
        ));
    }
    let canonical = url.as_str().trim_end_matches('/').to_owned();
    if canonical_resource(audience).as_deref() == Some(canonical.as_str()) {
        return Ok(None);
    }
    if others.is_some_and(|r| r.recognizes(&url)) {
        return Ok(Some(canonical));
    }
    Err(ProtocolError::invalid_target(format!(
        "`{requested}` is not a resource of this gateway"
    )))
}

/// The resource of a token request for a grant bound to `bound`: the request may repeat the
/// grant's resource or name none, never another (`invalid_target`).
pub(crate) fn within_grant(
    requested: Option<&str>,
    bound: Option<&str>,
    audience: &str,
    others: Option<&dyn Resources>,
) -> Result<Option<String>, ProtocolError> {
    if requested.map(str::trim).is_none_or(str::is_empty) {
        return Ok(bound.map(str::to_owned));
    }
    let asked = resolve(requested, audience, others)?;
    if asked.as_deref() != bound {
        return Err(ProtocolError::invalid_target(
            "the resource is not the one the grant was made for",
        ));
    }
    Ok(asked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug)]
    struct Mcp;
    impl Resources for Mcp {
        fn recognizes(&self, r: &Url) -> bool {
            r.path() == "/mcp" || r.path() == "/mcp/a"
        }
    }

    #[test]
    fn resources_are_checked_and_canonical() {
        let aud = "https://GW.example";
        assert_eq!(resolve(None, aud, Some(&Mcp)).unwrap(), None);
        assert_eq!(
            resolve(Some("https://gw.example/"), aud, None).unwrap(),
            None
        );
        assert_eq!(
            resolve(Some("HTTPS://gw.example:443/mcp/a"), aud, Some(&Mcp)).unwrap(),
            Some("https://gw.example/mcp/a".to_owned())
        );
        for bad in [
            "mcp",
            "/mcp",
            "https://gw.example/mcp#x",
            "https://gw.example/mcp?x=1",
        ] {
            assert_eq!(
                resolve(Some(bad), aud, Some(&Mcp)).unwrap_err().code,
                "invalid_target"
            );
        }
        assert!(resolve(Some("https://gw.example/mcp/b"), aud, Some(&Mcp)).is_err());
        assert!(resolve(Some("https://gw.example/mcp"), aud, None).is_err());
        let bound = Some("https://gw.example/mcp");
        assert_eq!(
            within_grant(None, bound, aud, Some(&Mcp))
                .unwrap()
                .as_deref(),
            bound
        );
        assert!(within_grant(Some("https://gw.example/mcp/a"), bound, aud, Some(&Mcp)).is_err());
        assert!(within_grant(Some("https://gw.example/mcp"), None, aud, Some(&Mcp)).is_err());
    }
}

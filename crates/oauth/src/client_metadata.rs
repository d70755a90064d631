//! Client ID Metadata Documents: a `client_id` that is an `https` URL names a JSON document,
//! published by the client, that describes it (`client_id`, `client_name`, `redirect_uris`,
//! …). The server fetches it when the client first shows up — no registration — and keeps it
//! for as long as its cache headers say, within bounds.
//!
//! Fetching a URL a stranger chose is guarded: `https` only (plain `http` to a loopback
//! address only when `oauth.client_metadata_documents.allow_http_loopback` is set, for tests
//! and local development); no redirects; a timeout and a size limit; and addresses that are
//! loopback, private, link-local or otherwise not public are refused — checked on the
//! addresses the name resolves to, which are the ones connected to, so DNS rebinding does not
//! get around it — unless `allow_private_networks` is set. The document must name itself
//! (`client_id` equal to its URL), must not claim a secret, and its redirect URIs pass the
//! checks of registered ones.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_store::oauth::ClientRecord;
use serde::Deserialize;
use url::{Host, Url};

use crate::config::ClientMetadataConfig;
use crate::register::check_redirect_uri;

/// How long a fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest document accepted.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long a document is kept when its answer says nothing about caching.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The longest a document is kept, whatever its answer says.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The most documents kept.
const MAX_CACHED: u64 = 10_000;
/// The most redirect URIs a document may list.
const MAX_REDIRECT_URIS: usize = 20;

/// Why a client's metadata document cannot be used (said to the client and shown to the user).
#[derive(Debug, Clone, thiserror::Error)]
#[error("client metadata document {url}: {reason}")]
pub(crate) struct DocumentError {
    url: String,
    reason: String,
}

/// Fetches, checks and caches client metadata documents.
pub(crate) struct ClientDocuments {
    config: ClientMetadataConfig,
    http: reqwest::Client,
    cache: moka::future::Cache<String, Arc<Cached>>,
}

impl std::fmt::Debug for ClientDocuments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDocuments")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Cached {
    client: Result<ClientRecord, DocumentError>,
    until: Instant,
}

/// The parts of a document the server uses (others are ignored).
#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
}

impl ClientDocuments {
    pub(crate) fn new(config: ClientMetadataConfig) -> Result<Self, String> {
        let resolver = Arc::new(PublicResolver {
            allow_private: config.allow_private_networks,
            allow_loopback: config.allow_http_loopback,
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .no_proxy()
            .dns_resolver(resolver)
            .user_agent("portcullis-oauth")
            .build()
            .map_err(|e| format!("cannot build the metadata document client: {e}"))?;
        Ok(Self {
            config,
            http,
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_CACHED)
                .time_to_live(MAX_TTL)
                .build(),
        })
    }

    /// Whether `client_id` names a metadata document (rather than a registered client).
    pub(crate) fn is_document_id(&self, client_id: &str) -> bool {
        self.config.enabled
            && (client_id.starts_with("https://")
                || (self.config.allow_http_loopback && client_id.starts_with("http://")))
    }

    /// The client `url` describes, fetched or from the cache.
    pub(crate) async fn client(&self, url: &str) -> Result<ClientRecord, DocumentError> {
        if let Some(cached) = self.cache.get(url).await
            && cached.until > Instant::now()
        {
            return cached.client.clone();
        }
        let (client, ttl) = match self.fetch(url).await {
            Ok((client, ttl)) => (Ok(client), ttl),
            // A failure is remembered briefly, so a bad client cannot make the server fetch
            // on every request.
            Err(e) => (Err(e), Duration::from_secs(10)),
        };
        if !ttl.is_zero() {
            let cached = Arc::new(Cached {
                client: client.clone(),
                until: Instant::now() + ttl.min(MAX_TTL),
            });
            self.cache.insert(url.to_owned(), cached).await;
        }
        client
    }

    async fn fetch(&self, id: &str) -> Result<(ClientRecord, Duration), DocumentError> {
        let fail = |reason: String| DocumentError {
            url: id.to_owned(),
            reason,
        };
        let url = self.check_url(id).map_err(fail)?;
        if let Some(ip) = literal_ip(&url)
            && !self.address_allowed(ip)
        {
            return Err(fail("its address is not a public one".to_owned()));
        }
        let mut response = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(format!("cannot be fetched ({})", fetch_reason(&e))))?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "answered {} (redirects are not followed)",
                response.status().as_u16()
            )));
        }
        let ttl = cache_ttl(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(format!("cannot be read ({})", fetch_reason(&e))))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(fail(format!("is larger than {MAX_DOCUMENT_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Document = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("is not a client metadata document ({e})")))?;
        let client = self.client_of(id, doc).map_err(fail)?;
        Ok((client, ttl))
    }

    /// A client id that may be fetched: `https` (or `http` to loopback when allowed), with a
    /// path, no fragment, credentials or dot segments.
    fn check_url(&self, id: &str) -> Result<Url, String> {
        let url = Url::parse(id).map_err(|_| "is not a URL".to_owned())?;
        let loopback_http = url.scheme() == "http"
            && self.config.allow_http_loopback
            && literal_ip(&url).is_some_and(|ip| ip.is_loopback());
        if url.scheme() != "https" && !loopback_http {
            return Err("must be an https URL".to_owned());
        }
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err("must not have a fragment or credentials".to_owned());
        }
        if url.path() == "/" || url.path().is_empty() {
            return Err("must have a path".to_owned());
        }
        // `Url` resolves dot segments; an id that had some is not the URL it parses to.
        if id.split('?').next().is_some_and(|p| {
            p.split('/')
                .any(|segment| segment == "." || segment == "..")
        }) {
            return Err("must not have dot segments".to_owned());
        }
        Ok(url)
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        address_allowed(
            ip,
            self.config.allow_private_networks,
            self.config.allow_http_loopback,
        )
    }

    /// The client a checked document describes.
    fn client_of(&self, id: &str, doc: Document) -> Result<ClientRecord, String> {
        if doc.client_id != id {
            return Err(format!(
                "names `{}` as its client_id, not its own URL",
                doc.client_id
            ));
        }
        if doc.client_secret.is_some() {
            return Err("must not carry a client secret".to_owned());
        }
        match doc.token_endpoint_auth_method.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(format!(
                    "token_endpoint_auth_method `{other}` is not supported (use `none`)"
                ));
            }
        }
        if doc.redirect_uris.is_empty() {
            return Err("lists no redirect_uris".to_owned());
        }
        if doc.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(format!("lists more than {MAX_REDIRECT_URIS} redirect_uris"));
        }
        for uri in &doc.redirect_uris {
            check_redirect_uri(uri)?;
        }
        let grant_types = doc
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".to_owned(), "refresh_token".to_owned()]);
        if let Some(g) = grant_types
            .iter()
            .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
        {
            return Err(format!("grant type `{g}` is not available to such clients"));
        }
        let name = doc
            .client_name
            .map(|n| n.trim().chars().take(100).collect::<String>())
            .filter(|n| !n.is_empty());
        Ok(ClientRecord {
            client_id: id.to_owned(),
            secret_hash: None,
            name,
            redirect_uris: doc.redirect_uris,
            grant_types,
            scopes: doc
                .scope
                .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect()),
            auth_method: "none".to_owned(),
            service_account: None,
            created_ms: crate::server::now_ms(),
        })
    }
}

/// The address of a URL whose host is an IP literal.
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

/// Whether the server may connect to `ip` for a document: public addresses; loopback only with
/// `allow_loopback`; private, link-local, shared and unspecified ranges only with
/// `allow_private`.
fn address_allowed(ip: IpAddr, allow_private: bool, allow_loopback: bool) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return allow_loopback || allow_private;
    }
    if allow_private {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// How long an answer may be kept, from its `Cache-Control` (`max-age`; `no-store` and
/// `no-cache`: not at all), else [`DEFAULT_TTL`]; at most [`MAX_TTL`].
fn cache_ttl(headers: &http::HeaderMap) -> Duration {
    let Some(value) = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_TTL;
    };
    let mut ttl = DEFAULT_TTL;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(secs) = lower.strip_prefix("max-age=")
            && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
        {
            ttl = Duration::from_secs(secs);
        }
    }
    ttl.min(MAX_TTL)
}

fn fetch_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "no connection, or the address is not a public one"
    } else {
        "transport error"
    }
}

/// Resolves names, keeping only addresses documents may be fetched from; the connection
/// goes to those, so a name that resolves to a private address is never reached.
struct PublicResolver {
    allow_private: bool,
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allow_private, allow_loopback) = (self.allow_private, self.allow_loopback);
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found
                .filter(|a| address_allowed(a.ip(), allow_private, allow_loopback))
                .collect();
            if kept.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_public_addresses_are_fetched_by_default() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!address_allowed(ip.parse().unwrap(), false, false), "{ip}");
        }
        assert!(address_allowed(
            "93.184.215.14".parse().unwrap(),
            false,
            false
        ));
        assert!(address_allowed(
            "2606:2800::1".parse().unwrap(),
            false,
            false
        ));
        assert!(address_allowed("127.0.0.1".parse().unwrap(), false, true));
        assert!(!address_allowed("10.0.0.1".parse().unwrap(), false, true));
        assert!(address_allowed("10.0.0.1".parse().unwrap(), true, false));
    }

    #[test]
    fn cache_headers_bound_the_time_a_document_is_kept() {
        let h = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::CACHE_CONTROL, v.parse().unwrap());
            h
        };
        assert_eq!(cache_ttl(&http::HeaderMap::new()), DEFAULT_TTL);
        assert_eq!(cache_ttl(&h("public, max-age=60")), Duration::from_secs(60));
        assert_eq!(cache_ttl(&h("max-age=999999999")), MAX_TTL);
        assert_eq!(cache_ttl(&h("no-store")), Duration::ZERO);
    }

    #[test]
    fn client_ids_must_be_https_urls_with_a_path() {
        let docs = ClientDocuments::new(ClientMetadataConfig::default()).unwrap();
        assert!(docs.check_url("https://app.example/client.json").is_ok());
        for bad in [
            "http://app.example/client.json",
            "https://app.example/",
            "https://app.example/a#b",
            "https://user:pw@app.example/c.json",
            "https://app.example/a/../c.json",
            "http://127.0.0.1:8080/c.json",
        ] {
            assert!(docs.check_url(bad).is_err(), "{bad}");
        }
        let loopback = ClientDocuments::new(ClientMetadataConfig {
            allow_http_loopback: true,
            ..Default::default()
        })
        .unwrap();
        assert!(loopback.check_url("http://127.0.0.1:8080/c.json").is_ok());
        assert!(loopback.check_url("http://app.example/c.json").is_err());
    }
}

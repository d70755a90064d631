//! The `oauth:` block of the gateway's configuration file: issuer, audience, token lifetimes
//! and the scopes the server offers.
//!
//! ```yaml
//! oauth:
//!   issuer: https://gateway.example.com   # default: derived from the listen address
//!   access_token_ttl: 15m
//!   refresh_token_ttl: 30d
//!   code_ttl: 60s
//!   scopes: [models, tools, admin]
//!   sign_in:
//!     local: true                      # the username/password form over local users
//!     oidc:                            # "Sign in with …": delegate to an identity provider
//!       issuer: https://example.okta.com   # one of identity.issuers (its claim mapping applies)
//!       client_id: portcullis-gateway
//!       client_secret: ${OIDC_CLIENT_SECRET}
//!       name: Okta
//!   max_failed_sign_ins: 10            # per username and client address, per 15 minutes
//!   registrations_per_minute: 30       # unauthenticated dynamic client registrations
//!   trusted_proxies: [10.0.0.5]        # read X-Forwarded-For only from these peers
//!   client_metadata_documents:         # client_id as an https URL of the client's document
//!     enabled: true
//!     allow_http_loopback: false       # http://127.0.0.1/… documents (tests, development)
//!     allow_private_networks: false    # documents on private or loopback addresses
//! ```
//!
//! Durations are written `500ms`, `30s`, `15m`, `12h`, `30d`, a sequence such as `1h30m`, or
//! a bare number of seconds.

use std::time::Duration;

use portcullis_core::config::{Block, Issue, Issues, key};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The OAuth server's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// The public base URL of the gateway (`iss` of every token, base of every endpoint).
    /// `None`: the gateway derives it from its listen address.
    pub issuer: Option<String>,
    /// The `aud` of access tokens: the resource they are for. `None`: the issuer.
    pub audience: Option<String>,
    /// Lifetime of access tokens.
    #[serde(with = "duration_text")]
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens (each rotation starts a new one).
    #[serde(with = "duration_text")]
    pub refresh_token_ttl: Duration,
    /// Lifetime of authorization codes.
    #[serde(with = "duration_text")]
    pub code_ttl: Duration,
    /// Scopes the server offers.
    pub scopes: Vec<String>,
    /// Scopes granted when a request names none (and the client registered none). `None`:
    /// every offered scope but `admin`.
    pub default_scopes: Option<Vec<String>>,
    /// Whether anyone may register a client (RFC 7591); administrators always can.
    pub dynamic_registration: bool,
    /// How users sign in on the authorization page.
    pub sign_in: SignInConfig,
    /// Failed local sign-ins allowed per username and client address within
    /// [`FAILED_SIGN_IN_WINDOW`]; further attempts from that address are refused (without
    /// checking the password) until the window ends. Attempts after the first failures also
    /// wait a delay that doubles with each failure.
    pub max_failed_sign_ins: u32,
    /// Dynamic client registrations accepted per minute on each replica.
    pub registrations_per_minute: u32,
    /// Reverse proxies in front of the gateway: when a sign-in's connection comes from one of
    /// these addresses, its client address is read from `X-Forwarded-For` (the right-most
    /// address that is not a trusted proxy). Empty (the default): the header is ignored and
    /// the connection's own address is used.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Clients identified by the URL of their metadata document.
    pub client_metadata_documents: ClientMetadataConfig,
}

/// Client ID Metadata Documents: a `client_id` that is an `https` URL is the client's own
/// description, fetched by the server (no registration needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientMetadataConfig {
    /// Whether such client ids are accepted (and advertised).
    pub enabled: bool,
    /// Whether `http://` documents on a loopback address are fetched (tests, development).
    pub allow_http_loopback: bool,
    /// Whether documents on private, link-local or loopback addresses are fetched.
    pub allow_private_networks: bool,
}

impl Default for ClientMetadataConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_http_loopback: false,
            allow_private_networks: false,
        }
    }
}

/// The window [`OAuthConfig::max_failed_sign_ins`] counts over.
pub const FAILED_SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How users sign in on the authorization page: the local form, an identity provider, or
/// both (the page then offers both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInConfig {
    /// Whether local users may sign in with their username (or e-mail) and password.
    pub local: bool,
    /// Sign-in delegated to an OpenID Connect provider.
    pub oidc: Option<OidcSignInConfig>,
}

impl Default for SignInConfig {
    fn default() -> Self {
        Self {
            local: true,
            oidc: None,
        }
    }
}

/// The gateway as an OpenID Connect client (relying party) of an identity provider: the
/// authorization code flow with PKCE, its ID token verified against the issuer's keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSignInConfig {
    /// The provider's issuer; it must also be configured under `identity.issuers`, whose
    /// claim mapping (user, e-mail, teams, roles) applies to its ID tokens.
    pub issuer: String,
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// The gateway's client secret at the provider (`None`: a public client, PKCE only).
    /// Never serialized or printed.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// How the secret is sent: `client_secret_basic` (default) or `client_secret_post`.
    #[serde(default = "default_token_auth")]
    pub token_endpoint_auth: String,
    /// Scopes asked of the provider; must include `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The provider's name on the sign-in button ("Sign in with …"); default "single sign-on".
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for OidcSignInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSignInConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("token_endpoint_auth", &self.token_endpoint_auth)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .finish()
    }
}

fn default_token_auth() -> String {
    "client_secret_basic".to_owned()
}

fn default_oidc_scopes() -> Vec<String> {
    ["openid", "profile", "email"]
        .into_iter()
        .map(str::to_owned)
        .collect()
}

impl OidcSignInConfig {
    /// A client of `issuer` with the default scopes and `client_secret_basic`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            token_endpoint_auth: default_token_auth(),
            scopes: default_oidc_scopes(),
            name: None,
        }
    }

    fn validate(&self, issues: &mut Vec<String>) {
        if let Err(e) = check_base_url(&self.issuer) {
            issues.push(format!("sign_in.oidc.issuer: {e}"));
        }
        if self.client_id.trim().is_empty() {
            issues.push("sign_in.oidc.client_id: must not be empty".to_owned());
        }
        if self.client_secret.as_deref().is_some_and(str::is_empty) {
            issues.push(
                "sign_in.oidc.client_secret: is empty (an unset environment variable?)".to_owned(),
            );
        }
        if !matches!(
            self.token_endpoint_auth.as_str(),
            "client_secret_basic" | "client_secret_post"
        ) {
            issues.push(format!(
                "sign_in.oidc.token_endpoint_auth: `{}` is not client_secret_basic or client_secret_post",
                self.token_endpoint_auth
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            issues.push("sign_in.oidc.scopes: must include `openid`".to_owned());
        }
        for scope in &self.scopes {
            if !is_scope_token(scope) {
                issues.push(format!("sign_in.oidc.scopes: `{scope}` is not a scope"));
            }
        }
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            code_ttl: Duration::from_secs(60),
            scopes: vec!["models".to_owned(), "tools".to_owned(), "admin".to_owned()],
            default_scopes: None,
            dynamic_registration: true,
            sign_in: SignInConfig::default(),
            max_failed_sign_ins: 10,
            registrations_per_minute: 30,
            trusted_proxies: Vec::new(),
            client_metadata_documents: ClientMetadataConfig::default(),
        }
    }
}

impl OAuthConfig {
    /// Every problem with the settings, each naming its key; empty when they are valid.
    pub fn validate(&self) -> Vec<String> {
        let mut issues = Vec::new();
        for (key, url) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if let Some(url) = url
                && let Err(e) = check_base_url(url)
            {
                issues.push(format!("{key}: {e}"));
            }
        }
        for (key, ttl) in [
            ("access_token_ttl", self.access_token_ttl),
            ("refresh_token_ttl", self.refresh_token_ttl),
            ("code_ttl", self.code_ttl),
        ] {
            if ttl < Duration::from_secs(1) {
                issues.push(format!("{key}: must be at least one second"));
            }
        }
        if self.code_ttl > Duration::from_secs(600) {
            issues.push("code_ttl: must be at most 10m".to_owned());
        }
        if self.scopes.is_empty() {
            issues.push("scopes: at least one scope is required".to_owned());
        }
        for scope in &self.scopes {
            if !is_scope_token(scope) {
                issues.push(format!(
                    "scopes: `{scope}` is not a scope (printable ASCII, no spaces, quotes or backslashes)"
                ));
            }
        }
        for scope in self.default_scopes.iter().flatten() {
            if !self.scopes.contains(scope) {
                issues.push(format!("default_scopes: `{scope}` is not one of `scopes`"));
            }
        }
        if let Some(oidc) = &self.sign_in.oidc {
            oidc.validate(&mut issues);
        } else if !self.sign_in.local {
            issues.push(
                "sign_in: with `local: false`, `oidc` must be set (users need a way to sign in)"
                    .to_owned(),
            );
        }
        if self.max_failed_sign_ins == 0 {
            issues.push("max_failed_sign_ins: must be at least 1".to_owned());
        }
        if self.registrations_per_minute == 0 {
            issues.push(
                "registrations_per_minute: must be at least 1 (set `dynamic_registration: false` to turn registration off)"
                    .to_owned(),
            );
        }
        issues
    }

    /// The scopes granted when a request names none.
    #[cfg(feature = "runtime")]
    pub(crate) fn effective_default_scopes(&self) -> Vec<String> {
        match &self.default_scopes {
            Some(list) => list.clone(),
            None => self
                .scopes
                .iter()
                .filter(|s| s.as_str() != "admin")
                .cloned()
                .collect(),
        }
    }
}

impl Block for OAuthConfig {
    type Raw = OAuthConfig;
    type Valid = OAuthConfig;

    /// The block at `at` (its problems under `oauth.…`); the checks that involve other blocks
    /// (the vault's secret key, the identity issuers) are the configuration crate's.
    fn validate(raw: OAuthConfig, at: &str) -> Result<OAuthConfig, Issues> {
        let path = key(at, "oauth");
        let issues: Issues = raw
            .validate()
            .into_iter()
            .map(|problem| match problem.split_once(": ") {
                Some((name, message)) if !name.contains(' ') => {
                    Issue::new(key(&path, name), message)
                }
                _ => Issue::new(path.clone(), problem),
            })
            .collect();
        issues.finish(raw)
    }
}

/// Whether `s` is a scope token (RFC 6749 §3.3).
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// An issuer or audience must be an absolute http(s) URL without query or fragment.
pub(crate) fn check_base_url(s: &str) -> Result<(), String> {
    let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("`{s}` must be an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{s}` must not have a query or a fragment"));
    }
    Ok(())
}

/// Parses `90` (seconds), `500ms`, `30s`, `15m`, `12h`, `1d`, `2w`, or a sequence such as
/// `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    portcullis_core::parse_duration(text).map_err(|e| e.to_string())
}

/// Writes a duration in the largest unit that divides it exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

mod duration_text {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
        }
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn config_round_trips_through_json_and_rejects_unknown_keys() {
        let c: OAuthConfig = serde_json::from_str(
            r#"{"issuer":"https://gw.example","access_token_ttl":"5m","code_ttl":30,
                "scopes":["models","admin"]}"#,
        )
        .unwrap();
        assert_eq!(c.access_token_ttl, Duration::from_secs(300));
        assert_eq!(c.code_ttl, Duration::from_secs(30));
        assert_eq!(c.refresh_token_ttl, Duration::from_secs(30 * 86_400));
        assert!(c.validate().is_empty());
        assert_eq!(c.effective_default_scopes(), vec!["models".to_owned()]);
        let back: OAuthConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<OAuthConfig>(r#"{"isuer":"x"}"#).is_err());
        assert!(serde_json::from_str::<OAuthConfig>(r#"{"code_ttl":"soon"}"#).is_err());
    }

    #[test]
    fn validation_names_each_problem() {
        let c = OAuthConfig {
            issuer: Some("ftp://x".to_owned()),
            code_ttl: Duration::ZERO,
            scopes: vec!["ok".to_owned(), "has space".to_owned()],
            default_scopes: Some(vec!["missing".to_owned()]),
            ..OAuthConfig::default()
        };
        let issues = c.validate();
        assert_eq!(issues.len(), 4, "{issues:?}");
        assert!(issues[0].starts_with("issuer:"));
        assert!(OAuthConfig::default().validate().is_empty());
    }

    #[test]
    fn the_oauth_block_reports_a_bad_value_at_its_path() {
        let raw = OAuthConfig {
            code_ttl: Duration::from_secs(3600),
            ..OAuthConfig::default()
        };
        let shown: Vec<String> = <OAuthConfig as Block>::validate(raw, "")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["oauth.code_ttl: must be at most 10m"]);
    }
}

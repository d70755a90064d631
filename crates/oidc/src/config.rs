//! The `identity.issuers[]` configuration: [`IssuerConfig`] and [`ClaimMapping`] as written in
//! YAML, and their validation (with key paths) into the settings the verifier runs on.

use std::collections::HashSet;
use std::fmt;
#[cfg(feature = "runtime")]
use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "runtime")]
use jsonwebtoken::Algorithm;
use portcullis_core::config::{Issue, index, key};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The signature algorithms accepted when an issuer does not restrict them: RSA (PKCS#1 v1.5
/// and PSS), ECDSA on P-256 and P-384, and Ed25519. Never `none`, never HMAC.
pub const DEFAULT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The clock-skew allowance when an issuer does not set `leeway`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The largest `leeway` accepted: more would keep expired tokens alive for too long.
pub const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// One trusted token issuer, as written under `identity.issuers[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier, compared exactly with the token's `iss` (mind a trailing slash:
    /// Auth0's ends with one, Okta's and Keycloak's do not).
    pub issuer: String,
    /// The accepted audiences (`audience: "x"` or a list); the token's `aud` (a string or an
    /// array) must contain one of them.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Where the signing keys are; when absent they are found through OIDC discovery at
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Which claims name the user, their e-mail address, teams and roles.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Restricts the accepted algorithms further (default: [`DEFAULT_ALGORITHMS`]).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, like `60s` or `2m` (default 60 s).
    #[serde(default)]
    pub leeway: Option<String>,
    /// The role of a caller whose token maps to no role.
    #[serde(default)]
    pub default_role: Option<String>,
}

impl IssuerConfig {
    /// An issuer with one audience and every other setting at its default.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: vec![audience.into()],
            jwks_uri: None,
            claims: ClaimMapping::default(),
            algorithms: None,
            leeway: None,
            default_role: None,
        }
    }
}

/// Which claims carry the caller's attributes: dotted paths into the token's claims
/// (`realm_access.roles`), where a key may itself contain dots (`https://example.com/roles`:
/// the longest literal key is tried first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMapping {
    /// The user's name (default `sub`); a string or a number.
    pub user: String,
    /// The user's e-mail address (default `email`); absent when the claim is.
    pub email: Option<String>,
    /// The user's teams (none by default): a string array, or a space- or comma-separated
    /// string.
    pub teams: Option<String>,
    /// The user's roles (none by default), in the same forms as `teams`.
    pub roles: Option<String>,
    /// Values of the roles or teams claim that grant a gateway role (`admin`, `member` or
    /// `viewer`), for identity providers whose group names say nothing of the gateway:
    /// `{"AI-Platform-Admins": admin, "Contractors": viewer}`. Compared exactly.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub role_values: std::collections::BTreeMap<String, String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user: "sub".to_owned(),
            email: Some("email".to_owned()),
            teams: None,
            roles: None,
            role_values: std::collections::BTreeMap::new(),
        }
    }
}

/// Why a [`crate::Verifier`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The issuers' configuration has problems, each named by its key.
    #[error("invalid identity issuers: {}", join(.0))]
    Invalid(Vec<Issue>),
    /// The HTTP client for discovery and JWKS downloads could not be built.
    #[error("cannot build the HTTP client for OIDC discovery: {0}")]
    HttpClient(String),
}

impl ConfigError {
    /// The individual problems (empty for [`ConfigError::HttpClient`]).
    pub fn issues(&self) -> &[Issue] {
        match self {
            ConfigError::Invalid(issues) => issues,
            ConfigError::HttpClient(_) => &[],
        }
    }
}

fn join(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An issuer's validated settings.
#[cfg(feature = "runtime")]
#[derive(Debug, Clone)]
pub(crate) struct IssuerSettings {
    pub(crate) issuer: String,
    pub(crate) audience: Vec<String>,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) claims: ClaimMapping,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: u64,
    pub(crate) default_role: Option<String>,
}

/// Checks `issuers` (as configured under `identity.issuers`) and reports every problem, for
/// `portcullis check` and for [`crate::Verifier::new`].
pub fn validate_issuers(issuers: &[IssuerConfig]) -> Result<(), ConfigError> {
    check_issuers(issuers, "identity").map(|_| ())
}

/// Checks the `issuers:` list of the block at `at` (the file's `identity`), reporting every
/// problem with its path (`identity.issuers[0].leeway`).
pub fn validate_issuers_at(issuers: &[IssuerConfig], at: &str) -> Result<(), Vec<Issue>> {
    check_issuers(issuers, at)
        .map(|_| ())
        .map_err(|e| e.issues().to_vec())
}

#[cfg(feature = "runtime")]
pub(crate) fn settings(issuers: &[IssuerConfig]) -> Result<Vec<IssuerSettings>, ConfigError> {
    Ok(check_issuers(issuers, "identity")?
        .into_iter()
        .map(|c| IssuerSettings {
            issuer: c.issuer,
            audience: c.audience,
            jwks_uri: c.jwks_uri,
            claims: c.claims,
            algorithms: c
                .algorithms
                .iter()
                .filter_map(|name| Algorithm::from_str(name).ok())
                .collect(),
            leeway: c.leeway,
            default_role: c.default_role,
        })
        .collect())
}

/// An issuer as checked, its algorithms by name.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
struct CheckedIssuer {
    issuer: String,
    audience: Vec<String>,
    jwks_uri: Option<String>,
    claims: ClaimMapping,
    algorithms: Vec<&'static str>,
    leeway: u64,
    default_role: Option<String>,
}

fn check_issuers(issuers: &[IssuerConfig], at: &str) -> Result<Vec<CheckedIssuer>, ConfigError> {
    let mut issues = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(issuers.len());
    for (position, config) in issuers.iter().enumerate() {
        let path = index(&key(at, "issuers"), position);
        let mut issue = |key: &str, message: String| {
            issues.push(Issue::new(format!("{path}.{key}"), message));
        };
        if let Err(message) = check_url(&config.issuer) {
            issue("issuer", message);
        } else if !seen.insert(config.issuer.as_str()) {
            issue("issuer", format!("`{}` is configured twice", config.issuer));
        }
        if config.audience.is_empty() {
            issue(
                "audience",
                "at least one audience is required: tokens meant for other applications must \
                 be refused"
                    .to_owned(),
            );
        }
        for (i, aud) in config.audience.iter().enumerate() {
            if aud.trim().is_empty() {
                issue(&format!("audience[{i}]"), "must not be empty".to_owned());
            }
        }
        if let Some(uri) = &config.jwks_uri
            && let Err(message) = check_url(uri)
        {
            issue("jwks_uri", message);
        }
        let algorithms = match &config.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(names) if names.is_empty() => {
                issue(
                    "algorithms",
                    "must list at least one algorithm (or be left out)".to_owned(),
                );
                Vec::new()
            }
            Some(names) => {
                let mut algorithms = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    match parse_algorithm(name) {
                        Ok(alg) => algorithms.push(alg),
                        Err(message) => issue(&format!("algorithms[{i}]"), message),
                    }
                }
                algorithms
            }
        };
        let leeway = match &config.leeway {
            None => DEFAULT_LEEWAY,
            Some(text) => match parse_duration(text) {
                Ok(d) if d > MAX_LEEWAY => {
                    issue("leeway", format!("`{text}` is longer than the 10m allowed"));
                    DEFAULT_LEEWAY
                }
                Ok(d) => d,
                Err(message) => {
                    issue("leeway", message);
                    DEFAULT_LEEWAY
                }
            },
        };
        let mapping = &config.claims;
        for (key, value) in [
            ("claims.user", Some(&mapping.user)),
            ("claims.email", mapping.email.as_ref()),
            ("claims.teams", mapping.teams.as_ref()),
            ("claims.roles", mapping.roles.as_ref()),
        ] {
            if value.is_some_and(|v| v.trim().is_empty()) {
                issue(key, "must name a claim".to_owned());
            }
        }
        for (value, role) in &mapping.role_values {
            if !matches!(role.as_str(), "admin" | "member" | "viewer") {
                issue(
                    "claims.role_values",
                    format!("`{value}` maps to `{role}`, which is not admin, member or viewer"),
                );
            }
        }
        if mapping.role_values.keys().any(|v| v.is_empty()) {
            issue("claims.role_values", "a claim value is empty".to_owned());
        }
        if config
            .default_role
            .as_ref()
            .is_some_and(|r| r.trim().is_empty())
        {
            issue("default_role", "must not be empty".to_owned());
        }
        out.push(CheckedIssuer {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            jwks_uri: config.jwks_uri.clone(),
            claims: config.claims.clone(),
            algorithms,
            leeway: leeway.as_secs(),
            default_role: config.default_role.clone(),
        });
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::Invalid(issues))
    }
}

fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("`{text}` must be an https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or a fragment"));
    }
    Ok(())
}

/// The symmetric (HMAC) algorithms, never accepted.
const HMAC_ALGORITHMS: [&str; 3] = ["HS256", "HS384", "HS512"];

/// Parses an algorithm name from the configuration, refusing those never accepted. The
/// accepted names are exactly the asymmetric algorithms JWTs are verified with
/// ([`DEFAULT_ALGORITHMS`]).
fn parse_algorithm(name: &str) -> Result<&'static str, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("algorithm none is never accepted: it means an unsigned token".to_owned());
    }
    if HMAC_ALGORITHMS.contains(&name) {
        return Err(format!(
            "symmetric algorithm {name} is never accepted: its secret cannot be published in \
             a JWKS, and allowing it opens the RS/HS confusion attack"
        ));
    }
    DEFAULT_ALGORITHMS
        .iter()
        .find(|known| **known == name)
        .copied()
        .ok_or_else(|| {
            format!(
                "unknown algorithm `{name}`: use one of {}",
                DEFAULT_ALGORITHMS.join(", ")
            )
        })
}

/// Parses `500ms`, `60s`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    portcullis_core::parse_duration(text).map_err(|e| e.to_string())
}

/// Deserializes a string or a sequence of strings into a list.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(yaml: &str) -> Result<Vec<IssuerConfig>, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_accepts_one_audience_or_a_list_and_fills_defaults() {
        let issuers = parse(
            "- issuer: https://example.okta.com/oauth2/default\n  audience: api://portcullis\n\
             - issuer: https://keycloak.example.com/realms/ai\n  audience: [portcullis, account]\n  \
             claims:\n    user: preferred_username\n    roles: realm_access.roles\n  \
             leeway: 30s\n  default_role: member\n",
        )
        .unwrap();
        assert_eq!(issuers[0].audience, vec!["api://portcullis"]);
        assert_eq!(issuers[0].claims, ClaimMapping::default());
        assert_eq!(issuers[1].audience, vec!["portcullis", "account"]);
        assert_eq!(issuers[1].claims.user, "preferred_username");
        assert_eq!(issuers[1].claims.email.as_deref(), Some("email"));
        assert_eq!(
            issuers[1].claims.roles.as_deref(),
            Some("realm_access.roles")
        );
        let settings = settings(&issuers).unwrap();
        assert_eq!(settings[0].leeway, 60);
        assert_eq!(settings[0].algorithms.len(), DEFAULT_ALGORITHMS.len());
        assert_eq!(settings[1].leeway, 30);
        assert_eq!(settings[1].default_role.as_deref(), Some("member"));
    }

    #[test]
    fn yaml_refuses_unknown_keys_and_a_missing_audience() {
        let typo = parse("- issuer: https://a.example\n  audiences: x\n").unwrap_err();
        assert!(typo.contains("audiences"), "{typo}");
        let missing = parse("- issuer: https://a.example\n").unwrap_err();
        assert!(missing.contains("audience"), "{missing}");
        let claim_typo =
            parse("- issuer: https://a.example\n  audience: x\n  claims:\n    role: r\n")
                .unwrap_err();
        assert!(claim_typo.contains("role"), "{claim_typo}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut bad = IssuerConfig::new("not a url", "x");
        bad.audience = Vec::new();
        bad.algorithms = Some(vec![
            "RS256".into(),
            "none".into(),
            "HS256".into(),
            "XY1".into(),
        ]);
        bad.leeway = Some("1 fortnight".into());
        bad.jwks_uri = Some("ftp://keys.example".into());
        bad.claims.user = " ".into();
        let mut long = IssuerConfig::new("https://b.example", "x");
        long.leeway = Some("1h".into());
        let dup = IssuerConfig::new("https://b.example", "y");
        let err = validate_issuers(&[bad, long, dup]).unwrap_err();
        let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "identity.issuers[0].issuer",
                "identity.issuers[0].audience",
                "identity.issuers[0].jwks_uri",
                "identity.issuers[0].algorithms[1]",
                "identity.issuers[0].algorithms[2]",
                "identity.issuers[0].algorithms[3]",
                "identity.issuers[0].leeway",
                "identity.issuers[0].claims.user",
                "identity.issuers[1].leeway",
                "identity.issuers[2].issuer",
            ]
        );
        let text = err.to_string();
        assert!(text.contains("algorithm none is never accepted"), "{text}");
        assert!(text.contains("symmetric algorithm HS256"), "{text}");
        assert!(text.contains("configured twice"), "{text}");
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn the_accepted_algorithm_names_are_jsonwebtokens_asymmetric_ones() {
        use jsonwebtoken::AlgorithmFamily;
        for name in DEFAULT_ALGORITHMS {
            let alg = Algorithm::from_str(name).unwrap();
            assert_ne!(alg.family(), AlgorithmFamily::Hmac, "{name}");
        }
        for name in HMAC_ALGORITHMS {
            assert_eq!(
                Algorithm::from_str(name).unwrap().family(),
                AlgorithmFamily::Hmac
            );
        }
    }

    #[test]
    fn the_issuers_list_reports_a_bad_value_at_its_path() {
        let mut bad = IssuerConfig::new("https://idp.example", "gw");
        bad.algorithms = Some(vec!["HS256".to_owned()]);
        let found = validate_issuers_at(
            &[IssuerConfig::new("https://a.example", "gw"), bad],
            "identity",
        )
        .unwrap_err();
        let paths: Vec<&str> = found.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["identity.issuers[1].algorithms[0]"]);
    }
}

//! The `identity:` block — how often each replica polls for tenancy changes, and the
//! enterprise token issuers — and the check of `secret_key`, the vault's key-encryption key
//! (how its text is read, without the vault's cryptography), so the configuration crate can
//! validate both without linking the runtime.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_core::config::{Block, Issues, key};
use portcullis_oidc::IssuerConfig;
use serde::Deserialize;

/// The poll interval when none is configured.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a `secret_key` (`PORTCULLIS_SECRET_KEY`) text is refused.
pub const WEAK_SECRET_KEY: &str = "PORTCULLIS_SECRET_KEY must be 32 bytes in base64 or hex, or a passphrase of at least 32 characters";

/// `identity:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// How often each replica checks for changed keys, users and teams (default `1s`).
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// Enterprise token issuers whose bearer JWTs the gateway accepts.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// `identity:` validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// How often each replica polls for tenancy changes.
    pub poll_interval: Duration,
    /// Enterprise token issuers.
    pub issuers: Vec<IssuerConfig>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            issuers: Vec::new(),
        }
    }
}

impl Block for IdentitySettings {
    type Raw = RawIdentity;
    type Valid = IdentitySettings;

    fn validate(raw: RawIdentity, at: &str) -> Result<IdentitySettings, Issues> {
        let path = key(at, "identity");
        let mut issues = Issues::new();
        if let Err(found) = portcullis_oidc::validate_issuers_at(&raw.issuers, &path) {
            issues.extend(found);
        }
        let mut settings = IdentitySettings {
            poll_interval: DEFAULT_POLL_INTERVAL,
            issuers: raw.issuers,
        };
        if let Some(p) = &raw.poll_interval {
            match portcullis_core::parse_duration(p) {
                Ok(d) if !d.is_zero() => settings.poll_interval = d,
                _ => issues.at(
                    &path,
                    "poll_interval",
                    format!("`{p}` is not a positive duration such as 500ms or 2s"),
                ),
            }
        }
        issues.finish(settings)
    }
}

/// What a `secret_key` text holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyText {
    /// 32 bytes, given as base64 or hex.
    Bytes([u8; 32]),
    /// A passphrase of at least 32 characters (stretched by the vault).
    Passphrase,
}

/// Reads a `secret_key` text (trimmed): 32 bytes in base64 or hex, else a passphrase of at
/// least 32 characters; `None` when it is neither.
pub fn read_key_text(text: &str) -> Option<KeyText> {
    let text = text.trim();
    let decoded = STANDARD
        .decode(text)
        .ok()
        .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
        .filter(|b| b.len() == 32)
        .or_else(|| hex::decode(text).ok().filter(|b| b.len() == 32));
    match decoded.and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
        Some(bytes) => Some(KeyText::Bytes(bytes)),
        None if text.chars().count() >= 32 => Some(KeyText::Passphrase),
        None => None,
    }
}

/// Checks the `secret_key` setting at `at` (the file's top level).
pub fn validate_secret_key(text: &str, at: &str) -> Result<(), Issues> {
    let mut issues = Issues::new();
    if read_key_text(text).is_none() {
        issues.at(at, "secret_key", WEAK_SECRET_KEY);
    }
    issues.finish(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_block_reports_a_bad_value_at_its_path() {
        let raw = RawIdentity {
            poll_interval: Some("never".to_owned()),
            issuers: vec![IssuerConfig::new("https://idp.example", "gw")],
        };
        let shown: Vec<String> = IdentitySettings::validate(raw, "")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["identity.poll_interval: `never` is not a positive duration such as 500ms or 2s"]
        );
    }

    #[test]
    fn secret_keys_are_bytes_or_long_passphrases() {
        assert_eq!(
            read_key_text(&"ab".repeat(32)),
            Some(KeyText::Bytes([0xab; 32]))
        );
        assert_eq!(read_key_text(&"x".repeat(32)), Some(KeyText::Passphrase));
        let shown: Vec<String> = validate_secret_key("short", "")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, [format!("secret_key: {WEAK_SECRET_KEY}")]);
        #[cfg(feature = "runtime")]
        assert_eq!(crate::VaultError::WeakKey.to_string(), WEAK_SECRET_KEY);
    }
}

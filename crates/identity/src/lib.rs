//! Who is calling, and with which provider key.
//!
//! - [`keys`]: virtual-key secrets — generation, visible prefix, stored digest;
//! - [`vault`]: AES-256-GCM sealing of provider credentials under `PORTCULLIS_SECRET_KEY`;
//! - [`passwords`]: Argon2id digests for local users' passwords;
//! - [`directory`]: the hot-path [`Directory`] — keys and enterprise claims resolved to
//!   [`Principal`]s from a snapshot of tenancy held in memory, which every replica reloads in
//!   the background when the tenancy version it polls moves — and per-identity provider-key
//!   resolution;
//! - [`controls`]: a key's own cache, retry and timeout settings, and their resolved form;
//! - [`manage`]: the validated management operations behind the admin API and the CLI;
//! - [`mcp_access`]: MCP access rules by user, team and role added at run time;
//! - [`mcp_credentials`]: users' and teams' own credentials for MCP servers;
//! - [`config`]: the `identity:` block and the check of `secret_key`.
//!
//! Everything but [`config`] is the default `runtime` feature; without it (as the
//! configuration crate uses it) the crate links neither the store nor the cryptography.

pub mod config;
#[cfg(feature = "runtime")]
pub mod controls;
#[cfg(feature = "runtime")]
pub mod directory;
#[cfg(feature = "runtime")]
pub mod keys;
#[cfg(feature = "runtime")]
pub mod manage;
#[cfg(feature = "runtime")]
pub mod mcp_access;
#[cfg(feature = "runtime")]
pub mod mcp_credentials;
#[cfg(feature = "runtime")]
pub mod passwords;
#[cfg(feature = "runtime")]
pub mod vault;

#[cfg(feature = "runtime")]
pub use controls::{ControlOverrides, KeyControls};
#[cfg(feature = "runtime")]
pub use directory::{
    AliasError, AuthError, Directory, DirectoryOptions, DirectoryStats, ExternalClaims, Principal,
    ResolvedCredential, role_from_claims,
};
#[cfg(feature = "runtime")]
pub use manage::{
    IssuedKey, KeyBudget, KeyLimits, KeyUpdate, ManageError, NewCredential, NewKey, NewUser,
};
#[cfg(feature = "runtime")]
pub use mcp_access::NewMcpAccess;
#[cfg(feature = "runtime")]
pub use vault::{Vault, VaultError};

#[cfg(feature = "runtime")]
/// The wall clock in Unix milliseconds, the unit every stored time uses.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

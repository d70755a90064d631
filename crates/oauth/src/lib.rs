//! The gateway's OAuth 2.1 authorization server.
//!
//! [`OAuthServer`] serves discovery metadata (RFC 8414, and RFC 9728 for the gateway as a
//! protected resource), dynamic client registration (RFC 7591), the authorization-code flow
//! with mandatory PKCE S256 through a server-rendered sign-in and consent page, the token
//! endpoint (authorization code, rotating refresh tokens, client credentials for service
//! accounts) and revocation (RFC 7009). Access tokens are EdDSA-signed JWTs whose key is
//! derived from the gateway's secret, so every replica issues and verifies alike;
//! [`OAuthServer::verify_access_token`] checks one without touching the database.
//!
//! Users are the gateway's: the server asks a [`Directory`], for local users (password) and for
//! users an identity provider signed in (the gateway is then the provider's OIDC client). State lives in the store's
//! [`OAuthStore`](portcullis_store::oauth::OAuthStore) (SQLite or PostgreSQL); codes, refresh
//! tokens and client secrets are kept only as SHA-256 digests.
//!
//! - [`config`]: the `oauth:` block ([`OAuthConfig`]);
//! - [`directory`]: [`Directory`], [`Principal`], [`MemoryDirectory`];
//! - [`error`]: [`OAuthError`] and the wire errors;
//! - [`first_party`]: the gateway's own console as a client, signed in without registration
//!   or consent, its codes redeemed in-process;
//! - [`keys`]: the signing key, JWKS and [`AccessClaims`];
//! - `client_metadata`: clients identified by the URL of their metadata document (fetched
//!   with SSRF guards, cached);
//! - `server`: [`OAuthServer`], its router and admin API; `metadata`, `register`,
//!   `authorize` (with `pages`), `upstream` (sign-in delegated to an OpenID Connect
//!   provider), `token`, `revoke`: the endpoints; `resource`: RFC 8707 resource indicators
//!   ([`Resources`]) and the audience tokens are bound to; `revocation`: the
//!   in-memory revocation set; `secrets`: random tokens, digests, PKCE, sealing.
//!
//! Everything but [`config`] is the default `runtime` feature; without it (as the
//! configuration crate uses it) the crate is the `oauth:` block alone.

#[cfg(feature = "runtime")]
mod authorize;
#[cfg(feature = "runtime")]
mod client_metadata;
pub mod config;
#[cfg(feature = "runtime")]
pub mod directory;
#[cfg(feature = "runtime")]
pub mod error;
#[cfg(feature = "runtime")]
pub mod first_party;
#[cfg(feature = "runtime")]
pub mod keys;
#[cfg(feature = "runtime")]
mod metadata;
#[cfg(feature = "runtime")]
mod pages;
#[cfg(feature = "runtime")]
mod register;
#[cfg(feature = "runtime")]
mod resource;
#[cfg(feature = "runtime")]
mod revocation;
#[cfg(feature = "runtime")]
mod revoke;
#[cfg(feature = "runtime")]
mod secrets;
#[cfg(feature = "runtime")]
mod server;
#[cfg(feature = "runtime")]
mod throttle;
#[cfg(feature = "runtime")]
mod token;
#[cfg(feature = "runtime")]
mod upstream;

pub use config::{ClientMetadataConfig, OAuthConfig, OidcSignInConfig, SignInConfig};
#[cfg(feature = "runtime")]
pub use directory::{Directory, DirectoryError, MemoryDirectory, Principal};
#[cfg(feature = "runtime")]
pub use error::OAuthError;
#[cfg(feature = "runtime")]
pub use first_party::{FirstPartyError, FirstPartySignIn, FirstPartyStart};
#[cfg(feature = "runtime")]
pub use keys::AccessClaims;
#[cfg(feature = "runtime")]
pub use resource::{Resources, canonical_resource};
#[cfg(feature = "runtime")]
pub use server::{ClientCredentials, OAuthServer};
#[cfg(feature = "runtime")]
pub use throttle::{SignInThrottle, client_address, retry_after_seconds, wait_in_words};
/// The URL type [`Resources`] are given.
#[cfg(feature = "runtime")]
pub use url::Url;

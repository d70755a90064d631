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
//! - [`keys`]: the signing key, JWKS and [`AccessClaims`];
//! - `server`: [`OAuthServer`], its router and admin API; `metadata`, `register`,
//!   `authorize` (with `pages`), `upstream` (sign-in delegated to an OpenID Connect
//!   provider), `token`, `revoke`: the endpoints; `revocation`: the
//!   in-memory revocation set; `secrets`: random tokens, digests, PKCE, sealing.

mod authorize;
pub mod config;
pub mod directory;
pub mod error;
pub mod keys;
mod metadata;
mod pages;
mod register;
mod revocation;
mod revoke;
mod secrets;
mod server;
mod token;
mod upstream;

pub use config::{OAuthConfig, OidcSignInConfig, SignInConfig};
pub use directory::{Directory, DirectoryError, MemoryDirectory, Principal};
pub use error::OAuthError;
pub use keys::AccessClaims;
pub use server::{ClientCredentials, OAuthServer};

//! Bearer-JWT validation over real HTTP against the mock OIDC issuer of `test-support`:
//! provider token shapes and claim mapping ([`shapes`]), discovery, key download, rotation and
//! rate-limited refresh ([`keys`]), and the hostile corpus with a property test ([`hostile`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
mod hostile;
mod keys;
mod shapes;

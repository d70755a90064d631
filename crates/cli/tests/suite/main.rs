//! The integration suite of this crate, one test binary: each module covers one concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod check;
mod keys;
mod reload;
mod serve;
mod tenancy;

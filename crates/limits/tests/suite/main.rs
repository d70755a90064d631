//! The integration suite of this crate, one test binary: each module covers one concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod calendar;
#[macro_use]
mod common;
mod config;
mod limits;
mod redis;

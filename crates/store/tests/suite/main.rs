//! The integration suite of this crate, one test binary: each module covers one concern.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod mcp_grants;
mod mcp_pins;
mod mcp_servers;
mod oauth;
mod responses;
mod semantic;
mod stores;

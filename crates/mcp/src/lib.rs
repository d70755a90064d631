//! The MCP gateway: one endpoint in front of many MCP servers.
//!
//! - [`config`]: the `mcp:` block of the configuration file — servers over stdio, Streamable
//!   HTTP or HTTP+SSE, their sandbox and limits.
//! - [`access`]: the `mcp.access` rules by user, team and role.
//! - [`jsonrpc`]: JSON-RPC 2.0 messages, parameters and results kept as raw JSON.
//! - [`names`]: `<server>__<tool>` names (never longer than 64 characters) and resource URIs
//!   that route back to their server.
//! - [`upstream`]: connections to the servers, one transport per module.
//! - [`credentials`]: a server's instances that carry one user's or team's own credentials.
//! - [`hub`]: the servers and their lists (tools, prompts, resources), cached until they
//!   change.
//! - [`pages`]: lists answered page by page, with stateless cursors.
//! - [`pins`]: tool definitions fingerprinted and pinned; a changed one is withheld until
//!   approved.
//! - [`router`]: a client's request planned (answered here, refused, or forwarded with the
//!   server's own names) and forwarded.
//!
//! Without the `runtime` feature the crate is the configuration block alone.

pub mod access;
pub mod config;
#[cfg(feature = "runtime")]
pub mod credentials;
#[cfg(feature = "runtime")]
pub mod hub;
#[cfg(feature = "runtime")]
pub mod jsonrpc;
#[cfg(feature = "runtime")]
pub mod names;
#[cfg(feature = "runtime")]
pub mod pages;
#[cfg(feature = "runtime")]
pub mod pins;
#[cfg(feature = "runtime")]
pub mod router;
#[cfg(feature = "runtime")]
pub mod upstream;

pub use config::{McpConfig, RawMcp, ServerSpec, Transport};

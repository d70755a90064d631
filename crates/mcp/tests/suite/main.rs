//! The MCP gateway's upstream connections driven against real MCP servers
//! (`@modelcontextprotocol/server-everything`, installed with `npm ci` in `tests/mcp`) over
//! stdio, Streamable HTTP and HTTP+SSE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod fake;
mod http;
mod sse;
mod stdio;

//! The gateway's integration suite, one test binary: each module drives a real gateway over
//! HTTP (in-process mock upstreams, SQLite or a fresh PostgreSQL schema) for one concern.
//! New concerns get a module here rather than a binary of their own, so the suite links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod approvals;
mod audit;
mod azure;
mod bad_input;
mod bedrock;
mod cache;
mod config_admin;
mod console;
mod console_oauth;
mod cost;
mod count_tokens;
mod directory;
mod dispatch;
mod embeddings;
mod enterprise;
mod errors;
mod failover;
mod gemini;
mod guardrails;
mod hostile;
mod identity;
mod injection;
mod key_edits;
mod layering;
mod lifecycle;
mod limits;
mod log_filters;
mod logging;
mod mcp;
mod mcp_access;
mod mcp_admin;
mod mcp_auth;
mod mcp_credentials;
mod mcp_guardrails;
mod mcp_notifications;
mod mcp_own_instances;
mod mcp_pins;
mod mcp_replicas;
mod mcp_sandbox;
mod mcp_streams;
mod mcp_upstream_oauth;
mod mcp_usage;
mod models;
mod openapi;
mod passthrough;
mod proxy;
mod quarantine;
mod reload;
mod responses;
mod semantic;
mod telemetry;
mod tool_policies_admin;
mod tools_denied;
mod usage;
mod vertex;

//! Durable state of the gateway behind small traits, with an embedded implementation
//! (SQLite, the default) and a shared one (PostgreSQL, for several replicas).
//!
//! - [`record`]: the request-log record and query filters;
//! - [`LogStore`] / [`SettingsStore`]: the traits the gateway uses;
//! - [`sql`]: both SQL backends, with embedded migrations;
//! - [`escape`]: text PostgreSQL cannot hold (NUL), stored reversibly;
//! - [`writer`]: the bounded, batching, asynchronous request-log writer;
//! - [`usage`]: usage analytics and spend totals over the request log ([`UsageStore`]), read
//!   from hourly and daily rollups (`rollup`) the log writer keeps;
//! - [`semantic`]: the semantic response cache table ([`SemanticStore`]);
//! - [`tenancy`]: teams, users, service accounts, virtual keys, provider credentials
//!   ([`TenancyStore`]);
//! - [`mcp_access`]: MCP access rules and users' or teams' MCP server credentials
//!   ([`McpAccessStore`], part of every [`TenancyStore`]);
//! - [`oauth`]: the OAuth server's clients, codes and tokens ([`OAuthStore`]);
//! - [`mcp`]: the MCP servers added through the admin API ([`McpServerStore`]);
//! - [`mcp_pins`]: the fingerprints MCP tool definitions are pinned to ([`McpPinStore`]);
//! - [`audit`]: the decision audit's chains, records and checkpoints ([`AuditStore`]), and
//!   [`audit_writer`], the bounded writer that seals records into this process's chain;
//! - [`approvals`]: tool calls held for an admin's decision ([`ApprovalStore`]);
//! - [`tool_policies`]: the tool policies added through the admin API ([`ToolPolicyStore`]);
//! - [`responses`]: the Responses API's stored answers ([`ResponseStore`]);
//! - [`console_sessions`]: the web console's sessions ([`ConsoleSessionStore`]).

pub mod approvals;
pub mod audit;
pub mod audit_writer;
pub mod console_sessions;
pub mod escape;
pub mod mcp;
pub mod mcp_access;
pub mod mcp_grants;
pub mod mcp_pins;
pub mod oauth;
pub mod record;
pub mod responses;
mod rollup;
pub mod semantic;
pub mod sql;
pub mod tenancy;
pub mod tool_policies;
pub mod usage;
pub mod writer;

use std::sync::Arc;

use async_trait::async_trait;

pub use approvals::{
    ApprovalQuery, ApprovalRecord, ApprovalStatus, ApprovalStore, HeldApproval, OpenApproval,
};
pub use audit::{AuditQuery, AuditRow, AuditStore, AuditVerification, verify_audit};
pub use audit_writer::{AuditLost, AuditSink, AuditStats, AuditWriter, AuditWriterConfig};
pub use console_sessions::{ConsoleSession, ConsoleSessionStore};
pub use mcp::{McpServerRecord, McpServerStore};
pub use mcp_access::McpAccessStore;
pub use mcp_grants::{McpGrantRecord, McpGrantStore};
pub use mcp_pins::McpPinStore;
pub use oauth::OAuthStore;
pub use record::{
    CacheFilter, LogQuery, LogRecord, MAX_METADATA_FILTER_BYTES, StatusFilter, metadata_pairs,
};
pub use responses::{ResponseStore, StoredResponse};
pub use semantic::{SemanticEntry, SemanticStore};
pub use sql::{PostgresStore, SqliteStore};
pub use tenancy::TenancyStore;
pub use tool_policies::{ToolPolicyRecord, ToolPolicyStore};
pub use usage::{
    Dimension, Interval, LatencyPercentiles, SpendScope, UsageQuery, UsageRow, UsageStats,
    UsageStore,
};
pub use writer::{LogSink, LogStats, LogWriter, WriterConfig};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is malformed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The rows an operation depends on kept changing under it (other writers); trying again
    /// later may succeed.
    #[error("contended: {0}")]
    Contended(String),
}

impl StoreError {
    /// Whether the database refused the statement because of the values it carried (a data or
    /// constraint error): writing the same values again cannot succeed, unlike after a lost
    /// connection, a timeout, a deadlock or a full disk.
    pub fn is_refusal(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        let Some(code) = e.code() else {
            return false;
        };
        if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some()
        {
            // A PostgreSQL SQLSTATE: its class (first two characters) says what went wrong.
            // Connection (08), transaction rollback (40: serialization, deadlock), resources
            // (53), lock/object state (55), operator intervention (57) and system (58, XX)
            // errors pass; the rest is about the statement itself.
            return !matches!(
                code.get(..2),
                Some("08" | "40" | "53" | "55" | "57" | "58" | "XX")
            );
        }
        // A SQLite result code, possibly extended: the primary code is its low byte. Busy (5),
        // locked (6), I/O (10), full (13) and can't-open (14) pass.
        match code.parse::<u32>() {
            Ok(n) => !matches!(n & 0xff, 5 | 6 | 10 | 13 | 14),
            Err(_) => false,
        }
    }
}

/// The request log.
#[async_trait]
pub trait LogStore: Send + Sync + std::fmt::Debug {
    /// Stores a batch atomically. Idempotent: a record already stored is skipped.
    async fn append(&self, batch: &[LogRecord]) -> Result<(), StoreError>;
    /// Reads records matching `q`, newest first (by time, then id).
    async fn query(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError>;
    /// The record with this id.
    async fn record(&self, id: uuid::Uuid) -> Result<Option<LogRecord>, StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Gateway-wide settings.
#[async_trait]
pub trait SettingsStore: Send + Sync + std::fmt::Debug {
    /// The value of `key`.
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` under `key` unless a value is there already; returns the stored value.
    /// Replicas racing to initialize a setting all end up with the same value.
    async fn put_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError>;
}

/// The stores of one database.
#[derive(Debug, Clone)]
pub struct Stores {
    /// The request log.
    pub logs: Arc<dyn LogStore>,
    /// Settings.
    pub settings: Arc<dyn SettingsStore>,
    /// Usage analytics over the request log.
    pub usage: Arc<dyn UsageStore>,
    /// The semantic response cache table.
    pub semantic: Arc<dyn SemanticStore>,
    /// The OAuth server's tables.
    pub oauth: Arc<dyn OAuthStore>,
    /// Teams, users, keys and provider credentials.
    pub tenancy: Arc<dyn TenancyStore>,
    /// The MCP servers added through the admin API.
    pub mcp_servers: Arc<dyn McpServerStore>,
    /// MCP tool pins.
    pub mcp_pins: Arc<dyn McpPinStore>,
    /// Users' OAuth grants for upstream MCP servers.
    pub mcp_grants: Arc<dyn McpGrantStore>,
    /// The decision audit.
    pub audit: Arc<dyn AuditStore>,
    /// Tool calls held for an admin's decision.
    pub approvals: Arc<dyn ApprovalStore>,
    /// The tool policies added through the admin API.
    pub tool_policies: Arc<dyn ToolPolicyStore>,
    /// The Responses API's stored answers.
    pub responses: Arc<dyn ResponseStore>,
    /// The web console's sessions.
    pub console_sessions: Arc<dyn ConsoleSessionStore>,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
}

/// Connects to the database `url` names (`sqlite:…` or `postgres://…`) and migrates it.
pub async fn connect(url: &str, max_connections: u32) -> Result<Stores, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let s = PostgresStore::connect(url, max_connections).await?;
        Ok(Stores {
            logs: s.clone(),
            usage: s.clone(),
            semantic: s.clone(),
            oauth: s.clone(),
            tenancy: s.clone(),
            mcp_servers: s.clone(),
            mcp_pins: s.clone(),
            mcp_grants: s.clone(),
            audit: s.clone(),
            approvals: s.clone(),
            tool_policies: s.clone(),
            responses: s.clone(),
            console_sessions: s.clone(),
            settings: s,
            backend: "postgres",
        })
    } else if url.starts_with("sqlite:") {
        let s = SqliteStore::connect(url, max_connections).await?;
        Ok(Stores {
            logs: s.clone(),
            usage: s.clone(),
            semantic: s.clone(),
            oauth: s.clone(),
            tenancy: s.clone(),
            mcp_servers: s.clone(),
            mcp_pins: s.clone(),
            mcp_grants: s.clone(),
            audit: s.clone(),
            approvals: s.clone(),
            tool_policies: s.clone(),
            responses: s.clone(),
            console_sessions: s.clone(),
            settings: s,
            backend: "sqlite",
        })
    } else {
        Err(StoreError::InvalidUrl(
            "expected a sqlite: or postgres:// URL".to_owned(),
        ))
    }
}

//! Tool pins of MCP servers ([`McpPinStore`]): for each tool a server lists, the fingerprint of
//! its definition when first seen (or last approved) and the one it lists now, so that a
//! definition that changes is withheld until an admin approves it — on every replica, since
//! the table is shared.
//!
//! Pins are kept per **scope**: `""` ([`SHARED`]) for a server's shared connection, otherwise the
//! identity key of an instance of the server that carries a credential of its own (what a
//! per-user or per-team credential is for, `user:<id>` or `team:<id>`, which stays as the
//! credential is rotated; `oauth:<user>` or `exchange:<user>` for a user's token), since an
//! upstream may list different definitions to different credentials. Each scope's pins are independent: one scope's definitions never decide what
//! another's callers see.
//!
//! Recording what a server lists ([`McpPinStore::observe_tools`]) is one upsert per tool: a
//! tool seen for the first time is pinned as it is; a known one gets its current definition
//! and, when that differs from the pin, the time it began to differ. Approving
//! ([`McpPinStore::approve_tool`]) is one conditional update that moves the pin to the current
//! definition only if that is still the one the admin reviewed. Both SQL backends run the same
//! statements, implemented once by a macro.

use async_trait::async_trait;

use crate::{PostgresStore, SqliteStore, StoreError};

/// The scope of a server's shared connection.
pub const SHARED: &str = "";

/// A tool as a server lists it now.
#[derive(Debug, Clone, Copy)]
pub struct SeenTool<'a> {
    /// The server's own name of the tool.
    pub tool: &'a str,
    /// The fingerprint of its definition.
    pub fingerprint: &'a str,
    /// Its definition, JSON as the server sent it.
    pub definition: &'a str,
}

/// A tool's pinned fingerprint: what the hot path decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedTool {
    /// The server.
    pub server: String,
    /// The scope: [`SHARED`] or an instance's identity key.
    pub scope: String,
    /// The server's own name of the tool.
    pub tool: String,
    /// The fingerprint clients may see.
    pub fingerprint: String,
}

/// One tool's pin, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPin {
    /// The server.
    pub server: String,
    /// The scope: [`SHARED`] or an instance's identity key.
    pub scope: String,
    /// The server's own name of the tool.
    pub tool: String,
    /// The fingerprint first seen or last approved.
    pub pinned_fingerprint: String,
    /// The definition that fingerprint is of.
    pub pinned_definition: String,
    /// The fingerprint of what the server lists now.
    pub current_fingerprint: String,
    /// What the server lists now.
    pub current_definition: String,
    /// When the tool was first seen, Unix milliseconds.
    pub first_seen_ms: i64,
    /// When it was last listed.
    pub seen_ms: i64,
    /// When its definition began to differ from the pin; `None` while they agree.
    pub changed_ms: Option<i64>,
    /// When a definition of it was last approved.
    pub approved_ms: Option<i64>,
}

impl ToolPin {
    /// Whether what the server lists now differs from the pin.
    pub fn changed(&self) -> bool {
        self.pinned_fingerprint != self.current_fingerprint
    }
}

/// What became of an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// The reviewed definition is pinned now.
    Approved(ToolPin),
    /// The server lists another definition than the one reviewed.
    Stale {
        /// The fingerprint of what it lists now.
        current_fingerprint: String,
    },
    /// No such tool has been seen.
    Unknown,
}

/// The tool pins.
#[async_trait]
pub trait McpPinStore: Send + Sync + std::fmt::Debug {
    /// Records what `server` lists now in `scope`, at `now_ms`: tools seen for the first time
    /// in that scope are pinned as they are. Returns the pinned fingerprint of every tool of
    /// `server` ever seen in `scope`.
    async fn observe_tools(
        &self,
        server: &str,
        scope: &str,
        seen: &[SeenTool<'_>],
        now_ms: i64,
    ) -> Result<Vec<PinnedTool>, StoreError>;

    /// Every tool's pinned fingerprint.
    async fn pinned_tools(&self) -> Result<Vec<PinnedTool>, StoreError>;

    /// Every pin, whole, of `server` (or of every server) in `scope` (or in every scope); by
    /// server, scope, then tool.
    async fn tool_pins(
        &self,
        server: Option<&str>,
        scope: Option<&str>,
    ) -> Result<Vec<ToolPin>, StoreError>;

    /// Pins the definition `server` lists now in `scope` for `tool`, if its fingerprint is
    /// `fingerprint`.
    async fn approve_tool(
        &self,
        server: &str,
        scope: &str,
        tool: &str,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<Approval, StoreError>;

    /// Drops every pin of `server` in `scope`, an instance's that is gone for good (its
    /// credential deleted or replaced); returns how many. The shared scope is never dropped.
    async fn forget_tool_pins(&self, server: &str, scope: &str) -> Result<u64, StoreError>;
}

const PIN_COLUMNS: &str = "server, scope, tool, pinned_fingerprint, pinned_definition, \
    current_fingerprint, current_definition, first_seen_ms, seen_ms, changed_ms, approved_ms";

#[derive(sqlx::FromRow)]
struct PinRow {
    server: String,
    scope: String,
    tool: String,
    pinned_fingerprint: String,
    pinned_definition: String,
    current_fingerprint: String,
    current_definition: String,
    first_seen_ms: i64,
    seen_ms: i64,
    changed_ms: Option<i64>,
    approved_ms: Option<i64>,
}

impl PinRow {
    fn into_pin(self, loaded: fn(String) -> String) -> ToolPin {
        ToolPin {
            server: loaded(self.server),
            scope: loaded(self.scope),
            tool: loaded(self.tool),
            pinned_fingerprint: self.pinned_fingerprint,
            pinned_definition: loaded(self.pinned_definition),
            current_fingerprint: self.current_fingerprint,
            current_definition: loaded(self.current_definition),
            first_seen_ms: self.first_seen_ms,
            seen_ms: self.seen_ms,
            changed_ms: self.changed_ms,
            approved_ms: self.approved_ms,
        }
    }
}

macro_rules! mcp_pin_store {
    ($store:ident) => {
        #[async_trait]
        impl McpPinStore for $store {
            async fn observe_tools(
                &self,
                server: &str,
                scope: &str,
                seen: &[SeenTool<'_>],
                now_ms: i64,
            ) -> Result<Vec<PinnedTool>, StoreError> {
                let mut tx = self.pool().begin().await?;
                for t in seen {
                    // First sight pins; afterwards only the current definition moves, and
                    // `changed_ms` says since when it differs from the pin.
                    sqlx::query(
                        "INSERT INTO mcp_tool_pins (server, scope, tool, pinned_fingerprint, \
                         pinned_definition, current_fingerprint, current_definition, \
                         first_seen_ms, seen_ms, changed_ms, approved_ms) \
                         VALUES ($1, $6, $2, $3, $4, $3, $4, $5, $5, NULL, NULL) \
                         ON CONFLICT (server, scope, tool) DO UPDATE SET \
                         changed_ms = CASE \
                           WHEN excluded.current_fingerprint = mcp_tool_pins.pinned_fingerprint \
                             THEN NULL \
                           WHEN excluded.current_fingerprint = mcp_tool_pins.current_fingerprint \
                             THEN COALESCE(mcp_tool_pins.changed_ms, excluded.seen_ms) \
                           ELSE excluded.seen_ms END, \
                         current_fingerprint = excluded.current_fingerprint, \
                         current_definition = excluded.current_definition, \
                         seen_ms = excluded.seen_ms",
                    )
                    .bind($store::stored(server))
                    .bind($store::stored(t.tool))
                    .bind(t.fingerprint)
                    .bind($store::stored(t.definition))
                    .bind(now_ms)
                    .bind($store::stored(scope))
                    .execute(&mut *tx)
                    .await?;
                }
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT server, scope, tool, pinned_fingerprint FROM mcp_tool_pins \
                     WHERE server = $1 AND scope = $2",
                )
                .bind($store::stored(server))
                .bind($store::stored(scope))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(rows
                    .into_iter()
                    .map(|(server, scope, tool, fingerprint)| PinnedTool {
                        server: $store::loaded(server),
                        scope: $store::loaded(scope),
                        tool: $store::loaded(tool),
                        fingerprint,
                    })
                    .collect())
            }

            async fn pinned_tools(&self) -> Result<Vec<PinnedTool>, StoreError> {
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT server, scope, tool, pinned_fingerprint FROM mcp_tool_pins",
                )
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(server, scope, tool, fingerprint)| PinnedTool {
                        server: $store::loaded(server),
                        scope: $store::loaded(scope),
                        tool: $store::loaded(tool),
                        fingerprint,
                    })
                    .collect())
            }

            async fn tool_pins(
                &self,
                server: Option<&str>,
                scope: Option<&str>,
            ) -> Result<Vec<ToolPin>, StoreError> {
                // A filter left out matches every row (`$n IS NULL`).
                let rows: Vec<PinRow> = sqlx::query_as(&format!(
                    "SELECT {PIN_COLUMNS} FROM mcp_tool_pins \
                     WHERE ($1 IS NULL OR server = $1) AND ($2 IS NULL OR scope = $2) \
                     ORDER BY server, scope, tool"
                ))
                .bind(server.map($store::stored))
                .bind(scope.map($store::stored))
                .fetch_all(self.pool())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| r.into_pin($store::loaded))
                    .collect())
            }

            async fn approve_tool(
                &self,
                server: &str,
                scope: &str,
                tool: &str,
                fingerprint: &str,
                now_ms: i64,
            ) -> Result<Approval, StoreError> {
                let done = sqlx::query(
                    "UPDATE mcp_tool_pins SET pinned_fingerprint = current_fingerprint, \
                     pinned_definition = current_definition, changed_ms = NULL, \
                     approved_ms = $4 \
                     WHERE server = $1 AND tool = $2 AND current_fingerprint = $3 \
                     AND scope = $5",
                )
                .bind($store::stored(server))
                .bind($store::stored(tool))
                .bind(fingerprint)
                .bind(now_ms)
                .bind($store::stored(scope))
                .execute(self.pool())
                .await?;
                let row: Option<PinRow> = sqlx::query_as(&format!(
                    "SELECT {PIN_COLUMNS} FROM mcp_tool_pins \
                     WHERE server = $1 AND tool = $2 AND scope = $3"
                ))
                .bind($store::stored(server))
                .bind($store::stored(tool))
                .bind($store::stored(scope))
                .fetch_optional(self.pool())
                .await?;
                Ok(match row.map(|r| r.into_pin($store::loaded)) {
                    None => Approval::Unknown,
                    Some(pin) if done.rows_affected() == 1 => Approval::Approved(pin),
                    Some(pin) => Approval::Stale {
                        current_fingerprint: pin.current_fingerprint,
                    },
                })
            }

            async fn forget_tool_pins(&self, server: &str, scope: &str) -> Result<u64, StoreError> {
                if scope == SHARED {
                    return Ok(0);
                }
                let done = sqlx::query("DELETE FROM mcp_tool_pins WHERE server = $1 AND scope = $2")
                    .bind($store::stored(server))
                    .bind($store::stored(scope))
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

mcp_pin_store!(SqliteStore);
mcp_pin_store!(PostgresStore);

//! [`GrantCache`]: users' OAuth grants for upstream MCP servers, opened and kept in memory for
//! a short while (`crate::mcp_upstream_oauth` reads and writes them), so the hot path does not
//! read the database for a grant it has just read. Tokens live here in memory only; nothing
//! here is `Debug` with a token in it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an opened grant (or the absence of one) is used without reading the database again:
/// the bound on how long a grant deleted or replaced on another replica may still be used here.
pub const GRANT_TTL: Duration = Duration::from_secs(10);
/// Most (user, server) grant lookups kept in memory at once.
pub const GRANT_CACHE_ENTRIES: u64 = 10_000;

/// Users' grants by (user, server), opened, as last read or written by this replica (`None`:
/// no grant). Kept in memory only; its `Debug` shows no token.
#[derive(Clone)]
pub struct GrantCache {
    entries: moka::future::Cache<(String, String), Option<Arc<Tokens>>>,
}

impl Default for GrantCache {
    fn default() -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(GRANT_CACHE_ENTRIES)
                .time_to_live(GRANT_TTL)
                .build(),
        }
    }
}

impl std::fmt::Debug for GrantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl GrantCache {
    pub(crate) async fn get(&self, user: &str, server: &str) -> Option<Option<Arc<Tokens>>> {
        self.entries
            .get(&(user.to_owned(), server.to_owned()))
            .await
    }

    pub(crate) async fn put(&self, user: &str, server: &str, tokens: Option<Arc<Tokens>>) {
        self.entries
            .insert((user.to_owned(), server.to_owned()), tokens)
            .await;
    }

    /// Records that `user` has no grant for `server` any more (deleted on this replica).
    pub async fn forget(&self, user: &str, server: &str) {
        self.put(user, server, None).await;
    }
}

/// The tokens of a grant, sealed as JSON. Deliberately not `Debug`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Tokens {
    /// The access token.
    pub(crate) access_token: String,
    /// The refresh token, if the server gave one.
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    /// When the access token expires, Unix milliseconds.
    #[serde(default)]
    pub(crate) expires_ms: Option<i64>,
}

//! What the gateway keeps in memory as the OAuth client of upstream MCP servers
//! (`crate::mcp_upstream_oauth` reads and writes it), owned by each gateway's state:
//! [`GrantCache`], users' grants opened and kept a short while, so the hot path does not read
//! the database for a grant it has just read; and [`OAuthClientMemory`], the servers'
//! discovered endpoints, the one-refresh-at-a-time locks, the tokens obtained by token exchange
//! and the HTTP client. Tokens live here in memory only; nothing here is `Debug` with a token
//! in it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
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

    /// Drops every grant kept, so each is read from the database again: after a tenancy
    /// change (a user disabled, whose grants the store deleted, here or on another replica).
    pub fn clear(&self) {
        self.entries.invalidate_all();
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

/// How a client authenticates at a token endpoint (RFC 6749 §2.3.1; RFC 8414's
/// `token_endpoint_auth_methods_supported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form.
    Post,
}

/// A server's authorization and token endpoints, and how to authenticate at the latter.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) authorize: String,
    pub(crate) token: String,
    pub(crate) auth: ClientAuth,
}

/// One refresh or exchange at a time per grant (or caller token) and server.
pub(crate) type Flight = Arc<tokio::sync::Mutex<()>>;

/// The HTTP client of token and metadata requests.
pub(crate) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A token exchange's result, kept per caller token and server until near its expiry.
pub(crate) struct Exchanged {
    pub(crate) token: String,
    pub(crate) expires_ms: Option<i64>,
}

/// What one gateway keeps across requests as the OAuth client of upstream MCP servers: the
/// servers' endpoints discovered from their metadata (by server URL), the refresh and exchange
/// locks, the exchanged tokens (by digest of the caller's token and server; obtained again
/// from the caller's token, so never stored) and the HTTP client, made on first use. Its
/// `Debug` shows counts only.
#[derive(Default)]
pub struct OAuthClientMemory {
    pub(crate) endpoints: Mutex<HashMap<String, Endpoints>>,
    pub(crate) flights: Mutex<HashMap<(String, String), Flight>>,
    pub(crate) exchanged: Mutex<HashMap<(String, String), Exchanged>>,
    pub(crate) client: OnceLock<Option<HttpClient>>,
}

impl std::fmt::Debug for OAuthClientMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClientMemory")
            .field("endpoints", &self.endpoints.lock().len())
            .field("exchanged", &self.exchanged.lock().len())
            .finish()
    }
}

//! The trust of MCP sessions: whether a session has received untrusted tool output, and which
//! call first brought it — the state behind the MCP guardrails (`mcp_guard`).
//!
//! A session's taint is written once and never removed: the first taint stays. It lives behind
//! [`TaintStore`]: [`MemoryTaints`] (one replica; bounded, a session forgotten after a day
//! without a call) or, with `PORTCULLIS_REDIS_URL`, [`RedisTaints`], shared by every replica: a
//! key per session, `portcullis:mcp:taint:<session>`, holding `<tool>\n<call id>`, set with
//! `NX` (so the first taint wins across replicas) and a TTL renewed by every read that finds
//! it. A taint seen once is kept in this replica's memory too (for an hour, then read and
//! renewed again), so a tainted session mostly costs no round trip. When Redis cannot be read, the session counts as tainted (never less
//! taint than there is).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

/// How long a session's taint is kept after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// How long a replica trusts its copy of a taint kept in Redis before reading (and renewing)
/// it again.
const RENEW_AFTER: Duration = Duration::from_secs(3600);
/// Sessions one replica keeps in memory.
const MAX_SESSIONS: u64 = 100_000;
/// The Redis key prefix.
const KEY_PREFIX: &str = "portcullis:mcp:taint:";

/// What first tainted a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTaint {
    /// The tool whose output tainted it (`<server>__<tool>`), empty when unknown.
    pub tool: String,
    /// The call (its JSON-RPC id), empty when unknown.
    pub call_id: String,
}

/// Where sessions' taints live.
#[async_trait]
pub trait TaintStore: Send + Sync + std::fmt::Debug {
    /// What tainted `session`, if anything did.
    async fn taint_of(&self, session: &str) -> Option<Arc<SessionTaint>>;
    /// Taints `session` by `taint` unless it is tainted already; returns the session's taint
    /// (the first one).
    async fn taint(&self, session: &str, taint: SessionTaint) -> Arc<SessionTaint>;
}

/// Taints in this replica's memory.
#[derive(Debug)]
pub struct MemoryTaints {
    sessions: moka::sync::Cache<String, Arc<SessionTaint>>,
}

impl Default for MemoryTaints {
    fn default() -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(SESSION_IDLE)
                .build(),
        }
    }
}

impl MemoryTaints {
    /// A cache of taints read from Redis: each entry lives `RENEW_AFTER` at most, so the next
    /// read goes to Redis and renews the key's TTL there while the session is in use.
    fn renewing() -> Self {
        Self {
            sessions: moka::sync::Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(RENEW_AFTER)
                .build(),
        }
    }

    fn get(&self, session: &str) -> Option<Arc<SessionTaint>> {
        self.sessions.get(session)
    }

    fn put(&self, session: &str, taint: SessionTaint) -> Arc<SessionTaint> {
        self.sessions
            .entry_by_ref(session)
            .or_insert_with(|| Arc::new(taint))
            .into_value()
    }
}

#[async_trait]
impl TaintStore for MemoryTaints {
    async fn taint_of(&self, session: &str) -> Option<Arc<SessionTaint>> {
        self.get(session)
    }

    async fn taint(&self, session: &str, taint: SessionTaint) -> Arc<SessionTaint> {
        self.put(session, taint)
    }
}

/// Taints in Redis, shared by the replicas; those seen here kept in memory as well.
#[derive(Debug)]
pub struct RedisTaints {
    redis: ConnectionManager,
    seen: MemoryTaints,
}

impl RedisTaints {
    /// Over `redis`.
    pub fn new(redis: ConnectionManager) -> Self {
        Self {
            redis,
            seen: MemoryTaints::renewing(),
        }
    }
}

fn encode(taint: &SessionTaint) -> String {
    format!("{}\n{}", taint.tool, taint.call_id)
}

fn decode(text: &str) -> SessionTaint {
    let (tool, call_id) = text.split_once('\n').unwrap_or((text, ""));
    SessionTaint {
        tool: tool.to_owned(),
        call_id: call_id.to_owned(),
    }
}

/// The taint a session is given when its state cannot be read.
fn unreadable() -> SessionTaint {
    SessionTaint {
        tool: String::new(),
        call_id: String::new(),
    }
}

#[async_trait]
impl TaintStore for RedisTaints {
    async fn taint_of(&self, session: &str) -> Option<Arc<SessionTaint>> {
        if let Some(taint) = self.seen.get(session) {
            return Some(taint);
        }
        let mut redis = self.redis.clone();
        let key = format!("{KEY_PREFIX}{session}");
        let read: Result<Option<String>, _> = redis::cmd("GETEX")
            .arg(&key)
            .arg("EX")
            .arg(SESSION_IDLE.as_secs())
            .query_async(&mut redis)
            .await;
        match read {
            Ok(Some(text)) => Some(self.seen.put(session, decode(&text))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "cannot read an MCP session's trust: counted as tainted");
                Some(Arc::new(unreadable()))
            }
        }
    }

    async fn taint(&self, session: &str, taint: SessionTaint) -> Arc<SessionTaint> {
        if let Some(first) = self.seen.get(session) {
            return first;
        }
        let mut redis = self.redis.clone();
        let key = format!("{KEY_PREFIX}{session}");
        // SET NX GET: the value already there, if any (Redis 7).
        let written: Result<Option<String>, _> = redis::cmd("SET")
            .arg(&key)
            .arg(encode(&taint))
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(SESSION_IDLE.as_secs())
            .query_async(&mut redis)
            .await;
        match written {
            Ok(Some(earlier)) => self.seen.put(session, decode(&earlier)),
            Ok(None) => self.seen.put(session, taint),
            Err(e) => {
                // Not shared: this replica still holds the session tainted.
                tracing::error!(error = %e, "cannot record an MCP session's taint in Redis");
                self.seen.put(session, taint)
            }
        }
    }
}

/// The store in use: in memory until [`SessionTrust::share`] moves it to Redis at start.
#[derive(Debug)]
pub struct SessionTrust {
    store: std::sync::OnceLock<Arc<dyn TaintStore>>,
    memory: Arc<MemoryTaints>,
}

impl Default for SessionTrust {
    fn default() -> Self {
        Self {
            store: std::sync::OnceLock::new(),
            memory: Arc::new(MemoryTaints::default()),
        }
    }
}

impl SessionTrust {
    /// Shares sessions' trust through `redis` from now on.
    pub fn share(&self, redis: ConnectionManager) {
        let _ = self.store.set(Arc::new(RedisTaints::new(redis)));
    }

    /// The store.
    pub fn store(&self) -> &dyn TaintStore {
        match self.store.get() {
            Some(store) => store.as_ref(),
            None => self.memory.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_taint_stays() {
        let store = MemoryTaints::default();
        assert!(store.taint_of("s1").await.is_none());
        let first = SessionTaint {
            tool: "mail__read".into(),
            call_id: "1".into(),
        };
        let later = SessionTaint {
            tool: "web__fetch".into(),
            call_id: "2".into(),
        };
        assert_eq!(*store.taint("s1", first.clone()).await, first);
        assert_eq!(*store.taint("s1", later).await, first);
        assert_eq!(store.taint_of("s1").await.as_deref(), Some(&first));
        assert!(store.taint_of("s2").await.is_none());
    }

    #[test]
    fn taints_round_trip_through_their_text() {
        let t = SessionTaint {
            tool: "a__b".into(),
            call_id: "\"x\ny\"".into(),
        };
        assert_eq!(decode(&encode(&t)), t);
        assert_eq!(decode("only").tool, "only");
    }
}

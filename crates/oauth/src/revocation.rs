//! Revoked access tokens, in memory: the hot path checks a set instead of the database. The
//! set is reloaded from the store every second (so revocations on other replicas take
//! effect within about that), and revocations made here are added at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use portcullis_store::StoreError;
use portcullis_store::oauth::OAuthStore;

/// The revoked `jti`s a replica knows of.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    /// As last loaded from the store.
    loaded: RwLock<HashSet<String>>,
    /// Revoked here, with the token's expiry (Unix ms): kept until expiry so a reload that
    /// raced the revocation cannot lose it.
    local: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Whether `jti` is revoked.
    pub(crate) fn contains(&self, jti: &str) -> bool {
        self.loaded.read().contains(jti) || self.local.read().contains_key(jti)
    }

    /// Records a revocation made on this replica.
    pub(crate) fn add_local(&self, jti: String, expires_ms: i64) {
        self.local.write().insert(jti, expires_ms);
    }

    /// Replaces the loaded set with the store's current one.
    pub(crate) async fn reload(
        &self,
        store: &Arc<dyn OAuthStore>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let jtis: HashSet<String> = store
            .revoked_access_tokens(now_ms)
            .await?
            .into_iter()
            .collect();
        let n = jtis.len();
        *self.loaded.write() = jtis;
        self.local.write().retain(|_, expires| *expires > now_ms);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_revocations_are_seen_at_once() {
        let r = Revocations::default();
        assert!(!r.contains("a"));
        r.add_local("a".to_owned(), i64::MAX);
        assert!(r.contains("a"));
    }
}

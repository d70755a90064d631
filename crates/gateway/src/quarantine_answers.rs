//! The quarantine's settings and the answers its model already gave, kept in memory (bounded,
//! with a time to live) by tool, result digest and questions digest, since clients resend
//! every tool result on every turn. Built with each configuration (`crate::reload::Runtime`);
//! used by `crate::quarantine`.

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::Quarantine;

/// Answers kept at most.
const CACHE_ENTRIES: u64 = 10_000;
/// How long an answer is kept.
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// The quarantine settings and the answers already given.
pub struct Quarantiner {
    settings: Quarantine,
    answers: moka::sync::Cache<String, Arc<str>>,
}

impl std::fmt::Debug for Quarantiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantiner")
            .field("settings", &self.settings)
            .field("answers", &self.answers.entry_count())
            .finish()
    }
}

impl Quarantiner {
    /// A quarantiner for `settings`, with an empty answer cache.
    pub fn new(settings: Quarantine) -> Self {
        Self {
            settings,
            answers: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// One for the configuration's `quarantine` block, when there is one.
    pub fn from_config(settings: Option<&Quarantine>) -> Option<Arc<Self>> {
        settings.map(|s| Arc::new(Self::new(s.clone())))
    }

    /// The quarantine model's name.
    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// The settings.
    pub fn settings(&self) -> &Quarantine {
        &self.settings
    }

    /// The answers kept under `key`.
    pub fn answer(&self, key: &str) -> Option<Arc<str>> {
        self.answers.get(key)
    }

    /// Keeps `answers` under `key`.
    pub fn keep(&self, key: String, answers: Arc<str>) {
        self.answers.insert(key, answers);
    }
}

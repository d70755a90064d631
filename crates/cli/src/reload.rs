//! Reloading the configuration while serving: `SIGHUP` re-reads it at once, and a watcher on
//! the file's directory re-reads it when it changes — written in place, replaced by a rename
//! (as editors save) or swapped behind the `..data` symlink of a Kubernetes ConfigMap. A file
//! `portcullis check` would refuse changes nothing and is logged with check's messages; a valid
//! one is applied by the gateway, which names what changed and what needs a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, Issue, ProcessEnv, Source};
use portcullis_gateway::AppState;
use tokio::sync::Mutex;

/// How long the directory must stay quiet after a change before the file is read (an editor or
/// the kubelet writes in several steps).
const SETTLE: Duration = Duration::from_millis(300);

/// Re-reads and applies the configuration `serve` started with.
pub struct Reloader {
    state: Arc<AppState>,
    /// The file, or `None` when the configuration comes from the environment alone.
    path: Option<PathBuf>,
    /// `--listen`, which wins over the file's `listen` on every reload too.
    listen: Option<SocketAddr>,
    /// The file's text when last read: a change that leaves it the same is not a reload.
    last_text: Mutex<Option<Vec<u8>>>,
}

impl Reloader {
    /// A reloader for `config`, which `state` serves; `listen` is the `--listen` flag.
    pub fn new(state: Arc<AppState>, config: &Config, listen: Option<SocketAddr>) -> Arc<Self> {
        let path = match &config.source {
            Source::File(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            Source::Environment => None,
        };
        let last_text = path.as_deref().and_then(|p| std::fs::read(p).ok());
        Arc::new(Self {
            state,
            path,
            listen,
            last_text: Mutex::new(last_text),
        })
    }

    /// Reloads on every `SIGHUP`, and when the file changes.
    pub fn spawn(self: &Arc<Self>) {
        self.spawn_hangup();
        if self.path.is_some() {
            self.spawn_watcher();
        }
    }

    fn spawn_hangup(self: &Arc<Self>) {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hangups) => {
                let this = self.clone();
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("received SIGHUP: reloading the configuration");
                        this.reload(true).await;
                    }
                });
            }
            Err(e) => tracing::warn!("cannot handle SIGHUP ({e}); it will stop the gateway"),
        }
    }

    fn spawn_watcher(self: &Arc<Self>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name = path.file_name().map(|n| n.to_owned());
        let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            // The file itself, or a ConfigMap's `..data` swap (the file is a symlink into it).
            let concerns_file = event.paths.iter().any(|p| {
                p.file_name().is_some_and(|n| {
                    Some(n) == name.as_deref() || n.to_string_lossy().starts_with("..")
                })
            });
            if concerns_file {
                let _ = changed.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for changes ({e}); reload with SIGHUP",
                    path.display()
                );
                return;
            }
        };
        if let Err(e) =
            notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive)
        {
            tracing::warn!(
                "cannot watch {} for changes ({e}); reload with SIGHUP",
                dir.display()
            );
            return;
        }
        tracing::info!(
            "watching {} for changes (SIGHUP reloads too)",
            path.display()
        );
        let this = self.clone();
        tokio::spawn(async move {
            // Watching lasts as long as this task.
            let _watcher = watcher;
            while changes.recv().await.is_some() {
                while let Ok(Some(())) = tokio::time::timeout(SETTLE, changes.recv()).await {}
                this.reload(false).await;
            }
        });
    }

    /// Reads, validates and applies the configuration. Unless `always`, a file whose text is
    /// the one last read is left alone.
    pub async fn reload(&self, always: bool) {
        let mut last_text = self.last_text.lock().await;
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_config(path.as_deref())).await;
        let Ok((text, loaded)) = read else {
            tracing::error!("reading the configuration failed; nothing changed");
            return;
        };
        if !always && text.is_some() && *last_text == text {
            return;
        }
        *last_text = text;
        let mut config = match loaded {
            Ok(config) => config,
            Err(issues) => {
                let name = self
                    .path
                    .as_deref()
                    .map_or_else(|| "the environment".to_owned(), |p| p.display().to_string());
                // The lines `portcullis check` prints.
                let mut message = format!(
                    "{name}: invalid configuration ({} problem{})",
                    issues.len(),
                    if issues.len() == 1 { "" } else { "s" }
                );
                for issue in &issues {
                    message.push_str(&format!("\n  {issue}"));
                }
                tracing::error!(
                    "the configuration was not reloaded, the gateway keeps the one in force: {message}"
                );
                return;
            }
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        match self.state.reload(&config).await {
            Ok(summary) => {
                if summary.is_unchanged() {
                    tracing::info!("configuration reloaded: nothing changed");
                    return;
                }
                if !summary.applied.is_empty() {
                    tracing::info!(
                        changed = %summary.applied.join(","),
                        "configuration reloaded: {}",
                        summary.applied.join(", ")
                    );
                }
                if !summary.needs_restart.is_empty() {
                    tracing::warn!(
                        "configuration changes not applied, they need a restart: {} (the gateway \
                         keeps running with the values it started with)",
                        summary.needs_restart.join(", ")
                    );
                }
            }
            Err(e) => tracing::error!(
                "the configuration was not reloaded, the gateway keeps the one in force: {e}"
            ),
        }
    }
}

/// The file's text (to tell a real change) and the configuration validated as `portcullis
/// check` validates it.
fn read_config(path: Option<&Path>) -> (Option<Vec<u8>>, Result<Config, Vec<Issue>>) {
    match path {
        Some(p) => (
            std::fs::read(p).ok(),
            portcullis_config::load_file(p, &ProcessEnv),
        ),
        None => (
            None,
            portcullis_config::load(None, &ProcessEnv).map_err(|e| e.into_issues()),
        ),
    }
}

//! Reloading the configuration while serving: `SIGHUP` re-reads it at once, and a watcher that
//! polls the file every [`POLL`] re-reads it when its content changes — written in place,
//! replaced by a rename (as editors save), edited behind a symlink, or swapped behind the
//! `..data` symlink of a Kubernetes ConfigMap. A file
//! `portcullis check` would refuse changes nothing and is logged with check's messages; a valid
//! one is applied by the gateway, which names what changed and what needs a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{Config, Issue, ProcessEnv, Source};
use portcullis_gateway::AppState;
use tokio::sync::Mutex;

/// How often the watcher reads the file.
const POLL: Duration = Duration::from_secs(1);
/// How long the file must stay unchanged after a change before it is read (an editor or the
/// kubelet writes in several steps).
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
        tracing::info!(
            "watching {} for changes (SIGHUP reloads too)",
            path.display()
        );
        let this = self.clone();
        tokio::spawn(async move {
            // The file is read every `POLL` (through any symlink) and compared with the text
            // last applied — not watched with inotify, which, on the file's directory, would
            // wake the gateway on every write of an embedded database kept beside it.
            let mut ticks = tokio::time::interval(POLL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let read = path.clone();
                let Ok(Ok(text)) = tokio::task::spawn_blocking(move || std::fs::read(read)).await
                else {
                    // Missing for a moment (being replaced) or unreadable: looked at again later.
                    continue;
                };
                if this.last_text.lock().await.as_deref() == Some(text.as_slice()) {
                    continue;
                }
                // Changed: let the writer finish (an editor or the kubelet writes in steps).
                tokio::time::sleep(SETTLE).await;
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

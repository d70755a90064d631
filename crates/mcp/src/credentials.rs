//! Upstream instances that carry one user's or team's own credentials for a server.
//!
//! A server's shared connection ([`crate::hub::Server::upstream`]) carries only what the
//! operator configured. A caller with a credential of their own (or their team's) for the
//! server gets an instance of their own: for an HTTP server a connection whose requests carry
//! the credential's headers on top of the configured ones, for a stdio server a process of its
//! own whose environment has the credential's variables on top of the configured ones.
//! Instances are keyed by server and credential id — a credential belongs to exactly one
//! user or team, so an instance (and the secret in it) never serves another tenant — started
//! on first use and shut down once idle for [`Credentialed::idle`]. Lists are still read
//! through the shared connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{ServerSpec, Transport};
use crate::hub::Server;
use crate::upstream::Upstream;

/// How long an instance may sit unused before it is shut down, unless configured.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// What a credential adds to a server's configuration.
#[derive(Clone, Copy)]
pub enum Overlay<'a> {
    /// Headers of an HTTP server.
    Headers(&'a BTreeMap<String, String>),
    /// Environment variables of a stdio server.
    Env(&'a BTreeMap<String, String>),
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overlay::Headers(h) => write!(f, "Headers({:?})", h.keys().collect::<Vec<_>>()),
            Overlay::Env(e) => write!(f, "Env({:?})", e.keys().collect::<Vec<_>>()),
        }
    }
}

/// The overlay does not fit the server's transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MCP server `{server}` takes {expected}")]
pub struct Mismatch {
    /// The server.
    pub server: String,
    /// `headers` or `env`.
    pub expected: &'static str,
}

/// Makes a connection to a server as configured.
pub type Connect = Box<dyn Fn(&ServerSpec) -> Arc<dyn Upstream> + Send + Sync>;

/// The instance of one credential.
#[derive(Debug)]
struct Instance {
    /// The server's configuration it was made from.
    base: ServerSpec,
    upstream: Arc<dyn Upstream>,
    used: Instant,
}

/// The per-credential instances of every server.
pub struct Credentialed {
    instances: Instances,
    idle: Duration,
    connect: Connect,
}

impl std::fmt::Debug for Credentialed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentialed")
            .field("instances", &lock(&self.instances).len())
            .field("idle", &self.idle)
            .finish()
    }
}

impl Default for Credentialed {
    fn default() -> Self {
        Self::new(DEFAULT_IDLE, Box::new(crate::hub::connect))
    }
}

impl Credentialed {
    /// Instances made by `connect`, shut down after `idle` unused.
    pub fn new(idle: Duration, connect: Connect) -> Self {
        Self {
            instances: std::sync::Mutex::new(HashMap::new()),
            idle,
            connect,
        }
    }

    /// How long an instance may sit unused.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The instance of credential `id` for `server`, started now if there is none. Instances
    /// idle for too long are shut down on the way.
    pub fn upstream(
        &self,
        server: &Server,
        id: &Arc<str>,
        overlay: Overlay<'_>,
    ) -> Result<Arc<dyn Upstream>, Mismatch> {
        let now = Instant::now();
        let mut gone = Vec::new();
        let upstream = {
            let mut instances = lock(&self.instances);
            instances.retain(|_, i| {
                let keep = now.duration_since(i.used) < self.idle;
                if !keep {
                    gone.push(i.upstream.clone());
                }
                keep
            });
            let key = (server.name().to_owned(), id.clone());
            match instances.get_mut(&key) {
                Some(i) if i.base == server.spec => {
                    i.used = now;
                    i.upstream.clone()
                }
                // None yet, or one made for an older configuration of the server: replaced.
                _ => {
                    let spec = overlaid(&server.spec, overlay)?;
                    let upstream = (self.connect)(&spec);
                    if let Some(old) = instances.insert(
                        key,
                        Instance {
                            base: server.spec.clone(),
                            upstream: upstream.clone(),
                            used: now,
                        },
                    ) {
                        gone.push(old.upstream);
                    }
                    upstream
                }
            }
        };
        shut_down(gone);
        Ok(upstream)
    }

    /// Whether credential `id` of `server` has an instance running now.
    pub fn is_running(&self, server: &str, id: &str) -> bool {
        self.lock_all()
            .keys()
            .any(|(s, i)| s == server && &**i == id)
    }

    /// Instances of `server` running now.
    pub fn running(&self, server: &str) -> usize {
        self.lock_all().keys().filter(|(s, _)| s == server).count()
    }

    /// Shuts down every instance.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.lock_all().drain().map(|(_, i)| i.upstream).collect();
        for u in all {
            u.shutdown().await;
        }
    }
}

type Instances = std::sync::Mutex<HashMap<(String, Arc<str>), Instance>>;

/// The map, even after a panic while it was held (it holds no invariant a panic could break).
fn lock(m: &Instances) -> std::sync::MutexGuard<'_, HashMap<(String, Arc<str>), Instance>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Credentialed {
    fn lock_all(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Arc<str>), Instance>> {
        lock(&self.instances)
    }
}

/// Shuts instances down in the background (stdio processes are killed as they drop, too).
fn shut_down(gone: Vec<Arc<dyn Upstream>>) {
    if gone.is_empty() {
        return;
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            for u in gone {
                u.shutdown().await;
            }
        });
    }
}

/// `spec` with `overlay`'s values on top of the configured ones.
fn overlaid(spec: &ServerSpec, overlay: Overlay<'_>) -> Result<ServerSpec, Mismatch> {
    let mut spec = spec.clone();
    let name = spec.name.clone();
    let mismatch = |expected| Mismatch {
        server: name.clone(),
        expected,
    };
    match (&mut spec.transport, overlay) {
        (Transport::Stdio(stdio), Overlay::Env(env)) => {
            stdio
                .env
                .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        (Transport::StreamableHttp(http) | Transport::Sse(http), Overlay::Headers(headers)) => {
            for (name, value) in headers {
                // Header names are case-insensitive: the credential's replaces the configured.
                http.headers.retain(|k, _| !k.eq_ignore_ascii_case(name));
                http.headers.insert(name.clone(), value.clone());
            }
        }
        (Transport::Stdio(_), Overlay::Headers(_)) => return Err(mismatch("`env`")),
        (_, Overlay::Env(_)) => return Err(mismatch("`headers`")),
    }
    Ok(spec)
}

//! Upstream instances that carry one user's or team's own credentials for a server.
//!
//! A server's shared connection ([`crate::hub::Server::upstream`]) carries only what the
//! operator configured. A caller with a credential of their own (or their team's) for the
//! server gets an instance of their own: for an HTTP server a connection whose requests carry
//! the credential's headers on top of the configured ones, for a stdio server a process of its
//! own whose environment has the credential's variables on top of the configured ones.
//! Instances are keyed by server and credential id — a credential belongs to exactly one
//! user or team, so an instance (and the secret in it) never serves another tenant — started
//! on first use and shut down once idle for [`Credentialed::idle`]. An instance is a
//! [`Server`] of its own: what its owner lists is read through it and kept in its own lists,
//! dropped when the instance says they changed.

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
    /// The instance, with the credential's values in its configuration and its own lists.
    server: Arc<Server>,
    used: Instant,
}

/// The per-credential instances of every server.
pub struct Credentialed {
    instances: Arc<Instances>,
    idle: Duration,
    connect: Connect,
    /// Whether the background sweep of idle instances runs.
    sweeping: std::sync::atomic::AtomicBool,
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
            instances: Arc::new(std::sync::Mutex::new(HashMap::new())),
            idle,
            connect,
            sweeping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How long an instance may sit unused.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The connection of credential `id`'s instance of `server` (see [`Credentialed::instance`]).
    pub fn upstream(
        &self,
        server: &Server,
        id: &Arc<str>,
        overlay: Overlay<'_>,
    ) -> Result<Arc<dyn Upstream>, Mismatch> {
        Ok(self.instance(server, id, overlay)?.upstream.clone())
    }

    /// The instance of credential `id` for `server`, started now if there is none: a server
    /// of the same name whose connection carries the credential and whose lists are its own.
    /// Instances idle for too long are shut down on the way, and by a sweep every half idle
    /// period.
    /// Its tools are pinned in the scope `id` (`crate::pins`).
    pub fn instance(
        &self,
        server: &Server,
        id: &Arc<str>,
        overlay: Overlay<'_>,
    ) -> Result<Arc<Server>, Mismatch> {
        self.instance_in(server, id, id, overlay)
    }

    /// [`Credentialed::instance`], its tools pinned in `scope`: the identity the instance
    /// serves, for an `id` that changes while that identity stays (as with a token that is
    /// refreshed).
    pub fn instance_in(
        &self,
        server: &Server,
        id: &Arc<str>,
        scope: &Arc<str>,
        overlay: Overlay<'_>,
    ) -> Result<Arc<Server>, Mismatch> {
        let now = Instant::now();
        let mut gone = sweep(&self.instances, self.idle, now);
        let upstream = {
            let mut instances = lock(&self.instances);
            let key = (server.name().to_owned(), id.clone());
            match instances.get_mut(&key) {
                Some(i) if i.base == server.spec => {
                    i.used = now;
                    i.server.clone()
                }
                // None yet, or one made for an older configuration of the server: replaced.
                _ => {
                    let spec = overlaid(&server.spec, overlay)?;
                    let upstream = (self.connect)(&spec);
                    let instance = Server::start_in(spec, upstream, scope.clone());
                    if let Some(old) = instances.insert(
                        key,
                        Instance {
                            base: server.spec.clone(),
                            server: instance.clone(),
                            used: now,
                        },
                    ) {
                        gone.push(old.server.upstream.clone());
                    }
                    instance
                }
            }
        };
        shut_down(gone);
        if !self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            spawn_sweeper(Arc::downgrade(&self.instances), self.idle);
        }
        Ok(upstream)
    }

    /// Whether credential `id` of `server` has an instance running now.
    pub fn is_running(&self, server: &str, id: &str) -> bool {
        self.lock_all()
            .keys()
            .any(|(s, i)| s == server && &**i == id)
    }

    /// Credential `id`'s instance of `server` if it is running now; never starts one, nor
    /// counts as a use.
    pub fn running_instance(&self, server: &str, id: &str) -> Option<Arc<Server>> {
        self.lock_all()
            .iter()
            .find(|((s, i), _)| s == server && &**i == id)
            .map(|(_, instance)| instance.server.clone())
    }

    /// The instances of `server` pinned in `scope` that are running now (an identity's, whatever
    /// token or credential each carries); never starts one, nor counts as a use. In the order
    /// of their ids, so two readings of the same instances compare equal.
    pub fn running_in_scope(&self, server: &str, scope: &str) -> Vec<Arc<Server>> {
        let mut found: Vec<(Arc<str>, Arc<Server>)> = self
            .lock_all()
            .iter()
            .filter(|((s, _), instance)| s == server && &*instance.server.scope == scope)
            .map(|((_, id), instance)| (id.clone(), instance.server.clone()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.into_iter().map(|(_, server)| server).collect()
    }

    /// Instances of `server` running now.
    pub fn running(&self, server: &str) -> usize {
        self.lock_all().keys().filter(|(s, _)| s == server).count()
    }

    /// Shuts down every instance.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self
            .lock_all()
            .drain()
            .map(|(_, i)| i.server.upstream.clone())
            .collect();
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

/// Takes out the instances unused for `idle` (and not serving a call, a list or a relayed
/// request now).
fn sweep(instances: &Instances, idle: Duration, now: Instant) -> Vec<Arc<dyn Upstream>> {
    let mut gone = Vec::new();
    lock(instances).retain(|_, i| {
        let keep = now.duration_since(i.used) < idle
            || Arc::strong_count(&i.server) > 1
            || Arc::strong_count(&i.server.upstream) > 1;
        if !keep {
            gone.push(i.server.upstream.clone());
        }
        keep
    });
    gone
}

/// Sweeps idle instances every half idle period (at least every second) until the instances
/// are gone.
fn spawn_sweeper(instances: std::sync::Weak<Instances>, idle: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let period = (idle / 2).max(Duration::from_secs(1));
    handle.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(instances) = instances.upgrade() else {
                return;
            };
            let gone = sweep(&instances, idle, Instant::now());
            drop(instances);
            for u in gone {
                u.shutdown().await;
            }
        }
    });
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use portcullis_core::config::Block;
    use serde_json::value::RawValue;

    use super::*;
    use crate::config::{McpConfig, RawMcp};
    use crate::hub::Hub;
    use crate::jsonrpc::{Id, Message};
    use crate::upstream::{Related, Reply, ServerInfo, Status, UpstreamError};

    /// An upstream that remembers the headers or environment it was made with.
    #[derive(Debug)]
    struct Fake {
        values: BTreeMap<String, String>,
        stopped: Arc<AtomicUsize>,
        notifications: tokio::sync::broadcast::Sender<Message>,
    }

    #[async_trait::async_trait]
    impl Upstream for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        async fn request(
            &self,
            _: &str,
            _: Option<&RawValue>,
            _: Option<Related>,
            _: Duration,
        ) -> Result<Reply, UpstreamError> {
            Ok(Reply::Result(crate::jsonrpc::raw(&self.values)))
        }
        async fn notify(&self, _: &str, _: Option<&RawValue>) -> Result<(), UpstreamError> {
            Ok(())
        }
        async fn respond(&self, _: Id, _: Reply) -> Result<(), UpstreamError> {
            Ok(())
        }
        fn info(&self) -> Option<Arc<ServerInfo>> {
            None
        }
        fn notifications(&self) -> tokio::sync::broadcast::Receiver<Message> {
            self.notifications.subscribe()
        }
        fn status(&self) -> Status {
            Status::Ready
        }
        async fn shutdown(&self) {
            self.stopped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn maker(stopped: Arc<AtomicUsize>, made: Arc<AtomicUsize>) -> Connect {
        Box::new(move |spec: &ServerSpec| {
            made.fetch_add(1, Ordering::Relaxed);
            let values = match &spec.transport {
                Transport::Stdio(s) => s.env.clone(),
                Transport::StreamableHttp(h) | Transport::Sse(h) => h.headers.clone(),
            };
            Arc::new(Fake {
                values,
                stopped: stopped.clone(),
                notifications: tokio::sync::broadcast::channel(1).0,
            }) as Arc<dyn Upstream>
        })
    }

    fn hub(yaml: &str) -> Hub {
        let raw: RawMcp = serde_saphyr::from_str(yaml).unwrap();
        let config = McpConfig::validate(raw, "mcp").unwrap();
        let stopped = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        Hub::new(&config, &*maker(stopped, made))
    }

    #[tokio::test(start_paused = true)]
    async fn one_instance_per_credential_with_its_values_stopped_when_idle() {
        let hub = hub(
            "servers:\n  gh:\n    url: http://127.0.0.1:9/mcp\n    headers: {X-Service: shared, Authorization: configured}\n",
        );
        let server = hub.server("gh").unwrap();
        let (stopped, made) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let pool = Credentialed::new(
            Duration::from_secs(60),
            maker(stopped.clone(), made.clone()),
        );
        let ann: BTreeMap<String, String> = [("authorization".to_owned(), "ann".to_owned())].into();
        let bob: BTreeMap<String, String> = [("x-token".to_owned(), "bob".to_owned())].into();
        let (ann_id, bob_id): (Arc<str>, Arc<str>) = ("cred-ann".into(), "cred-bob".into());

        let a = pool
            .upstream(server, &ann_id, Overlay::Headers(&ann))
            .unwrap();
        let again = pool
            .upstream(server, &ann_id, Overlay::Headers(&ann))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again), "one instance per credential");
        let b = pool
            .upstream(server, &bob_id, Overlay::Headers(&bob))
            .unwrap();
        assert_eq!(made.load(Ordering::Relaxed), 2);
        assert_eq!(pool.running("gh"), 2);

        // The fake's debug form shows what it was made with.
        let values = |u: &Arc<dyn Upstream>| format!("{u:?}");
        // The credential's header replaces the configured one of the same name; others stay.
        assert!(
            values(&a).contains("\"authorization\": \"ann\""),
            "{}",
            values(&a)
        );
        assert!(!values(&a).contains("configured"));
        assert!(values(&a).contains("X-Service"));
        assert!(values(&b).contains("\"x-token\": \"bob\"") && values(&b).contains("configured"));
        assert!(!values(&b).contains("ann"), "no secret of another owner");
        drop((a, again, b));

        // Env does not fit an HTTP server.
        let env: BTreeMap<String, String> = [("A".to_owned(), "b".to_owned())].into();
        assert!(
            pool.upstream(server, &"cred-x".into(), Overlay::Env(&env))
                .is_err()
        );

        // Idle instances are stopped by the sweep.
        tokio::time::sleep(Duration::from_secs(91)).await;
        tokio::task::yield_now().await;
        assert_eq!(pool.running("gh"), 0);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(stopped.load(Ordering::Relaxed), 2);
    }
}

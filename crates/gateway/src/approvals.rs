//! Approvals of held tool calls: the service the LLM path's judge and the MCP path call when a
//! tool policy holds a call (`call: approval` in a tainted context), its expiry and its signed
//! webhook. The admin API over it is `approvals_admin`; the rows are `portcullis_store`'s
//! `approvals`.
//!
//! **How an approved call proceeds: the agent repeats its request.** Nothing waits on a
//! decision, so autonomous agents never hang. A held call is withheld at once (the agent sees
//! a notice naming the approval's id) and recorded, bound to (session, the caller's subject,
//! tool, SHA-256 of the arguments' text). When an admin approves it (`POST
//! /admin/approvals/{id}`) before it expires, the next turn of the same caller in the same
//! session that emits the same call — same tool, byte-identical arguments — lets it pass,
//! once: the approval is then `used`. A call that is denied, or that expired (not decided, or
//! not used, within `approvals.ttl`, default 1 h), is withheld again; while its approval is
//! pending or denied, a repeat of the same call is withheld under the same id rather than
//! held again, so a looping agent does not flood the admins (once it expires, a repeat is held
//! anew).
//!
//! **One pending approval per call, across replicas.** The database keeps at most one pending
//! row per (session, subject, tool, arguments digest) (`ApprovalStore::hold_approval`): a
//! replica whose insert finds the same call already pending — held by another replica at the
//! same moment — takes that approval's id instead, tells no webhook, and counts
//! `portcullis_approvals{event="joined"}`.
//!
//! - [`Approvals::hold_confirmed`] (the MCP path) waits, at most [`HOLD_WAIT`], for the
//!   database to say which approval holds the call, so replicas answer with the same id; past
//!   that wait it answers with its own id and the write goes on.
//! - [`Approvals::hold`] (the LLM path, whose judge cannot wait) answers at once with its own
//!   id; if the write then finds the call pending under another id, this replica names that one
//!   from then on.
//! - Either way the row is written in the background (a failed write is logged and counted in
//!   `portcullis_approvals{event="write_failed"}`), then the webhook, if any, is told.
//! - [`Approvals::approved`] reads a session's open approvals for a caller in one query,
//!   refreshing what this replica knows of them (for `hold`'s repeats), and returns the
//!   approved ones not used yet. A database failure returns none: nothing passes unapproved.
//! - [`Approvals::consume`] marks one used: at once on this replica, in the database in the
//!   background (a conditional update, so it is used once).
//!
//! **Retention** (`approvals.retention`, default 7 days): [`Approvals::spawn_retention`] runs on
//! every replica, every half of the retention (at least every second, at most every minute),
//! and deletes in one statement the approvals used, denied or expired longer ago than that — a
//! denied one never before its expiry, since until then a repeat of its call is withheld under
//! its id; pending and approved ones that have not expired are never deleted. What it deletes
//! is counted in `portcullis_approvals{event="deleted"}`, a failed sweep in `sweep_failed`.
//!
//! **Webhook** (`approvals.webhook: {url, secret}`): each new held call is POSTed as JSON
//! (`{id, tool, arguments, arguments_truncated, arguments_sha256, identity, session, reason,
//! status, created_at, expires_at}`) with `x-portcullis-timestamp: <Unix seconds>` and
//! `x-portcullis-signature: sha256=<hex HMAC-SHA256 under the secret of "<timestamp>.<body>">`:
//! the receiver recomputes it over the raw body, compares in constant time, and refuses
//! timestamps more than a few minutes old, so a captured notification cannot be replayed
//! later. Each attempt has a 5 s limit; a transport failure, 429 or 5xx is tried again, up to
//! 3 attempts (each signed anew); at most 64 notifications are in flight, beyond which one is
//! dropped and counted. The secret is never logged.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::StatusCode;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_config::{ApprovalsConfig, WebhookConfig};
use portcullis_core::Identity;
use portcullis_store::{ApprovalRecord, ApprovalStatus, ApprovalStore, HeldApproval, OpenApproval};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::metrics::Metrics;

/// Longest arguments text kept; longer ones are cut (and flagged), their digest still over
/// the whole text.
pub const MAX_ARGUMENTS: usize = 64 * 1024;
/// Time limit of one webhook attempt.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Webhook attempts per notification.
const WEBHOOK_ATTEMPTS: u32 = 3;
/// Notifications in flight at once.
const WEBHOOK_IN_FLIGHT: usize = 64;
/// How long this replica counts a held call it recorded as known before the database shows
/// it (its write is in flight).
const LOCAL_GRACE_MS: i64 = 60_000;
/// Sessions whose approvals a replica keeps in memory.
const KNOWN_SESSIONS: u64 = 10_000;
/// How long [`Approvals::hold_confirmed`] waits for the database to say which approval holds
/// a call.
pub const HOLD_WAIT: Duration = Duration::from_secs(2);

/// A call held for a decision.
#[derive(Debug, Clone)]
pub struct HeldCall {
    /// The tool (as the model named it, or `<server>__<tool>` for MCP).
    pub tool: String,
    /// Its arguments, the JSON text as written.
    pub arguments: String,
    /// Hex SHA-256 of `arguments`.
    pub arguments_sha256: String,
    /// The caller.
    pub identity: Identity,
    /// The virtual key used, when not in `identity`.
    pub key_id: Option<String>,
    /// The conversation's session.
    pub session: String,
    /// Why it is held: the rule and what tainted the context.
    pub reason: String,
}

/// An approved call not used yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The approval's id.
    pub id: String,
    /// The tool.
    pub tool: String,
    /// Hex SHA-256 of the approved arguments.
    pub arguments_sha256: String,
}

/// What this replica knows of one approval of a session.
#[derive(Debug, Clone)]
struct Known {
    id: String,
    tool: String,
    arguments_sha256: String,
    status: ApprovalStatus,
    expires_ms: i64,
    /// Until when it is kept though the database does not show it (held here).
    local_until: Option<i64>,
}

impl Known {
    fn from_open(o: OpenApproval) -> Option<Self> {
        Some(Self {
            status: ApprovalStatus::parse(&o.status)?,
            id: o.id,
            tool: o.tool,
            arguments_sha256: o.arguments_sha256,
            expires_ms: o.expires_ms,
            local_until: None,
        })
    }
}

type SessionKey = (String, String);

/// The approvals service (in `AppState::approvals`).
pub struct Approvals {
    store: Arc<dyn ApprovalStore>,
    metrics: Arc<Metrics>,
    settings: ArcSwap<ApprovalsConfig>,
    /// Per (session, subject): the approvals this replica last read or held.
    known: moka::sync::Cache<SessionKey, Arc<Mutex<Vec<Known>>>>,
    /// Approvals used here, kept out of `approved` before their update lands.
    consumed: moka::sync::Cache<String, ()>,
    webhook: Arc<WebhookSender>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("settings", &self.settings.load())
            .field("known_sessions", &self.known.entry_count())
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// The service over `store`, counting in `metrics`, with `config`'s expiry and webhook.
    pub fn new(
        store: Arc<dyn ApprovalStore>,
        metrics: Arc<Metrics>,
        config: &ApprovalsConfig,
    ) -> Self {
        Self {
            store,
            metrics,
            settings: ArcSwap::from_pointee(config.clone()),
            known: moka::sync::Cache::builder()
                .max_capacity(KNOWN_SESSIONS)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            consumed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            webhook: Arc::new(WebhookSender::default()),
        }
    }

    /// Puts a reloaded configuration's expiry and webhook (for calls held from now) and its
    /// retention (from the next sweep) in force.
    pub fn configure(&self, config: &ApprovalsConfig) {
        self.settings.store(Arc::new(config.clone()));
    }

    /// How long a held call waits for a decision (and, approved, to be used).
    pub fn ttl(&self) -> Duration {
        self.settings.load().ttl
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ApprovalStore> {
        &self.store
    }

    /// Records a held call; returns its id at once (written in the background, never blocking
    /// the answer; a failed write is logged and counted in a metric). A repeat of a call whose
    /// approval is pending or denied, as far as this replica knows, returns that approval's
    /// id and records nothing. When the write finds the same call already pending (held by
    /// another replica at the same moment), this replica knows it by that approval's id from
    /// then on.
    pub fn hold(&self, call: HeldCall) -> String {
        self.begin_hold(call).0
    }

    /// [`Approvals::hold`], waiting (at most [`HOLD_WAIT`]) for the database to say which
    /// approval holds the call: this one, or the same call's pending approval another replica
    /// recorded first, whose id is then returned. Past the wait, or when the write fails, the
    /// id of [`Approvals::hold`].
    pub async fn hold_confirmed(&self, call: HeldCall) -> String {
        let (id, confirmed) = self.begin_hold(call);
        match confirmed {
            Some(confirmed) => match tokio::time::timeout(HOLD_WAIT, confirmed).await {
                Ok(Ok(held)) => held,
                _ => id,
            },
            None => id,
        }
    }

    /// The id a held call is answered with now and, when a row is being written for it, where
    /// the id the database settles on arrives.
    fn begin_hold(&self, call: HeldCall) -> (String, Option<oneshot::Receiver<String>>) {
        let now = now_ms();
        let key = (call.session.clone(), call.identity.subject.clone());
        let list = self.known.get_with(key, Default::default);
        let id = {
            let Ok(mut known) = list.lock() else {
                let id = new_id();
                let confirmed = self.hold_new(call, now, id.clone(), None);
                return (id, confirmed);
            };
            if let Some(k) = known.iter().find(|k| {
                k.tool == call.tool
                    && k.arguments_sha256 == call.arguments_sha256
                    && matches!(k.status, ApprovalStatus::Pending | ApprovalStatus::Denied)
                    && k.expires_ms > now
            }) {
                self.metrics.observe_approval("repeated");
                return (k.id.clone(), None);
            }
            let id = new_id();
            known.push(Known {
                id: id.clone(),
                tool: call.tool.clone(),
                arguments_sha256: call.arguments_sha256.clone(),
                status: ApprovalStatus::Pending,
                expires_ms: now + self.ttl_ms(),
                local_until: Some(now + LOCAL_GRACE_MS),
            });
            id
        };
        let confirmed = self.hold_new(call, now, id.clone(), Some(list));
        (id, confirmed)
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl().as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Writes a new held call under `id` in the background, then tells the webhook; if the
    /// same call is already pending under another id, renames it in `known` instead. The id
    /// in force is sent on the returned channel (none without a runtime).
    fn hold_new(
        &self,
        call: HeldCall,
        now: i64,
        id: String,
        known: Option<Arc<Mutex<Vec<Known>>>>,
    ) -> Option<oneshot::Receiver<String>> {
        let record = record(&id, call, now, self.ttl_ms());
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let hook = self.settings.load().webhook.clone();
        let sender = self.webhook.clone();
        let (tx, rx) = oneshot::channel();
        let spawned = spawn(async move {
            let held = match store.hold_approval(&record).await {
                Ok(held) => held,
                Err(e) => {
                    metrics.observe_approval("write_failed");
                    tracing::error!(approval = %record.id, error = %e, "cannot record a held tool call");
                    return;
                }
            };
            let _ = tx.send(held.id.clone());
            if held.created {
                metrics.observe_approval("held");
                if let Some(hook) = hook {
                    sender.send(&hook, &record, &metrics).await;
                }
            } else {
                metrics.observe_approval("joined");
                if let Some(known) = known {
                    rename(&known, &record.id, &held);
                }
            }
        });
        if !spawned {
            self.metrics.observe_approval("write_failed");
            tracing::error!(approval = %id, "cannot record a held tool call: no runtime");
            return None;
        }
        Some(rx)
    }

    /// Starts the retention sweep (see the module documentation); it ends with the service.
    pub fn spawn_retention(self: &Arc<Self>) {
        let service = Arc::downgrade(self);
        spawn(sweep_retention(service));
    }

    /// The approved, unexpired, unused approvals of `session` for `subject` (one query). On a
    /// database failure, none.
    pub async fn approved(&self, session: &str, subject: &str) -> Vec<Approved> {
        let now = now_ms();
        let rows = match self.store.open_approvals(session, subject, now).await {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.observe_approval("read_failed");
                tracing::error!(error = %e, "cannot read the approvals of a session");
                return Vec::new();
            }
        };
        let mut fresh: Vec<Known> = rows.into_iter().filter_map(Known::from_open).collect();
        let key = (session.to_owned(), subject.to_owned());
        let list = self.known.get_with(key, Default::default);
        if let Ok(mut list) = list.lock() {
            // Calls held here whose write may not have landed yet stay known.
            let held_here: Vec<Known> = list
                .iter()
                .filter(|k| {
                    k.local_until.is_some_and(|t| t > now) && !fresh.iter().any(|f| f.id == k.id)
                })
                .cloned()
                .collect();
            fresh.extend(held_here);
            *list = fresh.clone();
        }
        fresh
            .into_iter()
            .filter(|k| {
                k.status == ApprovalStatus::Approved
                    && k.expires_ms > now
                    && !self.consumed.contains_key(&k.id)
            })
            .map(|k| Approved {
                id: k.id,
                tool: k.tool,
                arguments_sha256: k.arguments_sha256,
            })
            .collect()
    }

    /// Where the approval `id` of `session` for `subject` stands, as this replica last knew
    /// (from [`Approvals::approved`] or [`Approvals::hold`]): for a notice saying a repeated
    /// call is still pending or was denied.
    pub fn status(&self, session: &str, subject: &str, id: &str) -> Option<ApprovalStatus> {
        if self.consumed.contains_key(id) {
            return Some(ApprovalStatus::Used);
        }
        let list = self.known.get(&(session.to_owned(), subject.to_owned()))?;
        let list = list.lock().ok()?;
        list.iter().find(|k| k.id == id).map(|k| {
            if k.expires_ms <= now_ms() {
                ApprovalStatus::Expired
            } else {
                k.status
            }
        })
    }

    /// Marks an approval used (once; background).
    pub fn consume(&self, id: &str) {
        self.consumed.insert(id.to_owned(), ());
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let id = id.to_owned();
        let spawned = spawn(async move {
            match store.use_approval(&id, now_ms()).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(approval = %id, "an approval used here was no longer approved")
                }
                Err(e) => {
                    metrics.observe_approval("use_failed");
                    tracing::error!(approval = %id, error = %e, "cannot mark an approval used");
                }
            }
        });
        if !spawned {
            self.metrics.observe_approval("use_failed");
        }
    }

    /// Forgets what this replica knew of the approvals of `session` for `subject` (after a
    /// decision made here), so [`Approvals::status`] and repeats go by the database again.
    pub fn forget(&self, session: &str, subject: &str) {
        self.known
            .invalidate(&(session.to_owned(), subject.to_owned()));
    }
}

/// The retention sweep's period for `retention`: half of it, from 1 s to 1 min.
fn sweep_period(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Deletes what the retention no longer keeps, every [`sweep_period`], for as long as the
/// service lives.
async fn sweep_retention(service: Weak<Approvals>) {
    loop {
        let period = match service.upgrade() {
            Some(s) => sweep_period(s.settings.load().retention),
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(s) = service.upgrade() else {
            return;
        };
        let retention = s.settings.load().retention;
        let now = now_ms();
        let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match s.store.delete_done_approvals(cutoff, now).await {
            Ok(0) => {}
            Ok(n) => {
                s.metrics.observe_approvals("deleted", n);
                tracing::debug!(deleted = n, "approvals past their retention deleted");
            }
            Err(e) => {
                s.metrics.observe_approval("sweep_failed");
                tracing::warn!(error = %e, "cannot delete approvals past their retention");
            }
        }
    }
}

/// In `known`, the approval `local` (this replica's id for a call) becomes `held` (the same
/// call's pending approval in the database).
fn rename(known: &Mutex<Vec<Known>>, local: &str, held: &HeldApproval) {
    let Ok(mut known) = known.lock() else {
        return;
    };
    if known.iter().any(|k| k.id == held.id) {
        known.retain(|k| k.id != local);
    } else if let Some(k) = known.iter_mut().find(|k| k.id == local) {
        k.id = held.id.clone();
        k.expires_ms = held.expires_ms;
    }
}

/// Runs `task` on the current runtime; `false` when there is none.
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(task);
            true
        }
        Err(_) => false,
    }
}

/// A fresh approval id: `apr_` and a UUIDv7, so ids sort by creation.
fn new_id() -> String {
    format!("apr_{}", uuid::Uuid::now_v7().simple())
}

/// The stored row of a call held at `now` under `id`.
fn record(id: &str, call: HeldCall, now: i64, ttl_ms: i64) -> ApprovalRecord {
    let (arguments, truncated) = cut(call.arguments, MAX_ARGUMENTS);
    let who = &call.identity;
    let identity = json!({
        "subject": who.subject,
        "auth_method": who.method.as_str(),
        "user": who.user,
        "team": who.team,
        "key_id": call.key_id.as_ref().or(who.key_id.as_ref()),
        "role": who.role.as_str(),
    });
    ApprovalRecord {
        id: id.to_owned(),
        tool: call.tool,
        arguments,
        arguments_truncated: truncated,
        arguments_sha256: call.arguments_sha256,
        subject: who.subject.clone(),
        identity: identity.to_string(),
        session: call.session,
        status: ApprovalStatus::Pending.as_str().to_owned(),
        reason: call.reason,
        created_ms: now,
        expires_ms: now.saturating_add(ttl_ms),
        decided_ms: None,
        decided_by: None,
        used_ms: None,
    }
}

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// RFC 3339 of Unix milliseconds.
fn rfc3339(ms: i64) -> Value {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// The status an approval shows at `now`: a pending or approved one past its expiry is
/// `expired`, whether or not the sweep marked it yet.
pub fn status_at(r: &ApprovalRecord, now: i64) -> &str {
    match r.status.as_str() {
        "pending" | "approved" if r.expires_ms <= now => "expired",
        s => s,
    }
}

/// An approval as the admin API and the webhook show it: `arguments` as JSON when the kept
/// text parses (else the text), `identity` as an object, times in RFC 3339.
pub fn view(r: &ApprovalRecord, now: i64) -> Value {
    let arguments = if r.arguments_truncated {
        Value::String(r.arguments.clone())
    } else {
        serde_json::from_str(&r.arguments).unwrap_or_else(|_| Value::String(r.arguments.clone()))
    };
    let identity: Value = serde_json::from_str(&r.identity).unwrap_or(Value::Null);
    json!({
        "id": r.id,
        "tool": r.tool,
        "arguments": arguments,
        "arguments_truncated": r.arguments_truncated,
        "arguments_sha256": r.arguments_sha256,
        "identity": identity,
        "session": r.session,
        "status": status_at(r, now),
        "reason": r.reason,
        "created_at": rfc3339(r.created_ms),
        "expires_at": rfc3339(r.expires_ms),
        "decided_at": r.decided_ms.map_or(Value::Null, rfc3339),
        "decided_by": r.decided_by,
        "used_at": r.used_ms.map_or(Value::Null, rfc3339),
    })
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends webhook notifications: one HTTP client, a bound on those in flight.
#[derive(Default)]
struct WebhookSender {
    client: OnceLock<Option<HttpClient>>,
    in_flight: OnceLock<Arc<tokio::sync::Semaphore>>,
}

impl WebhookSender {
    fn client(&self) -> Option<&HttpClient> {
        self.client
            .get_or_init(|| {
                let tls = portcullis_core::tls::client_config().ok()?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(WEBHOOK_TIMEOUT));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                Some(Client::builder(TokioExecutor::new()).build(https))
            })
            .as_ref()
    }

    /// Notifies `hook` of `record`: signed, with bounded attempts; never fails the caller.
    async fn send(&self, hook: &WebhookConfig, record: &ApprovalRecord, metrics: &Metrics) {
        let permits = self
            .in_flight
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(WEBHOOK_IN_FLIGHT)));
        let Ok(_permit) = permits.clone().try_acquire_owned() else {
            metrics.observe_approval("webhook_dropped");
            tracing::warn!(approval = %record.id, "approval webhook dropped: too many in flight");
            return;
        };
        let Some(client) = self.client() else {
            metrics.observe_approval("webhook_failed");
            tracing::error!("approval webhook: no TLS configuration");
            return;
        };
        let body = view(record, record.created_ms).to_string();
        let mut last = String::new();
        for attempt in 0..WEBHOOK_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let timestamp = now_ms() / 1000;
            let request = http::Request::post(hook.url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "portcullis-approvals")
                .header("x-portcullis-event", "approval.held")
                .header("x-portcullis-timestamp", timestamp.to_string())
                .header(
                    "x-portcullis-signature",
                    signature(hook.secret.expose(), timestamp, &body),
                )
                .body(Full::new(Bytes::from(body.clone())));
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    last = format!("invalid request: {e}");
                    break;
                }
            };
            match tokio::time::timeout(WEBHOOK_TIMEOUT, client.request(request)).await {
                Ok(Ok(response)) => {
                    let status = response.status();
                    if status.is_success() {
                        metrics.observe_approval("webhook_delivered");
                        return;
                    }
                    last = format!("answered {status}");
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        break;
                    }
                }
                Ok(Err(e)) => last = format!("failed: {e}"),
                Err(_) => last = "timed out".to_owned(),
            }
        }
        metrics.observe_approval("webhook_failed");
        tracing::warn!(approval = %record.id, outcome = %last, "approval webhook not delivered");
    }
}

/// `sha256=<hex HMAC-SHA256 under secret of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_arguments_are_cut_at_a_character_boundary() {
        let (kept, cut_) = cut("é".repeat(40_000), MAX_ARGUMENTS);
        assert!(cut_);
        assert!(kept.len() <= MAX_ARGUMENTS && kept.len() > MAX_ARGUMENTS - 2);
        assert_eq!(
            cut("{}".to_owned(), MAX_ARGUMENTS),
            ("{}".to_owned(), false)
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        // RFC 4231-style check against an independent computation.
        let s = signature("key-key-key-key-key", 1_700_000_000, r#"{"id":"apr_1"}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-key-key-key-key").unwrap();
        mac.update(br#"1700000000.{"id":"apr_1"}"#);
        assert_eq!(
            s,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_ne!(
            s,
            signature("key-key-key-key-key", 1_700_000_001, r#"{"id":"apr_1"}"#)
        );
    }
}

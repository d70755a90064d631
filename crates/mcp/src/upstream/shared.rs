//! What every transport shares: request ids, the table of requests waiting for their reply,
//! progress tokens, routing what the server sends (to a request's [`Related`] channel or to
//! the broadcast channel), the `initialize` handshake's messages, the connection's status and
//! the cancellation of abandoned requests.
//!
//! A transport registers a request ([`Core::begin`]), writes the bytes of
//! [`Call::take_bytes`] its own way, feeds every message it reads to [`Core::dispatch`] and
//! awaits [`Call::reply`]. Dropping a [`Call`] whose request was sent and not answered sends
//! `notifications/cancelled` through the transport's detached sender ([`Core::set_detached`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, oneshot, watch};

use super::{Related, Reply, ServerInfo, Status, UpstreamError};
use crate::jsonrpc::{Id, Message, Outcome};

/// The protocol version the gateway asks for.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";
/// The versions the gateway accepts in a server's `initialize` answer.
pub(crate) const SUPPORTED_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The longest message the gateway reads from a server (a line, a body, an SSE event).
pub(crate) const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// First wait before restarting or reconnecting; it doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait before restarting or reconnecting.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a connection must stay healthy for the backoff to start over.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Messages kept for late subscribers of the broadcast channel.
const BROADCAST_CAPACITY: usize = 256;

/// The next wait of an exponential backoff.
pub(crate) fn next_backoff(current: Duration) -> Duration {
    (current * 2).min(BACKOFF_MAX)
}

/// Sends bytes to the server without waiting (cancellations, answers to `ping`).
type Detached = Box<dyn Fn(Vec<u8>) + Send + Sync>;

/// A request waiting for its reply.
struct Pending {
    reply: oneshot::Sender<Result<Reply, UpstreamError>>,
    related: Option<Related>,
    /// The caller's own progress token, restored on progress notifications.
    client_token: Option<Box<RawValue>>,
}

/// The state one connection's transports share.
pub(crate) struct Core {
    server: String,
    next_id: AtomicI64,
    pending: Mutex<HashMap<i64, Pending>>,
    broadcast: broadcast::Sender<Message>,
    status: watch::Sender<Status>,
    info: RwLock<Option<Arc<ServerInfo>>>,
    /// Why the connection is failing, for the calls refused meanwhile.
    failure: Mutex<String>,
    detached: OnceLock<Detached>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("server", &self.server)
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A connection to `server`, starting.
    pub(crate) fn new(server: String) -> Arc<Self> {
        Arc::new(Self {
            server,
            next_id: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            broadcast: broadcast::channel(BROADCAST_CAPACITY).0,
            status: watch::channel(Status::Starting).0,
            info: RwLock::new(None),
            failure: Mutex::new(String::new()),
            detached: OnceLock::new(),
        })
    }

    /// Sets how cancellations and automatic answers reach the server.
    pub(crate) fn set_detached(&self, send: impl Fn(Vec<u8>) + Send + Sync + 'static) {
        let _ = self.detached.set(Box::new(send));
    }

    fn send_detached(&self, bytes: Vec<u8>) {
        if let Some(send) = self.detached.get() {
            send(bytes);
        }
    }

    /// The server's name.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// `Unavailable` with `reason`.
    pub(crate) fn unavailable(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Unavailable {
            server: self.server.clone(),
            reason: reason.into(),
        }
    }

    /// `Protocol` with `reason`.
    pub(crate) fn protocol(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Protocol {
            server: self.server.clone(),
            reason: reason.into(),
        }
    }

    /// `Timeout` after `after`.
    pub(crate) fn timeout(&self, after: Duration) -> UpstreamError {
        UpstreamError::Timeout {
            server: self.server.clone(),
            after,
        }
    }

    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    pub(crate) fn set_status(&self, status: Status) {
        self.status.send_if_modified(|current| {
            // Once stopped, a connection stays stopped.
            if *current == status || *current == Status::Stopped {
                return false;
            }
            *current = status;
            true
        });
    }

    /// Marks the connection as failing, for `reason` (what calls refused meanwhile say).
    pub(crate) fn set_failing(&self, reason: impl Into<String>) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = reason.into();
        }
        self.set_status(Status::Failing);
    }

    fn failure(&self) -> String {
        let reason = self.failure.lock().map(|f| f.clone()).unwrap_or_default();
        if reason.is_empty() {
            "it is being restarted".to_owned()
        } else {
            format!("{reason}; retrying")
        }
    }

    pub(crate) fn info(&self) -> Option<Arc<ServerInfo>> {
        self.info.read().ok().and_then(|i| i.clone())
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.broadcast.subscribe()
    }

    /// Waits until the connection is ready; fails at once when it is down or stopped.
    pub(crate) async fn ready(&self) -> Result<(), UpstreamError> {
        let mut status = self.status.subscribe();
        loop {
            let now = *status.borrow_and_update();
            match now {
                Status::Ready => return Ok(()),
                Status::Failing => return Err(self.unavailable(self.failure())),
                Status::Stopped => return Err(self.unavailable("it was shut down")),
                Status::Starting => {
                    if status.changed().await.is_err() {
                        return Err(self.unavailable("it was shut down"));
                    }
                }
            }
        }
    }

    /// Waits until the status is `wanted`, at most `within`.
    pub(crate) async fn wait_for(&self, wanted: Status, within: Duration) -> bool {
        let mut status = self.status.subscribe();
        tokio::time::timeout(within, status.wait_for(|s| *s == wanted))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Requests waiting for their reply.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Registers a request: its id, its parameters with the connection's own progress token,
    /// and its bytes, ready to be written.
    pub(crate) fn begin(
        self: &Arc<Self>,
        method: &str,
        params: Option<&RawValue>,
        related: Option<Related>,
    ) -> Result<Call, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rewritten = params.and_then(|p| with_progress_token(p, id));
        let (bytes, client_token) = match &rewritten {
            Some((ours, client_token)) => (
                request_bytes(id, method, Some(ours)),
                Some(client_token.clone()),
            ),
            None => (request_bytes(id, method, params), None),
        };
        let (reply, rx) = oneshot::channel();
        let mut pending = self
            .pending
            .lock()
            .map_err(|_| self.unavailable("its connection state is broken"))?;
        pending.insert(
            id,
            Pending {
                reply,
                related,
                client_token,
            },
        );
        drop(pending);
        Ok(Call {
            core: Arc::clone(self),
            id,
            bytes: Some(bytes),
            reply: rx,
            sent: false,
            cancel_reason: "The request was abandoned by the gateway's client",
        })
    }

    /// Fails every waiting request with `Unavailable`.
    pub(crate) fn fail_all(&self, reason: &str) {
        let drained: Vec<Pending> = match self.pending.lock() {
            Ok(mut pending) => pending.drain().map(|(_, p)| p).collect(),
            Err(_) => return,
        };
        for p in drained {
            let _ = p.reply.send(Err(self.unavailable(reason)));
        }
    }

    /// Routes one message from the server. `stream_of` is the request whose response stream
    /// carried it (Streamable HTTP), if any.
    pub(crate) fn dispatch(&self, message: Message, stream_of: Option<i64>) {
        match message {
            Message::Response(response) => {
                let Some(Id::Number(id)) = response.id else {
                    tracing::debug!(server = %self.server, "MCP server answered an unknown request id");
                    return;
                };
                let waiting = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
                match waiting {
                    Some(p) => {
                        let reply = match response.outcome {
                            Outcome::Result(result) => Reply::Result(result),
                            Outcome::Error(error) => Reply::Error(error),
                        };
                        let _ = p.reply.send(Ok(reply));
                    }
                    None => {
                        tracing::debug!(server = %self.server, id, "MCP server answered a request no one waits for");
                    }
                }
            }
            Message::Notification(n) if n.method == "notifications/progress" => {
                let Some(params) = n.params.as_deref() else {
                    return;
                };
                let Some((Some(related), Some(token))) = self.progress_target(params) else {
                    tracing::debug!(server = %self.server, "progress no caller waits for");
                    return;
                };
                if let Some(restored) = replace_member(params, "progressToken", &token) {
                    let message = super::notification(&n.method, Some(restored));
                    self.hand_over(&related, message);
                }
            }
            Message::Request(r) if r.method == "ping" => {
                self.send_detached(response_bytes(
                    &r.id,
                    &Reply::Result(crate::jsonrpc::empty_object()),
                ));
            }
            other => {
                let tied = matches!(&other, Message::Request(_))
                    || matches!(&other, Message::Notification(n) if n.method == "notifications/message");
                let target = self.related_for(stream_of, tied);
                match target {
                    Some(related) => self.hand_over(&related, other),
                    None => {
                        let _ = self.broadcast.send(other);
                    }
                }
            }
        }
    }

    /// Passes `message` to a request's `related` channel without ever making the reader wait
    /// for the caller: a notification the caller has no room for is dropped; a request waits
    /// for room on its own task; what a caller no longer listens for is broadcast.
    fn hand_over(&self, related: &Related, message: Message) {
        use tokio::sync::mpsc::error::TrySendError;
        match related.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(message @ Message::Request(_))) => {
                let related = related.clone();
                let broadcast = self.broadcast.clone();
                tokio::spawn(async move {
                    if let Err(unsent) = related.send(message).await {
                        let _ = broadcast.send(unsent.0);
                    }
                });
            }
            Err(TrySendError::Full(_)) => {
                tracing::debug!(server = %self.server, "a caller's channel is full; notification dropped");
            }
            Err(TrySendError::Closed(message)) => {
                let _ = self.broadcast.send(message);
            }
        }
    }

    /// The request a progress notification belongs to, and its `related` channel and the
    /// caller's token.
    fn progress_target(
        &self,
        params: &RawValue,
    ) -> Option<(Option<Related>, Option<Box<RawValue>>)> {
        #[derive(Deserialize)]
        struct Progress {
            #[serde(rename = "progressToken")]
            token: serde_json::Value,
        }
        let progress: Progress = serde_json::from_str(params.get()).ok()?;
        let id = progress.token.as_i64()?;
        let pending = self.pending.lock().ok()?;
        let p = pending.get(&id)?;
        Some((p.related.clone(), p.client_token.clone()))
    }

    /// Where a message the server sent goes: the request whose stream carried it, else (for
    /// requests and log messages) the only request in flight, else nowhere (broadcast).
    fn related_for(&self, stream_of: Option<i64>, tied: bool) -> Option<Related> {
        let pending = self.pending.lock().ok()?;
        match stream_of {
            Some(id) => pending.get(&id)?.related.clone(),
            None if tied && pending.len() == 1 => pending.values().next()?.related.clone(),
            None => None,
        }
    }

    /// Reads the `initialize` answer: the version must be one the gateway speaks.
    pub(crate) fn accept_initialize(&self, reply: Reply) -> Result<Arc<ServerInfo>, UpstreamError> {
        #[derive(Deserialize)]
        struct Initialized {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        let result = match reply {
            Reply::Result(result) => result,
            Reply::Error(error) => {
                return Err(
                    self.protocol(format!("it refused `initialize` (error {})", error.code))
                );
            }
        };
        let answer: Initialized = serde_json::from_str(result.get())
            .map_err(|_| self.protocol("its `initialize` result has no `protocolVersion`"))?;
        if !SUPPORTED_VERSIONS.contains(&answer.protocol_version.as_str()) {
            let mut version = answer.protocol_version;
            version.truncate(32);
            return Err(self.protocol(format!(
                "it speaks protocol version {version:?}, which the gateway does not"
            )));
        }
        let info = Arc::new(ServerInfo {
            protocol_version: answer.protocol_version,
            initialize_result: result,
        });
        if let Ok(mut slot) = self.info.write() {
            *slot = Some(Arc::clone(&info));
        }
        Ok(info)
    }
}

/// What `error` says is wrong, without the server's name.
pub(crate) fn reason_of(error: &UpstreamError) -> String {
    match error {
        UpstreamError::Timeout { after, .. } => {
            format!("it did not answer within {} ms", after.as_millis())
        }
        UpstreamError::Unavailable { reason, .. } | UpstreamError::Protocol { reason, .. } => {
            reason.clone()
        }
    }
}

/// A registered request. Dropping it before its reply came, once sent, cancels it upstream.
pub(crate) struct Call {
    core: Arc<Core>,
    /// The request's id on this connection.
    pub(crate) id: i64,
    bytes: Option<Vec<u8>>,
    reply: oneshot::Receiver<Result<Reply, UpstreamError>>,
    sent: bool,
    cancel_reason: &'static str,
}

impl Call {
    /// The request's bytes, to write once; the request counts as sent from now on.
    pub(crate) fn take_bytes(&mut self) -> Vec<u8> {
        self.sent = true;
        self.bytes.take().unwrap_or_default()
    }

    /// Waits for the reply.
    pub(crate) async fn reply(&mut self) -> Result<Reply, UpstreamError> {
        match (&mut self.reply).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.core.unavailable("the connection closed")),
        }
    }

    /// The reply if it has come.
    pub(crate) fn try_reply(&mut self) -> Option<Result<Reply, UpstreamError>> {
        self.reply.try_recv().ok()
    }

    /// Marks the request as timed out (the reason its cancellation gives).
    pub(crate) fn timed_out(&mut self) {
        self.cancel_reason = "The request timed out at the gateway";
    }

    /// Never cancels this request (`initialize` must not be).
    pub(crate) fn never_cancel(&mut self) {
        self.sent = false;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let waiting = self
            .core
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&self.id));
        if waiting.is_some() && self.sent {
            let params = format!(
                r#"{{"requestId":{},"reason":{}}}"#,
                self.id,
                serde_json::Value::from(self.cancel_reason)
            );
            let params = RawValue::from_string(params).ok();
            self.core.send_detached(notification_bytes(
                "notifications/cancelled",
                params.as_deref(),
            ));
        }
    }
}

/// The `initialize` parameters.
pub(crate) fn initialize_params() -> Box<RawValue> {
    let text = format!(
        r#"{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{"sampling":{{}},"elicitation":{{}},"roots":{{"listChanged":true}}}},"clientInfo":{{"name":"portcullis","version":"{}"}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    RawValue::from_string(text).unwrap_or_else(|_| crate::jsonrpc::empty_object())
}

/// `params` with `_meta.progressToken` replaced by `token`, and the caller's token; `None`
/// when the caller gave none.
fn with_progress_token(params: &RawValue, token: i64) -> Option<(Box<RawValue>, Box<RawValue>)> {
    if !params.get().contains("progressToken") {
        return None;
    }
    let mut top: BTreeMap<String, &RawValue> = serde_json::from_str(params.get()).ok()?;
    let meta = top.get("_meta")?;
    let mut meta_members: BTreeMap<String, &RawValue> = serde_json::from_str(meta.get()).ok()?;
    let client = (*meta_members.get("progressToken")?).to_owned();
    let ours = RawValue::from_string(token.to_string()).ok()?;
    meta_members.insert("progressToken".to_owned(), &ours);
    let meta = serde_json::value::to_raw_value(&meta_members).ok()?;
    top.insert("_meta".to_owned(), &meta);
    Some((serde_json::value::to_raw_value(&top).ok()?, client))
}

/// `object` with its member `name` set to `value`.
fn replace_member(object: &RawValue, name: &str, value: &RawValue) -> Option<Box<RawValue>> {
    let mut members: BTreeMap<String, &RawValue> = serde_json::from_str(object.get()).ok()?;
    members.insert(name.to_owned(), value);
    serde_json::value::to_raw_value(&members).ok()
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A request's JSON text.
pub(crate) fn request_bytes(id: i64, method: &str, params: Option<&RawValue>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + method.len() + params.map_or(0, |p| p.get().len()));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(br#","method":"#);
    push_str(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(p.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// A notification's JSON text.
pub(crate) fn notification_bytes(method: &str, params: Option<&RawValue>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + method.len() + params.map_or(0, |p| p.get().len()));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
    push_str(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(p.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// A response's JSON text.
pub(crate) fn response_bytes(id: &Id, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    if serde_json::to_writer(&mut out, id).is_err() {
        out.extend_from_slice(b"null");
    }
    match reply {
        Reply::Result(result) => {
            out.extend_from_slice(br#","result":"#);
            out.extend_from_slice(result.get().as_bytes());
        }
        Reply::Error(error) => {
            out.extend_from_slice(br#","error":"#);
            if serde_json::to_writer(&mut out, error).is_err() {
                out.extend_from_slice(b"null");
            }
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_token_is_swapped_and_everything_else_kept() {
        let params = RawValue::from_string(
            r#"{"name":"t","arguments":{"a":[1,2]},"_meta":{"progressToken":"caller-7","x":1}}"#
                .to_owned(),
        )
        .unwrap();
        let (ours, client) = with_progress_token(&params, 42).unwrap();
        assert_eq!(client.get(), r#""caller-7""#);
        let v: serde_json::Value = serde_json::from_str(ours.get()).unwrap();
        assert_eq!(v["_meta"]["progressToken"], 42);
        assert_eq!(v["_meta"]["x"], 1);
        assert_eq!(v["arguments"]["a"][1], 2);
        let plain = RawValue::from_string(r#"{"name":"t"}"#.to_owned()).unwrap();
        assert!(with_progress_token(&plain, 1).is_none());
    }

    fn capturing_core() -> (Arc<Core>, Arc<Mutex<Vec<String>>>) {
        let core = Core::new("test".to_owned());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&sent);
        core.set_detached(move |bytes| {
            sink.lock().unwrap().push(String::from_utf8(bytes).unwrap());
        });
        (core, sent)
    }

    #[tokio::test]
    async fn an_abandoned_request_is_cancelled_upstream_once_sent_and_unanswered() {
        let (core, sent) = capturing_core();
        // Never sent: forgotten silently.
        drop(core.begin("tools/list", None, None).unwrap());
        assert!(sent.lock().unwrap().is_empty());
        // Sent, then abandoned: cancelled with its id.
        let mut call = core.begin("tools/call", None, None).unwrap();
        let id = call.id;
        let _ = call.take_bytes();
        call.timed_out();
        assert_eq!(core.pending_count(), 1);
        drop(call);
        assert_eq!(core.pending_count(), 0);
        let cancelled: serde_json::Value = serde_json::from_str(&sent.lock().unwrap()[0]).unwrap();
        assert_eq!(cancelled["method"], "notifications/cancelled");
        assert_eq!(cancelled["params"]["requestId"], id);
        assert!(
            cancelled["params"]["reason"]
                .as_str()
                .unwrap()
                .contains("timed out")
        );
        // Sent and answered: nothing to cancel.
        let mut call = core.begin("ping", None, None).unwrap();
        let _ = call.take_bytes();
        let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, call.id);
        core.dispatch(Message::parse(answer.as_bytes()).unwrap(), None);
        assert!(matches!(call.reply().await, Ok(Reply::Result(_))));
        drop(call);
        assert_eq!(sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn server_messages_go_to_the_request_they_belong_to() {
        let (core, sent) = capturing_core();
        let mut broadcast = core.subscribe();
        let (related, mut received) = tokio::sync::mpsc::channel(4);
        let params = RawValue::from_string(r#"{"_meta":{"progressToken":5}}"#.to_owned()).unwrap();
        let call = core
            .begin("tools/call", Some(&params), Some(related))
            .unwrap();
        let progress = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1}}}}"#,
            call.id
        );
        core.dispatch(Message::parse(progress.as_bytes()).unwrap(), None);
        let Some(Message::Notification(n)) = received.recv().await else {
            panic!("progress for the caller");
        };
        assert!(n.params.unwrap().get().contains(r#""progressToken":5"#));
        // One request in flight: a server request is tied to it.
        let sampling =
            r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#;
        core.dispatch(Message::parse(sampling.as_bytes()).unwrap(), None);
        assert!(matches!(received.recv().await, Some(Message::Request(_))));
        // Two in flight: it cannot be tied, so it is broadcast.
        let other = core.begin("tools/list", None, None).unwrap();
        core.dispatch(Message::parse(sampling.as_bytes()).unwrap(), None);
        assert!(matches!(broadcast.recv().await, Ok(Message::Request(_))));
        // Unless the stream it came on says whose it is.
        core.dispatch(Message::parse(sampling.as_bytes()).unwrap(), Some(call.id));
        assert!(matches!(received.recv().await, Some(Message::Request(_))));
        // Other notifications are broadcast; a ping is answered.
        let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        core.dispatch(Message::parse(changed.as_bytes()).unwrap(), None);
        assert!(matches!(
            broadcast.recv().await,
            Ok(Message::Notification(_))
        ));
        let ping = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
        core.dispatch(Message::parse(ping.as_bytes()).unwrap(), None);
        assert_eq!(
            sent.lock().unwrap().last().unwrap(),
            r#"{"jsonrpc":"2.0","id":9,"result":{}}"#
        );
        drop((call, other));
        core.fail_all("gone");
    }

    #[tokio::test]
    async fn a_caller_that_does_not_read_never_stalls_the_connection() {
        let (core, _sent) = capturing_core();
        let (related, mut received) = tokio::sync::mpsc::channel(1);
        let params =
            RawValue::from_string(r#"{"_meta":{"progressToken":"t"}}"#.to_owned()).unwrap();
        let call = core
            .begin("tools/call", Some(&params), Some(related))
            .unwrap();
        for progress in 1..=3 {
            let text = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":{progress}}}}}"#,
                call.id
            );
            core.dispatch(Message::parse(text.as_bytes()).unwrap(), None);
        }
        // A server request waits for room on its own.
        let sampling = r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage"}"#;
        core.dispatch(Message::parse(sampling.as_bytes()).unwrap(), None);
        assert!(matches!(
            received.recv().await,
            Some(Message::Notification(_))
        ));
        assert!(matches!(received.recv().await, Some(Message::Request(_))));
        assert!(
            received.try_recv().is_err(),
            "the other progress was dropped"
        );
        drop(call);
    }

    #[test]
    fn requests_and_answers_are_json_rpc() {
        let params = RawValue::from_string(r#"{"a":1}"#.to_owned()).unwrap();
        let bytes = request_bytes(3, "tools/call", Some(&params));
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"a":1}}"#
        );
        let answer = response_bytes(&Id::String("s".into()), &Reply::Result(params));
        assert!(Message::parse(&answer).is_ok());
        assert!(Message::parse(&notification_bytes("notifications/initialized", None)).is_ok());
        let init: serde_json::Value = serde_json::from_str(initialize_params().get()).unwrap();
        assert_eq!(init["protocolVersion"], PROTOCOL_VERSION);
        assert_eq!(init["capabilities"]["roots"]["listChanged"], true);
    }
}

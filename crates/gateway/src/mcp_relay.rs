//! Requests a server made of a client during a call (sampling, elicitation, roots), relayed and
//! waiting for the client's answer — and, with Redis, answers that reach another replica than
//! the one holding the request.
//!
//! A relayed request gets an id of the gateway's own, `portcullis-<replica>-<uuid>`, naming
//! the replica whose call is waiting for it ([`Relays::relay`]). A client's answer is delivered
//! where it lands when that replica holds the request ([`deliver`]). Behind a load balancer
//! the answer may land on another replica: with `PORTCULLIS_REDIS_URL` set, each replica
//! subscribes to the channel `portcullis:mcp:relay:<replica>`, and a replica that does not hold
//! the request publishes the answer there; the holder delivers it to the server. The client
//! gets 202 once a replica has received it, 404 when the replica named is not listening (its
//! call ended with it), 503 when Redis cannot be reached. Without Redis, replicas need sticky
//! sessions for server-to-client requests.
//!
//! The same channel carries what one replica asks of another ([`Relays::ask`]): a message
//! `?<reply channel>\n<what is asked>`, handed to the handler the endpoint set
//! ([`Relays::on_asked`]), which replies with messages on the reply channel
//! (`portcullis:mcp:reply:<random>`, which the asking replica subscribed to first) through a
//! [`Replier`]. What is asked and replied is the business of `crate::mcp_handoff`; here, only
//! that every message is at most [`MAX_MESSAGE`] bytes, and that a replica with no handler yet
//! (it has served no MCP request, so it holds nothing) replies with one empty message.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use portcullis_mcp::hub::Server;
use portcullis_mcp::jsonrpc::{
    ErrorObject, INVALID_REQUEST, Id, Message, Outcome, Request, Response as RpcResponse,
};
use portcullis_mcp::upstream::{Reply, Upstream};

/// A server's request relayed to a client.
#[derive(Debug)]
pub struct Relayed {
    /// The server that asked.
    pub server: Arc<Server>,
    /// The connection it asked over, which the answer goes back to: the server's shared
    /// connection, or the caller's own instance of the server the call went through.
    pub upstream: Arc<dyn Upstream>,
    /// Its own id for the request.
    pub id: Id,
    at: Instant,
}

/// How long a relayed request waits for the client's answer.
const RELAYED_FOR: Duration = Duration::from_secs(600);

/// The prefix of the gateway's own ids of relayed requests.
const PREFIX: &str = "portcullis-";

/// The channel a replica hears answers for its relayed requests on.
fn channel(replica: &str) -> String {
    format!("portcullis:mcp:relay:{replica}")
}

/// The prefix of the channels replies to asks go to.
const REPLY_PREFIX: &str = "portcullis:mcp:reply:";

/// The most bytes of one message a replica publishes to another.
pub const MAX_MESSAGE: usize = 256 << 10;

/// How long a replica waits to subscribe to Redis, or for it to take a message.
const BUS_WAIT: Duration = Duration::from_secs(5);

/// What handles what other replicas ask: what is asked, and where to reply.
pub type AskHandler = Box<dyn Fn(Vec<u8>, Replier) + Send + Sync>;

/// This replica's relayed requests (the same across reloads), and the bus to the others.
pub struct Relays {
    /// This replica's name in relay ids.
    replica: String,
    pending: parking_lot::Mutex<HashMap<String, Relayed>>,
    bus: OnceLock<Bus>,
    asked: OnceLock<AskHandler>,
    /// Dropped with the replica's relays: its subscription ends, so that what is published
    /// to it is heard by nobody (the replica is gone).
    _subscribed: OnceLock<tokio::sync::oneshot::Sender<()>>,
}

/// The Redis connection messages are published over, and the client that subscribes.
#[derive(Clone)]
struct Bus {
    manager: redis::aio::ConnectionManager,
    client: redis::Client,
}

impl std::fmt::Debug for Relays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relays")
            .field("replica", &self.replica)
            .field("pending", &self.pending.lock().len())
            .field("bus", &self.bus.get().is_some())
            .field("asked", &self.asked.get().is_some())
            .finish()
    }
}

impl Default for Relays {
    fn default() -> Self {
        Self {
            replica: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            pending: parking_lot::Mutex::new(HashMap::new()),
            bus: OnceLock::new(),
            asked: OnceLock::new(),
            _subscribed: OnceLock::new(),
        }
    }
}

/// Why another replica could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No Redis: replicas do not hear each other.
    #[error("replicas reach each other only through Redis, which is not configured")]
    NoBus,
    /// Nobody listens on the replica's channel: it is gone.
    #[error("the replica is gone")]
    Nobody,
    /// What is asked is larger than a message may be.
    #[error("what is asked is larger than a message may be")]
    TooLarge,
    /// Redis could not be reached.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("Redis did not answer in time")]
    TimedOut,
}

/// The replies to an ask, in the order they were published.
pub struct Replies {
    messages: Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Replies")
    }
}

impl Replies {
    /// The next reply, if one comes within `wait` (`None`: none came, or the connection
    /// broke).
    pub async fn next(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(wait, self.messages.next()).await {
            Ok(Some(m)) => Some(m.get_payload_bytes().to_vec()),
            _ => None,
        }
    }
}

/// Where a replica replies to what another asked.
#[derive(Clone)]
pub struct Replier {
    manager: redis::aio::ConnectionManager,
    channel: String,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier")
            .field("channel", &self.channel)
            .finish()
    }
}

impl Replier {
    /// Publishes `message` (at most [`MAX_MESSAGE`] bytes); whether the asking replica still
    /// listens.
    pub async fn send(&self, message: &[u8]) -> bool {
        if message.len() > MAX_MESSAGE {
            tracing::warn!("MCP reply of {} bytes not sent: too large", message.len());
            return false;
        }
        let mut manager = self.manager.clone();
        let published = tokio::time::timeout(
            BUS_WAIT,
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(message)
                .query_async::<i64>(&mut manager),
        )
        .await;
        matches!(published, Ok(Ok(n)) if n > 0)
    }
}

impl Relays {
    /// This replica's name (in relay ids, stream ids and request states).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether replicas reach each other (Redis is configured and was reached once).
    pub fn connected(&self) -> bool {
        self.bus.get().is_some()
    }

    /// Sets what handles what other replicas ask (once: later handlers are ignored); whether
    /// one was set before.
    pub fn on_asked(&self, handler: impl FnOnce() -> AskHandler) -> bool {
        if self.asked.get().is_some() {
            return true;
        }
        let _ = self.asked.set(handler());
        false
    }

    /// Asks `replica` for `what` (at most [`MAX_MESSAGE`] bytes); its replies, which come on a
    /// channel of this ask's own.
    pub async fn ask(&self, replica: &str, what: &[u8]) -> Result<Replies, AskError> {
        let bus = self.bus.get().ok_or(AskError::NoBus)?.clone();
        let reply = format!("{REPLY_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let mut message = Vec::with_capacity(what.len() + reply.len() + 2);
        message.push(b'?');
        message.extend_from_slice(reply.as_bytes());
        message.push(b'\n');
        message.extend_from_slice(what);
        if message.len() > MAX_MESSAGE {
            return Err(AskError::TooLarge);
        }
        let subscribed = tokio::time::timeout(BUS_WAIT, async {
            let mut pubsub = bus.client.get_async_pubsub().await?;
            pubsub.subscribe(&reply).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await
        .map_err(|_| AskError::TimedOut)??;
        let mut manager = bus.manager;
        let published: i64 = tokio::time::timeout(
            BUS_WAIT,
            redis::cmd("PUBLISH")
                .arg(channel(replica))
                .arg(&message)
                .query_async(&mut manager),
        )
        .await
        .map_err(|_| AskError::TimedOut)??;
        if published == 0 {
            return Err(AskError::Nobody);
        }
        Ok(Replies {
            messages: Box::pin(subscribed.into_on_message()),
        })
    }

    /// What another replica asked, handed to the handler with where to reply.
    fn asked(&self, message: &[u8]) {
        let Some(bus) = self.bus.get() else {
            return;
        };
        let Some((reply, what)) = message
            .strip_prefix(b"?")
            .and_then(|m| m.iter().position(|b| *b == b'\n').map(|at| m.split_at(at)))
        else {
            return;
        };
        let Ok(reply) = std::str::from_utf8(reply) else {
            return;
        };
        if !reply.starts_with(REPLY_PREFIX) {
            return;
        }
        let replier = Replier {
            manager: bus.manager.clone(),
            channel: reply.to_owned(),
        };
        match self.asked.get() {
            Some(handle) => handle(what[1..].to_vec(), replier),
            // Nothing served here yet, so nothing held: one empty reply says so.
            None => {
                tokio::spawn(async move { replier.send(b"").await });
            }
        }
    }

    /// Gives `request`, which `server` made over `upstream`, an id of the gateway's own naming
    /// this replica, and keeps what the answer needs to go back.
    pub fn relay(&self, server: &Arc<Server>, upstream: &Arc<dyn Upstream>, request: &mut Request) {
        let id = format!("{PREFIX}{}-{}", self.replica, uuid::Uuid::now_v7().simple());
        let own = std::mem::replace(&mut request.id, Id::String(id.clone()));
        let mut pending = self.pending.lock();
        pending.retain(|_, r| r.at.elapsed() < RELAYED_FOR);
        pending.insert(
            id,
            Relayed {
                server: server.clone(),
                upstream: upstream.clone(),
                id: own,
                at: Instant::now(),
            },
        );
    }

    /// The relayed request an answer with `id` is for, if this replica holds it.
    pub fn answered(&self, id: &Id) -> Option<Relayed> {
        let Id::String(id) = id else {
            return None;
        };
        self.pending.lock().remove(id)
    }

    /// The replica a relay id names, when it is one of the gateway's.
    fn replica_of(id: &Id) -> Option<&str> {
        let Id::String(id) = id else {
            return None;
        };
        let rest = id.strip_prefix(PREFIX)?;
        rest.split_once('-').map(|(replica, _)| replica)
    }

    /// Subscribes this replica to answers posted to the others, through Redis at `url`; once.
    pub async fn connect(self: &Arc<Self>, url: &str) -> Result<(), redis::RedisError> {
        if self.bus.get().is_some() {
            return Ok(());
        }
        let client = redis::Client::open(url)?;
        let manager = redis::aio::ConnectionManager::new(client.clone()).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        let channel = channel(&self.replica);
        pubsub.subscribe(&channel).await?;
        let bus = Bus {
            manager,
            client: client.clone(),
        };
        if self.bus.set(bus).is_err() {
            return Ok(());
        }
        let (subscribed, unsubscribe) = tokio::sync::oneshot::channel();
        let _ = self._subscribed.set(subscribed);
        let relays = Arc::downgrade(self);
        tokio::spawn(listen(relays, client, channel, pubsub, unsubscribe));
        Ok(())
    }
}

/// Delivers the answers (and asks) published to this replica until it goes away, subscribing
/// again when the connection breaks.
async fn listen(
    relays: Weak<Relays>,
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    mut gone: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    m = messages.next() => m,
                    _ = &mut gone => return,
                };
                let Some(message) = message else {
                    break;
                };
                let Some(relays) = relays.upgrade() else {
                    return;
                };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                if payload.starts_with(b"?") {
                    relays.asked(&payload);
                } else if let Ok(Message::Response(answer)) = Message::parse(&payload) {
                    let relayed = answer.id.as_ref().and_then(|id| relays.answered(id));
                    if let Some(relayed) = relayed {
                        send_back(relayed, answer.outcome).await;
                    }
                }
            }
        }
        // The connection broke: subscribe again, as long as the replica is there.
        loop {
            if relays.strong_count() == 0 {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = &mut gone => return,
            }
            let subscribed = async {
                let mut p = client.get_async_pubsub().await?;
                p.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(p)
            }
            .await;
            match subscribed {
                Ok(p) => {
                    pubsub = p;
                    break;
                }
                Err(e) => tracing::warn!("MCP relay channel unavailable: {e}"),
            }
        }
    }
}

/// The client's answer, back to the server that asked, over the connection it asked over.
async fn send_back(relayed: Relayed, outcome: Outcome) {
    let reply = match outcome {
        Outcome::Result(r) => Reply::Result(r),
        Outcome::Error(e) => Reply::Error(e),
    };
    if let Err(e) = relayed.upstream.respond(relayed.id, reply).await {
        tracing::warn!(server = relayed.server.name(), "answer not delivered: {e}");
    }
}

/// A client's answer (`body`, parsed as `answer`) to a relayed request: delivered here when this
/// replica holds the request, else published to the replica its id names (with Redis). An
/// answer for no pending request is accepted and dropped, as it always was.
pub async fn deliver(relays: &Relays, answer: RpcResponse, body: &[u8]) -> Response {
    if let Some(relayed) = answer.id.as_ref().and_then(|id| relays.answered(id)) {
        send_back(relayed, answer.outcome).await;
        return status(StatusCode::ACCEPTED);
    }
    let elsewhere = answer
        .id
        .as_ref()
        .and_then(Relays::replica_of)
        .filter(|r| *r != relays.replica);
    let (Some(replica), Some(bus)) = (elsewhere, relays.bus.get()) else {
        return status(StatusCode::ACCEPTED);
    };
    let mut bus = bus.manager.clone();
    let published: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(channel(replica))
        .arg(body)
        .query_async(&mut bus)
        .await;
    match published {
        Ok(n) if n > 0 => status(StatusCode::ACCEPTED),
        Ok(_) => refused(
            StatusCode::NOT_FOUND,
            "No replica holds the server request this answers: the call it belonged to has \
             ended",
        ),
        Err(e) => {
            tracing::warn!("MCP answer not published to its replica: {e}");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The answer could not be passed to the replica holding the server request",
            )
        }
    }
}

fn status(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

fn refused(code: StatusCode, message: &str) -> Response {
    let body = RpcResponse::error(None, ErrorObject::new(INVALID_REQUEST, message)).to_bytes();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

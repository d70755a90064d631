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

use std::collections::HashMap;
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

/// This replica's relayed requests (the same across reloads), and the bus to the others.
#[derive(Debug)]
pub struct Relays {
    /// This replica's name in relay ids.
    replica: String,
    pending: parking_lot::Mutex<HashMap<String, Relayed>>,
    bus: OnceLock<redis::aio::ConnectionManager>,
}

impl Default for Relays {
    fn default() -> Self {
        Self {
            replica: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            pending: parking_lot::Mutex::new(HashMap::new()),
            bus: OnceLock::new(),
        }
    }
}

impl Relays {
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
        if self.bus.set(manager).is_err() {
            return Ok(());
        }
        let relays = Arc::downgrade(self);
        tokio::spawn(listen(relays, client, channel, pubsub));
        Ok(())
    }
}

/// Delivers the answers published to this replica until it goes away, subscribing again when
/// the connection breaks.
async fn listen(
    relays: Weak<Relays>,
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(relays) = relays.upgrade() else {
                    return;
                };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                if let Ok(Message::Response(answer)) = Message::parse(&payload) {
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
            tokio::time::sleep(Duration::from_secs(1)).await;
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
    let mut bus = bus.clone();
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

//! What one replica holds for a client that comes back through another, behind a load balancer
//! without sticky sessions: a stream resumed with `Last-Event-ID`, and a 2026 client's retry of
//! a call waiting for its input (`requestState`). Both name the replica holding them
//! (`crate::mcp_streams`); the replica the client reaches asks that one over Redis
//! (`crate::mcp_relay`'s bus), and the holder replies with the stream, or the call's next
//! answer, which goes to the client from the replica it is talking to.
//!
//! What is asked is [`Asked`], as JSON; the holder replies with messages on the ask's reply
//! channel, in order:
//! - `S`, then the stream's SSE bytes in `d<bytes>` messages as they come, then `e` when it
//!   ends: the events after the one the client named, then the rest live;
//! - `A<decision>`, then a JSON-RPC response in `d<bytes>` messages, then `e`: a retried call's
//!   answer (its result, or the next `input_required`), with what became of it for the log;
//! - `G` (or an empty message): the holder has no such stream or call for this caller, so
//!   the client is answered as for an unknown stream or `requestState`.
//!
//! Every message is at most `mcp_relay::MAX_MESSAGE` bytes. The holder stops relaying a stream
//! once nobody listens on the reply channel (the client left; the stream stays for another
//! resume); the asking replica ends the client's stream when the holder is silent longer than
//! its keep-alives allow. When the holder is gone (nobody listens on its channel), the answer
//! is the one for a stream or call that is no longer kept; when Redis cannot be reached, an
//! error saying so.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_mcp::jsonrpc::Id;

use crate::mcp_relay::{AskError, MAX_MESSAGE, Relays, Replier, Replies};
use crate::mcp_streams::{KEEP_ALIVE, Owner, Stream, Streams};

/// What a replica asks of the replica holding a stream or a call.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Asked {
    /// The events of `stream` from number `from` on, then the rest as they happen.
    Resume {
        /// The stream's id.
        stream: String,
        /// The number of the first event wanted.
        from: u64,
        /// Who resumes it: only its owner may.
        owner: Owner,
        /// How long the connection lasts (a GET stream's), in milliseconds.
        lifetime_ms: Option<u64>,
    },
    /// The call parked under `state` goes on with the client's `responses`.
    Retry {
        /// The `requestState` the client sent back.
        state: String,
        /// Who retries: only the caller who made the call may.
        owner: Owner,
        /// The JSON-RPC id of the retry.
        id: Id,
        /// The client's answers to the input requests, by key.
        responses: serde_json::Map<String, serde_json::Value>,
    },
}

/// Why the holder did not take the client over.
#[derive(Debug, thiserror::Error)]
pub enum Handoff {
    /// The holder has no such stream or call for the caller, or is gone.
    #[error("the replica holding it no longer has it, or is gone")]
    Gone,
    /// Redis could not be reached, or the holder did not reply in time.
    #[error("the replica holding it could not be reached: {0}")]
    Unreachable(String),
}

impl From<AskError> for Handoff {
    fn from(e: AskError) -> Self {
        match e {
            AskError::Nobody | AskError::NoBus => Handoff::Gone,
            other => Handoff::Unreachable(other.to_string()),
        }
    }
}

/// A stream relayed from its holder, as an SSE body.
pub type Relayed = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, Infallible>> + Send>>;

/// A retried call's answer from the replica holding it.
pub enum Retried {
    /// A JSON-RPC response, and what became of the call (`Decision::as_str`, or `input` for
    /// an `input_required` result).
    Answer {
        /// What became of the call.
        decision: String,
        /// The response.
        body: Vec<u8>,
    },
    /// The server sent notifications first: the answer is a stream.
    Stream(Relayed),
}

/// How long the asking replica waits for the holder to take a resume.
const TAKEN_WITHIN: Duration = Duration::from_secs(5);
/// How long between two messages of an answer the asking replica waits.
const BETWEEN_MESSAGES: Duration = Duration::from_secs(5);
/// How long a relayed stream may stay silent (the holder sends a keep-alive every
/// [`KEEP_ALIVE`]) before the asking replica takes the holder for gone and ends it.
const SILENCE: Duration = Duration::from_secs(KEEP_ALIVE.as_secs() * 2 + 5);
/// Most bytes of a relayed answer.
const MAX_ANSWER: usize = 64 << 20;

/// Asks `holder` for the events of `stream` from number `from` on, for `owner`; the SSE body
/// that relays them, once the holder has taken the resume.
pub async fn resume(
    relays: &Relays,
    holder: &str,
    stream: &str,
    from: u64,
    owner: &Owner,
    lifetime: Option<Duration>,
) -> Result<Relayed, Handoff> {
    let asked = Asked::Resume {
        stream: stream.to_owned(),
        from,
        owner: owner.clone(),
        lifetime_ms: lifetime.map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
    };
    let mut replies = ask(relays, holder, &asked).await?;
    match replies.next(TAKEN_WITHIN).await {
        Some(first) if first.first() == Some(&b'S') => Ok(relayed(replies)),
        Some(_) => Err(Handoff::Gone),
        None => Err(Handoff::Unreachable("no reply in time".into())),
    }
}

/// Asks `holder` to go on with the call `asked` retries (an [`Asked::Retry`]), waiting at most
/// `wait` for its answer.
pub async fn retry(
    relays: &Relays,
    holder: &str,
    asked: &Asked,
    wait: Duration,
) -> Result<Retried, Handoff> {
    let mut replies = ask(relays, holder, asked).await?;
    let first = replies
        .next(wait)
        .await
        .ok_or_else(|| Handoff::Unreachable("no answer within the call's timeout".into()))?;
    match first.split_first() {
        Some((b'S', _)) => Ok(Retried::Stream(relayed(replies))),
        Some((b'A', decision)) => {
            let decision = String::from_utf8_lossy(decision).into_owned();
            let mut body = Vec::new();
            loop {
                let message = replies
                    .next(BETWEEN_MESSAGES)
                    .await
                    .ok_or_else(|| Handoff::Unreachable("the answer broke off".into()))?;
                match message.split_first() {
                    Some((b'd', data)) if body.len() + data.len() <= MAX_ANSWER => {
                        body.extend_from_slice(data);
                    }
                    Some((b'd', _)) => {
                        return Err(Handoff::Unreachable("the answer is too large".into()));
                    }
                    _ => break,
                }
            }
            Ok(Retried::Answer { decision, body })
        }
        _ => Err(Handoff::Gone),
    }
}

async fn ask(relays: &Relays, holder: &str, asked: &Asked) -> Result<Replies, Handoff> {
    let what = serde_json::to_vec(asked).map_err(|e| Handoff::Unreachable(e.to_string()))?;
    Ok(relays.ask(holder, &what).await?)
}

/// The SSE body of a stream the holder relays: its `d` messages until `e`, or until it is
/// silent too long.
fn relayed(replies: Replies) -> Relayed {
    Box::pin(futures_util::stream::unfold(
        Some(replies),
        |replies| async move {
            let mut replies = replies?;
            let message = replies.next(SILENCE).await?;
            match message.split_first() {
                Some((b'd', data)) => Some((Ok(Bytes::from(data.to_vec())), Some(replies))),
                _ => None,
            }
        },
    ))
}

/// On the holder: relays `stream` from event `from` on to the replica that asked, until it
/// ends, the connection's `lifetime` is over, or nobody listens any more.
pub async fn relay(stream: Arc<Stream>, from: u64, lifetime: Option<Duration>, replier: Replier) {
    if !replier.send(b"S").await {
        return;
    }
    let mut reading = Box::pin(stream.read(from, lifetime, ()));
    while let Some(Ok(chunk)) = reading.next().await {
        if !send_data(&replier, &chunk).await {
            // The client left: the stream waits for another resume.
            return;
        }
    }
    replier.send(b"e").await;
}

/// On the holder: the resume `stream` from `from` for `owner`, relayed if it is theirs and
/// kept here.
pub async fn serve_resume(
    streams: &Streams,
    stream: &str,
    from: u64,
    owner: &Owner,
    lifetime: Option<Duration>,
    replier: Replier,
) {
    match streams.find(stream, from, owner) {
        Ok((stream, from)) => relay(stream, from, lifetime, replier).await,
        Err(_) => gone(&replier).await,
    }
}

/// On the holder: a retried call's answer, a JSON-RPC response, and what became of the call.
pub async fn answer(replier: &Replier, decision: &str, response: &[u8]) {
    let mut head = Vec::with_capacity(decision.len() + 1);
    head.push(b'A');
    head.extend_from_slice(decision.as_bytes());
    if replier.send(&head).await && send_data(replier, response).await {
        replier.send(b"e").await;
    }
}

/// On the holder: nothing of what was asked is kept here for this caller.
pub async fn gone(replier: &Replier) {
    replier.send(b"G").await;
}

/// Sends `data` in `d` messages; whether the asking replica still listens.
async fn send_data(replier: &Replier, data: &[u8]) -> bool {
    for piece in data.chunks(MAX_MESSAGE - 1) {
        let mut message = Vec::with_capacity(piece.len() + 1);
        message.push(b'd');
        message.extend_from_slice(piece);
        if !replier.send(&message).await {
            return false;
        }
    }
    true
}

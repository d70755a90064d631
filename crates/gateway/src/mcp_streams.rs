//! The SSE streams of the MCP endpoints (`crate::mcp`), made resumable: every event of a
//! stream — a POST answer that became a stream, or the standalone GET stream — is kept in
//! memory on the replica that made it, under an event id that names the stream, so that a
//! client whose connection broke comes back with `GET` and `Last-Event-ID` and gets what it
//! missed, then the rest.
//!
//! What is kept, and for how long: a stream's events stay for [`RESUME_WINDOW`] after its
//! last reader left (at most [`MAX_STREAM_BYTES`] of them, the oldest dropped first, the last
//! always kept); a call whose stream has had no reader for that long is abandoned (and so
//! cancelled upstream). Streams live on the replica that made them, and their ids name it: a
//! resume that reaches another replica is passed to that one over Redis when the gateway has
//! it (`crate::mcp_handoff`), else finds nothing, like a resume that comes too late
//! ([`Streams::resume`] says so), and the endpoint answers accordingly. A stream has one
//! reader at a time: a resume takes the stream over from the reader before it, so no message
//! goes out on two connections.
//!
//! An event id is `<g|p><replica>.<random>-<n>`: `g` for a GET stream, `p` for a POST
//! answer, then the replica holding the stream and the stream's random id (together the
//! stream's id), and the event's number in it.
//!
//! Also kept here: the calls of 2026 clients waiting for the client's input (multi round-trip
//! requests). A server of the handshake generation asks its client during a call (sampling,
//! elicitation); a 2026 client is answered with an `input_required` result and retries with
//! its answers and the `requestState` the gateway gave (`portcullis-<replica>-<random>`), by
//! which [`Streams::unpark`] finds the call, still running, on the replica it names (for
//! [`RESUME_WINDOW`] at most); a retry reaching another replica is passed to that one
//! (`crate::mcp_handoff`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use portcullis_mcp::hub::Server;
use portcullis_mcp::jsonrpc::{ErrorObject, Message};
use portcullis_mcp::router::{Decision, Note};
use portcullis_mcp::upstream::Upstream;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a stream without a reader is kept (and its call kept running) for a resume.
pub const RESUME_WINDOW: Duration = Duration::from_secs(120);
/// Most bytes of events kept per stream for a resume.
pub const MAX_STREAM_BYTES: usize = 4 << 20;
/// Most streams kept per replica; past it, the longest-unread are dropped.
pub const MAX_STREAMS: usize = 10_000;
/// How long a stream read to its end is kept for a client that did not get its last bytes.
pub const DELIVERED_GRACE: Duration = Duration::from_secs(10);
/// How often an idle stream carries a comment, so that proxies keep the connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// What a client is told to wait before it reconnects to a stream the gateway closed.
pub const RETRY_MS: u64 = 1000;

/// What a stream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The standalone stream of `GET /mcp`.
    Listen,
    /// The answer to one POSTed request.
    Answer,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::Listen => 'g',
            Kind::Answer => 'p',
        }
    }
}

/// Whose a stream is: only the same caller, through the same endpoint and session, resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// The caller (its identity's subject and key).
    pub caller: String,
    /// The endpoint: `None` for `/mcp`, the server for `/mcp/<server>`.
    pub server: Option<String>,
    /// The session, if any.
    pub session: Option<String>,
}

/// Every stream of the replica.
#[derive(Debug)]
pub struct Streams {
    /// The replica's name in stream ids and request states.
    replica: String,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    /// Open GET connections by caller.
    listening: Mutex<HashMap<String, usize>>,
    /// Calls waiting for a 2026 client's input, by the `requestState` it was given.
    parked: Mutex<HashMap<String, Parked>>,
}

/// What a call going on in the background reports.
#[derive(Debug)]
pub enum CallEvent {
    /// A message the server sent on the way (a notification, or a request to the client).
    Related(Message),
    /// The call's end.
    Done(Result<Box<RawValue>, ErrorObject>, Decision, Note),
}

/// A call going on in the background, read through its events.
pub type CallEvents = mpsc::Receiver<CallEvent>;

#[derive(Debug)]
struct Parked {
    owner: Owner,
    at: Instant,
    call: ParkedCall,
}

/// A call waiting for a 2026 client's input.
#[derive(Debug)]
pub struct ParkedCall {
    /// The call's events.
    pub events: CallEvents,
    /// The server it went to.
    pub server: Arc<Server>,
    /// The connection it went over, which the server's next requests are answered back over.
    pub upstream: Arc<dyn Upstream>,
}

/// One stream.
#[derive(Debug)]
pub struct Stream {
    id: String,
    kind: Kind,
    owner: Owner,
    state: Mutex<Buffer>,
    /// The number of the next event, bumped on every change readers must look at.
    changed: watch::Sender<u64>,
    /// The JSON-RPC id of the request a call's stream answers, as JSON text.
    request: Option<String>,
    /// The client cancelled that request.
    cancel: tokio::sync::Notify,
}

#[derive(Debug)]
struct Buffer {
    /// Events, oldest first, each with its number.
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    next: u64,
    /// No event will follow.
    done: bool,
    /// The reader that may read (a newer one takes over).
    reader: u64,
    /// Whether that reader is connected.
    attached: bool,
    /// When the stream last had a reader (or was made).
    last_read: Instant,
    /// When a reader read it to its end.
    delivered: Option<Instant>,
}

/// Why a stream cannot be resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Not an event id of this gateway.
    Malformed,
    /// Not (or no longer) kept here, or not the caller's: the events are gone.
    Unknown(Kind),
}

/// An event id, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The stream's kind.
    pub kind: Kind,
    /// The stream's id.
    pub stream: &'a str,
    /// The replica holding the stream (`None` for an id that names none).
    pub replica: Option<&'a str>,
    /// The number of the event after it: where a resume goes on from.
    pub next: u64,
}

/// Reads an event id a client sends back in `Last-Event-ID`.
pub fn event_id(text: &str) -> Result<EventId<'_>, Gone> {
    let (stream, n) = text.rsplit_once('-').ok_or(Gone::Malformed)?;
    let kind = kind_of(stream).ok_or(Gone::Malformed)?;
    let n: u64 = n.parse().map_err(|_| Gone::Malformed)?;
    let replica = stream
        .get(1..)
        .and_then(|rest| rest.split_once('.'))
        .map(|(r, _)| r);
    Ok(EventId {
        kind,
        stream,
        replica,
        next: n.saturating_add(1),
    })
}

fn kind_of(stream: &str) -> Option<Kind> {
    match stream.chars().next() {
        Some('g') => Some(Kind::Listen),
        Some('p') => Some(Kind::Answer),
        _ => None,
    }
}

/// The prefix of a `requestState` the gateway gives.
const STATE_PREFIX: &str = "portcullis-";

/// The replica a `requestState` names, if it is one of the gateway's.
pub fn holder_of_state(state: &str) -> Option<&str> {
    state
        .strip_prefix(STATE_PREFIX)?
        .split_once('-')
        .map(|(replica, _)| replica)
}

impl Default for Streams {
    fn default() -> Self {
        Self::new(format!("{:016x}", rand::random::<u64>()))
    }
}

impl Streams {
    /// No streams yet, on the replica named `replica` (letters and digits).
    pub fn new(replica: impl Into<String>) -> Self {
        Self {
            replica: replica.into(),
            streams: Mutex::default(),
            listening: Mutex::default(),
            parked: Mutex::default(),
        }
    }

    /// The replica's name in stream ids and request states.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A new stream of `kind` for `owner`; for a call's stream, `request` is the id of the
    /// request it answers (JSON text), by which the client may cancel it.
    pub fn open(&self, kind: Kind, owner: Owner, request: Option<String>) -> Arc<Stream> {
        let id = format!(
            "{}{}.{:032x}",
            kind.tag(),
            self.replica,
            rand::random::<u128>()
        );
        let stream = Arc::new(Stream {
            id: id.clone(),
            kind,
            owner,
            state: Mutex::new(Buffer {
                events: VecDeque::new(),
                bytes: 0,
                next: 0,
                done: false,
                reader: 0,
                attached: false,
                last_read: Instant::now(),
                delivered: None,
            }),
            changed: watch::channel(0).0,
            request,
            cancel: tokio::sync::Notify::new(),
        });
        let mut streams = self.streams.lock();
        if kind == Kind::Listen && stream.owner.session.is_some() {
            // One standalone stream per session: a new one replaces the one before, so that
            // no message goes out twice.
            streams.retain(|_, s| {
                let same = s.kind == Kind::Listen && s.owner == stream.owner;
                if same {
                    s.finish();
                }
                !same
            });
        }
        if streams.len() >= MAX_STREAMS {
            streams.retain(|_, s| !s.expired());
        }
        if streams.len() >= MAX_STREAMS {
            // Still full: the stream unread the longest goes.
            if let Some(oldest) = streams
                .iter()
                .filter(|(_, s)| !s.state.lock().attached)
                .min_by_key(|(_, s)| s.state.lock().last_read)
                .map(|(id, _)| id.clone())
            {
                streams.remove(&oldest);
            }
        }
        streams.insert(id, stream.clone());
        stream
    }

    /// The stream `last_event_id` belongs to, and the number of the event after it, when
    /// `owner` may resume it and its events from there are still kept.
    pub fn resume(&self, last_event_id: &str, owner: &Owner) -> Result<(Arc<Stream>, u64), Gone> {
        let id = event_id(last_event_id)?;
        self.find(id.stream, id.next, owner)
    }

    /// The stream `stream` when `owner` may resume it and its events from number `from` on
    /// are still kept.
    pub fn find(&self, stream: &str, from: u64, owner: &Owner) -> Result<(Arc<Stream>, u64), Gone> {
        let kind = kind_of(stream).ok_or(Gone::Malformed)?;
        let found = self.streams.lock().get(stream).cloned();
        let Some(found) = found.filter(|s| s.owner == *owner && !s.expired()) else {
            return Err(Gone::Unknown(kind));
        };
        {
            let state = found.state.lock();
            let first = state.events.front().map_or(state.next, |(k, _)| *k);
            if from < first || from > state.next {
                return Err(Gone::Unknown(kind));
            }
        }
        Ok((found, from))
    }

    /// Cancels the call of `owner` whose stream answers `request` (JSON text), if one is
    /// going on here; whether there was one.
    pub fn cancel(&self, owner: &Owner, request: &str) -> bool {
        let streams = self.streams.lock();
        let found = streams.values().find(|s| {
            s.kind == Kind::Answer
                && s.request.as_deref() == Some(request)
                && s.owner == *owner
                && !s.finished()
        });
        match found {
            Some(s) => {
                s.cancel.notify_one();
                true
            }
            None => false,
        }
    }

    /// Keeps `call` of `owner`, which waits for the client's input; the `requestState` that
    /// finds it again (naming this replica).
    pub fn park(&self, owner: Owner, call: ParkedCall) -> String {
        let state = format!(
            "{STATE_PREFIX}{}-{:032x}",
            self.replica,
            rand::random::<u128>()
        );
        let mut parked = self.parked.lock();
        parked.retain(|_, p| p.at.elapsed() < RESUME_WINDOW);
        parked.insert(
            state.clone(),
            Parked {
                owner,
                at: Instant::now(),
                call,
            },
        );
        state
    }

    /// The call `state` names, if `owner` parked it here and not too long ago.
    pub fn unpark(&self, state: &str, owner: &Owner) -> Option<ParkedCall> {
        let mut parked = self.parked.lock();
        parked.retain(|_, p| p.at.elapsed() < RESUME_WINDOW);
        if parked.get(state)?.owner != *owner {
            return None;
        }
        parked.remove(state).map(|p| p.call)
    }

    /// Forgets `stream`.
    pub fn close(&self, stream: &Stream) {
        self.streams.lock().remove(&stream.id);
    }

    /// Counts a GET connection of `caller`, unless it already has `most` open here.
    pub fn listen(self: &Arc<Self>, caller: &str, most: usize) -> Option<Listening> {
        let mut listening = self.listening.lock();
        let open = listening.entry(caller.to_owned()).or_default();
        if *open >= most {
            return None;
        }
        *open += 1;
        Some(Listening {
            streams: self.clone(),
            caller: caller.to_owned(),
        })
    }
}

/// An open GET connection, counted until dropped.
#[derive(Debug)]
pub struct Listening {
    streams: Arc<Streams>,
    caller: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut listening = self.streams.listening.lock();
        if let Some(open) = listening.get_mut(&self.caller) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                listening.remove(&self.caller);
            }
        }
    }
}

impl Stream {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Adds a JSON-RPC message as the next event.
    pub fn push(&self, message: &[u8]) {
        self.push_event(message);
    }

    /// The first event: an id with no data, so that a client can resume even before the
    /// first message (the priming event of the Streamable HTTP transport).
    pub fn prime(&self) {
        self.push_event(b"");
    }

    fn push_event(&self, data: &[u8]) {
        let mut state = self.state.lock();
        if state.done {
            return;
        }
        let n = state.next;
        let mut event = Vec::with_capacity(data.len() + self.id.len() + 40);
        event.extend_from_slice(b"id: ");
        event.extend_from_slice(self.id.as_bytes());
        event.extend_from_slice(format!("-{n}\n").as_bytes());
        if data.is_empty() {
            event.extend_from_slice(b"data: \n\n");
        } else {
            event.extend_from_slice(b"event: message\ndata: ");
            event.extend_from_slice(data);
            event.extend_from_slice(b"\n\n");
        }
        state.bytes += event.len();
        state.events.push_back((n, Bytes::from(event)));
        state.next = n + 1;
        while state.bytes > MAX_STREAM_BYTES && state.events.len() > 1 {
            if let Some((_, dropped)) = state.events.pop_front() {
                state.bytes -= dropped.len();
            }
        }
        drop(state);
        self.changed.send_replace(n + 1);
    }

    /// No event follows: readers end once they have read everything.
    pub fn finish(&self) {
        self.state.lock().done = true;
        self.changed.send_modify(|_| {});
    }

    /// Resolves when the client cancels the request the stream answers.
    pub async fn cancelled(&self) {
        self.cancel.notified().await;
    }

    /// Whether no event follows.
    pub fn finished(&self) -> bool {
        self.state.lock().done
    }

    /// Whether it is finished and a reader read it to its end a while ago (long enough for a
    /// client whose connection broke on the last bytes to come back).
    pub fn delivered(&self) -> bool {
        self.state
            .lock()
            .delivered
            .is_some_and(|at| at.elapsed() >= DELIVERED_GRACE)
    }

    /// Whether it has had no reader for [`RESUME_WINDOW`].
    pub fn abandoned(&self) -> bool {
        let state = self.state.lock();
        !state.attached && state.last_read.elapsed() >= RESUME_WINDOW
    }

    /// Whether it is of no more use: abandoned, or finished and read.
    fn expired(&self) -> bool {
        self.abandoned()
    }

    /// When it will count as abandoned if nobody reads it, if nobody does now.
    pub fn abandoned_at(&self) -> Option<Instant> {
        let state = self.state.lock();
        (!state.attached).then(|| state.last_read + RESUME_WINDOW)
    }

    /// The body of a connection that reads it from event `from` on: the reader before it
    /// stops. `lifetime` ends the connection (not the stream) after that long, with a `retry`
    /// field; `guard` is kept as long as the connection.
    pub fn read<G: Send + 'static>(
        self: &Arc<Self>,
        from: u64,
        lifetime: Option<Duration>,
        guard: G,
    ) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        let reader = {
            let mut state = self.state.lock();
            state.reader += 1;
            state.attached = true;
            state.last_read = Instant::now();
            state.reader
        };
        self.changed.send_modify(|_| {});
        let reading = Reading {
            stream: self.clone(),
            changed: self.changed.subscribe(),
            reader,
            next: from,
            until: lifetime.map(|l| Instant::now() + l),
            ended: false,
            _guard: guard,
        };
        futures_util::stream::unfold(reading, |mut r| async move {
            let chunk = r.next_chunk().await?;
            Some((Ok(chunk), r))
        })
    }
}

/// One connection reading a stream.
struct Reading<G> {
    stream: Arc<Stream>,
    changed: watch::Receiver<u64>,
    reader: u64,
    next: u64,
    until: Option<Instant>,
    ended: bool,
    _guard: G,
}

impl<G> Reading<G> {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            self.changed.borrow_and_update();
            {
                let state = self.stream.state.lock();
                if state.reader != self.reader {
                    // Another connection resumed the stream.
                    return None;
                }
                let first = state.events.front().map_or(state.next, |(k, _)| *k);
                if self.next < first {
                    tracing::warn!(
                        stream = %self.stream.id,
                        lost = first - self.next,
                        "MCP stream events dropped before they were read"
                    );
                    self.next = first;
                }
                let mut out = Vec::new();
                for (n, event) in &state.events {
                    if *n >= self.next {
                        out.extend_from_slice(event);
                    }
                }
                if !out.is_empty() {
                    self.next = state.next;
                    return Some(Bytes::from(out));
                }
                if state.done {
                    drop(state);
                    self.stream
                        .state
                        .lock()
                        .delivered
                        .get_or_insert_with(Instant::now);
                    return None;
                }
            }
            let wait = tokio::time::sleep(KEEP_ALIVE);
            let until = async {
                match self.until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.changed.changed() => continue,
                _ = wait => return Some(Bytes::from_static(b": keep-alive\n\n")),
                _ = until => {
                    // The connection ends, the stream does not: the client comes back.
                    self.ended = true;
                    return Some(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
                }
            }
        }
    }
}

impl<G> Drop for Reading<G> {
    fn drop(&mut self) {
        let mut state = self.stream.state.lock();
        if state.reader == self.reader {
            state.attached = false;
            state.last_read = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn owner() -> Owner {
        Owner {
            caller: "k".into(),
            server: None,
            session: Some("s".into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_gets_what_it_missed_and_takes_the_stream_over() {
        let streams = Arc::new(Streams::default());
        let stream = streams.open(Kind::Answer, owner(), Some("7".into()));
        stream.prime();
        let mut first = Box::pin(stream.read(0, None, ()));
        let primed = String::from_utf8(first.next().await.unwrap().unwrap().to_vec()).unwrap();
        let id = primed
            .lines()
            .next()
            .unwrap()
            .strip_prefix("id: ")
            .unwrap()
            .to_owned();
        assert!(id.starts_with('p') && id.ends_with("-0"), "{primed}");
        stream.push(br#"{"n":1}"#);
        stream.push(br#"{"n":2}"#);
        // The connection breaks; the client resumes after the priming event.
        drop(first);
        assert!(!stream.abandoned());
        let other = Owner {
            caller: "someone else".into(),
            ..owner()
        };
        assert_eq!(
            streams.resume(&id, &other).err(),
            Some(Gone::Unknown(Kind::Answer))
        );
        let (again, from) = streams.resume(&id, &owner()).unwrap();
        assert_eq!(from, 1);
        let mut second = Box::pin(again.read(from, None, ()));
        let replay = String::from_utf8(second.next().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(
            replay.contains(r#"data: {"n":1}"#) && replay.contains(r#"data: {"n":2}"#),
            "{replay}"
        );
        // A third connection takes over: the second ends.
        let (again, _) = streams.resume(&id, &owner()).unwrap();
        let mut third = Box::pin(again.read(3, None, ()));
        assert!(second.next().await.is_none());
        stream.push(br#"{"n":3}"#);
        stream.finish();
        let last = String::from_utf8(third.next().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(last.contains(r#"{"n":3}"#), "{last}");
        assert!(third.next().await.is_none());
        // Read to its end, it stays a little for a client that missed the last bytes.
        assert!(!stream.delivered());
        tokio::time::advance(DELIVERED_GRACE).await;
        assert!(stream.delivered());
    }

    #[tokio::test(start_paused = true)]
    async fn streams_without_readers_expire_and_idle_ones_keep_alive() {
        let streams = Arc::new(Streams::default());
        let stream = streams.open(Kind::Listen, owner(), None);
        stream.prime();
        let mut reader = Box::pin(stream.read(1, Some(Duration::from_secs(50)), ()));
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            Bytes::from_static(b": keep-alive\n\n")
        );
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            Bytes::from_static(b": keep-alive\n\n")
        );
        // The connection's lifetime: a retry field, then the end.
        assert_eq!(
            reader.next().await.unwrap().unwrap(),
            Bytes::from(format!("retry: {RETRY_MS}\n\n"))
        );
        assert!(reader.next().await.is_none());
        drop(reader);
        let id = format!("{}-0", stream.id);
        assert!(streams.resume(&id, &owner()).is_ok());
        tokio::time::advance(RESUME_WINDOW).await;
        assert!(stream.abandoned());
        assert_eq!(
            streams.resume(&id, &owner()).err(),
            Some(Gone::Unknown(Kind::Listen))
        );
        assert_eq!(
            streams.resume("x1-2", &owner()).err(),
            Some(Gone::Malformed)
        );
    }

    #[test]
    fn ids_and_request_states_name_the_replica_holding_them() {
        let streams = Streams::new("r1");
        let stream = streams.open(Kind::Answer, owner(), None);
        let last = format!("{}-4", stream.id);
        let id = event_id(&last).unwrap();
        assert_eq!(id.kind, Kind::Answer);
        assert_eq!(id.stream, stream.id);
        assert_eq!(id.replica, Some("r1"));
        assert_eq!(id.next, 5);
        // An id of another replica is not found here.
        assert_eq!(
            Streams::new("r2").resume(&last, &owner()).err(),
            Some(Gone::Unknown(Kind::Answer))
        );
        assert_eq!(event_id("gabc-0").unwrap().replica, None);
        assert_eq!(event_id("p1.2-x").err(), Some(Gone::Malformed));
        assert_eq!(holder_of_state("portcullis-r1-0123"), Some("r1"));
        assert_eq!(holder_of_state("someone-else"), None);
    }

    #[test]
    fn a_caller_has_a_bounded_number_of_get_connections() {
        let streams = Arc::new(Streams::default());
        let a = streams.listen("k", 2).unwrap();
        let _b = streams.listen("k", 2).unwrap();
        assert!(streams.listen("k", 2).is_none());
        assert!(streams.listen("other", 2).is_some());
        drop(a);
        assert!(streams.listen("k", 2).is_some());
    }
}

//! Upstream MCP servers: one connection to one server, whatever its transport.
//!
//! - [`stdio`]: a program the gateway starts (in the sandbox of `portcullis-sys`), speaking
//!   newline-delimited JSON-RPC on its standard input and output; restarted with backoff when
//!   it dies.
//! - [`http`]: a remote server over Streamable HTTP (POST, answers as JSON or as an SSE stream,
//!   `Mcp-Session-Id`, `MCP-Protocol-Version`).
//! - [`sse`]: a remote server over the older HTTP+SSE transport (a GET stream that names the
//!   endpoint to POST to; answers arrive on the stream).
//!
//! Every connection performs the `initialize` handshake itself, keeps the server's answer
//! ([`ServerInfo`]), numbers its own requests (ids of different clients never meet upstream),
//! gives each request its own progress token, and bounds every call with a timeout. A request
//! whose future is dropped is cancelled upstream (`notifications/cancelled`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};

use crate::jsonrpc::{ErrorObject, Id, Message, Notification};

pub mod http;
mod shared;
pub mod sse;
pub mod stdio;

pub use http::HttpUpstream;
pub use sse::SseUpstream;
pub use stdio::StdioUpstream;

/// What the server said of itself in its `initialize` answer.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The protocol version agreed.
    pub protocol_version: String,
    /// The whole `initialize` result, as sent (capabilities, serverInfo, instructions, …).
    pub initialize_result: Box<RawValue>,
}

/// A server's state, for the admin API and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being started or connected.
    Starting,
    /// Initialized and answering.
    Ready,
    /// Down; being restarted or reconnected after a failure.
    Failing,
    /// Shut down.
    Stopped,
}

impl Status {
    /// `starting`, `ready`, `failing` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ready => "ready",
            Status::Failing => "failing",
            Status::Stopped => "stopped",
        }
    }
}

/// How a request ended upstream.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The server's result, as sent.
    Result(Box<RawValue>),
    /// The server's JSON-RPC error, as sent.
    Error(ErrorObject),
}

/// Why a request got no reply from the server. The messages are the caller's to read: they
/// name the server and the failure, never a credential or an address detail beyond the URL
/// the operator configured.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No reply within the timeout.
    #[error("MCP server `{server}` did not answer within {} ms", .after.as_millis())]
    Timeout {
        /// The server.
        server: String,
        /// The timeout.
        after: Duration,
    },
    /// The server is down (not started, crashed, unreachable); it is being restarted or
    /// reconnected.
    #[error("MCP server `{server}` is unavailable: {reason}")]
    Unavailable {
        /// The server.
        server: String,
        /// What is wrong, for the caller.
        reason: String,
    },
    /// The server sent something that is not MCP.
    #[error("MCP server `{server}` answered something invalid: {reason}")]
    Protocol {
        /// The server.
        server: String,
        /// What is wrong.
        reason: String,
    },
}

/// A message the server sent while a request was in flight that belongs to that request:
/// `notifications/progress` (its token already the client's again), `notifications/message`,
/// or a server-to-client request (sampling, elicitation, roots) whose answer goes back with
/// [`Upstream::respond`].
pub type Related = mpsc::Sender<Message>;

/// One connection to one MCP server.
#[async_trait]
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// The server's configured name.
    fn name(&self) -> &str;

    /// Sends `method` with `params` and waits for the reply, at most `timeout`. Messages the
    /// server sends meanwhile that belong to this request go to `related`, when given; a
    /// `params._meta.progressToken` is replaced upstream by one of the connection's own and
    /// restored on the progress notifications passed to `related`. Dropping the future cancels
    /// the request upstream.
    async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        related: Option<Related>,
        timeout: Duration,
    ) -> Result<Reply, UpstreamError>;

    /// Sends a notification (`notifications/cancelled`, `notifications/roots/list_changed`, …).
    async fn notify(&self, method: &str, params: Option<&RawValue>) -> Result<(), UpstreamError>;

    /// Answers a request the server made (`id` as it reached `related` or
    /// [`Upstream::notifications`]).
    async fn respond(&self, id: Id, reply: Reply) -> Result<(), UpstreamError>;

    /// The server's `initialize` answer, once connected.
    fn info(&self) -> Option<Arc<ServerInfo>>;

    /// Notifications the server sends outside any request (`notifications/tools/list_changed`,
    /// `notifications/resources/updated`, …) and requests no in-flight request can be tied to.
    fn notifications(&self) -> broadcast::Receiver<Message>;

    /// The connection's state.
    fn status(&self) -> Status;

    /// Stops the connection: the process group killed, the HTTP session deleted.
    async fn shutdown(&self);
}

/// A notification as a [`Message`].
pub fn notification(method: &str, params: Option<Box<RawValue>>) -> Message {
    Message::Notification(Notification {
        method: method.to_owned(),
        params,
    })
}

//! The events a streamed chat response is made of.
//!
//! Provider stream decoders turn upstream frames into these events; client stream encoders
//! turn them into the caller's SSE dialect. Filters between the two (usage accounting, the
//! tool-call deny-list) see and may rewrite every event, so nothing dialect-specific leaks
//! into them. Events are produced and consumed one at a time: a stream is never buffered whole.
//!
//! A tool call streams as [`Delta::ToolCallStart`], any number of
//! [`Delta::ToolCallArguments`], then [`Delta::ToolCallEnd`] once its arguments are complete
//! (Anthropic's `content_block_stop`; for OpenAI, the start of the next call, the choice's
//! `finish_reason`, or the end of the stream), so a filter can judge a whole call.

use crate::chat::{StopReason, Usage};
use crate::error::GatewayError;

/// One event of a streamed chat response.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The response began.
    Start {
        /// Provider-assigned response id.
        id: String,
        /// The model that answers.
        model: String,
        /// Unix time in seconds.
        created: u64,
    },
    /// Incremental content for one choice.
    Delta {
        /// Choice index.
        choice: u32,
        /// The increment.
        delta: Delta,
    },
    /// A choice finished.
    Finish {
        /// Choice index.
        choice: u32,
        /// Why it stopped.
        reason: StopReason,
        /// The stop sequence that matched, if any.
        stop_sequence: Option<String>,
    },
    /// A usage report. Streams may report usage in pieces; fold them with [`Usage::merge`].
    Usage(Usage),
    /// The upstream failed after the stream had begun.
    Error(GatewayError),
}

/// An increment of assistant content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// More text.
    Text(String),
    /// More reasoning text.
    Thinking(String),
    /// The signature closing a reasoning block (Anthropic).
    ThinkingSignature(String),
    /// A whole redacted reasoning block (Anthropic).
    RedactedThinking(String),
    /// More refusal text (OpenAI).
    Refusal(String),
    /// A tool call began. `index` numbers tool calls within the choice from zero.
    ToolCallStart {
        /// Tool-call ordinal within the choice.
        index: u32,
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallArguments {
        /// Tool-call ordinal within the choice.
        index: u32,
        /// The next fragment of the arguments' JSON text.
        fragment: String,
    },
    /// A tool call's arguments are complete: no more deltas for this call follow.
    ToolCallEnd {
        /// Tool-call ordinal within the choice.
        index: u32,
    },
}

//! The canonical model of Portcullis.
//!
//! Every dialect the gateway speaks (OpenAI Chat Completions, Anthropic Messages, and the
//! provider dialects added later) is decoded into these types at the edge and encoded back
//! out of them; everything between the edges — routing, caching, limits, policies, logging —
//! sees only this model. The crate owns:
//!
//! - [`chat`]: chat requests and responses (messages, content parts, tools, usage);
//! - [`config`]: configuration problems ([`Issue`]) and the [`config::Block`] trait every
//!   crate defining a block of the configuration file implements;
//! - [`stream`]: the events a streamed chat response is made of;
//! - [`accumulate`]: folding a stream's events back into a complete response;
//! - [`embeddings`]: embedding requests and responses;
//! - [`error`]: [`GatewayError`], which says what failed, who is to blame and whether a retry
//!   may help;
//! - [`identity`]: who is calling and how they authenticated;
//! - [`dialect`]: the wire dialects and the dialect-specific fields carried through unchanged;
//! - [`raw`]: JSON carried without being interpreted, kept as text.

pub mod accumulate;
pub mod chat;
pub mod config;
pub mod dialect;
pub mod duration;
pub mod embeddings;
pub mod error;
pub mod identity;
pub mod raw;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;

pub use accumulate::ResponseAccumulator;
pub use chat::{
    ChatRequest, ChatResponse, Choice, ImageSource, Message, NativeTool, Part, Reasoning, Role,
    StopReason, ToolChoice, ToolDefinition, Usage,
};
pub use config::{Issue, Issues};
pub use dialect::{Dialect, Extras};
pub use duration::{DurationError, parse_duration};
pub use embeddings::{EmbeddingInput, EmbeddingsRequest, EmbeddingsResponse};
pub use error::{Blame, ErrorKind, GatewayError};
pub use identity::{AccessRole, AuthMethod, Identity, model_matches};
pub use raw::RawJson;
pub use stream::{Delta, StreamEvent};

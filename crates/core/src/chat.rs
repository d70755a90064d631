//! Chat requests and responses in canonical form.
//!
//! Conventions every codec follows:
//! - System and developer instructions are messages with [`Role::System`] / [`Role::Developer`]
//!   in conversation order; dialects that hold them apart (Anthropic) hoist them on encode.
//! - Tool results are [`Part::ToolResult`] parts. OpenAI carries them in `tool` messages
//!   ([`Role::Tool`]), Anthropic inside `user` messages; encoders accept both placements.
//! - Tool-call arguments are kept as the raw JSON text the model produced, because models
//!   sometimes emit invalid JSON and the gateway must not silently rewrite it.
//! - [`Usage::input_tokens`] counts every prompt token, cached ones included (OpenAI's
//!   convention); the cached and cache-write counts are subsets of it.

use serde_json::Value;

use crate::dialect::Extras;
use crate::raw::RawJson;

/// A chat completion request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The model exactly as the client named it (`provider/model`, a route, an alias, or a bare name).
    pub model: String,
    /// The conversation, system instructions included.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic).
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client asked for usage in the stream (OpenAI `stream_options.include_usage`).
    /// The gateway always asks the upstream for usage; this only decides what the client sees.
    pub stream_include_usage: bool,
    /// Number of choices to generate (OpenAI `n`).
    pub n: Option<u32>,
    /// Tools the model may call.
    pub tools: Vec<ToolDefinition>,
    /// How the model must choose among tools.
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may be emitted in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// End-user identifier forwarded to the provider for abuse monitoring.
    pub user: Option<String>,
    /// Extended reasoning / thinking settings.
    pub reasoning: Option<Reasoning>,
    /// Structured output request (OpenAI `response_format`), kept as the JSON received.
    pub response_format: Option<RawJson>,
    /// Provider-native tools (Anthropic server tools such as web search), forwarded only to
    /// upstreams of the dialect they were received in.
    pub native_tools: Vec<NativeTool>,
    /// Dialect-specific fields forwarded only to upstreams of the same dialect.
    pub extras: Extras,
}

impl ChatRequest {
    /// The text of the last user message, for logs and previews.
    pub fn last_user_text(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .and_then(|m| {
                m.content.iter().find_map(|p| match p {
                    Part::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
            })
    }
}

/// Reasoning ("thinking") settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reasoning {
    /// Whether reasoning is on.
    pub enabled: bool,
    /// OpenAI-style effort (`minimal`, `low`, `medium`, `high`, …).
    pub effort: Option<String>,
    /// Anthropic-style token budget.
    pub budget_tokens: Option<u32>,
}

/// Who a message is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// System instructions.
    System,
    /// Developer instructions (OpenAI); treated as system instructions elsewhere.
    Developer,
    /// The end user, or a client relaying tool results (Anthropic).
    User,
    /// The model.
    Assistant,
    /// Tool results (OpenAI).
    Tool,
}

impl Role {
    /// Whether the message carries instructions rather than conversation.
    pub fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Ordered content.
    pub content: Vec<Part>,
    /// Optional participant name (OpenAI).
    pub name: Option<String>,
}

impl Message {
    /// A message holding a single text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Part::text(text)],
            name: None,
        }
    }

    /// The concatenation of the message's text parts.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text, .. } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
        /// Anthropic prompt-caching marker, forwarded to Anthropic upstreams.
        cache_control: Option<Value>,
    },
    /// An image, by URL or inline.
    Image {
        /// Where the image is.
        source: ImageSource,
        /// OpenAI `detail` hint.
        detail: Option<String>,
        /// Anthropic prompt-caching marker.
        cache_control: Option<Value>,
    },
    /// A tool call emitted by the model.
    ToolCall {
        /// Call id, echoed by the matching result.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as the raw JSON text the model produced.
        arguments: String,
        /// Anthropic prompt-caching marker.
        cache_control: Option<Value>,
    },
    /// The result of a tool call, supplied by the client.
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// Result content (text and images).
        content: Vec<Part>,
        /// Whether the tool failed.
        is_error: bool,
        /// Anthropic prompt-caching marker.
        cache_control: Option<Value>,
    },
    /// Model reasoning text.
    Thinking {
        /// The reasoning text.
        text: String,
        /// Anthropic signature that lets the block be sent back.
        signature: Option<String>,
    },
    /// Reasoning the provider returned encrypted (Anthropic `redacted_thinking`).
    RedactedThinking {
        /// Opaque payload.
        data: String,
    },
    /// A refusal by the model (OpenAI `refusal`).
    Refusal {
        /// The refusal text.
        text: String,
    },
    /// A part of a type the canonical model does not know, forwarded only within its dialect.
    Opaque {
        /// The dialect it was received in.
        dialect: crate::Dialect,
        /// The part as received.
        value: Value,
    },
}

impl Part {
    /// A text part without cache control.
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            cache_control: None,
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// A URL the provider fetches.
    Url(String),
    /// Inline base64 data.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64 payload.
        data: String,
    },
}

impl ImageSource {
    /// Parses an OpenAI `image_url.url`, which is either a URL or a `data:` URL.
    pub fn from_url(url: String) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        ImageSource::Url(url)
    }

    /// The image as a URL (`data:` for inline images).
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(url) => url.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// Tool name.
    pub name: String,
    /// What the tool does.
    pub description: Option<String>,
    /// JSON Schema of the arguments, kept as the JSON received.
    pub parameters: RawJson,
    /// OpenAI strict schema adherence.
    pub strict: Option<bool>,
    /// Anthropic prompt-caching marker.
    pub cache_control: Option<Value>,
}

/// A provider-native tool definition the canonical model does not interpret.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeTool {
    /// The dialect it was received in.
    pub dialect: crate::Dialect,
    /// The definition as received.
    pub definition: Value,
}

/// How the model must use tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

/// A chat completion response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    /// Provider-assigned id.
    pub id: String,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// Unix time in seconds.
    pub created: u64,
    /// The generated choices (one unless `n` was set).
    pub choices: Vec<Choice>,
    /// Token usage.
    pub usage: Usage,
    /// Dialect-specific fields of the response object.
    pub extras: Extras,
}

/// One generated answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    /// Position among the choices.
    pub index: u32,
    /// The assistant content: text, tool calls, thinking, refusals.
    pub content: Vec<Part>,
    /// Why generation stopped.
    pub stop_reason: Option<StopReason>,
    /// The stop sequence that matched, when one did.
    pub stop_sequence: Option<String>,
    /// OpenAI log probabilities, forwarded as received.
    pub logprobs: Option<Value>,
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Natural end of turn.
    EndTurn,
    /// The token limit was reached.
    MaxTokens,
    /// A stop sequence matched.
    StopSequence,
    /// The model called tools.
    ToolUse,
    /// Output was withheld by a content filter or refusal.
    ContentFilter,
    /// The provider paused a long turn (Anthropic `pause_turn`).
    PauseTurn,
    /// A reason the canonical model does not know, as received.
    Other(String),
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic).
    pub cache_write_input_tokens: u64,
    /// Generated tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Folds `other` into `self`, taking each non-zero field of `other`.
    ///
    /// Streams report usage in pieces (Anthropic: input at the start, output at the end;
    /// OpenAI: all at the end), so later reports refine earlier ones.
    pub fn merge(&mut self, other: &Usage) {
        fn take(dst: &mut u64, src: u64) {
            if src != 0 {
                *dst = src;
            }
        }
        take(&mut self.input_tokens, other.input_tokens);
        take(&mut self.output_tokens, other.output_tokens);
        take(&mut self.cached_input_tokens, other.cached_input_tokens);
        take(
            &mut self.cache_write_input_tokens,
            other.cache_write_input_tokens,
        );
        take(&mut self.reasoning_tokens, other.reasoning_tokens);
    }

    /// Total of prompt and generated tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_round_trip_as_base64_images() {
        let src = ImageSource::from_url("data:image/png;base64,AAAA".into());
        assert_eq!(
            src,
            ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            }
        );
        assert_eq!(src.to_url(), "data:image/png;base64,AAAA");
        assert_eq!(
            ImageSource::from_url("https://x/y.png".into()),
            ImageSource::Url("https://x/y.png".into())
        );
        // A data URL that is not base64 stays a URL rather than being misread.
        assert_eq!(
            ImageSource::from_url("data:text/plain,hi".into()),
            ImageSource::Url("data:text/plain,hi".into())
        );
    }

    #[test]
    fn usage_merge_keeps_earlier_fields_later_reports_omit() {
        let mut u = Usage {
            input_tokens: 10,
            ..Usage::default()
        };
        u.merge(&Usage {
            output_tokens: 5,
            ..Usage::default()
        });
        assert_eq!(u.input_tokens, 10);
        assert_eq!(u.output_tokens, 5);
        assert_eq!(u.total_tokens(), 15);
    }
}

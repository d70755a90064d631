//! OpenAI Chat Completions requests: decoding a client's request into the canonical model and
//! encoding the canonical model for an OpenAI-dialect upstream.

use std::fmt;

use std::collections::BTreeMap;

use portcullis_core::{
    ChatRequest, Dialect, Extras, GatewayError, ImageSource, Message, Part, RawJson, Reasoning,
    Role, ToolChoice, ToolDefinition,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{Key, StringOrParts, StringOrStrings, parse_request, take_str};

/// Decodes an OpenAI Chat Completions request body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let wire: WireRequest = parse_request(body)?;
    wire.into_canonical()
}

#[derive(Default)]
struct WireRequest {
    model: Option<String>,
    messages: Option<Vec<WireMessage>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<WireStreamOptions>,
    stop: Option<StringOrStrings>,
    tools: Option<Vec<WireTool>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    user: Option<String>,
    reasoning_effort: Option<String>,
    response_format: Option<RawJson>,
    /// Fields the gateway does not interpret, kept as the JSON received.
    extras: BTreeMap<String, RawJson>,
}

impl<'de> Deserialize<'de> for WireRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a chat completion request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireRequest, A::Error> {
                let mut r = WireRequest::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.as_str() {
                        "model" => r.model = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "max_completion_tokens" => r.max_completion_tokens = map.next_value()?,
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "n" => r.n = map.next_value()?,
                        "stream" => r.stream = map.next_value()?,
                        "stream_options" => r.stream_options = map.next_value()?,
                        "stop" => r.stop = map.next_value()?,
                        "tools" => r.tools = map.next_value()?,
                        "tool_choice" => r.tool_choice = map.next_value()?,
                        "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                        "user" => r.user = map.next_value()?,
                        "reasoning_effort" => r.reasoning_effort = map.next_value()?,
                        "response_format" => r.response_format = map.next_value()?,
                        _ => {
                            let v: RawJson = map.next_value()?;
                            r.extras.insert(key.into_string(), v);
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct WireStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    #[serde(default)]
    content: Option<StringOrParts>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

/// A tool call as it appears in requests and non-streamed responses.
#[derive(Deserialize)]
pub(crate) struct WireToolCall {
    #[serde(default)]
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) function: Option<WireFunctionCall>,
}

#[derive(Deserialize)]
pub(crate) struct WireFunctionCall {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) arguments: Option<Value>,
}

impl WireToolCall {
    pub(crate) fn into_part(self) -> Part {
        let (name, arguments) = match self.function {
            Some(f) => (f.name, arguments_text(f.arguments)),
            None => (String::new(), String::new()),
        };
        Part::ToolCall {
            id: self.id,
            name,
            arguments,
            cache_control: None,
        }
    }
}

/// Tool-call arguments are a JSON string; lenient clients send an object instead.
fn arguments_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => crate::json::to_string_lossless(&other),
    }
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDef>,
}

#[derive(Deserialize)]
struct WireFunctionDef {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<RawJson>,
    #[serde(default)]
    strict: Option<bool>,
}

impl WireRequest {
    fn into_canonical(self) -> Result<ChatRequest, GatewayError> {
        let model = match self.model {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(
                    GatewayError::invalid_request("Missing required parameter: `model`")
                        .with_param("model")
                        .with_code("missing_required_parameter"),
                );
            }
        };
        let wire_messages = self.messages.ok_or_else(|| {
            GatewayError::invalid_request("Missing required parameter: `messages`")
                .with_param("messages")
                .with_code("missing_required_parameter")
        })?;
        if wire_messages.is_empty() {
            return Err(GatewayError::invalid_request(
                "`messages` must contain at least one message",
            )
            .with_param("messages")
            .with_code("empty_array"));
        }
        let mut messages = Vec::with_capacity(wire_messages.len());
        for (i, m) in wire_messages.into_iter().enumerate() {
            messages.push(decode_message(m, i)?);
        }

        let mut tools = Vec::new();
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            match (t.kind.as_deref(), t.function) {
                (None | Some("function"), Some(f)) => tools.push(ToolDefinition {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters.unwrap_or_else(empty_object_schema),
                    strict: f.strict,
                    cache_control: None,
                }),
                (kind, _) => {
                    return Err(GatewayError::invalid_request(format!(
                        "Unsupported tool at `tools[{i}]`: expected `{{\"type\": \"function\", \"function\": {{…}}}}`, got type {}",
                        kind.unwrap_or("(none)")
                    ))
                    .with_param(format!("tools[{i}]")));
                }
            }
        }

        let tool_choice = match self.tool_choice {
            None | Some(Value::Null) => None,
            Some(v) => Some(decode_tool_choice(v)?),
        };

        let reasoning = self.reasoning_effort.map(|effort| Reasoning {
            enabled: effort != "none",
            effort: Some(effort),
            budget_tokens: None,
        });

        let stream = self.stream.unwrap_or(false);
        Ok(ChatRequest {
            model,
            messages,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: None,
            stop: self.stop.map(|s| s.0).unwrap_or_default(),
            stream,
            stream_include_usage: stream
                && self
                    .stream_options
                    .and_then(|o| o.include_usage)
                    .unwrap_or(false),
            n: self.n,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            user: self.user,
            reasoning,
            response_format: self.response_format,
            native_tools: Vec::new(),
            extras: Extras {
                dialect: Some(Dialect::OpenAi),
                fields: self.extras,
            },
        })
    }
}

pub(crate) fn empty_object_schema() -> RawJson {
    RawJson::from_string(r#"{"type":"object","properties":{}}"#.to_owned())
        .unwrap_or_else(RawJson::null)
}

fn decode_message(m: WireMessage, i: usize) -> Result<Message, GatewayError> {
    let role = match m.role {
        WireRole::System => Role::System,
        WireRole::Developer => Role::Developer,
        WireRole::User => Role::User,
        WireRole::Assistant => Role::Assistant,
        WireRole::Tool | WireRole::Function => Role::Tool,
    };
    let mut content = match m.content {
        None => Vec::new(),
        Some(StringOrParts::String(s)) => vec![Part::text(s)],
        Some(StringOrParts::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                out.push(decode_part(p, i, j)?);
            }
            out
        }
    };
    match role {
        Role::Assistant => {
            if let Some(r) = m.reasoning_content {
                content.insert(
                    0,
                    Part::Thinking {
                        text: r,
                        signature: None,
                    },
                );
            }
            if let Some(r) = m.refusal {
                content.push(Part::Refusal { text: r });
            }
            for call in m.tool_calls.unwrap_or_default() {
                content.push(call.into_part());
            }
            if content.is_empty() {
                return Err(GatewayError::invalid_request(format!(
                    "`messages[{i}]`: an assistant message needs `content` or `tool_calls`"
                ))
                .with_param(format!("messages[{i}].content")));
            }
        }
        Role::Tool => {
            let call_id = match (m.tool_call_id, m.role, m.name.clone()) {
                (Some(id), _, _) => id,
                // Legacy `function` messages are identified by the function name.
                (None, WireRole::Function, Some(name)) => name,
                _ => {
                    return Err(GatewayError::invalid_request(format!(
                        "Missing required parameter: `messages[{i}].tool_call_id`"
                    ))
                    .with_param(format!("messages[{i}].tool_call_id")));
                }
            };
            content = vec![Part::ToolResult {
                call_id,
                content,
                is_error: false,
                cache_control: None,
            }];
        }
        _ => {
            if content.is_empty() {
                return Err(GatewayError::invalid_request(format!(
                    "Missing required parameter: `messages[{i}].content`"
                ))
                .with_param(format!("messages[{i}].content")));
            }
        }
    }
    Ok(Message {
        role,
        content,
        name: if m.role == WireRole::Function {
            None
        } else {
            m.name
        },
    })
}

fn decode_part(mut p: Value, i: usize, j: usize) -> Result<Part, GatewayError> {
    let bad = |what: &str| {
        GatewayError::invalid_request(format!(
            "Invalid content part `messages[{i}].content[{j}]`: {what}"
        ))
        .with_param(format!("messages[{i}].content[{j}]"))
    };
    let Some(obj) = p.as_object_mut() else {
        return Err(bad("expected an object"));
    };
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" | "input_text" => {
            let text = take_str(obj, "text").ok_or_else(|| bad("`text` must be a string"))?;
            Ok(Part::text(text))
        }
        "image_url" => {
            let (url, detail) = match obj.get_mut("image_url").map(Value::take) {
                Some(Value::String(url)) => (url, None),
                Some(Value::Object(mut o)) => {
                    let url = take_str(&mut o, "url")
                        .ok_or_else(|| bad("`image_url.url` must be a string"))?;
                    (url, take_str(&mut o, "detail"))
                }
                _ => return Err(bad("`image_url` must be an object with a `url`")),
            };
            Ok(Part::Image {
                source: ImageSource::from_url(url),
                detail,
                cache_control: None,
            })
        }
        "refusal" => {
            let text = take_str(obj, "refusal").ok_or_else(|| bad("`refusal` must be a string"))?;
            Ok(Part::Refusal { text })
        }
        "" => Err(bad("missing `type`")),
        _ => Ok(Part::Opaque {
            dialect: Dialect::OpenAi,
            value: p,
        }),
    }
}

fn decode_tool_choice(v: Value) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        GatewayError::invalid_request(
            "Invalid `tool_choice`: expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": …}}",
        )
        .with_param("tool_choice")
    };
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned()))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Which field carries the output-token limit upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_completion_tokens`, which OpenAI requires for reasoning models.
    MaxCompletionTokens,
    /// `max_tokens`, which most OpenAI-compatible servers expect.
    MaxTokens,
}

/// How to encode a request for a particular OpenAI-dialect upstream.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// The upstream's model name.
    pub model: &'a str,
    /// Which token-limit field the upstream understands.
    pub max_tokens_field: MaxTokensField,
    /// Whether the model accepts `reasoning_effort` derived from a thinking budget. An effort
    /// the client sent itself is always forwarded.
    pub derive_reasoning_effort: bool,
}

/// Encodes a canonical request as an OpenAI Chat Completions body.
///
/// Streams always ask for usage (`stream_options.include_usage`), whatever the client asked,
/// so every streamed request is accounted for.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions<'_>,
) -> Result<Vec<u8>, GatewayError> {
    for m in &req.messages {
        for p in &m.content {
            if let Part::Opaque { dialect, value } = p
                && *dialect != Dialect::OpenAi
            {
                return Err(unsupported_part(value));
            }
        }
    }
    let out = RequestOut { req, opts };
    serde_json::to_vec(&out).map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

fn unsupported_part(value: &Value) -> GatewayError {
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    GatewayError::invalid_request(format!(
        "Content of type `{kind}` cannot be sent to an OpenAI-compatible model"
    ))
    .with_param("messages")
}

struct RequestOut<'a> {
    req: &'a ChatRequest,
    opts: &'a EncodeOptions<'a>,
}

impl Serialize for RequestOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.opts.model)?;
        m.serialize_entry("messages", &MessagesOut(&r.messages))?;
        if let Some(max) = r.max_tokens {
            let field = match self.opts.max_tokens_field {
                MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
                MaxTokensField::MaxTokens => "max_tokens",
            };
            m.serialize_entry(field, &max)?;
        }
        if let Some(t) = r.temperature {
            m.serialize_entry("temperature", &t)?;
        }
        if let Some(t) = r.top_p {
            m.serialize_entry("top_p", &t)?;
        }
        if let Some(n) = r.n {
            m.serialize_entry("n", &n)?;
        }
        if !r.stop.is_empty() {
            m.serialize_entry("stop", &r.stop)?;
        }
        if r.stream {
            m.serialize_entry("stream", &true)?;
            m.serialize_entry(
                "stream_options",
                &serde_json::json!({"include_usage": true}),
            )?;
        }
        if !r.tools.is_empty() {
            m.serialize_entry("tools", &ToolsOut(&r.tools))?;
        }
        if let Some(tc) = &r.tool_choice {
            m.serialize_entry("tool_choice", &ToolChoiceOut(tc))?;
        }
        if let Some(p) = r.parallel_tool_calls {
            m.serialize_entry("parallel_tool_calls", &p)?;
        }
        if let Some(u) = &r.user {
            m.serialize_entry("user", u)?;
        }
        if let Some(effort) =
            reasoning_effort(r.reasoning.as_ref(), self.opts.derive_reasoning_effort)
        {
            m.serialize_entry("reasoning_effort", effort)?;
        }
        if let Some(f) = &r.response_format {
            m.serialize_entry("response_format", f)?;
        }
        if let Some(extras) = r.extras.for_dialect(Dialect::OpenAi) {
            for (k, v) in extras {
                // `stream_options` is always decided by the gateway.
                if k != "stream_options" {
                    m.serialize_entry(k, v)?;
                }
            }
        }
        m.end()
    }
}

/// The OpenAI effort for canonical reasoning settings; a token budget maps to the nearest effort.
fn reasoning_effort(r: Option<&Reasoning>, derive: bool) -> Option<&str> {
    let r = r?;
    if let Some(e) = &r.effort {
        return Some(e.as_str());
    }
    if !r.enabled || !derive {
        return None;
    }
    Some(match r.budget_tokens.unwrap_or(0) {
        0..2048 => "low",
        2048..16384 => "medium",
        _ => "high",
    })
}

struct MessagesOut<'a>(&'a [Message]);

impl Serialize for MessagesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for msg in self.0 {
            match msg.role {
                Role::System | Role::Developer => {
                    seq.serialize_element(&SimpleMessageOut {
                        role: if msg.role == Role::System {
                            "system"
                        } else {
                            "developer"
                        },
                        msg,
                        parts: &msg.content,
                    })?;
                }
                Role::Assistant => seq.serialize_element(&AssistantOut(msg))?,
                Role::User | Role::Tool => {
                    // Tool results become `tool` messages, in order, ahead of whatever else
                    // the message holds; images inside tool results follow as a user message.
                    let mut has_other = false;
                    let mut result_images = Vec::new();
                    for p in &msg.content {
                        match p {
                            Part::ToolResult {
                                call_id, content, ..
                            } => {
                                seq.serialize_element(&ToolMessageOut { call_id, content })?;
                                result_images.extend(
                                    content.iter().filter(|c| matches!(c, Part::Image { .. })),
                                );
                            }
                            _ => has_other = true,
                        }
                    }
                    if !result_images.is_empty() {
                        seq.serialize_element(&ImagesMessageOut(&result_images))?;
                    }
                    if has_other {
                        seq.serialize_element(&SimpleMessageOut {
                            role: "user",
                            msg,
                            parts: &msg.content,
                        })?;
                    }
                }
            }
        }
        seq.end()
    }
}

struct SimpleMessageOut<'a> {
    role: &'static str,
    msg: &'a Message,
    parts: &'a [Part],
}

impl Serialize for SimpleMessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("role", self.role)?;
        m.serialize_entry("content", &ContentOut(self.parts))?;
        if let Some(n) = &self.msg.name {
            m.serialize_entry("name", n)?;
        }
        m.end()
    }
}

/// Content as a plain string when it is a single text part, else as an array of parts.
struct ContentOut<'a>(&'a [Part]);

impl ContentOut<'_> {
    fn single_text(&self) -> Option<&str> {
        let mut texts = self.0.iter().filter(|p| is_openai_content(p));
        match (texts.next(), texts.next()) {
            (Some(Part::Text { text, .. }), None) => Some(text),
            _ => None,
        }
    }
}

fn is_openai_content(p: &Part) -> bool {
    matches!(
        p,
        Part::Text { .. }
            | Part::Image { .. }
            | Part::Opaque {
                dialect: Dialect::OpenAi,
                ..
            }
    )
}

impl Serialize for ContentOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let Some(text) = self.single_text() {
            return s.serialize_str(text);
        }
        let mut seq = s.serialize_seq(None)?;
        for p in self.0.iter().filter(|p| is_openai_content(p)) {
            seq.serialize_element(&PartOut(p))?;
        }
        seq.end()
    }
}

struct PartOut<'a>(&'a Part);

impl Serialize for PartOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Part::Text { text, .. } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", text)?;
                m.end()
            }
            Part::Image { source, detail, .. } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "image_url")?;
                let mut url = Map::new();
                url.insert("url".into(), Value::String(source.to_url()));
                if let Some(d) = detail {
                    url.insert("detail".into(), Value::String(d.clone()));
                }
                m.serialize_entry("image_url", &url)?;
                m.end()
            }
            Part::Opaque { value, .. } => value.serialize(s),
            _ => s.serialize_none(),
        }
    }
}

struct AssistantOut<'a>(&'a Message);

impl Serialize for AssistantOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let msg = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("role", "assistant")?;
        let texts: Vec<&Part> = msg
            .content
            .iter()
            .filter(|p| matches!(p, Part::Text { .. }))
            .collect();
        match texts.as_slice() {
            [] => m.serialize_entry("content", &Value::Null)?,
            [Part::Text { text, .. }] => m.serialize_entry("content", text)?,
            _ => {
                let joined: String = msg.joined_text();
                m.serialize_entry("content", &joined)?;
            }
        }
        for p in &msg.content {
            if let Part::Refusal { text } = p {
                m.serialize_entry("refusal", text)?;
                break;
            }
        }
        if msg
            .content
            .iter()
            .any(|p| matches!(p, Part::ToolCall { .. }))
        {
            m.serialize_entry("tool_calls", &ToolCallsOut(&msg.content))?;
        }
        if let Some(n) = &msg.name {
            m.serialize_entry("name", n)?;
        }
        m.end()
    }
}

/// The `tool_calls` array of an assistant message or response.
pub(crate) struct ToolCallsOut<'a>(pub(crate) &'a [Part]);

#[derive(Serialize)]
pub(crate) struct ToolCallOut<'a> {
    pub(crate) id: &'a str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) function: FunctionCallOut<'a>,
}

#[derive(Serialize)]
pub(crate) struct FunctionCallOut<'a> {
    pub(crate) name: &'a str,
    pub(crate) arguments: &'a str,
}

impl Serialize for ToolCallsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some(ToolCallOut {
                id,
                kind: "function",
                function: FunctionCallOut { name, arguments },
            }),
            _ => None,
        }))
    }
}

struct ToolMessageOut<'a> {
    call_id: &'a str,
    content: &'a [Part],
}

impl Serialize for ToolMessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("role", "tool")?;
        m.serialize_entry("tool_call_id", self.call_id)?;
        let texts: Vec<&Part> = self
            .content
            .iter()
            .filter(|p| matches!(p, Part::Text { .. }))
            .collect();
        match texts.as_slice() {
            [Part::Text { text, .. }] => m.serialize_entry("content", text)?,
            _ => {
                let mut joined = String::new();
                for p in &texts {
                    if let Part::Text { text, .. } = p {
                        if !joined.is_empty() {
                            joined.push('\n');
                        }
                        joined.push_str(text);
                    }
                }
                m.serialize_entry("content", &joined)?;
            }
        }
        m.end()
    }
}

struct ImagesMessageOut<'a>(&'a [&'a Part]);

impl Serialize for ImagesMessageOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("role", "user")?;
        let parts: Vec<PartOut<'_>> = self.0.iter().map(|p| PartOut(p)).collect();
        m.serialize_entry("content", &parts)?;
        m.end()
    }
}

struct ToolsOut<'a>(&'a [ToolDefinition]);

#[derive(Serialize)]
struct ToolOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDefOut<'a>,
}

#[derive(Serialize)]
struct FunctionDefOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    parameters: &'a RawJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl Serialize for ToolsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| ToolOut {
            kind: "function",
            function: FunctionDefOut {
                name: &t.name,
                description: t.description.as_deref(),
                parameters: &t.parameters,
                strict: t.strict,
            },
        }))
    }
}

struct ToolChoiceOut<'a>(&'a ToolChoice);

impl Serialize for ToolChoiceOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Tool(name) => {
                serde_json::json!({"type": "function", "function": {"name": name}}).serialize(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> GatewayError {
        decode_request(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn decodes_the_common_shapes() {
        let req = decode_request(
            br#"{"model":"gpt-4o-mini","messages":[
                {"role":"developer","content":"be terse"},
                {"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAA","detail":"low"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"q\":1}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"a cat"}
            ],"stream":true,"stream_options":{"include_usage":true},"stop":"END","seed":7,
            "tools":[{"type":"function","function":{"name":"look","parameters":{"type":"object"}}}],
            "tool_choice":{"type":"function","function":{"name":"look"}},"max_completion_tokens":50}"#,
        )
        .unwrap();
        assert_eq!(req.model, "gpt-4o-mini");
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.messages[0].role, Role::Developer);
        assert!(matches!(
            &req.messages[1].content[1],
            Part::Image { source: ImageSource::Base64 { media_type, .. }, detail: Some(d), .. } if media_type == "image/png" && d == "low"
        ));
        assert!(
            matches!(&req.messages[2].content[0], Part::ToolCall { id, arguments, .. } if id == "call_1" && arguments == "{\"q\":1}")
        );
        assert!(
            matches!(&req.messages[3].content[0], Part::ToolResult { call_id, .. } if call_id == "call_1")
        );
        assert!(req.stream && req.stream_include_usage);
        assert_eq!(req.stop, vec!["END".to_owned()]);
        assert_eq!(req.max_tokens, Some(50));
        assert_eq!(req.tool_choice, Some(ToolChoice::Tool("look".into())));
        assert_eq!(req.extras.fields["seed"], Value::from(7));
        assert_eq!(req.extras.fields["seed"].get(), "7");
    }

    #[test]
    fn precise_errors_for_bad_input() {
        assert!(
            err(r#"{"model":"m","messages":[{"role":"user","content":"hi"}"#)
                .message()
                .contains("not valid JSON")
        );
        let e = err(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#);
        assert_eq!(e.param(), Some("messages[0].content"));
        let e = err(r#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#);
        assert_eq!(e.param(), Some("messages[0].role"));
        let e = err(r#"{"model":"m","messages":[]}"#);
        assert_eq!(e.param(), Some("messages"));
        let e = err(r#"{"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(e.param(), Some("model"));
        let e =
            err(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#);
        assert_eq!(e.param(), Some("temperature"));
        let e = err(r#"[1,2]"#);
        assert_eq!(e.status().as_u16(), 400);
        let e = decode_request(
            b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
        )
        .unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
    }

    #[test]
    fn encoding_always_asks_for_stream_usage_and_keeps_extras() {
        let mut req = decode_request(
            br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":1,"max_tokens":9}"#,
        )
        .unwrap();
        req.stream_include_usage = false;
        let body = encode_request(
            &req,
            &EncodeOptions {
                model: "gpt-4o-mini",
                max_tokens_field: MaxTokensField::MaxCompletionTokens,
                derive_reasoning_effort: false,
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["seed"], 1);
        assert_eq!(v["max_completion_tokens"], 9);
        assert_eq!(v["messages"][0]["content"], "hi");
    }
}

//! Anthropic Messages requests: decoding a client's request into the canonical model and
//! encoding the canonical model for an Anthropic upstream.

use std::fmt;

use std::collections::BTreeMap;

use portcullis_core::{
    ChatRequest, Dialect, Extras, GatewayError, Message, NativeTool, Part, RawJson, Reasoning,
    Role, ToolChoice, ToolDefinition,
};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::blocks::{BlockOut, decode_block};
use crate::json::{Key, StringOrParts, parse_request};
use crate::openai::empty_object_schema;

/// Decodes an Anthropic Messages request body.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    let wire: WireRequest = parse_request(body)?;
    wire.into_canonical()
}

#[derive(Default)]
struct WireRequest {
    model: Option<String>,
    max_tokens: Option<u32>,
    messages: Option<Vec<WireMessage>>,
    system: Option<StringOrParts>,
    metadata: Option<WireMetadata>,
    stop_sequences: Option<Vec<String>>,
    stream: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    tools: Option<Vec<RawJson>>,
    tool_choice: Option<WireToolChoice>,
    thinking: Option<Value>,
    /// Fields the gateway does not interpret, kept as the JSON received.
    extras: BTreeMap<String, RawJson>,
}

impl<'de> Deserialize<'de> for WireRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a messages request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireRequest, A::Error> {
                let mut r = WireRequest::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.as_str() {
                        "model" => r.model = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "system" => r.system = map.next_value()?,
                        "metadata" => r.metadata = map.next_value()?,
                        "stop_sequences" => r.stop_sequences = map.next_value()?,
                        "stream" => r.stream = map.next_value()?,
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "top_k" => r.top_k = map.next_value()?,
                        "tools" => r.tools = map.next_value()?,
                        "tool_choice" => r.tool_choice = map.next_value()?,
                        "thinking" => r.thinking = map.next_value()?,
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

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    User,
    Assistant,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    content: StringOrParts,
}

#[derive(Deserialize)]
struct WireMetadata {
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Deserialize)]
struct WireToolChoice {
    #[serde(rename = "type")]
    kind: WireToolChoiceKind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum WireToolChoiceKind {
    Auto,
    Any,
    Tool,
    None,
}

fn missing(field: &'static str) -> GatewayError {
    GatewayError::invalid_request(format!("{field}: Field required"))
        .with_param(field)
        .with_code("missing_required_parameter")
}

impl WireRequest {
    fn into_canonical(self) -> Result<ChatRequest, GatewayError> {
        let model = self
            .model
            .filter(|m| !m.is_empty())
            .ok_or_else(|| missing("model"))?;
        let max_tokens = self.max_tokens.ok_or_else(|| missing("max_tokens"))?;
        let wire_messages = self.messages.ok_or_else(|| missing("messages"))?;
        if wire_messages.is_empty() {
            return Err(GatewayError::invalid_request(
                "messages: at least one message is required",
            )
            .with_param("messages"));
        }
        let mut messages = Vec::with_capacity(wire_messages.len() + 1);
        if let Some(system) = self.system {
            let content = decode_content(system, "system")?;
            if !content.is_empty() {
                messages.push(Message {
                    role: Role::System,
                    content,
                    name: None,
                });
            }
        }
        for (i, m) in wire_messages.into_iter().enumerate() {
            let content = decode_content(m.content, &format!("messages.{i}.content"))?;
            if content.is_empty() {
                return Err(GatewayError::invalid_request(format!(
                    "messages.{i}: all messages must have non-empty content"
                ))
                .with_param(format!("messages.{i}.content")));
            }
            messages.push(Message {
                role: match m.role {
                    WireRole::User => Role::User,
                    WireRole::Assistant => Role::Assistant,
                },
                content,
                name: None,
            });
        }

        let mut tools = Vec::new();
        let mut native_tools = Vec::new();
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            match decode_tool(t) {
                Ok(ToolDecl::Client(def)) => tools.push(def),
                Ok(ToolDecl::Native(definition)) => native_tools.push(NativeTool {
                    dialect: Dialect::Anthropic,
                    definition,
                }),
                Err(what) => {
                    return Err(GatewayError::invalid_request(format!("tools.{i}: {what}"))
                        .with_param(format!("tools.{i}")));
                }
            }
        }

        let mut parallel_tool_calls = None;
        let tool_choice = match self.tool_choice {
            None => None,
            Some(tc) => {
                if tc.disable_parallel_tool_use == Some(true) {
                    parallel_tool_calls = Some(false);
                }
                Some(match tc.kind {
                    WireToolChoiceKind::Auto => ToolChoice::Auto,
                    WireToolChoiceKind::Any => ToolChoice::Required,
                    WireToolChoiceKind::None => ToolChoice::None,
                    WireToolChoiceKind::Tool => ToolChoice::Tool(tc.name.ok_or_else(|| {
                        GatewayError::invalid_request("tool_choice.name: Field required")
                            .with_param("tool_choice.name")
                    })?),
                })
            }
        };

        let mut extras = self.extras;
        let reasoning = match self.thinking {
            None => None,
            Some(t) => match t.get("type").and_then(Value::as_str) {
                Some("enabled") => Some(Reasoning {
                    enabled: true,
                    effort: None,
                    budget_tokens: t
                        .get("budget_tokens")
                        .and_then(Value::as_u64)
                        .and_then(|b| u32::try_from(b).ok()),
                }),
                Some("disabled") => Some(Reasoning::default()),
                // Newer thinking modes pass through to Anthropic upstreams untouched.
                _ => {
                    extras.insert("thinking".to_owned(), RawJson::from_value(&t));
                    None
                }
            },
        };

        let stream = self.stream.unwrap_or(false);
        Ok(ChatRequest {
            model,
            messages,
            max_tokens: Some(max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop: self.stop_sequences.unwrap_or_default(),
            stream,
            // Anthropic streams always carry usage.
            stream_include_usage: stream,
            n: None,
            tools,
            tool_choice,
            parallel_tool_calls,
            user: self.metadata.and_then(|m| m.user_id),
            reasoning,
            response_format: None,
            native_tools,
            extras: Extras {
                dialect: Some(Dialect::Anthropic),
                fields: extras,
            },
        })
    }
}

fn decode_content(c: StringOrParts, at: &str) -> Result<Vec<Part>, GatewayError> {
    match c {
        StringOrParts::String(s) if s.is_empty() => Ok(Vec::new()),
        StringOrParts::String(s) => Ok(vec![Part::text(s)]),
        StringOrParts::Parts(blocks) => {
            let mut out = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.into_iter().enumerate() {
                out.push(decode_block(b).map_err(|what| {
                    GatewayError::invalid_request(format!("{at}.{j}: {what}"))
                        .with_param(format!("{at}.{j}"))
                })?);
            }
            Ok(out)
        }
    }
}

enum ToolDecl {
    Client(ToolDefinition),
    Native(Value),
}

/// The members of a tool definition the gateway reads; its schema stays raw JSON.
#[derive(Deserialize)]
struct WireTool<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    description: Option<&'a RawValue>,
    #[serde(default)]
    input_schema: Option<RawJson>,
    #[serde(default)]
    cache_control: Option<Value>,
}

/// A member that counts only when it is a string (anything else reads as absent).
fn string_member(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

fn decode_tool(t: RawJson) -> Result<ToolDecl, String> {
    if !t.get().trim_start().starts_with('{') {
        return Err("expected an object".to_owned());
    }
    let wire: WireTool<'_> = serde_json::from_str(t.get()).map_err(|e| e.to_string())?;
    match string_member(wire.kind).as_deref() {
        None | Some("custom") => {}
        Some(_) => return Ok(ToolDecl::Native(t.to_value())),
    }
    let Some(name) = string_member(wire.name) else {
        return Err("`name` is required".to_owned());
    };
    Ok(ToolDecl::Client(ToolDefinition {
        name,
        description: string_member(wire.description),
        parameters: wire.input_schema.unwrap_or_else(empty_object_schema),
        strict: None,
        cache_control: wire.cache_control,
    }))
}

/// How to encode a request for a particular Anthropic upstream.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// The upstream's model name.
    pub model: &'a str,
    /// `max_tokens` to send when the client gave none (Anthropic requires one).
    pub default_max_tokens: u32,
}

/// Encodes a canonical request as an Anthropic Messages body.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions<'_>,
) -> Result<Vec<u8>, GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_request(
            "Anthropic models generate one choice per request; `n` must be 1",
        )
        .with_param("n"));
    }
    // Validate everything the serializer cannot report precisely.
    for m in &req.messages {
        for p in &m.content {
            match p {
                Part::ToolCall {
                    name, arguments, ..
                } if !arguments.trim().is_empty() => {
                    let ok = serde_json::from_str::<&RawValue>(arguments)
                        .map(|raw| raw.get().trim_start().starts_with('{'))
                        .unwrap_or(false);
                    if !ok {
                        return Err(GatewayError::invalid_request(format!(
                            "The arguments of the call to tool `{name}` are not a JSON object"
                        ))
                        .with_param("messages"));
                    }
                }
                Part::Opaque {
                    dialect: Dialect::OpenAi,
                    value,
                } if super::blocks::openai_file_as_document(value).is_none() => {
                    let kind = value
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    return Err(GatewayError::invalid_request(format!(
                        "Content of type `{kind}` cannot be sent to an Anthropic model"
                    ))
                    .with_param("messages"));
                }
                _ => {}
            }
        }
    }
    serde_json::to_vec(&RequestOut { req, opts })
        .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

struct RequestOut<'a> {
    req: &'a ChatRequest,
    opts: &'a EncodeOptions<'a>,
}

/// Anthropic's thinking budget for an OpenAI-style effort.
fn effort_budget(effort: &str) -> u32 {
    match effort {
        "minimal" => 1024,
        "low" => 2048,
        "medium" => 8192,
        _ => 24576,
    }
}

impl Serialize for RequestOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let mut max_tokens = r.max_tokens.unwrap_or(self.opts.default_max_tokens);
        let thinking = r.reasoning.as_ref().and_then(|reasoning| {
            if reasoning.enabled {
                let budget = reasoning
                    .budget_tokens
                    .or_else(|| reasoning.effort.as_deref().map(effort_budget))
                    .unwrap_or(1024)
                    .max(1024);
                if max_tokens <= budget {
                    max_tokens = budget + max_tokens.max(1024);
                }
                Some(serde_json::json!({"type": "enabled", "budget_tokens": budget}))
            } else if reasoning.effort.is_none() {
                Some(serde_json::json!({"type": "disabled"}))
            } else {
                None
            }
        });
        // Thinking derived from an OpenAI-style effort: Anthropic refuses non-default sampling
        // parameters while thinking, so the translated request leaves them out. A native
        // Anthropic request keeps exactly what the client sent.
        let thinking_on = r.reasoning.as_ref().is_some_and(|reasoning| {
            reasoning.enabled && reasoning.budget_tokens.is_none() && reasoning.effort.is_some()
        });

        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.opts.model)?;
        m.serialize_entry("max_tokens", &max_tokens)?;
        let system: Vec<&Part> = r
            .messages
            .iter()
            .filter(|m| m.role.is_instruction())
            .flat_map(|m| m.content.iter())
            .filter(|p| matches!(p, Part::Text { text, .. } if !text.is_empty()))
            .collect();
        match system.as_slice() {
            [] => {}
            [
                Part::Text {
                    text,
                    cache_control: None,
                },
            ] => m.serialize_entry("system", text)?,
            parts => m.serialize_entry("system", &BlocksOut(parts))?,
        }
        m.serialize_entry("messages", &MessagesOut(&r.messages))?;
        if !r.stop.is_empty() {
            m.serialize_entry("stop_sequences", &r.stop)?;
        }
        if r.stream {
            m.serialize_entry("stream", &true)?;
        }
        if let Some(t) = r.temperature
            && (!thinking_on || t == 1.0)
        {
            m.serialize_entry("temperature", &t)?;
        }
        if let Some(p) = r.top_p
            && !thinking_on
        {
            m.serialize_entry("top_p", &p)?;
        }
        if let Some(k) = r.top_k
            && !thinking_on
        {
            m.serialize_entry("top_k", &k)?;
        }
        let native: Vec<&Value> = r
            .native_tools
            .iter()
            .filter(|t| t.dialect == Dialect::Anthropic)
            .map(|t| &t.definition)
            .collect();
        if !r.tools.is_empty() || !native.is_empty() {
            m.serialize_entry(
                "tools",
                &ToolsOut {
                    tools: &r.tools,
                    native: &native,
                },
            )?;
        }
        let disable_parallel = r.parallel_tool_calls == Some(false);
        match (&r.tool_choice, disable_parallel) {
            (None, false) => {}
            (choice, _) => {
                let mut tc = Map::new();
                let (kind, name) = match choice {
                    None | Some(ToolChoice::Auto) => ("auto", None),
                    Some(ToolChoice::None) => ("none", None),
                    Some(ToolChoice::Required) => ("any", None),
                    Some(ToolChoice::Tool(n)) => ("tool", Some(n)),
                };
                tc.insert("type".into(), Value::from(kind));
                if let Some(n) = name {
                    tc.insert("name".into(), Value::from(n.as_str()));
                }
                if disable_parallel && kind != "none" {
                    tc.insert("disable_parallel_tool_use".into(), Value::Bool(true));
                }
                if !(r.tools.is_empty() && native.is_empty()) {
                    m.serialize_entry("tool_choice", &tc)?;
                }
            }
        }
        if let Some(u) = &r.user {
            m.serialize_entry("metadata", &serde_json::json!({ "user_id": u }))?;
        }
        if let Some(t) = &thinking {
            m.serialize_entry("thinking", t)?;
        }
        if let Some(extras) = r.extras.for_dialect(Dialect::Anthropic) {
            for (k, v) in extras {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// The conversation without instructions, tool messages folded into user turns and
/// consecutive turns of the same role merged, as Anthropic expects.
struct MessagesOut<'a>(&'a [Message]);

impl Serialize for MessagesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut turns: Vec<(&'static str, Vec<&Part>)> = Vec::with_capacity(self.0.len());
        for msg in self.0 {
            let role = match msg.role {
                Role::System | Role::Developer => continue,
                Role::User | Role::Tool => "user",
                Role::Assistant => "assistant",
            };
            let parts = msg.content.iter().filter(|p| is_sendable(p));
            match turns.last_mut() {
                Some((last, blocks)) if *last == role => blocks.extend(parts),
                _ => turns.push((role, parts.collect())),
            }
        }
        let mut seq = s.serialize_seq(None)?;
        for (role, blocks) in &turns {
            if blocks.is_empty() {
                continue;
            }
            seq.serialize_element(&TurnOut { role, blocks })?;
        }
        seq.end()
    }
}

/// Whether Anthropic accepts the part in a message.
fn is_sendable(p: &Part) -> bool {
    match p {
        Part::Text { text, .. } | Part::Refusal { text } => !text.is_empty(),
        Part::Thinking { signature, .. } => signature.as_deref().is_some_and(|s| !s.is_empty()),
        Part::Opaque { dialect, value } => {
            *dialect == Dialect::Anthropic
                || super::blocks::openai_file_as_document(value).is_some()
        }
        _ => true,
    }
}

struct TurnOut<'a> {
    role: &'a str,
    blocks: &'a [&'a Part],
}

impl Serialize for TurnOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("role", self.role)?;
        m.serialize_entry("content", &BlocksOut(self.blocks))?;
        m.end()
    }
}

struct BlocksOut<'a>(&'a [&'a Part]);

impl Serialize for BlocksOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| BlockOut(p)))
    }
}

struct ToolsOut<'a> {
    tools: &'a [ToolDefinition],
    native: &'a [&'a Value],
}

#[derive(Serialize)]
struct ToolOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: &'a RawJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<&'a Value>,
}

impl Serialize for ToolsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.tools.len() + self.native.len()))?;
        for t in self.tools {
            seq.serialize_element(&ToolOut {
                name: &t.name,
                description: t.description.as_deref(),
                input_schema: &t.parameters,
                cache_control: t.cache_control.as_ref(),
            })?;
        }
        for n in self.native {
            seq.serialize_element(n)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_system_tools_results_and_thinking() {
        let req = decode_request(
            br#"{"model":"claude-sonnet-4-5","max_tokens":1024,
            "system":[{"type":"text","text":"be kind","cache_control":{"type":"ephemeral"}}],
            "messages":[
              {"role":"user","content":"weather?"},
              {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"sig"},{"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Paris"}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny","is_error":false},{"type":"text","text":"thanks"}]}
            ],
            "tools":[{"name":"w","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}],
            "tool_choice":{"type":"any","disable_parallel_tool_use":true},
            "thinking":{"type":"enabled","budget_tokens":2048},"metadata":{"user_id":"u1"},"service_tier":"auto"}"#,
        )
        .unwrap();
        assert_eq!(req.messages[0].role, Role::System);
        assert!(matches!(
            &req.messages[0].content[0],
            Part::Text {
                cache_control: Some(_),
                ..
            }
        ));
        assert!(
            matches!(&req.messages[2].content[1], Part::ToolCall { arguments, .. } if arguments == r#"{"city":"Paris"}"#)
        );
        assert!(
            matches!(&req.messages[3].content[0], Part::ToolResult { call_id, .. } if call_id == "toolu_1")
        );
        assert_eq!(req.tools.len(), 1);
        assert_eq!(req.native_tools.len(), 1);
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.parallel_tool_calls, Some(false));
        assert_eq!(req.reasoning.as_ref().unwrap().budget_tokens, Some(2048));
        assert_eq!(req.user.as_deref(), Some("u1"));
        assert_eq!(req.extras.fields["service_tier"], Value::from("auto"));
    }

    #[test]
    fn requires_max_tokens_like_the_real_api() {
        let e = decode_request(br#"{"model":"c","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_err();
        assert_eq!(e.param(), Some("max_tokens"));
        let e = decode_request(
            br#"{"model":"c","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("messages[0].role"));
    }

    #[test]
    fn invalid_tool_arguments_are_refused_before_reaching_anthropic() {
        let mut req = decode_request(
            br#"{"model":"c","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![Part::ToolCall {
                id: "a".into(),
                name: "f".into(),
                arguments: "{not json".into(),
                cache_control: None,
            }],
            name: None,
        });
        let e = encode_request(
            &req,
            &EncodeOptions {
                model: "m",
                default_max_tokens: 10,
            },
        )
        .unwrap_err();
        assert!(e.message().contains("`f`"));
    }
}

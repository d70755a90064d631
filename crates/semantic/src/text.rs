//! What a semantic lookup compares and what it must not compare.
//!
//! A request splits into two parts:
//! - the **conversation text** ([`semantic_text`]): the text of user and assistant messages,
//!   in order, each labelled with its role. It is embedded and compared by meaning.
//! - the **scope** ([`scope`]): everything else that changes the answer — tenant, resolved
//!   target, system and developer instructions, tool definitions and tool choice, sampling
//!   and output settings, non-text conversation content (images, tool calls and results),
//!   provider-native tools and dialect-specific fields. It is hashed and must match exactly:
//!   two requests in different scopes never share an entry.
//!
//! Deliberately left out of both: the model name as the client wrote it (the resolved
//! target stands for it), `stream` and `stream_include_usage` (a cached answer can be
//! replayed either way), and `user` (an abuse-monitoring identifier, not an input).

use std::fmt;

use portcullis_core::chat::{ImageSource, Reasoning, ToolChoice};
use portcullis_core::{ChatRequest, Message, Part, RawJson, Role};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Separator between conversation turns in [`semantic_text`].
const TURN_SEPARATOR: char = '\n';

/// The conversation text of a request, compared by meaning.
///
/// Each user and assistant message with text becomes one line, `user: …` or `assistant: …`;
/// several text parts of one message are joined with a space. Instructions, tool traffic and
/// non-text parts are not part of it (they are in the [`scope`]).
pub fn semantic_text(request: &ChatRequest) -> String {
    let mut out = String::new();
    for message in &request.messages {
        let label = match message.role {
            Role::User => "user: ",
            Role::Assistant => "assistant: ",
            Role::System | Role::Developer | Role::Tool => continue,
        };
        let mut texts = message.content.iter().filter_map(|part| match part {
            Part::Text { text, .. } if !text.trim().is_empty() => Some(text.trim()),
            _ => None,
        });
        let Some(first) = texts.next() else {
            continue;
        };
        if !out.is_empty() {
            out.push(TURN_SEPARATOR);
        }
        out.push_str(label);
        out.push_str(first);
        for text in texts {
            out.push(' ');
            out.push_str(text);
        }
    }
    out
}

/// A SHA-256 digest of everything that must match exactly for a cached answer to be reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeHash(pub [u8; 32]);

impl ScopeHash {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ScopeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeHash({self})")
    }
}

impl fmt::Display for ScopeHash {
    /// The first eight bytes in hex: enough to tell scopes apart in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// The scope of `request` for `tenant` (whoever owns the cache entries: a team, a key, a
/// user) and `target` (the resolved route or `provider/model`).
///
/// Every field is written with a tag and a length prefix, so no two different inputs
/// produce the same byte stream; JSON values are written with their object keys sorted, so
/// key order never splits a scope.
pub fn scope(request: &ChatRequest, tenant: &str, target: &str) -> ScopeHash {
    let mut h = ScopeHasher(Sha256::new());
    h.tag(b"portcullis-semantic-scope/v1");
    h.str(b't', tenant);
    h.str(b'g', target);

    // Instructions and everything in the conversation that is not compared by meaning.
    for (position, message) in request.messages.iter().enumerate() {
        h.message(position, message);
    }

    h.opt_u64(b'M', request.max_tokens.map(u64::from));
    h.opt_f64(b'T', request.temperature);
    h.opt_f64(b'P', request.top_p);
    h.opt_u64(b'K', request.top_k.map(u64::from));
    h.len(b'S', request.stop.len());
    for stop in &request.stop {
        h.str(b's', stop);
    }
    h.opt_u64(b'N', request.n.map(u64::from));
    h.len(b'D', request.tools.len());
    for tool in &request.tools {
        h.str(b'n', &tool.name);
        h.opt_str(b'd', tool.description.as_deref());
        h.raw(b'p', &tool.parameters);
        h.opt_bool(b'x', tool.strict);
    }
    match &request.tool_choice {
        None => h.tag(b"choice:none-set"),
        Some(ToolChoice::Auto) => h.tag(b"choice:auto"),
        Some(ToolChoice::None) => h.tag(b"choice:none"),
        Some(ToolChoice::Required) => h.tag(b"choice:required"),
        Some(ToolChoice::Tool(name)) => h.str(b'c', name),
    }
    h.opt_bool(b'L', request.parallel_tool_calls);
    match &request.reasoning {
        None => h.tag(b"reasoning:unset"),
        Some(Reasoning {
            enabled,
            effort,
            budget_tokens,
        }) => {
            h.tag(b"reasoning");
            h.opt_bool(b'e', Some(*enabled));
            h.opt_str(b'f', effort.as_deref());
            h.opt_u64(b'b', budget_tokens.map(u64::from));
        }
    }
    h.opt_raw(b'R', request.response_format.as_ref());
    h.len(b'V', request.native_tools.len());
    for tool in &request.native_tools {
        h.str(b'v', tool.dialect.as_str());
        h.json(b'w', &tool.definition);
    }
    // The dialect of extras matters only when there are some: an OpenAI and an Anthropic
    // request that say the same thing share a scope.
    let extras_dialect = request
        .extras
        .dialect
        .filter(|_| !request.extras.fields.is_empty());
    h.opt_str(b'X', extras_dialect.map(|d| d.as_str()));
    h.len(b'x', request.extras.fields.len());
    // Kept sorted by name.
    for (name, value) in &request.extras.fields {
        h.str(b'k', name);
        h.raw(b'y', value);
    }
    ScopeHash(h.0.finalize().into())
}

/// Writes tagged, length-prefixed fields into a SHA-256.
struct ScopeHasher(Sha256);

impl ScopeHasher {
    fn tag(&mut self, tag: &[u8]) {
        self.bytes(b'#', tag);
    }

    fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn str(&mut self, tag: u8, s: &str) {
        self.bytes(tag, s.as_bytes());
    }

    fn len(&mut self, tag: u8, n: usize) {
        self.0.update([tag]);
        self.0.update((n as u64).to_le_bytes());
    }

    fn opt_str(&mut self, tag: u8, s: Option<&str>) {
        match s {
            Some(s) => self.str(tag, s),
            None => self.0.update([tag, 0xff]),
        }
    }

    fn opt_u64(&mut self, tag: u8, v: Option<u64>) {
        match v {
            Some(v) => {
                self.0.update([tag, 1]);
                self.0.update(v.to_le_bytes());
            }
            None => self.0.update([tag, 0]),
        }
    }

    fn opt_f64(&mut self, tag: u8, v: Option<f64>) {
        // `0.0` and `-0.0` ask for the same sampling; every other distinct value is distinct.
        self.opt_u64(tag, v.map(|v| if v == 0.0 { 0 } else { v.to_bits() }));
    }

    fn opt_bool(&mut self, tag: u8, v: Option<bool>) {
        self.0.update([
            tag,
            match v {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
        ]);
    }

    fn json(&mut self, tag: u8, value: &Value) {
        self.0.update([tag]);
        self.value(value);
    }

    /// JSON carried raw: by meaning when small (as [`Self::json`]), by its text when large,
    /// so a large schema is never turned into a tree just to be hashed.
    fn raw(&mut self, tag: u8, value: &RawJson) {
        const MAX_PARSED_RAW: usize = 64 * 1024;
        if value.get().len() <= MAX_PARSED_RAW {
            self.json(tag, &value.to_value());
        } else {
            self.str(tag, value.get());
        }
    }

    fn opt_raw(&mut self, tag: u8, value: Option<&RawJson>) {
        match value {
            Some(value) => self.raw(tag, value),
            None => self.0.update([tag, 0xff]),
        }
    }

    /// A JSON value with object keys in sorted order.
    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.0.update(b"n"),
            Value::Bool(b) => self.0.update(if *b { b"T" } else { b"F" }),
            Value::Number(n) => self.bytes(b'#', n.to_string().as_bytes()),
            Value::String(s) => self.str(b'"', s),
            Value::Array(items) => {
                self.len(b'[', items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.len(b'{', map.len());
                let mut fields: Vec<(&String, &Value)> = map.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                for (key, item) in fields {
                    self.str(b'k', key);
                    self.value(item);
                }
            }
        }
    }

    /// The parts of a message that are not compared by meaning: the whole of instruction
    /// and tool messages, and the non-text parts of user and assistant messages. Each is
    /// written with the message's position, so the same content in another place of the
    /// conversation is another scope.
    fn message(&mut self, position: usize, message: &Message) {
        let conversation = matches!(message.role, Role::User | Role::Assistant);
        let mut role_written = false;
        for part in &message.content {
            if conversation && matches!(part, Part::Text { .. }) {
                continue;
            }
            if !role_written {
                self.len(b'm', position);
                self.str(b'r', role_name(message.role));
                self.opt_str(b'a', message.name.as_deref());
                role_written = true;
            }
            self.part(part);
        }
    }

    fn part(&mut self, part: &Part) {
        match part {
            Part::Text { text, .. } => self.str(b'1', text),
            Part::Image { source, detail, .. } => {
                self.tag(b"image");
                match source {
                    ImageSource::Url(url) => self.str(b'u', url),
                    ImageSource::Base64 { media_type, data } => {
                        self.str(b'i', media_type);
                        self.str(b'j', data);
                    }
                }
                self.opt_str(b'q', detail.as_deref());
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                self.tag(b"tool_call");
                self.str(b'2', id);
                self.str(b'3', name);
                self.str(b'4', arguments);
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                self.tag(b"tool_result");
                self.str(b'5', call_id);
                self.opt_bool(b'6', Some(*is_error));
                self.len(b'7', content.len());
                for inner in content {
                    self.part(inner);
                }
            }
            Part::Thinking { text, .. } => self.str(b'8', text),
            Part::RedactedThinking { data } => self.str(b'9', data),
            Part::Refusal { text } => self.str(b'0', text),
            Part::Opaque { dialect, value } => {
                self.str(b'o', dialect.as_str());
                self.json(b'O', value);
            }
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use portcullis_core::{Dialect, Extras, ToolDefinition};
    use serde_json::json;

    use super::*;

    fn request(system: Option<&str>, turns: &[(Role, &str)]) -> ChatRequest {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(Message::text(Role::System, system));
        }
        for (role, text) in turns {
            messages.push(Message::text(*role, *text));
        }
        ChatRequest {
            model: "gpt-4o-mini".into(),
            messages,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn text_is_the_labelled_conversation_without_instructions() {
        let mut r = request(
            Some("You are terse."),
            &[
                (Role::User, "  Hello "),
                (Role::Assistant, "Hi! How can I help?"),
                (Role::User, "What is 2+2?"),
            ],
        );
        r.messages.push(Message {
            role: Role::Tool,
            content: vec![Part::ToolResult {
                call_id: "c1".into(),
                content: vec![Part::text("42")],
                is_error: false,
                cache_control: None,
            }],
            name: None,
        });
        r.messages[1].content.push(Part::text("again"));
        assert_eq!(
            semantic_text(&r),
            "user: Hello again\nassistant: Hi! How can I help?\nuser: What is 2+2?"
        );
        assert_eq!(semantic_text(&request(Some("only"), &[])), "");
    }

    #[test]
    fn the_same_request_has_the_same_scope_and_conversation_text_does_not_change_it() {
        let a = request(
            Some("sys"),
            &[(Role::User, "What is the capital of France?")],
        );
        let mut b = a.clone();
        b.messages[1] = Message::text(Role::User, "Which city is France's capital?");
        b.model = "an-alias".into();
        b.stream = true;
        b.user = Some("end-user-7".into());
        assert_eq!(
            scope(&a, "team", "openai/gpt"),
            scope(&b, "team", "openai/gpt")
        );
    }

    #[test]
    fn everything_that_changes_the_answer_changes_the_scope() {
        let base = request(Some("sys"), &[(Role::User, "question")]);
        let s = |r: &ChatRequest| scope(r, "team", "openai/gpt");
        let reference = s(&base);
        assert_ne!(scope(&base, "other-team", "openai/gpt"), reference);
        assert_ne!(scope(&base, "team", "anthropic/claude"), reference);
        // The tenant and target boundaries cannot be shifted.
        assert_ne!(scope(&base, "te", "amopenai/gpt"), reference);

        let mut variants: Vec<ChatRequest> = Vec::new();
        let mut v = base.clone();
        v.messages[0] = Message::text(Role::System, "sys!");
        variants.push(v);
        let mut v = base.clone();
        v.messages[0].role = Role::Developer;
        variants.push(v);
        variants.push(request(None, &[(Role::User, "question")]));
        let mut v = base.clone();
        v.max_tokens = Some(10);
        variants.push(v);
        let mut v = base.clone();
        v.temperature = Some(0.7);
        variants.push(v);
        let mut v = base.clone();
        v.top_p = Some(0.9);
        variants.push(v);
        let mut v = base.clone();
        v.stop = vec!["END".into()];
        variants.push(v);
        let mut v = base.clone();
        v.n = Some(2);
        variants.push(v);
        let mut v = base.clone();
        v.tools = vec![ToolDefinition {
            name: "lookup".into(),
            description: None,
            parameters: json!({"type": "object"}).into(),
            strict: None,
            cache_control: None,
        }];
        variants.push(v.clone());
        v.tools[0].parameters = json!({"type": "object", "properties": {}}).into();
        variants.push(v);
        let mut v = base.clone();
        v.tool_choice = Some(ToolChoice::Required);
        variants.push(v);
        let mut v = base.clone();
        v.response_format = Some(json!({"type": "json_object"}).into());
        variants.push(v);
        let mut v = base.clone();
        v.reasoning = Some(Reasoning {
            enabled: true,
            effort: Some("high".into()),
            budget_tokens: None,
        });
        variants.push(v);
        let mut v = base.clone();
        let mut fields = serde_json::Map::new();
        fields.insert("seed".into(), json!(7));
        v.extras = Extras::new(Dialect::OpenAi, fields);
        variants.push(v);
        let mut v = base.clone();
        v.messages[1].content.push(Part::Image {
            source: ImageSource::Url("https://example.com/cat.png".into()),
            detail: None,
            cache_control: None,
        });
        variants.push(v);

        let mut seen = vec![reference];
        for variant in &variants {
            let h = s(variant);
            assert!(!seen.contains(&h), "{variant:?} shares a scope");
            seen.push(h);
        }
    }

    #[test]
    fn json_key_order_does_not_split_a_scope() {
        let mut a = request(None, &[(Role::User, "q")]);
        a.response_format = RawJson::from_string(
            r#"{"type": "json_schema", "json_schema": {"a": 1, "b": [1, 2]}}"#.to_owned(),
        );
        let mut b = a.clone();
        b.response_format = RawJson::from_string(
            r#"{"json_schema": {"b": [1, 2], "a": 1}, "type": "json_schema"}"#.to_owned(),
        );
        assert_eq!(scope(&a, "t", "m"), scope(&b, "t", "m"));
        let mut c = a.clone();
        c.response_format =
            Some(json!({"type": "json_schema", "json_schema": {"a": 1, "b": [2, 1]}}).into());
        assert_ne!(scope(&a, "t", "m"), scope(&c, "t", "m"));
    }
}

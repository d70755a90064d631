//! Cache keys: a SHA-256 fingerprint of everything that decides an answer.
//!
//! The fingerprint covers the tenant scope (so two tenants never share an entry), the resolved
//! target (a route name or `provider/model`), and every field of the canonical
//! [`ChatRequest`] that affects what the model says. It deliberately leaves out what only
//! shapes delivery or bookkeeping:
//!
//! - `stream` and `stream_include_usage`: a streamed and a complete request share an entry,
//!   since a stored answer replays either way;
//! - `model`: the client's spelling; the resolved target stands in for it, so the OpenAI and
//!   Anthropic dialects (and aliases of one route) share entries;
//! - `user`: an end-user label for the provider's abuse monitoring;
//! - `cache_control` markers on parts and tools: Anthropic prompt-caching hints change what a
//!   call costs, not what it answers.
//!
//! The encoding fed to the hash is unambiguous: every string and sequence is length-prefixed,
//! every optional value and enum variant tagged, floats hashed by their bits, and JSON objects
//! hashed in key order whatever order they were received in. Nothing is re-serialized; the
//! fields stream straight into the hasher.

use std::fmt;

use portcullis_core::{
    ChatRequest, Dialect, Extras, ImageSource, Message, Part, RawJson, Reasoning, Role, ToolChoice,
    ToolDefinition,
};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Domain separator of request fingerprints; bump the version when the encoding changes.
const REQUEST_DOMAIN: &str = "portcullis-cache/request/v1";
/// Domain separator of caller-supplied keys.
const CUSTOM_DOMAIN: &str = "portcullis-cache/custom/v1";
/// Raw JSON up to this size is hashed by meaning (key order aside); larger values by their
/// text, so a large schema or parameter is never turned into a tree just to be hashed.
const MAX_PARSED_RAW: usize = 64 * 1024;

/// A 256-bit cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// A key from its raw digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Writes the 64 hex digits into `out` without allocating.
    pub fn write_hex(&self, out: &mut [u8; 64]) {
        // Infallible: the buffer is exactly twice the digest's length.
        let _ = hex::encode_to_slice(self.0, out);
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        self.write_hex(&mut hex);
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// The cache key of `request` sent by the tenant `scope` to the resolved `target`
/// (a route name or `provider/model`).
pub fn fingerprint(scope: &str, target: &str, request: &ChatRequest) -> CacheKey {
    let mut h = KeyHasher::new(REQUEST_DOMAIN);
    h.str(scope);
    h.str(target);
    h.request(request);
    h.finish()
}

/// The cache key for a caller-supplied key (`x-portcullis-cache-key`): it replaces the request
/// but is still scoped to the tenant, so tenants choosing the same key never collide.
pub fn fingerprint_custom(scope: &str, custom_key: &str) -> CacheKey {
    let mut h = KeyHasher::new(CUSTOM_DOMAIN);
    h.str(scope);
    h.str(custom_key);
    h.finish()
}

/// Whether `request` asks for a reproducible answer: temperature exactly zero and a single
/// choice. Other requests are cached only when the configuration says so.
pub fn is_deterministic(request: &ChatRequest) -> bool {
    request.temperature == Some(0.0) && request.n.is_none_or(|n| n == 1)
}

/// Streams the unambiguous encoding of values into SHA-256.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(domain: &str) -> Self {
        let mut h = Self(Sha256::new());
        h.str(domain);
        h
    }

    fn finish(self) -> CacheKey {
        CacheKey(self.0.finalize().into())
    }

    fn tag(&mut self, tag: u8) {
        self.0.update([tag]);
    }

    fn bool(&mut self, value: bool) {
        self.tag(u8::from(value));
    }

    fn u64(&mut self, value: u64) {
        self.0.update(value.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }

    fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }

    fn str(&mut self, value: &str) {
        self.len(value.len());
        self.0.update(value.as_bytes());
    }

    fn opt<T>(&mut self, value: Option<T>, mut some: impl FnMut(&mut Self, T)) {
        match value {
            None => self.tag(0),
            Some(v) => {
                self.tag(1);
                some(self, v);
            }
        }
    }

    fn opt_str(&mut self, value: Option<&str>) {
        self.opt(value, Self::str);
    }

    fn opt_u32(&mut self, value: Option<u32>) {
        self.opt(value, |h, v| h.u64(u64::from(v)));
    }

    fn opt_f64(&mut self, value: Option<f64>) {
        self.opt(value, Self::f64);
    }

    fn opt_bool(&mut self, value: Option<bool>) {
        self.opt(value, Self::bool);
    }

    fn dialect(&mut self, dialect: Dialect) {
        self.tag(match dialect {
            Dialect::OpenAi => 1,
            Dialect::Anthropic => 2,
        });
    }

    fn request(&mut self, r: &ChatRequest) {
        self.len(r.messages.len());
        for message in &r.messages {
            self.message(message);
        }
        self.opt_u32(r.max_tokens);
        self.opt_f64(r.temperature);
        self.opt_f64(r.top_p);
        self.opt_u32(r.top_k);
        self.len(r.stop.len());
        for stop in &r.stop {
            self.str(stop);
        }
        self.opt_u32(r.n);
        self.len(r.tools.len());
        for tool in &r.tools {
            self.tool(tool);
        }
        self.opt(r.tool_choice.as_ref(), Self::tool_choice);
        self.opt_bool(r.parallel_tool_calls);
        self.opt(r.reasoning.as_ref(), Self::reasoning);
        self.opt(r.response_format.as_ref(), Self::raw);
        self.len(r.native_tools.len());
        for native in &r.native_tools {
            self.dialect(native.dialect);
            self.json(&native.definition);
        }
        self.extras(&r.extras);
    }

    fn message(&mut self, m: &Message) {
        self.tag(match m.role {
            Role::System => 1,
            Role::Developer => 2,
            Role::User => 3,
            Role::Assistant => 4,
            Role::Tool => 5,
        });
        self.opt_str(m.name.as_deref());
        self.parts(&m.content);
    }

    fn parts(&mut self, parts: &[Part]) {
        self.len(parts.len());
        for part in parts {
            self.part(part);
        }
    }

    fn part(&mut self, part: &Part) {
        match part {
            Part::Text { text, .. } => {
                self.tag(1);
                self.str(text);
            }
            Part::Image { source, detail, .. } => {
                self.tag(2);
                match source {
                    ImageSource::Url(url) => {
                        self.tag(1);
                        self.str(url);
                    }
                    ImageSource::Base64 { media_type, data } => {
                        self.tag(2);
                        self.str(media_type);
                        self.str(data);
                    }
                }
                self.opt_str(detail.as_deref());
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                self.tag(3);
                self.str(id);
                self.str(name);
                self.str(arguments);
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                self.tag(4);
                self.str(call_id);
                self.parts(content);
                self.bool(*is_error);
            }
            Part::Thinking { text, signature } => {
                self.tag(5);
                self.str(text);
                self.opt_str(signature.as_deref());
            }
            Part::RedactedThinking { data } => {
                self.tag(6);
                self.str(data);
            }
            Part::Refusal { text } => {
                self.tag(7);
                self.str(text);
            }
            Part::Opaque { dialect, value } => {
                self.tag(8);
                self.dialect(*dialect);
                self.json(value);
            }
        }
    }

    fn tool(&mut self, tool: &ToolDefinition) {
        self.str(&tool.name);
        self.opt_str(tool.description.as_deref());
        self.raw(&tool.parameters);
        self.opt_bool(tool.strict);
    }

    fn tool_choice(&mut self, choice: &ToolChoice) {
        match choice {
            ToolChoice::Auto => self.tag(1),
            ToolChoice::None => self.tag(2),
            ToolChoice::Required => self.tag(3),
            ToolChoice::Tool(name) => {
                self.tag(4);
                self.str(name);
            }
        }
    }

    fn reasoning(&mut self, reasoning: &Reasoning) {
        self.bool(reasoning.enabled);
        self.opt_str(reasoning.effort.as_deref());
        self.opt_u32(reasoning.budget_tokens);
    }

    /// Extras reach only upstreams of the dialect they came in, so that dialect is part of
    /// their meaning; without fields it is irrelevant.
    fn extras(&mut self, extras: &Extras) {
        if extras.fields.is_empty() {
            self.tag(0);
            return;
        }
        match extras.dialect {
            Some(dialect) => self.dialect(dialect),
            None => self.tag(3),
        }
        // Kept sorted by name, like a JSON object.
        self.len(extras.fields.len());
        for (key, value) in &extras.fields {
            self.str(key);
            self.raw(value);
        }
    }

    /// JSON carried raw: by meaning when small (as [`Self::json`]), by its text when large
    /// (the same text is the same value; a reordered copy of a large value only misses).
    fn raw(&mut self, raw: &RawJson) {
        if raw.get().len() <= MAX_PARSED_RAW {
            self.json(&raw.to_value());
        } else {
            self.tag(7);
            self.str(raw.get());
        }
    }

    fn json(&mut self, value: &Value) {
        match value {
            Value::Null => self.tag(1),
            Value::Bool(b) => {
                self.tag(2);
                self.bool(*b);
            }
            Value::Number(n) => {
                self.tag(3);
                self.number(n);
            }
            Value::String(s) => {
                self.tag(4);
                self.str(s);
            }
            Value::Array(items) => {
                self.tag(5);
                self.len(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                self.tag(6);
                self.object(map);
            }
        }
    }

    fn number(&mut self, n: &Number) {
        if let Some(u) = n.as_u64() {
            self.tag(1);
            self.u64(u);
        } else if let Some(i) = n.as_i64() {
            self.tag(2);
            self.u64(i.cast_unsigned());
        } else if let Some(f) = n.as_f64() {
            self.tag(3);
            self.f64(f);
        } else {
            // Only reachable with serde_json's `arbitrary_precision`: hash the literal.
            self.tag(4);
            self.str(&n.to_string());
        }
    }

    /// Hashes an object's members in key order. serde_json keeps objects sorted unless its
    /// `preserve_order` feature is on somewhere in the build; only then, and only for an
    /// object received out of order, are the members sorted first.
    fn object(&mut self, map: &Map<String, Value>) {
        self.len(map.len());
        let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
        if sorted {
            for (key, value) in map {
                self.str(key);
                self.json(value);
            }
        } else {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, value) in members {
                self.str(key);
                self.json(value);
            }
        }
    }
}

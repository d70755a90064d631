//! JSON helpers shared by the dialects: body parsing with precise errors, and small
//! deserialization building blocks.

use std::fmt;

use portcullis_core::GatewayError;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;

/// Parses a request body, answering a precise 400 on failure.
///
/// The fast path is a plain `serde_json` parse; only when it fails is the body parsed again
/// with path tracking, so the error can name the offending field (`messages[2].content`)
/// without costing anything on valid requests.
pub(crate) fn parse_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            let de = &mut serde_json::Deserializer::from_slice(body);
            match serde_path_to_error::deserialize::<_, T>(de) {
                Ok(v) => Ok(v),
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    Err(describe(&inner, &path).unwrap_or_else(|| describe_plain(&first)))
                }
            }
        }
    }
}

fn describe(err: &serde_json::Error, path: &str) -> Option<GatewayError> {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data if path != "." && !path.is_empty() => Some(
            GatewayError::invalid_request(format!(
                "Invalid value for `{path}`: {}",
                strip_position(&err.to_string())
            ))
            .with_param(path.to_owned())
            .with_code("invalid_value"),
        ),
        _ => None,
    }
}

fn describe_plain(err: &serde_json::Error) -> GatewayError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            GatewayError::invalid_request(format!("The request body is not valid JSON: {err}"))
                .with_code("invalid_json")
        }
        Category::Data => GatewayError::invalid_request(format!("Invalid request body: {err}"))
            .with_code("invalid_value"),
    }
}

/// serde_json appends " at line L column C"; for data errors the path says more.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// A map key that borrows from the input when it can.
pub(crate) struct Key(pub(crate) std::borrow::Cow<'static, str>);

impl Key {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
    pub(crate) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(match known_key(v) {
                    Some(k) => std::borrow::Cow::Borrowed(k),
                    None => std::borrow::Cow::Owned(v.to_owned()),
                }))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
                Ok(Key(match known_key(&v) {
                    Some(k) => std::borrow::Cow::Borrowed(k),
                    None => std::borrow::Cow::Owned(v),
                }))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Field names of the request objects, interned so decoding allocates nothing for them.
fn known_key(k: &str) -> Option<&'static str> {
    const KEYS: &[&str] = &[
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "n",
        "stream",
        "stream_options",
        "stop",
        "stop_sequences",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "reasoning_effort",
        "response_format",
        "system",
        "metadata",
        "thinking",
        "input",
        "dimensions",
        "encoding_format",
    ];
    KEYS.iter().copied().find(|c| *c == k)
}

/// A `string | [parts]` content field, as both dialects allow.
#[derive(Debug)]
pub(crate) enum StringOrParts {
    String(String),
    Parts(Vec<Value>),
}

impl<'de> de::Deserialize<'de> for StringOrParts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrParts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrParts::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOrParts::String(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(p) = seq.next_element::<Value>()? {
                    if !p.is_object() {
                        return Err(de::Error::custom("each content part must be an object"));
                    }
                    parts.push(p);
                }
                Ok(StringOrParts::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `string | [string]` field such as `stop`.
#[derive(Debug)]
pub(crate) struct StringOrStrings(pub(crate) Vec<String>);

impl<'de> de::Deserialize<'de> for StringOrStrings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrStrings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrStrings(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(StringOrStrings(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Takes a string field out of a JSON object, leaving `Null` behind.
pub(crate) fn take_str(obj: &mut serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match obj.get_mut(key).map(Value::take) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Serializes a value that the gateway built itself to a string; such values always serialize.
pub(crate) fn to_string_lossless(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

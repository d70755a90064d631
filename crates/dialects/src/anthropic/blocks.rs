//! Anthropic content blocks, shared by requests and responses: decoding a block into a
//! canonical [`Part`] and serializing a part as a block.

use portcullis_core::{Dialect, ImageSource, Part};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json::{take_str, to_string_lossless};

/// Decodes one content block. Block types the canonical model does not know are kept opaque.
pub(crate) fn decode_block(mut b: Value) -> Result<Part, String> {
    let Some(obj) = b.as_object_mut() else {
        return Err("each content block must be an object".to_owned());
    };
    enum Kind {
        Text,
        Image,
        ToolUse,
        ToolResult,
        Thinking,
        RedactedThinking,
        Other,
    }
    let kind = match obj.get("type").and_then(Value::as_str) {
        None => return Err("type: Field required".to_owned()),
        Some("text") => Kind::Text,
        Some("image") => Kind::Image,
        Some("tool_use") => Kind::ToolUse,
        Some("tool_result") => Kind::ToolResult,
        Some("thinking") => Kind::Thinking,
        Some("redacted_thinking") => Kind::RedactedThinking,
        Some(_) => Kind::Other,
    };
    Ok(match kind {
        Kind::Text => Part::Text {
            text: take_str(obj, "text").ok_or("text: Field required")?,
            cache_control: obj.remove("cache_control"),
        },
        Kind::Image => {
            let mut source = match obj.remove("source") {
                Some(Value::Object(s)) => s,
                _ => return Err("source: Field required".to_owned()),
            };
            let source = match source.get("type").and_then(Value::as_str) {
                Some("base64") => ImageSource::Base64 {
                    media_type: take_str(&mut source, "media_type")
                        .ok_or("source.media_type: Field required")?,
                    data: take_str(&mut source, "data").ok_or("source.data: Field required")?,
                },
                Some("url") => ImageSource::Url(
                    take_str(&mut source, "url").ok_or("source.url: Field required")?,
                ),
                _ => {
                    // Files API references and other sources stay Anthropic-only.
                    obj.insert("source".to_owned(), Value::Object(source));
                    return Ok(Part::Opaque {
                        dialect: Dialect::Anthropic,
                        value: b,
                    });
                }
            };
            Part::Image {
                source,
                detail: None,
                cache_control: obj.remove("cache_control"),
            }
        }
        Kind::ToolUse => Part::ToolCall {
            id: take_str(obj, "id").ok_or("id: Field required")?,
            name: take_str(obj, "name").ok_or("name: Field required")?,
            arguments: match obj.get("input") {
                Some(v) if !v.is_null() => to_string_lossless(v),
                _ => "{}".to_owned(),
            },
            cache_control: obj.remove("cache_control"),
        },
        Kind::ToolResult => {
            let call_id = take_str(obj, "tool_use_id").ok_or("tool_use_id: Field required")?;
            let content = match obj.remove("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![Part::text(s)],
                Some(Value::Array(items)) => items.into_iter().map(decode_block).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?,
                Some(_) => return Err("content: expected a string or a list of blocks".to_owned()),
            };
            Part::ToolResult {
                call_id,
                content,
                is_error: obj
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                cache_control: obj.remove("cache_control"),
            }
        }
        Kind::Thinking => Part::Thinking {
            text: take_str(obj, "thinking").unwrap_or_default(),
            signature: take_str(obj, "signature"),
        },
        Kind::RedactedThinking => Part::RedactedThinking {
            data: take_str(obj, "data").unwrap_or_default(),
        },
        Kind::Other => Part::Opaque {
            dialect: Dialect::Anthropic,
            value: b,
        },
    })
}

/// An OpenAI `file` part carrying an inline PDF, as the equivalent Anthropic `document` block.
pub(crate) fn openai_file_as_document(value: &Value) -> Option<Value> {
    if value.get("type").and_then(Value::as_str) != Some("file") {
        return None;
    }
    let data = value.get("file")?.get("file_data")?.as_str()?;
    let rest = data.strip_prefix("data:")?;
    let (meta, b64) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some(serde_json::json!({
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": b64},
    }))
}

/// A canonical part serialized as an Anthropic content block.
pub(crate) struct BlockOut<'a>(pub(crate) &'a Part);

impl Serialize for BlockOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Part::Text {
                text,
                cache_control,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", text)?;
                if let Some(c) = cache_control {
                    m.serialize_entry("cache_control", c)?;
                }
                m.end()
            }
            Part::Refusal { text } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", text)?;
                m.end()
            }
            Part::Image {
                source,
                cache_control,
                ..
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "image")?;
                let mut src = Map::new();
                match source {
                    ImageSource::Url(url) => {
                        src.insert("type".into(), Value::from("url"));
                        src.insert("url".into(), Value::from(url.as_str()));
                    }
                    ImageSource::Base64 { media_type, data } => {
                        src.insert("type".into(), Value::from("base64"));
                        src.insert("media_type".into(), Value::from(media_type.as_str()));
                        src.insert("data".into(), Value::from(data.as_str()));
                    }
                }
                m.serialize_entry("source", &src)?;
                if let Some(c) = cache_control {
                    m.serialize_entry("cache_control", c)?;
                }
                m.end()
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                cache_control,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "tool_use")?;
                m.serialize_entry("id", id)?;
                m.serialize_entry("name", name)?;
                m.serialize_entry("input", &ArgumentsObject(arguments))?;
                if let Some(c) = cache_control {
                    m.serialize_entry("cache_control", c)?;
                }
                m.end()
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                cache_control,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "tool_result")?;
                m.serialize_entry("tool_use_id", call_id)?;
                let blocks: Vec<BlockOut<'_>> = content
                    .iter()
                    .filter(|p| !matches!(p, Part::Text { text, .. } if text.is_empty()))
                    .map(BlockOut)
                    .collect();
                if !blocks.is_empty() {
                    m.serialize_entry("content", &blocks)?;
                }
                if *is_error {
                    m.serialize_entry("is_error", &true)?;
                }
                if let Some(c) = cache_control {
                    m.serialize_entry("cache_control", c)?;
                }
                m.end()
            }
            Part::Thinking { text, signature } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("type", "thinking")?;
                m.serialize_entry("thinking", text)?;
                m.serialize_entry("signature", signature.as_deref().unwrap_or(""))?;
                m.end()
            }
            Part::RedactedThinking { data } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "redacted_thinking")?;
                m.serialize_entry("data", data)?;
                m.end()
            }
            Part::Opaque { dialect, value } => match dialect {
                Dialect::Anthropic => value.serialize(s),
                Dialect::OpenAi => openai_file_as_document(value)
                    .unwrap_or(Value::Null)
                    .serialize(s),
            },
        }
    }
}

/// Tool-call arguments as a JSON object: the raw text when it is one, `{}` otherwise
/// (requests are validated before encoding; responses must stay well-formed).
struct ArgumentsObject<'a>(&'a str);

impl Serialize for ArgumentsObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match serde_json::from_str::<&RawValue>(self.0) {
            Ok(raw) if raw.get().trim_start().starts_with('{') => raw.serialize(s),
            _ => s.serialize_map(Some(0))?.end(),
        }
    }
}

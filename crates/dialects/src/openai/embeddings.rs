//! OpenAI Embeddings: request decoding and encoding, and reading usage from a response.

use std::fmt;

use portcullis_core::{
    Dialect, EmbeddingInput, EmbeddingsRequest, ErrorKind, Extras, GatewayError, Usage,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{Key, parse_request};

/// Decodes an OpenAI embeddings request body.
pub fn decode_embeddings_request(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
    let wire: WireEmbeddingsRequest = parse_request(body)?;
    let model = wire.model.filter(|m| !m.is_empty()).ok_or_else(|| {
        GatewayError::invalid_request("Missing required parameter: `model`").with_param("model")
    })?;
    let input = wire.input.ok_or_else(|| {
        GatewayError::invalid_request("Missing required parameter: `input`").with_param("input")
    })?;
    let input = decode_input(input)?;
    if input.is_empty() {
        return Err(GatewayError::invalid_request("`input` must not be empty").with_param("input"));
    }
    Ok(EmbeddingsRequest {
        model,
        input,
        dimensions: wire.dimensions,
        encoding_format: wire.encoding_format,
        user: wire.user,
        extras: Extras::new(Dialect::OpenAi, wire.extras),
    })
}

fn decode_input(v: Value) -> Result<EmbeddingInput, GatewayError> {
    let bad = || {
        GatewayError::invalid_request(
            "Invalid value for `input`: expected a string, an array of strings, an array of token ids, or an array of token-id arrays",
        )
        .with_param("input")
    };
    match v {
        Value::String(s) => Ok(EmbeddingInput::Text(s)),
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                Ok(EmbeddingInput::Texts(
                    items
                        .into_iter()
                        .filter_map(|i| match i {
                            Value::String(s) => Some(s),
                            _ => None,
                        })
                        .collect(),
                ))
            } else if items.iter().all(Value::is_u64) {
                Ok(EmbeddingInput::Tokens(
                    items.iter().filter_map(token_id).collect(),
                ))
            } else if items
                .iter()
                .all(|i| i.as_array().is_some_and(|a| a.iter().all(Value::is_u64)))
            {
                Ok(EmbeddingInput::TokenBatches(
                    items
                        .iter()
                        .filter_map(Value::as_array)
                        .map(|a| a.iter().filter_map(token_id).collect())
                        .collect(),
                ))
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

#[derive(Default)]
struct WireEmbeddingsRequest {
    model: Option<String>,
    input: Option<Value>,
    dimensions: Option<u32>,
    encoding_format: Option<String>,
    user: Option<String>,
    extras: Map<String, Value>,
}

impl<'de> Deserialize<'de> for WireEmbeddingsRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireEmbeddingsRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an embeddings request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = WireEmbeddingsRequest::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.as_str() {
                        "model" => r.model = map.next_value()?,
                        "input" => r.input = map.next_value()?,
                        "dimensions" => r.dimensions = map.next_value()?,
                        "encoding_format" => r.encoding_format = map.next_value()?,
                        "user" => r.user = map.next_value()?,
                        _ => {
                            let v: Value = map.next_value()?;
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

/// Encodes a canonical embeddings request for an OpenAI-dialect upstream serving `model`.
pub fn encode_embeddings_request(
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(&EmbeddingsOut { req, model })
        .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

struct EmbeddingsOut<'a> {
    req: &'a EmbeddingsRequest,
    model: &'a str,
}

impl Serialize for EmbeddingsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", self.model)?;
        match &r.input {
            EmbeddingInput::Text(t) => m.serialize_entry("input", t)?,
            EmbeddingInput::Texts(t) => m.serialize_entry("input", t)?,
            EmbeddingInput::Tokens(t) => m.serialize_entry("input", t)?,
            EmbeddingInput::TokenBatches(t) => m.serialize_entry("input", t)?,
        }
        if let Some(d) = r.dimensions {
            m.serialize_entry("dimensions", &d)?;
        }
        if let Some(f) = &r.encoding_format {
            m.serialize_entry("encoding_format", f)?;
        }
        if let Some(u) = &r.user {
            m.serialize_entry("user", u)?;
        }
        if let Some(extras) = r.extras.for_dialect(Dialect::OpenAi) {
            for (k, v) in extras {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// The parts of an embeddings response the gateway accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsUsage {
    /// The model that answered.
    pub model: String,
    /// Token usage.
    pub usage: Usage,
}

/// Reads model and usage from an embeddings response without materializing the vectors.
pub fn decode_embeddings_usage(body: &[u8]) -> Result<EmbeddingsUsage, GatewayError> {
    #[derive(Deserialize)]
    struct Wire {
        #[serde(default)]
        model: String,
        #[serde(default)]
        usage: Option<WireUsage>,
        data: de::IgnoredAny,
    }
    #[derive(Deserialize)]
    struct WireUsage {
        #[serde(default)]
        prompt_tokens: u64,
    }
    let w: Wire = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid embeddings response: {e}"),
        )
    })?;
    let _ = w.data;
    Ok(EmbeddingsUsage {
        model: w.model,
        usage: Usage {
            input_tokens: w.usage.map(|u| u.prompt_tokens).unwrap_or(0),
            ..Usage::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_input_shape() {
        for (body, want) in [
            (
                r#"{"model":"e","input":"hi"}"#,
                EmbeddingInput::Text("hi".into()),
            ),
            (
                r#"{"model":"e","input":["a","b"]}"#,
                EmbeddingInput::Texts(vec!["a".into(), "b".into()]),
            ),
            (
                r#"{"model":"e","input":[1,2]}"#,
                EmbeddingInput::Tokens(vec![1, 2]),
            ),
            (
                r#"{"model":"e","input":[[1],[2,3]]}"#,
                EmbeddingInput::TokenBatches(vec![vec![1], vec![2, 3]]),
            ),
        ] {
            assert_eq!(
                decode_embeddings_request(body.as_bytes()).unwrap().input,
                want
            );
        }
        assert!(decode_embeddings_request(br#"{"model":"e","input":[]}"#).is_err());
        assert!(decode_embeddings_request(br#"{"model":"e","input":[1,"a"]}"#).is_err());
        assert!(decode_embeddings_request(br#"{"model":"e"}"#).is_err());
    }

    #[test]
    fn reads_usage_without_the_vectors() {
        let u = decode_embeddings_usage(br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAA"}],"model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#).unwrap();
        assert_eq!(u.usage.input_tokens, 5);
        assert_eq!(u.model, "text-embedding-3-small");
    }
}

//! Bedrock embeddings through InvokeModel (`/model/{modelId}/invoke`), whose bodies are each
//! model family's own, answered in OpenAI's embeddings format (`float` arrays, or base64 of
//! little-endian `f32`s when the client asked for `base64`):
//!
//! - **Amazon Titan Text Embeddings** (`amazon.titan-embed-text-v1`, `…-v2:0`, and the text
//!   side of `amazon.titan-embed-image-v1`): `{"inputText": …}`, one text per call, with
//!   `dimensions` (v2) or `embeddingConfig.outputEmbeddingLength` (image v1); the answer's
//!   `inputTextTokenCount` is the usage. Titan embeds one text per call and InvokeModel is one
//!   call, so a request with several inputs is refused (400) rather than fanned out; Cohere's
//!   models take up to 96 at once.
//! - **Cohere Embed** (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`,
//!   `cohere.embed-v4:0`): `{"texts": […], "input_type": …}`, `input_type` taken from the
//!   request's own `input_type` (an extra field of OpenAI's format) or `search_document`, and
//!   `truncate` passed on; `dimensions` is v4's `output_dimension`. Cohere's answer on Bedrock
//!   counts no tokens (unless it carries `meta.billed_units`), so usage is estimated at four
//!   characters a token, so that the request is priced and budgeted at all.

use portcullis_core::{
    Dialect, EmbeddingInput, EmbeddingsRequest, ErrorKind, GatewayError, RawJson,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::base_model_id;

/// The embedding model families InvokeModel is called for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Titan Text Embeddings v1 (no dimensions).
    TitanV1,
    /// Titan Text Embeddings v2 (`dimensions`).
    TitanV2,
    /// Titan Multimodal Embeddings (`embeddingConfig.outputEmbeddingLength`).
    TitanImage,
    /// Cohere Embed v3 (no dimensions).
    Cohere,
    /// Cohere Embed v4 (`output_dimension`).
    CohereV4,
}

fn family(model: &str) -> Option<Family> {
    let id = base_model_id(model);
    if id.starts_with("amazon.titan-embed-text-v2") {
        Some(Family::TitanV2)
    } else if id.starts_with("amazon.titan-embed-image") {
        Some(Family::TitanImage)
    } else if id.starts_with("amazon.titan-embed") {
        Some(Family::TitanV1)
    } else if id.starts_with("cohere.embed-v4") {
        Some(Family::CohereV4)
    } else if id.starts_with("cohere.embed") {
        Some(Family::Cohere)
    } else {
        None
    }
}

fn texts(input: &EmbeddingInput) -> Result<Vec<&str>, GatewayError> {
    match input {
        EmbeddingInput::Text(t) => Ok(vec![t.as_str()]),
        EmbeddingInput::Texts(ts) => Ok(ts.iter().map(String::as_str).collect()),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => Err(
            GatewayError::invalid_request("Bedrock embedding models take text, not token ids")
                .with_param("input"),
        ),
    }
}

fn no_dimensions(model: &str) -> GatewayError {
    GatewayError::invalid_request(format!("`{model}` does not take `dimensions`"))
        .with_param("dimensions")
}

/// The InvokeModel body embedding `req` with `model`.
pub fn encode_embeddings_request(
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let Some(family) = family(model) else {
        return Err(GatewayError::invalid_request(format!(
            "`{model}` is not a Bedrock embedding model the gateway knows: Amazon Titan Text \
             Embeddings (amazon.titan-embed-…) or Cohere Embed (cohere.embed-…)"
        ))
        .with_param("model"));
    };
    let inputs = texts(&req.input)?;
    let body = match family {
        Family::TitanV1 | Family::TitanV2 | Family::TitanImage => {
            let [text] = inputs.as_slice() else {
                return Err(GatewayError::invalid_request(format!(
                    "`{model}` embeds one text per request and {} were given; send them one at \
                     a time, or use a Cohere embedding model, which takes several",
                    inputs.len()
                ))
                .with_param("input"));
            };
            let mut b = Map::new();
            b.insert("inputText".into(), Value::String((*text).to_owned()));
            match (family, req.dimensions) {
                (_, None) => {}
                (Family::TitanV2, Some(d)) => {
                    b.insert("dimensions".into(), d.into());
                }
                (Family::TitanImage, Some(d)) => {
                    b.insert(
                        "embeddingConfig".into(),
                        json!({ "outputEmbeddingLength": d }),
                    );
                }
                (_, Some(_)) => return Err(no_dimensions(model)),
            }
            Value::Object(b)
        }
        Family::Cohere | Family::CohereV4 => {
            let extras = req.extras.for_dialect(Dialect::OpenAi);
            let extra = |name: &str| {
                extras
                    .and_then(|e| e.get(name))
                    .map(RawJson::to_value)
                    .filter(Value::is_string)
            };
            let mut b = Map::new();
            b.insert("texts".into(), json!(inputs));
            b.insert(
                "input_type".into(),
                extra("input_type").unwrap_or_else(|| "search_document".into()),
            );
            if let Some(t) = extra("truncate") {
                b.insert("truncate".into(), t);
            }
            match (family, req.dimensions) {
                (_, None) => {}
                (Family::CohereV4, Some(d)) => {
                    b.insert("output_dimension".into(), d.into());
                }
                (_, Some(_)) => return Err(no_dimensions(model)),
            }
            Value::Object(b)
        }
    };
    serde_json::to_vec(&body).map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanAnswer {
    #[serde(default)]
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereAnswer {
    #[serde(default)]
    embeddings: CohereEmbeddings,
    #[serde(default)]
    meta: Option<Value>,
}

/// Floats as a list, or by type when `embedding_types` was asked for.
#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType {
        #[serde(default)]
        float: Vec<Vec<f32>>,
    },
}

impl Default for CohereEmbeddings {
    fn default() -> Self {
        CohereEmbeddings::Floats(Vec::new())
    }
}

fn invalid(e: serde_json::Error) -> GatewayError {
    GatewayError::new(
        ErrorKind::Upstream,
        format!("The upstream returned an invalid Bedrock embeddings answer: {e}"),
    )
}

/// Bedrock's answer to `req` (served by `model`) in OpenAI's embeddings format.
pub fn decode_embeddings_response(
    body: &[u8],
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let (vectors, tokens) = match family(model) {
        Some(Family::Cohere | Family::CohereV4) => {
            let answer: CohereAnswer = serde_json::from_slice(body).map_err(invalid)?;
            let vectors = match answer.embeddings {
                CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
            };
            let billed = answer
                .meta
                .as_ref()
                .and_then(|m| m.pointer("/billed_units/input_tokens"))
                .and_then(Value::as_u64);
            (
                vectors,
                billed.unwrap_or_else(|| estimated_tokens(&req.input)),
            )
        }
        _ => {
            let answer: TitanAnswer = serde_json::from_slice(body).map_err(invalid)?;
            let tokens = answer
                .input_text_token_count
                .unwrap_or_else(|| estimated_tokens(&req.input));
            (vec![answer.embedding], tokens)
        }
    };
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(encode_base64(&bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    serde_json::to_vec(&json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    }))
    .map_err(|e| GatewayError::internal(format!("encoding response: {e}")))
}

/// About four characters a token, at least one a text.
fn estimated_tokens(input: &EmbeddingInput) -> u64 {
    let count = |t: &String| u64::try_from(t.chars().count().div_ceil(4).max(1)).unwrap_or(0);
    match input {
        EmbeddingInput::Text(t) => count(t),
        EmbeddingInput::Texts(ts) => ts.iter().map(count).sum(),
        EmbeddingInput::Tokens(t) => u64::try_from(t.len()).unwrap_or(0),
        EmbeddingInput::TokenBatches(b) => {
            b.iter().map(|t| u64::try_from(t.len()).unwrap_or(0)).sum()
        }
    }
}

/// Standard base64 with padding.
fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Extras;

    fn request(input: EmbeddingInput, dimensions: Option<u32>) -> EmbeddingsRequest {
        EmbeddingsRequest {
            model: "m".into(),
            input,
            dimensions,
            encoding_format: None,
            user: None,
            extras: Extras::default(),
        }
    }

    fn encode(req: &EmbeddingsRequest, model: &str) -> Result<Value, GatewayError> {
        encode_embeddings_request(req, model).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn titan_takes_one_text_and_reports_its_tokens() {
        let one = request(EmbeddingInput::Text("hello".into()), Some(256));
        assert_eq!(
            encode(&one, "amazon.titan-embed-text-v2:0").unwrap(),
            json!({"inputText": "hello", "dimensions": 256})
        );
        assert_eq!(
            encode(&one, "amazon.titan-embed-image-v1").unwrap(),
            json!({"inputText": "hello", "embeddingConfig": {"outputEmbeddingLength": 256}})
        );
        assert_eq!(
            encode(&one, "amazon.titan-embed-text-v1")
                .unwrap_err()
                .param(),
            Some("dimensions")
        );
        let single = request(EmbeddingInput::Texts(vec!["a".into()]), None);
        assert_eq!(
            encode(&single, "amazon.titan-embed-text-v1").unwrap(),
            json!({"inputText": "a"})
        );
        let two = request(EmbeddingInput::Texts(vec!["a".into(), "b".into()]), None);
        let e = encode(&two, "amazon.titan-embed-text-v2:0").unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.message().contains("one text per request"));
        assert_eq!(
            encode(&one, "amazon.nova-pro-v1:0").unwrap_err().param(),
            Some("model")
        );

        let out = decode_embeddings_response(
            br#"{"embedding": [0.5, -1.0], "inputTextTokenCount": 3, "embeddingsByType": {"float": [0.5, -1.0]}}"#,
            &one,
            "amazon.titan-embed-text-v2:0",
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out["data"],
            json!([{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}])
        );
        assert_eq!(out["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(out["model"], "amazon.titan-embed-text-v2:0");
    }

    #[test]
    fn cohere_takes_several_texts_with_an_input_type() {
        let mut req = request(
            EmbeddingInput::Texts(vec!["a".into(), "bcdefghij".into()]),
            None,
        );
        assert_eq!(
            encode(&req, "cohere.embed-english-v3").unwrap(),
            json!({"texts": ["a", "bcdefghij"], "input_type": "search_document"})
        );
        req.extras = Extras::new(
            Dialect::OpenAi,
            [("input_type".to_owned(), json!("search_query"))],
        );
        req.dimensions = Some(512);
        assert_eq!(
            encode(&req, "us.cohere.embed-v4:0").unwrap(),
            json!({"texts": ["a", "bcdefghij"], "input_type": "search_query", "output_dimension": 512})
        );
        assert!(encode(&req, "cohere.embed-multilingual-v3").is_err());

        req.encoding_format = Some("base64".into());
        let out = decode_embeddings_response(
            br#"{"embeddings": [[1.0], [0.25]], "id": "x", "response_type": "embeddings_floats", "texts": ["a", "bcdefghij"]}"#,
            &req,
            "cohere.embed-english-v3",
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["data"][1]["embedding"], "AACAPg==");
        assert_eq!(out["usage"]["prompt_tokens"], 1 + 3, "estimated");
        let by_type = decode_embeddings_response(
            br#"{"embeddings": {"float": [[1.0]]}, "meta": {"billed_units": {"input_tokens": 9}}}"#,
            &req,
            "cohere.embed-v4:0",
        )
        .unwrap();
        let by_type: Value = serde_json::from_slice(&by_type).unwrap();
        assert_eq!(by_type["usage"]["prompt_tokens"], 9);
        assert_eq!(encode_base64(b"a"), "YQ==");
    }
}

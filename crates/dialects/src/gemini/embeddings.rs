//! Gemini embeddings: an OpenAI-style embeddings request sent as `embedContent` (one text) or
//! `batchEmbedContents` (several), and the answer turned into OpenAI's embeddings format, the
//! embeddings dialect every client reads (`float` arrays, or base64 of little-endian `f32`s
//! when the client asked for `base64`, as OpenAI's SDKs do by default).
//!
//! Gemini's answer counts no tokens; the usage reported is an estimate of about four
//! characters a token over the inputs, so that the request is priced and budgeted at all.
//!
//! Vertex AI's embedding models (`text-embedding-*`, `gemini-embedding-*`) are reached through
//! `:predict` instead ([`encode_predict_request`], [`decode_predict_response`]):
//! `{"instances": [{"content": …}], "parameters": {"outputDimensionality": …}}`, answered with
//! `predictions[].embeddings.values` and each text's `statistics.token_count`, which is the
//! usage reported.

use portcullis_core::{EmbeddingInput, EmbeddingsRequest, ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::{Value, json};

/// The method and body of the Gemini request embedding `req` with `model`: `embedContent`
/// for one text, `batchEmbedContents` for several.
pub fn encode_embeddings_request(
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<(&'static str, Vec<u8>), GatewayError> {
    let content = |text: &str| json!({ "parts": [{ "text": text }] });
    let with_dimensions = |mut v: Value| {
        if let Some(d) = req.dimensions {
            v["outputDimensionality"] = d.into();
        }
        v
    };
    let (method, body) = match &req.input {
        EmbeddingInput::Text(t) => (
            "embedContent",
            with_dimensions(json!({ "content": content(t) })),
        ),
        EmbeddingInput::Texts(texts) => {
            let name = super::model_path(model);
            let requests: Vec<Value> = texts
                .iter()
                .map(|t| with_dimensions(json!({ "model": name, "content": content(t) })))
                .collect();
            ("batchEmbedContents", json!({ "requests": requests }))
        }
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(GatewayError::invalid_request(
                "Gemini embedding models take text, not token ids",
            )
            .with_param("input"));
        }
    };
    serde_json::to_vec(&body)
        .map(|b| (method, b))
        .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

/// The body of Vertex AI's `:predict` embedding `req`: one instance per text.
pub fn encode_predict_request(req: &EmbeddingsRequest) -> Result<Vec<u8>, GatewayError> {
    let texts: Vec<&str> = match &req.input {
        EmbeddingInput::Text(t) => vec![t.as_str()],
        EmbeddingInput::Texts(ts) => ts.iter().map(String::as_str).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(GatewayError::invalid_request(
                "Vertex AI's embedding models take text, not token ids",
            )
            .with_param("input"));
        }
    };
    let instances: Vec<Value> = texts.iter().map(|t| json!({ "content": t })).collect();
    let mut body = json!({ "instances": instances });
    if let Some(d) = req.dimensions {
        body["parameters"] = json!({ "outputDimensionality": d });
    }
    serde_json::to_vec(&body).map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

#[derive(Deserialize)]
struct PredictStatistics {
    #[serde(default)]
    token_count: f64,
}

#[derive(Deserialize)]
struct PredictEmbedding {
    #[serde(default)]
    values: Vec<f32>,
    #[serde(default)]
    statistics: Option<PredictStatistics>,
}

#[derive(Deserialize)]
struct Prediction {
    embeddings: PredictEmbedding,
}

#[derive(Deserialize)]
struct PredictAnswer {
    #[serde(default)]
    predictions: Vec<Prediction>,
}

/// Vertex AI's `:predict` answer to `req` (served by `model`) in OpenAI's embeddings format,
/// the usage the texts' token counts.
pub fn decode_predict_response(
    body: &[u8],
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let wire: PredictAnswer = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid Vertex AI embeddings answer: {e}"),
        )
    })?;
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let mut tokens = 0u64;
    let data: Vec<Value> = wire
        .predictions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let v = &p.embeddings;
            if let Some(s) = &v.statistics
                && s.token_count.is_finite()
                && s.token_count > 0.0
            {
                // Whole tokens, as Vertex counts them (sent as a number that may be a float).
                tokens += s.token_count.round() as u64;
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = v.values.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(encode_base64(&bytes))
            } else {
                json!(v.values)
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

#[derive(Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(default)]
    embedding: Option<WireEmbedding>,
    #[serde(default)]
    embeddings: Vec<WireEmbedding>,
}

/// Gemini's answer to `req` (served by `model`) in OpenAI's embeddings format.
pub fn decode_embeddings_response(
    body: &[u8],
    req: &EmbeddingsRequest,
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let wire: WireAnswer = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::Upstream,
            format!("The upstream returned an invalid Gemini embeddings answer: {e}"),
        )
    })?;
    let vectors: Vec<WireEmbedding> = match wire.embedding {
        Some(one) => vec![one],
        None => wire.embeddings,
    };
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.values.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(encode_base64(&bytes))
            } else {
                json!(v.values)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let tokens = estimated_tokens(&req.input);
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

    fn request(input: EmbeddingInput, format: Option<&str>) -> EmbeddingsRequest {
        EmbeddingsRequest {
            model: "m".into(),
            input,
            dimensions: Some(4),
            encoding_format: format.map(str::to_owned),
            user: None,
            extras: Extras::default(),
        }
    }

    #[test]
    fn one_text_or_a_batch_and_the_answer_in_openais_format() {
        let one = request(EmbeddingInput::Text("hello".into()), None);
        let (method, body) = encode_embeddings_request(&one, "gemini-embedding-001").unwrap();
        assert_eq!(method, "embedContent");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 4})
        );
        let many = request(
            EmbeddingInput::Texts(vec!["a".into(), "bcdefghij".into()]),
            Some("base64"),
        );
        let (method, body) = encode_embeddings_request(&many, "gemini-embedding-001").unwrap();
        assert_eq!(method, "batchEmbedContents");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["requests"][1]["model"], "models/gemini-embedding-001");

        let out = decode_embeddings_response(
            br#"{"embeddings": [{"values": [1.0, -0.5]}, {"values": [0.25, 0.0]}]}"#,
            &many,
            "gemini-embedding-001",
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["object"], "list");
        assert_eq!(out["data"][1]["index"], 1);
        // 0.25f32 = 0x3E800000, 0.0 = 0: little-endian bytes 00 00 80 3E 00 00 00 00.
        assert_eq!(out["data"][1]["embedding"], "AACAPgAAAAA=");
        assert_eq!(out["usage"]["prompt_tokens"], 1 + 3);

        let out = decode_embeddings_response(
            br#"{"embedding": {"values": [0.5]}}"#,
            &one,
            "gemini-embedding-001",
        )
        .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["data"][0]["embedding"], json!([0.5]));
        assert_eq!(encode_base64(b"ab"), "YWI=");
        assert_eq!(encode_base64(b"abc"), "YWJj");
        assert_eq!(encode_base64(b"a"), "YQ==");
    }

    #[test]
    fn token_ids_are_refused() {
        let e = encode_embeddings_request(&request(EmbeddingInput::Tokens(vec![1]), None), "m")
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
    }
}

//! The Gemini wire format (Google AI Studio's `generateContent` API, v1beta), as an upstream
//! speaks it: canonical requests encoded as `GenerateContentRequest`s, answers and
//! `streamGenerateContent?alt=sse` chunks decoded into the canonical model, error bodies
//! (`{"error":{"code","message","status","details"}}`) decoded with Google's `RetryInfo`;
//! embeddings sent as `embedContent` / `batchEmbedContents` and answered in OpenAI's format.
//!
//! Gemini is an upstream format only: no client speaks it to the gateway, so there is no
//! request decoder or response encoder here.
//!
//! What the translation has to make up:
//! - **Call ids.** Gemini gives function calls no ids and matches results to calls by name.
//!   The decoders make ids up ([`call_id`]), and the encoder turns each result back into a
//!   `functionResponse` named after the call with that id in the conversation. A call's
//!   `thoughtSignature`, which Gemini 3 requires back with the call on the next turn, travels
//!   inside the id (base64url), the one thing every client echoes.
//! - **Usage.** `promptTokenCount` (plus `toolUsePromptTokenCount`) is input,
//!   `candidatesTokenCount` plus `thoughtsTokenCount` is output, thoughts are also reasoning
//!   tokens, `cachedContentTokenCount` is cached input. A stream's `usageMetadata` is
//!   cumulative: each report replaces the last.
//! - **Finish reasons.** `STOP` is an end of turn, or a tool use when the candidate called
//!   functions; `MAX_TOKENS` is the token limit; the safety family (`SAFETY`, `RECITATION`,
//!   `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`, `IMAGE_SAFETY`, …) is a content filter, and so
//!   is a prompt blocked by `promptFeedback.blockReason` (with a refusal saying why).

mod embeddings;
mod error;
mod request;
mod response;
mod stream;

pub use embeddings::{
    decode_embeddings_response, decode_predict_response, encode_embeddings_request,
    encode_predict_request,
};
pub use error::decode_error;
pub use request::{EncodeOptions, encode_request};
pub use response::decode_response;
pub use stream::GeminiStreamDecoder;

/// The prefix of call ids the Gemini decoders make up.
const CALL_ID_PREFIX: &str = "gcall-";

/// The id of the `ordinal`-th function call of the answer `response` (Gemini's `responseId`,
/// or any unique text), carrying the call's thought signature when it has one:
/// `gcall-<response>-<ordinal>[_<signature as base64url>]`. Only ASCII letters, digits, `-`
/// and `_` are used, as Anthropic requires of tool-use ids.
pub fn call_id(response: &str, ordinal: u32, signature: Option<&str>) -> String {
    let mut id = String::with_capacity(
        CALL_ID_PREFIX.len() + response.len() + 12 + signature.map_or(0, |s| s.len() + 1),
    );
    id.push_str(CALL_ID_PREFIX);
    id.extend(response.chars().filter(char::is_ascii_alphanumeric));
    id.push('-');
    id.push_str(&ordinal.to_string());
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(sig.chars().filter_map(|c| match c {
            '+' => Some('-'),
            '/' => Some('_'),
            '=' => None,
            c => Some(c),
        }));
    }
    id
}

/// The thought signature a call id made by [`call_id`] carries, back in standard base64.
pub fn call_signature(id: &str) -> Option<String> {
    let rest = id.strip_prefix(CALL_ID_PREFIX)?;
    let (_, sig) = rest.split_once('_')?;
    if sig.is_empty()
        || !sig
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let mut out: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    Some(out)
}

/// The API path of a model: `models/<name>` (a leading `models/` given by the caller is kept
/// once), or `tunedModels/<name>`; every character outside the unreserved set (and `@`) is
/// percent-encoded, so a model name can never reach another path.
pub fn model_path(model: &str) -> String {
    let (collection, name) = match model.strip_prefix("tunedModels/") {
        Some(name) => ("tunedModels/", name),
        None => ("models/", model.strip_prefix("models/").unwrap_or(model)),
    };
    let mut out = String::with_capacity(collection.len() + name.len());
    out.push_str(collection);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_carry_the_signature_both_ways() {
        let sig = "CrICAdHt+im8/27fQw==";
        let id = call_id("abC-12", 3, Some(sig));
        assert_eq!(id, "gcall-abC12-3_CrICAdHt-im8_27fQw");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(call_signature(&id).as_deref(), Some("CrICAdHt+im8/27fQw=="));
        assert_eq!(call_id("r", 0, None), "gcall-r-0");
        assert_eq!(call_signature("gcall-r-0"), None);
        assert_eq!(
            call_signature("call_abc_def"),
            None,
            "foreign ids carry none"
        );
        assert_eq!(call_signature("toolu_01"), None);
    }

    #[test]
    fn model_paths_stay_in_their_collection() {
        assert_eq!(model_path("gemini-2.5-flash"), "models/gemini-2.5-flash");
        assert_eq!(
            model_path("models/gemini-2.5-flash"),
            "models/gemini-2.5-flash"
        );
        assert_eq!(model_path("tunedModels/my-model"), "tunedModels/my-model");
        assert_eq!(model_path("../x?y"), "models/..%2Fx%3Fy");
    }
}

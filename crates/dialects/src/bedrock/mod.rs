//! Amazon Bedrock Runtime's wire formats, as an upstream speaks them: the Converse API
//! (`/model/{modelId}/converse`, and `/converse-stream` as an AWS event stream) for chat, with
//! the same shapes for every model family Bedrock serves (Anthropic, Amazon Nova, Meta Llama,
//! Mistral, …), and InvokeModel's native bodies of the embedding models (Amazon Titan Text
//! Embeddings, Cohere Embed), answered in OpenAI's embeddings format.
//!
//! Bedrock is an upstream format only: no client speaks it to the gateway, so there is no
//! request decoder or response encoder here.
//!
//! What the translation does:
//! - **Messages.** System and developer messages become `system` blocks; user and tool messages
//!   are `user` turns, assistant messages `assistant` turns, consecutive turns of one role merged
//!   into one (Bedrock wants them alternating, and the results of parallel calls in one turn).
//!   Tool calls and results are `toolUse` and `toolResult` blocks, which carry the call's id both
//!   ways, so no id is made up. Images go as bytes (`image.source.bytes`, base64 in JSON) or as
//!   an `s3://` location; Bedrock fetches no other URL, so those are refused.
//! - **Settings.** `max_tokens`, `temperature`, `top_p` and stop sequences go in
//!   `inferenceConfig`; what only some families take (Anthropic's `top_k` and extended thinking)
//!   in `additionalModelRequestFields`, for those families.
//! - **Tool choice.** `auto`, `any` (required) and `tool` map to Converse's; Converse has no
//!   "none": the tools are left out, unless the conversation already holds tool blocks (which
//!   Bedrock refuses without a `toolConfig`), where they stay with `auto`.
//! - **Usage.** `inputTokens` counts what was neither read from nor written to the prompt cache;
//!   the canonical input is their sum, `cacheReadInputTokens` the cached part and
//!   `cacheWriteInputTokens` the written part.
//! - **Stop reasons.** `end_turn`, `tool_use`, `max_tokens` and `stop_sequence` as themselves;
//!   `guardrail_intervened` and `content_filtered` are content filters; anything else is kept.
//! - **Answers name no model and no id**: the model is the one the request was sent to, the id
//!   is made up (`bedrock-…`).

mod embeddings;
mod error;
mod request;
mod response;
mod stream;

pub use embeddings::{decode_embeddings_response, encode_embeddings_request};
pub use error::{decode_error, decode_exception};
pub use request::encode_request;
pub use response::decode_response;
pub use stream::BedrockStreamDecoder;

use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the ids made up for answers.
static ANSWERS: AtomicU64 = AtomicU64::new(0);

/// An id for an answer, unique in the process: `bedrock-<start time>-<n>`.
pub(crate) fn answer_id() -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    format!(
        "bedrock-{start:x}-{}",
        ANSWERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// The model's name without what only addresses it: an ARN's resource type
/// (`…:foundation-model/`, `…:inference-profile/`) and a cross-Region inference profile's
/// geography (`us.`, `eu.`, `apac.`, `global.`, …), so `us.anthropic.claude-…` reads as
/// `anthropic.claude-…`.
pub fn base_model_id(model: &str) -> &str {
    let name = match model.strip_prefix("arn:") {
        Some(arn) => arn.rsplit_once('/').map_or(arn, |(_, id)| id),
        None => model,
    };
    match name.split_once('.') {
        Some(("us" | "eu" | "apac" | "us-gov" | "jp" | "au" | "ca" | "global", rest)) => rest,
        _ => name,
    }
}

/// Whether `model` is one of Anthropic's models on Bedrock (which take `top_k` and extended
/// thinking through `additionalModelRequestFields`).
pub fn is_anthropic(model: &str) -> bool {
    base_model_id(model).starts_with("anthropic.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_model_ids_drop_arns_and_geographies() {
        assert_eq!(
            base_model_id("us.anthropic.claude-sonnet-4-20250514-v1:0"),
            "anthropic.claude-sonnet-4-20250514-v1:0"
        );
        assert_eq!(
            base_model_id(
                "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"
            ),
            "amazon.titan-embed-text-v2:0"
        );
        assert_eq!(
            base_model_id("arn:aws:bedrock:eu-west-1:1:inference-profile/eu.meta.llama3-2-1b"),
            "meta.llama3-2-1b"
        );
        assert_eq!(
            base_model_id("amazon.nova-pro-v1:0"),
            "amazon.nova-pro-v1:0"
        );
        assert!(is_anthropic(
            "global.anthropic.claude-haiku-4-5-20251001-v1:0"
        ));
        assert!(!is_anthropic("mistral.mistral-large-2402-v1:0"));
        assert_ne!(answer_id(), answer_id());
    }
}

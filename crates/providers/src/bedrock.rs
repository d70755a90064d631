//! Amazon Bedrock Runtime: chat through the Converse API, `POST {base}/model/{modelId}/converse`,
//! or `/converse-stream` for a stream (an AWS event stream, read by the
//! [`EventStreamFramer`]); embeddings through InvokeModel, `POST {base}/model/{modelId}/invoke`
//! with the embedding model's own body (Amazon Titan, Cohere). The model id goes in the path
//! percent-encoded as the AWS SDKs send it (`:` of a version, `/` and `:` of an ARN), so any
//! id, inference profile or ARN addresses its model and nothing else.
//!
//! The base URL is `https://bedrock-runtime.{region}.amazonaws.com` unless one is configured (a
//! VPC endpoint, a test double). Requests are signed with AWS Signature Version 4 for service
//! `bedrock` in the provider's region, whatever the base URL: the provider declares it
//! ([`Authentication::SigV4`](crate::api::Authentication::SigV4)) and the gateway signs the
//! exact bytes it sends, per attempt. Answers are in Bedrock's own format, so they are always
//! translated for the caller (the codec is `portcullis_dialects::bedrock`).
//!
//! The model list is the control plane's ListFoundationModels (`GET {control}/foundation-models`,
//! signed for the same service and region): the control plane is another host,
//! `https://bedrock.{region}.amazonaws.com`, unless a base URL is configured (a private
//! endpoint or test double serving both) or `AWS_ENDPOINT_URL_BEDROCK` names one.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::HeaderMap;
use portcullis_core::{ChatRequest, ChatResponse, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::aws_eventstream::EventStreamFramer;
use portcullis_dialects::bedrock;
use portcullis_dialects::frame::Framer;

use crate::api::{ProviderApi, Wire};
use crate::provider::{ForwardedHeaders, ProviderError};
use crate::sigv4::encode_uri_label;

/// The service Bedrock Runtime requests are signed for.
pub const SIGNING_SERVICE: &str = "bedrock";

/// The Bedrock Runtime endpoint of `region`.
pub fn default_base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// The Bedrock control plane's endpoint of `region` (where the model list is).
pub fn default_control_plane_url(region: &str) -> String {
    format!("https://bedrock.{region}.amazonaws.com")
}

/// Bedrock Runtime at one base URL, and the control plane's model list.
#[derive(Debug)]
pub struct BedrockApi {
    /// `{base}/model/`.
    root: String,
    /// `{control}/foundation-models`.
    models_uri: Uri,
}

impl BedrockApi {
    /// The API under `base` (trimmed), its model list under `control` (trimmed).
    pub fn new(base: &str, control: &str) -> Result<Self, ProviderError> {
        let root = format!("{base}/model/");
        // Checked once here, so a URL built per request can only fail on the model's part.
        crate::provider::join(&root, "m/converse")?;
        let models_uri =
            crate::provider::join(control.trim_end_matches('/'), "/foundation-models")?;
        Ok(Self { root, models_uri })
    }

    /// The URL of `operation` (`converse`, `converse-stream`, `invoke`) of `model`.
    fn uri(&self, model: &str, operation: &str) -> Result<Uri, GatewayError> {
        if model.is_empty() {
            return Err(
                GatewayError::invalid_request("A Bedrock model id is required").with_param("model"),
            );
        }
        let id = encode_uri_label(model);
        let mut url = String::with_capacity(self.root.len() + id.len() + operation.len() + 1);
        url.push_str(&self.root);
        url.push_str(&id);
        url.push('/');
        url.push_str(operation);
        url.parse::<Uri>().map_err(|_| {
            GatewayError::invalid_request(format!("`{model}` is not a valid Bedrock model id"))
                .with_param("model")
        })
    }
}

impl ProviderApi for BedrockApi {
    fn wire(&self) -> Wire {
        Wire::Bedrock
    }

    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        _forwarded: ForwardedHeaders<'_>,
        _headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError> {
        let body = bedrock::encode_request(req, model)?;
        let operation = if req.stream {
            "converse-stream"
        } else {
            "converse"
        };
        Ok((self.uri(model, operation)?, body))
    }

    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        Some(
            bedrock::encode_embeddings_request(req, model)
                .and_then(|body| Ok((self.uri(model, "invoke")?, body))),
        )
    }

    fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        bedrock::decode_embeddings_response(&body, req, model).map(Bytes::from)
    }

    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        bedrock::decode_response(body, "")
    }

    fn decode_chat_response_from(
        &self,
        body: &[u8],
        model: &str,
    ) -> Result<ChatResponse, GatewayError> {
        bedrock::decode_response(body, model)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(bedrock::BedrockStreamDecoder::new(""))
    }

    fn stream_decoder_from(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(bedrock::BedrockStreamDecoder::new(model))
    }

    fn stream_framer(&self) -> Option<Box<dyn Framer>> {
        Some(Box::new(EventStreamFramer::new()))
    }

    fn models_uri(&self) -> Option<&Uri> {
        Some(&self.models_uri)
    }

    fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        provider: &str,
    ) -> GatewayError {
        bedrock::decode_error(status, retry_after, body, provider)
    }
}

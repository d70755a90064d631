//! The provider layer's open end: [`ProviderApi`], what one kind of upstream API does for the
//! gateway, with one implementation per file ([`crate::openai`], [`crate::anthropic`],
//! [`crate::gemini`]).
//!
//! Two notions stay apart here. The **client dialect** ([`Dialect`]) is what a caller speaks to
//! the gateway: OpenAI's or Anthropic's API. The **wire format** ([`Wire`]) is what an upstream
//! speaks: those two, and formats no client speaks (Gemini). A wire format whose answers are
//! already in a client dialect ([`Wire::dialect`]) lets the gateway forward them as they are;
//! any other answer is decoded into the canonical model and re-encoded for the caller.
//!
//! An API builds requests and decodes answers; it never touches the network. How requests are
//! authenticated is declared as data ([`Authentication`]), for the gateway to carry out.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use portcullis_core::{ChatRequest, ChatResponse, Dialect, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::errors::decode_upstream_error;
use portcullis_dialects::frame::Framer;

use crate::kind::AuthScheme;
use crate::provider::{ForwardedHeaders, UpstreamRequest};
use crate::secret::Secret;

/// An upstream's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// OpenAI Chat Completions and Embeddings (OpenAI and every compatible server).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google's Gemini `generateContent` API.
    Gemini,
    /// Amazon Bedrock Runtime's Converse API (streams in AWS's binary event stream).
    Bedrock,
    /// OpenAI's Responses API (OpenAI models served only there).
    OpenAiResponses,
}

impl Wire {
    /// The client dialect whose bytes this format's answers are, if any: such answers reach a
    /// caller of that dialect as the upstream sent them.
    pub fn dialect(self) -> Option<Dialect> {
        match self {
            Wire::OpenAi => Some(Dialect::OpenAi),
            Wire::Anthropic => Some(Dialect::Anthropic),
            Wire::Gemini | Wire::Bedrock | Wire::OpenAiResponses => None,
        }
    }

    /// The format's name, as logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::OpenAi => "openai",
            Wire::Anthropic => "anthropic",
            Wire::Gemini => "gemini",
            Wire::Bedrock => "bedrock",
            Wire::OpenAiResponses => "openai-responses",
        }
    }
}

/// How a provider's requests are authenticated. The provider declares it; the gateway carries
/// it out, so that signing or fetching a token (which may need the network) never happens in
/// a provider.
///
/// A static key in a header; or a token source (a token fetched from the source's token
/// endpoint, cached and refreshed by the gateway, sent as a bearer); or AWS Signature Version 4
/// (the exact bytes sent, signed on each attempt after the request is built). The gateway
/// matches every variant: a new form cannot be declared without being carried out.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// The key in a header, as the scheme says.
    Header(AuthScheme),
    /// `Authorization: Bearer <access token>`, the token obtained from a [`TokenSource`].
    Token(Arc<dyn TokenSource>),
    /// AWS Signature Version 4 (Bedrock): the credentials, region and service requests are
    /// signed for, shared by every request of the provider.
    SigV4(Arc<crate::sigv4::SigV4Signing>),
}

/// A token grant, as data: the request that asks a token endpoint for an access token, and
/// the reading of its answer. The gateway sends the request, keeps one token per provider
/// until shortly before it expires (one refresh in flight at a time) and sends it as
/// `Authorization: Bearer …` with every request; a source never touches the network.
///
/// One implementation per grant type: Google's JWT-bearer grant for a service account
/// ([`crate::google_auth::JwtBearerGrant`], Vertex AI); an OAuth client-credentials grant
/// (Microsoft Entra ID for Azure OpenAI) would be another — a form-encoded `POST` to its
/// `token_endpoint` with `client_id`, `client_secret` and `scope`, read from the same
/// `access_token` and `expires_in`.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// What the cached token is kept under beside the provider's name; it differs whenever
    /// the grant would give another identity's token (another account, key, endpoint or
    /// scope), so a changed configuration never reuses the old token. Never holds a secret.
    fn cache_key(&self) -> &str;

    /// The token request, made at `now` (a signed assertion is valid from then).
    fn token_request(&self, now: SystemTime) -> Result<UpstreamRequest, TokenError>;

    /// Reads the token endpoint's answer: its status and body.
    fn read_token(&self, status: u16, body: &[u8]) -> Result<AccessToken, TokenError>;
}

/// An access token and how long it lasts from when it was asked for.
pub struct AccessToken {
    /// The token.
    pub token: Secret,
    /// Its lifetime (`expires_in`).
    pub expires_in: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &self.token)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why no token came from a [`TokenSource`]. Messages never hold a secret: at most what the
/// token endpoint said about the grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token request could not be built (signing failed).
    #[error("the token request could not be built: {0}")]
    Build(String),
    /// The token endpoint refused the grant.
    #[error("the token endpoint refused the grant ({status}): {reason}")]
    Refused {
        /// The endpoint's status.
        status: u16,
        /// What it said (`error: error_description`), shortened.
        reason: String,
    },
    /// The answer is not a token.
    #[error("the token endpoint's answer could not be read: {0}")]
    Malformed(String),
}

/// What one kind of upstream API does: builds the upstream request for a canonical request
/// (the URL chosen per request), and decodes its answers, errors and streams.
pub trait ProviderApi: Send + Sync + fmt::Debug {
    /// The wire format.
    fn wire(&self) -> Wire;

    /// The API serving `model` when it is another than this one: a provider whose models
    /// speak different wire formats (Vertex AI: Claude in Anthropic's, the others in
    /// Gemini's) gives the one that serves `model`, whose wire format, URL, body, answers and
    /// streams a request for `model` then has. `None` (every API but such a provider's): this
    /// one. Error answers and stream framing stay the provider's (this API's).
    fn for_model(&self, model: &str) -> Option<&dyn ProviderApi> {
        let _ = model;
        None
    }

    /// Headers sent with every request, whatever it is (Anthropic's `anthropic-version`).
    fn fixed_headers(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// The URL and body of the chat request for `req` served by `model`. `headers` already
    /// hold the provider's headers and credential; an API adds what the request needs.
    fn chat(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Result<(Uri, Vec<u8>), GatewayError>;

    /// The URL and body of the embeddings request for `req` served by `model`; `None` when the
    /// API has no embeddings.
    fn embeddings(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let _ = (req, model);
        None
    }

    /// A successful embeddings answer to `req` from `model` in OpenAI's format (the embeddings
    /// dialect): as it is for OpenAI-compatible upstreams, translated for the others.
    fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        let _ = (req, model);
        Ok(body)
    }

    /// Decodes a successful non-streamed chat answer.
    fn decode_chat_response(&self, body: &[u8]) -> Result<ChatResponse, GatewayError>;

    /// Decodes a successful non-streamed chat answer from `model`, the model the request was
    /// sent to: for formats whose answers do not name their model (Bedrock's).
    fn decode_chat_response_from(
        &self,
        body: &[u8],
        model: &str,
    ) -> Result<ChatResponse, GatewayError> {
        let _ = model;
        self.decode_chat_response(body)
    }

    /// A decoder for this API's streams.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;

    /// A decoder for a stream from `model`, the model the request was sent to: for formats
    /// whose streams do not name their model (Bedrock's).
    fn stream_decoder_from(&self, model: &str) -> Box<dyn StreamDecoder> {
        let _ = model;
        self.stream_decoder()
    }

    /// How this API's streams are framed: `None` for server-sent events.
    fn stream_framer(&self) -> Option<Box<dyn Framer>> {
        None
    }

    /// The URL of the API's model list (`GET`), when it has one the gateway reads, built from
    /// the base URL like every other URL of the API. The request carries the provider's
    /// headers and credential ([`Provider::native_headers`](crate::Provider::native_headers));
    /// its pages are read by the gateway, per provider kind.
    fn models_uri(&self) -> Option<&Uri> {
        None
    }

    /// The URL and body of the request counting the input tokens of `req` for `model`, at
    /// the API's own count endpoint (Anthropic's `/v1/messages/count_tokens`, Gemini's
    /// `:countTokens`); `headers` as for [`chat`](Self::chat). `None` when the API has none:
    /// the gateway then estimates the count itself.
    fn count_tokens(
        &self,
        req: &ChatRequest,
        model: &str,
        forwarded: ForwardedHeaders<'_>,
        headers: &mut HeaderMap,
    ) -> Option<Result<(Uri, Vec<u8>), GatewayError>> {
        let _ = (req, model, forwarded, headers);
        None
    }

    /// Reads a successful answer of the count endpoint: the input tokens.
    fn count_tokens_response(&self, body: &[u8]) -> Result<u64, GatewayError> {
        let _ = body;
        Err(GatewayError::internal(
            "The provider's API has no token count endpoint",
        ))
    }

    /// Turns an error answer (`status`, its `Retry-After`, its body) into a [`GatewayError`].
    fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
        provider: &str,
    ) -> GatewayError {
        decode_upstream_error(status, retry_after, body, provider)
    }
}

//! Providers: who the gateway can call and how.
//!
//! - [`kind`]: the provider kinds the gateway knows (OpenAI, Anthropic, Gemini and the
//!   OpenAI-compatible presets), with their default base URLs, wire formats, credentials and
//!   the environment variables that enable them.
//! - [`api`]: [`ProviderApi`], what one upstream API does — build the request for a canonical
//!   request (its URL chosen per request), decode answers, errors and streams — with its
//!   [`Wire`] format (apart from the client's [`Dialect`](portcullis_core::Dialect)) and its
//!   [`Authentication`] declared as data; one file per API: [`openai`], [`anthropic`],
//!   [`gemini`], [`azure`] (with [`entra`], Microsoft Entra ID's client-credentials grant, for
//!   a resource reached with an application's tokens instead of a key).
//! - [`provider`]: a configured [`Provider`] (name, kind, credential, headers, its API), which
//!   turns a canonical request into an [`UpstreamRequest`] (URL, headers, body) and reads the
//!   answer. Providers never touch the network; the gateway's upstream client sends what they
//!   build.
//! - [`registry`]: every configured provider, route and alias, and the resolution of a
//!   client's model name into an ordered list of targets.
//! - [`secret`]: [`Secret`], a credential that never prints.
//! - [`responses`]: OpenAI's Responses API as an upstream, for the OpenAI models served only
//!   there (the OpenAI provider hands them to it, [`ProviderApi::for_model`]).
//! - [`vertex`]: Vertex AI, whose Claude models speak Anthropic's format and the others
//!   Gemini's (the API chosen per model, [`ProviderApi::for_model`]); [`google_auth`]: a
//!   service account's key file and its JWT-bearer grant, a [`TokenSource`] the gateway runs.
//! - [`bedrock`]: Amazon Bedrock Runtime (Converse and ConverseStream for chat, InvokeModel for
//!   Titan and Cohere embeddings), signed with [`sigv4`]: AWS Signature Version 4, the headers
//!   that sign a request exactly as it will be sent ([`Authentication::SigV4`], carried out by
//!   the gateway).
//! - [`config`]: the `providers:` block and each route's targets, validated into the specs
//!   above.

pub mod anthropic;
pub mod api;
pub mod azure;
pub mod bedrock;
pub mod config;
pub mod entra;
pub mod gemini;
pub mod google_auth;
pub mod kind;
pub mod openai;
pub mod provider;
pub mod registry;
pub mod responses;
pub mod secret;
pub mod sigv4;
pub mod vertex;

pub use api::{AccessToken, Authentication, ProviderApi, TokenError, TokenSource, Wire};
pub use kind::{AuthScheme, CloudflareUpstream, ProviderKind};
pub use provider::AwsSpec;
pub use provider::{
    AzureSpec, CloudflareSpec, Credential, EntraSpec, ForwardedHeaders, Provider, ProviderError,
    ProviderSpec, UpstreamRequest, VertexSpec,
};
pub use registry::{
    ModelEntry, Registry, RegistryError, Resolution, RouteSpec, Target, TargetSpec,
};
pub use secret::Secret;

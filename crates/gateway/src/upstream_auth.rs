//! Carrying out a provider's declared [`Authentication`] on an upstream request that is built
//! and about to be sent: the one place where signing (AWS SigV4, over the exact bytes sent) and
//! token sources (a token fetched, cached and refreshed by the gateway) happen, so providers
//! never touch the network and every path that sends to a provider — chat, embeddings, model
//! listing — authenticates the same way.
//!
//! It runs per attempt, after the request is built and before it is sent, so a retried request
//! is signed again with a fresh time.
//!
//! **Token sources.** A provider declaring [`Authentication::Token`] gives a
//! [`TokenSource`](portcullis_providers::TokenSource): the request of its grant (built, signed
//! if need be, by the provider) and the reading of the answer. Here the gateway sends it
//! through the upstream client and keeps the token in [`UpstreamTokens`] — one per provider,
//! refreshed shortly before it expires, one refresh in flight, the token request bounded —
//! and sends it as `Authorization: Bearer …`. A failed grant is a 502 naming the provider.
//! Vertex AI's service-account grant ([`portcullis_providers::google_auth::JwtBearerGrant`])
//! is one; another grant type (Microsoft Entra ID's client credentials for Azure OpenAI) is
//! another `TokenSource` implementation in the providers crate, declared the same way, with
//! nothing to add here.

use http::header::AUTHORIZATION;
use portcullis_core::GatewayError;
use portcullis_providers::{Authentication, Provider, UpstreamRequest};

use crate::upstream::UpstreamClient;
use crate::upstream_tokens::{HttpFetch, UpstreamTokens};

/// Authenticates upstream requests; holds what outlives one request (token caches).
#[derive(Debug, Default)]
pub struct UpstreamAuth {
    /// The token sources' tokens.
    tokens: UpstreamTokens,
}

impl UpstreamAuth {
    /// Applies `provider`'s authentication to `request`, which is sent next through
    /// `client` (as is a token request, when one is needed).
    pub async fn authenticate(
        &self,
        provider: &Provider,
        request: &mut UpstreamRequest,
        client: &UpstreamClient,
    ) -> Result<(), GatewayError> {
        match provider.authentication() {
            // The key header is already among the request's headers.
            Authentication::Header(_) => Ok(()),
            Authentication::Token(source) => {
                let fetch = HttpFetch {
                    client,
                    provider: provider.name(),
                };
                let bearer = self
                    .tokens
                    .bearer(provider.name(), source.as_ref(), &fetch)
                    .await?;
                request.headers.insert(AUTHORIZATION, bearer);
                Ok(())
            }
            // Signed now, over the exact bytes about to be sent, for this attempt alone.
            Authentication::SigV4(signing) => signing
                .sign(request, std::time::SystemTime::now())
                .map_err(|e| {
                    GatewayError::internal("The request to the provider could not be signed")
                        .with_detail(format!("provider `{}`: {e}", provider.name()))
                }),
        }
    }
}

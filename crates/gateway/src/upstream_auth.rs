//! Carrying out a provider's declared [`Authentication`] on an upstream request that is built
//! and about to be sent: the one place where signing (AWS SigV4, over the exact bytes sent) and
//! token sources (a token fetched, cached and refreshed by the gateway) happen, so providers
//! never touch the network and every path that sends to a provider — chat, embeddings, model
//! listing — authenticates the same way.
//!
//! It runs per attempt, after the request is built and before it is sent, so a retried request
//! is signed again with a fresh time.

use portcullis_core::GatewayError;
use portcullis_providers::{Authentication, Provider, UpstreamRequest};

/// Authenticates upstream requests; holds what outlives one request (token caches).
#[derive(Debug, Default)]
pub struct UpstreamAuth {}

impl UpstreamAuth {
    /// Applies `provider`'s authentication to `request`, which is sent next.
    pub async fn authenticate(
        &self,
        provider: &Provider,
        request: &mut UpstreamRequest,
    ) -> Result<(), GatewayError> {
        let _ = request;
        match provider.authentication() {
            // The key header is already among the request's headers.
            Authentication::Header(_) => Ok(()),
            other => Err(GatewayError::internal(
                "The provider's authentication cannot be carried out",
            )
            .with_detail(format!("provider `{}`: {other:?}", provider.name()))),
        }
    }
}

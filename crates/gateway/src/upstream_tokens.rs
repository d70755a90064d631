//! Access tokens from the providers' token sources ([`TokenSource`]): the gateway asks each
//! source's token endpoint, keeps one token per provider (and source), and hands it to every
//! request until shortly before it expires.
//!
//! - **Cached, refreshed before expiry.** A token is used until [`REFRESH_BEFORE`] its expiry
//!   (a quarter of its lifetime for short-lived ones); the first request after that refreshes
//!   it. While a refresh is in flight, requests go on with the old token as long as it has at
//!   least [`STILL_VALID`] left.
//! - **One refresh in flight.** Requests that need a token when there is none (or only an
//!   expired one) wait for the one refresh under way instead of starting their own; a refresh
//!   that fails answers them all with its error, and the next refresh is tried
//!   [`FAILURE_HOLD`] later at the earliest, so a refused key never turns every request into a
//!   grant.
//! - **Bounded.** A token request, answer included, has [`TOKEN_TIMEOUT`].
//! - **Never shown.** Tokens are kept as sensitive header values; errors name the provider and
//!   say what the token endpoint said of the grant (to the operator only), never a key.
//!
//! Sending is abstracted ([`TokenFetch`]) so the caching is tested on tokio's paused clock;
//! the gateway's fetch is [`HttpFetch`], through the upstream client.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderValue;
use parking_lot::Mutex;
use portcullis_core::{Blame, ErrorKind, GatewayError};
use portcullis_providers::{TokenError, TokenSource, UpstreamRequest};
use tokio::time::Instant;

use crate::upstream::{UpstreamClient, read_body};

/// A token request, its answer included, ends by then.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A token is refreshed this long before it expires (at most a quarter of its lifetime).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// A token with less than this left is not sent any more.
pub const STILL_VALID: Duration = Duration::from_secs(10);
/// After a failed refresh, the next one is tried no sooner than this.
pub const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// Sends a token request; gives back the answer's status and body.
pub trait TokenFetch: Sync {
    /// Sends `request`.
    fn fetch(
        &self,
        request: UpstreamRequest,
    ) -> impl Future<Output = Result<(u16, Bytes), GatewayError>> + Send;
}

/// Sends token requests through the gateway's upstream client.
#[derive(Debug)]
pub struct HttpFetch<'a> {
    /// The client.
    pub client: &'a UpstreamClient,
    /// The provider whose token it is (for errors and logs).
    pub provider: &'a str,
}

impl TokenFetch for HttpFetch<'_> {
    async fn fetch(&self, request: UpstreamRequest) -> Result<(u16, Bytes), GatewayError> {
        let response = self
            .client
            .send(request, self.provider, Some(TOKEN_TIMEOUT))
            .await?;
        let status = response.status().as_u16();
        let body = read_body(response.into_body(), self.provider).await?;
        Ok((status, body))
    }
}

/// Every provider's token.
#[derive(Debug, Default)]
pub struct UpstreamTokens {
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

/// One provider's token and its refresh.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Cached>>,
    /// Held by the refresh in flight; keeps the last failure.
    refresh: tokio::sync::Mutex<Option<Failure>>,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Cached {
    /// `Bearer <token>`, sensitive.
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Failure {
    at: Instant,
    error: GatewayError,
}

impl Slot {
    /// The token, if it is not due for a refresh at `now`.
    fn fresh(&self, now: Instant) -> Option<HeaderValue> {
        self.current
            .lock()
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.header.clone())
    }

    /// The token, if it may still be sent at `now`.
    fn valid(&self, now: Instant) -> Option<HeaderValue> {
        self.current
            .lock()
            .as_ref()
            .filter(|c| now + STILL_VALID < c.expires_at)
            .map(|c| c.header.clone())
    }
}

impl UpstreamTokens {
    fn slot(&self, provider: &str, source: &dyn TokenSource) -> Arc<Slot> {
        let key = (provider.to_owned(), source.cache_key().to_owned());
        self.slots.lock().entry(key).or_default().clone()
    }

    /// The `Authorization` value for `provider`'s next request: its cached token, or one
    /// fetched with `fetch` from `source`.
    pub async fn bearer<F: TokenFetch>(
        &self,
        provider: &str,
        source: &dyn TokenSource,
        fetch: &F,
    ) -> Result<HeaderValue, GatewayError> {
        let slot = self.slot(provider, source);
        if let Some(header) = slot.fresh(Instant::now()) {
            return Ok(header);
        }
        let mut refresh = match slot.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone is refreshing: go on with the old token while it lasts.
                if let Some(header) = slot.valid(Instant::now()) {
                    return Ok(header);
                }
                slot.refresh.lock().await
            }
        };
        let now = Instant::now();
        // The refresh waited for, or one just before, may have done it.
        if let Some(header) = slot.fresh(now) {
            return Ok(header);
        }
        if let Some(failure) = refresh.as_ref()
            && now < failure.at + FAILURE_HOLD
        {
            return match slot.valid(now) {
                Some(header) => Ok(header),
                None => Err(failure.error.clone()),
            };
        }
        let asked = Instant::now();
        let fetched = tokio::time::timeout(TOKEN_TIMEOUT, fetch_token(provider, source, fetch))
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::new(
                    ErrorKind::Timeout,
                    format!(
                        "The upstream provider `{provider}` could not be authenticated: its token \
                         endpoint did not answer within {} s",
                        TOKEN_TIMEOUT.as_secs()
                    ),
                ))
            });
        match fetched {
            Ok((header, lifetime)) => {
                let early = REFRESH_BEFORE.min(lifetime / 4);
                *slot.current.lock() = Some(Cached {
                    header: header.clone(),
                    refresh_at: asked + lifetime.saturating_sub(early),
                    expires_at: asked + lifetime,
                });
                *refresh = None;
                Ok(header)
            }
            Err(error) => {
                tracing::warn!(
                    provider,
                    error = %error.operator_text(),
                    "the upstream provider `{provider}`'s access token could not be obtained"
                );
                *refresh = Some(Failure {
                    at: Instant::now(),
                    error: error.clone(),
                });
                // A token that still works is better than none.
                slot.valid(Instant::now()).ok_or(error)
            }
        }
    }
}

/// Asks `source`'s token endpoint for a token: the `Authorization` value and its lifetime.
async fn fetch_token<F: TokenFetch>(
    provider: &str,
    source: &dyn TokenSource,
    fetch: &F,
) -> Result<(HeaderValue, Duration), GatewayError> {
    let request = source
        .token_request(SystemTime::now())
        .map_err(|e| token_error(provider, e))?;
    let (status, body) = fetch.fetch(request).await.map_err(|e| {
        GatewayError::new(
            e.kind(),
            format!(
                "The upstream provider `{provider}` could not be authenticated: its token \
                 endpoint failed"
            ),
        )
        .with_detail(e.operator_text())
    })?;
    let token = source
        .read_token(status, &body)
        .map_err(|e| token_error(provider, e))?;
    let mut header =
        HeaderValue::try_from(format!("Bearer {}", token.token.expose())).map_err(|_| {
            token_error(
                provider,
                TokenError::Malformed("the token cannot be sent in a header".to_owned()),
            )
        })?;
    header.set_sensitive(true);
    Ok((header, token.expires_in))
}

/// What the caller is told of a token that could not be had: the provider's credentials were
/// refused (a 502 that is the gateway's configuration's fault) or its token endpoint failed.
fn token_error(provider: &str, e: TokenError) -> GatewayError {
    let detail = e.to_string();
    let error = match e {
        TokenError::Refused { status, .. } if status == 429 || status >= 500 => GatewayError::new(
            ErrorKind::Upstream,
            format!(
                "The upstream provider `{provider}` could not be authenticated: its token endpoint \
                 failed ({status})"
            ),
        ),
        TokenError::Refused { .. } | TokenError::Build(_) => GatewayError::new(
            ErrorKind::Upstream,
            format!(
                "The upstream provider `{provider}` rejected the gateway's credentials: its token \
                 endpoint refused the grant"
            ),
        )
        .with_blame(Blame::Gateway)
        .with_code("upstream_auth_failed"),
        TokenError::Malformed(_) => GatewayError::new(
            ErrorKind::Upstream,
            format!(
                "The upstream provider `{provider}` could not be authenticated: its token endpoint \
                 answered with no usable token"
            ),
        ),
    };
    error.with_detail(detail)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use http::Method;
    use portcullis_providers::{AccessToken, Secret};

    use super::*;

    /// A source whose grants the fake endpoint answers.
    #[derive(Debug)]
    struct Source;

    impl TokenSource for Source {
        fn cache_key(&self) -> &str {
            "test"
        }
        fn token_request(&self, _: SystemTime) -> Result<UpstreamRequest, TokenError> {
            Ok(UpstreamRequest {
                method: Method::POST,
                uri: http::Uri::from_static("http://token.test/token"),
                headers: http::HeaderMap::new(),
                body: Bytes::new(),
            })
        }
        fn read_token(&self, status: u16, body: &[u8]) -> Result<AccessToken, TokenError> {
            if status != 200 {
                return Err(TokenError::Refused {
                    status,
                    reason: "invalid_grant: Invalid JWT Signature.".to_owned(),
                });
            }
            let text = String::from_utf8_lossy(body).into_owned();
            Ok(AccessToken {
                token: Secret::new(text),
                expires_in: Duration::from_secs(3600),
            })
        }
    }

    /// A token endpoint that takes `delay` to answer `tok-<n>` (or `status`), counting grants.
    struct Endpoint {
        grants: AtomicU32,
        delay: Duration,
        status: std::sync::atomic::AtomicU16,
    }

    impl Endpoint {
        fn new(delay: Duration) -> Self {
            Self {
                grants: AtomicU32::new(0),
                delay,
                status: std::sync::atomic::AtomicU16::new(200),
            }
        }
    }

    impl TokenFetch for Endpoint {
        async fn fetch(&self, _: UpstreamRequest) -> Result<(u16, Bytes), GatewayError> {
            let n = self.grants.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            let status = self.status.load(Ordering::SeqCst);
            Ok((status, Bytes::from(format!("tok-{n}"))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_grant_and_the_token_is_kept() {
        let tokens = UpstreamTokens::default();
        let endpoint = Endpoint::new(Duration::from_millis(200));
        let asks = (0..20).map(|_| tokens.bearer("vertex", &Source, &endpoint));
        let got = futures_util::future::join_all(asks).await;
        assert_eq!(endpoint.grants.load(Ordering::SeqCst), 1);
        for g in got {
            assert_eq!(g.unwrap(), "Bearer tok-1");
        }
        let header = tokens.bearer("vertex", &Source, &endpoint).await.unwrap();
        assert!(header.is_sensitive());
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(
            tokens.bearer("vertex", &Source, &endpoint).await.unwrap(),
            "Bearer tok-1"
        );
        assert_eq!(endpoint.grants.load(Ordering::SeqCst), 1);
        // Another provider has a token of its own.
        assert_eq!(
            tokens.bearer("other", &Source, &endpoint).await.unwrap(),
            "Bearer tok-2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_is_refreshed_before_it_expires_while_the_old_one_still_serves() {
        let tokens = UpstreamTokens::default();
        let endpoint = Endpoint::new(Duration::from_secs(2));
        assert_eq!(
            tokens.bearer("vertex", &Source, &endpoint).await.unwrap(),
            "Bearer tok-1"
        );
        // Five minutes before the hour is up, the next request refreshes; the ones that
        // arrive meanwhile go on with the old token, which is still good.
        tokio::time::advance(Duration::from_secs(3600 - 300 + 1)).await;
        let refreshing = tokens.bearer("vertex", &Source, &endpoint);
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokens.bearer("vertex", &Source, &endpoint).await
        };
        let (refreshed, old) = tokio::join!(refreshing, meanwhile);
        assert_eq!(refreshed.unwrap(), "Bearer tok-2");
        assert_eq!(old.unwrap(), "Bearer tok-1");
        assert_eq!(
            tokens.bearer("vertex", &Source, &endpoint).await.unwrap(),
            "Bearer tok-2"
        );
        assert_eq!(endpoint.grants.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_grant_is_a_502_naming_the_provider_and_is_not_hammered() {
        let tokens = UpstreamTokens::default();
        let endpoint = Endpoint::new(Duration::from_millis(100));
        endpoint.status.store(400, Ordering::SeqCst);
        let asks = (0..5).map(|_| tokens.bearer("vertex", &Source, &endpoint));
        for got in futures_util::future::join_all(asks).await {
            let e = got.unwrap_err();
            assert_eq!(e.status().as_u16(), 502);
            assert_eq!(e.code(), Some("upstream_auth_failed"));
            assert!(e.message().contains("`vertex`"), "{}", e.message());
            assert!(
                e.detail()
                    .unwrap_or_default()
                    .contains("Invalid JWT Signature")
            );
        }
        assert_eq!(endpoint.grants.load(Ordering::SeqCst), 1);
        // Once the hold is over, a fixed key works.
        tokio::time::advance(FAILURE_HOLD).await;
        endpoint.status.store(200, Ordering::SeqCst);
        assert_eq!(
            tokens.bearer("vertex", &Source, &endpoint).await.unwrap(),
            "Bearer tok-2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_endpoint_that_hangs_times_out() {
        let tokens = UpstreamTokens::default();
        let endpoint = Endpoint::new(Duration::from_secs(60));
        let e = tokens
            .bearer("vertex", &Source, &endpoint)
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 504);
        assert!(e.message().contains("`vertex`"));
    }
}

//! Brute-force protection for password sign-in, shared by every place a password is checked
//! (the OAuth server's sign-in page and the web console): [`SignInThrottle`] counts failures per
//! username and client address, and [`client_address`] says which address a request comes from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;

use crate::config::FAILED_SIGN_IN_WINDOW;

/// Counts failed local sign-ins per username **and client address**, so that a stranger
/// guessing a user's password locks out only themselves, never the user signing in from
/// elsewhere. After [`FREE_FAILURES`] failures each further attempt from the same address waits
/// a delay that doubles with every failure ([`FIRST_DELAY`], at most [`MAX_DELAY`]); after
/// [`OAuthConfig::max_failed_sign_ins`](crate::OAuthConfig::max_failed_sign_ins) failures the pair is locked until the window (which
/// starts at the first failure) ends. A sign-in whose address is unknown counts under the
/// username alone. Bounded: at most 100 000 pairs are tracked.
#[derive(Clone)]
pub struct SignInThrottle {
    failures: moka::future::Cache<(String, Option<IpAddr>), Arc<parking_lot::Mutex<Failures>>>,
    max: u32,
}

/// Failures before any delay.
pub const FREE_FAILURES: u32 = 2;
/// The delay after the first failure beyond [`FREE_FAILURES`].
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// The longest delay between attempts short of the lock.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: std::time::Instant,
}

impl std::fmt::Debug for SignInThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInThrottle")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl SignInThrottle {
    /// A throttle that locks a username and address pair after `max` failures.
    pub fn new(max: u32) -> Self {
        Self {
            failures: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FAILED_SIGN_IN_WINDOW)
                .build(),
            max,
        }
    }

    /// `Err(wait)` when `username` may not try again from `address` yet: locked for the window
    /// (`wait` is then the window), or within the delay after its last failure.
    pub async fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Duration> {
        let Some(entry) = self.failures.get(&(username.to_owned(), address)).await else {
            return Ok(());
        };
        let f = *entry.lock();
        if f.count >= self.max {
            return Err(FAILED_SIGN_IN_WINDOW);
        }
        let delay = delay_after(f.count);
        let waited = f.last.elapsed();
        if waited < delay {
            return Err(delay - waited);
        }
        Ok(())
    }

    /// Counts a failed sign-in of `username` from `address`.
    pub async fn record_failure(&self, username: String, address: Option<IpAddr>) {
        let entry = self
            .failures
            .get_with((username, address), async {
                Arc::new(parking_lot::Mutex::new(Failures {
                    count: 0,
                    last: std::time::Instant::now(),
                }))
            })
            .await;
        let mut f = entry.lock();
        f.count = f.count.saturating_add(1);
        f.last = std::time::Instant::now();
    }

    /// Forgets `username`'s failures from `address`, after it signed in.
    pub async fn clear(&self, username: &str, address: Option<IpAddr>) {
        self.failures
            .invalidate(&(username.to_owned(), address))
            .await;
    }
}

/// The wait imposed after `failures` failures: none for the first [`FREE_FAILURES`], then
/// [`FIRST_DELAY`] doubling with each failure, at most [`MAX_DELAY`].
pub fn delay_after(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// The address a sign-in comes from: the connection's peer (the `ConnectInfo<SocketAddr>`
/// request extension the server provides) or, when that peer is one of `trusted` proxies, the
/// right-most `X-Forwarded-For` address that is not a trusted proxy. `None` when the server
/// does not say.
pub fn client_address(
    extensions: &http::Extensions,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded.reverse();
    for hop in forwarded {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            // An unreadable hop: the proxy's own view is all that can be trusted.
            return Some(peer);
        };
        if !trusted.contains(&ip) {
            return Some(ip);
        }
    }
    Some(peer)
}

/// The wait a refused sign-in is told about, in words: seconds below two minutes, else minutes.
pub fn wait_in_words(wait: Duration) -> String {
    let seconds = retry_after_seconds(wait);
    if seconds >= 120 {
        format!("{} minutes", seconds.div_ceil(60))
    } else {
        format!("{seconds} seconds")
    }
}

/// The `Retry-After` of a refused sign-in: whole seconds, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_after_the_free_failures_and_stop_at_the_cap() {
        assert_eq!(delay_after(FREE_FAILURES), Duration::ZERO);
        assert_eq!(delay_after(FREE_FAILURES + 1), FIRST_DELAY);
        assert_eq!(delay_after(FREE_FAILURES + 2), FIRST_DELAY * 2);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn waits_are_told_in_whole_seconds_or_minutes() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(wait_in_words(Duration::from_secs(30)), "30 seconds");
        assert_eq!(wait_in_words(FAILED_SIGN_IN_WINDOW), "15 minutes");
    }
}

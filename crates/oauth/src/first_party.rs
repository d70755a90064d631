//! The gateway's own client of its authorization server: the web console signs users in with
//! the authorization-code flow (PKCE S256) like any application, through the same sign-in page
//! (local password or the identity provider), without being registered by the operator.
//!
//! The client is [`CONSOLE_CLIENT_ID`], a public client whose only redirect URI is
//! `{issuer}`[`CONSOLE_CALLBACK_PATH`]. It is first-party, so its users see no consent page:
//! they are signing in to the gateway itself, and nothing leaves it — the token endpoint refuses
//! this client, its codes are redeemed only in-process ([`OAuthServer::finish_first_party`]).
//!
//! Nothing is stored between the two steps. [`OAuthServer::begin_first_party`] draws a random
//! browser secret (the caller keeps it in a short-lived `HttpOnly` cookie) and seals, as the
//! `state`, the secret's digest, where to go afterwards, an expiry and a random flow id; the
//! PKCE verifier is derived from that id with a key only the gateway holds, so it never
//! travels. Finishing requires the intact, unexpired state, the same browser's secret, and a
//! code the server issued to this client for that very challenge; the code is single-use, so a
//! replayed callback is refused.
//!
//! [`OAuthServer::begin_first_party`]: crate::OAuthServer::begin_first_party
//! [`OAuthServer::finish_first_party`]: crate::OAuthServer::finish_first_party

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use portcullis_store::oauth::ClientRecord;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use url::Url;

use crate::error::OAuthError;
use crate::keys::AccessClaims;
use crate::secrets::{ct_eq, random_token, s256, sha256};
use crate::server::{Inner, now_ms};

/// The client id of the web console.
pub const CONSOLE_CLIENT_ID: &str = "portcullis-console";

/// Where the console's authorization responses go, under the issuer.
pub const CONSOLE_CALLBACK_PATH: &str = "/ui/auth/callback";

/// How long a first-party sign-in may take from start to callback.
pub const FIRST_PARTY_TTL_SECS: u64 = 600;

const SEAL_STATE: &str = "first-party/state";

/// The longest `next` kept in a state.
const MAX_NEXT: usize = 2048;

/// A started first-party sign-in.
#[derive(Clone, PartialEq, Eq)]
pub struct FirstPartyStart {
    /// Where to send the browser: the authorization endpoint with the request's parameters.
    pub authorize_url: String,
    /// The secret binding the sign-in to this browser, for a short-lived `HttpOnly` cookie
    /// (43 base64url characters).
    pub browser_secret: String,
}

impl std::fmt::Debug for FirstPartyStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstPartyStart")
            .field("authorize_url", &self.authorize_url)
            .field("browser_secret", &"[redacted]")
            .finish()
    }
}

/// A finished first-party sign-in.
#[derive(Debug, Clone)]
pub struct FirstPartySignIn {
    /// The claims of the access token the code was exchanged for: who signed in.
    pub claims: AccessClaims,
    /// The `next` given when the sign-in began.
    pub next: String,
}

/// Why a first-party sign-in cannot finish.
#[derive(Debug, thiserror::Error)]
pub enum FirstPartyError {
    /// The state is forged or altered, has expired, or was started in another browser.
    #[error("the sign-in has expired or was started in another browser")]
    State,
    /// The server refused the code (unknown, already used, expired, or not for this state).
    #[error("the authorization code was refused: {0}")]
    Code(String),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] OAuthError),
}

/// What the `state` carries.
#[derive(Serialize, Deserialize)]
struct State {
    /// The flow's random id; the PKCE verifier is derived from it.
    id: String,
    /// Hex SHA-256 of the browser secret.
    browser: String,
    next: String,
    /// Unix milliseconds.
    exp: i64,
}

/// The first-party client's key for deriving PKCE verifiers.
pub(crate) struct FirstPartyKey([u8; 32]);

impl FirstPartyKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// The PKCE verifier of flow `id`: 43 base64url characters, a valid RFC 7636 verifier.
    fn code_verifier(&self, id: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(b"first-party-pkce-verifier\0");
        mac.update(id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// Whether `client_id` is the gateway's own client.
pub(crate) fn is_first_party(client_id: &str) -> bool {
    client_id == CONSOLE_CLIENT_ID
}

/// The console's redirect URI.
fn callback(inner: &Inner) -> String {
    inner.endpoint(CONSOLE_CALLBACK_PATH)
}

/// The console's client, as if registered: public, authorization code only, any scope the
/// server offers, its one redirect URI.
pub(crate) fn console_client(inner: &Inner) -> ClientRecord {
    ClientRecord {
        client_id: CONSOLE_CLIENT_ID.to_owned(),
        secret_hash: None,
        name: Some("Portcullis console".to_owned()),
        redirect_uris: vec![callback(inner)],
        grant_types: vec!["authorization_code".to_owned()],
        scopes: None,
        auth_method: "none".to_owned(),
        service_account: None,
        created_ms: 0,
    }
}

fn browser_digest(secret: &str) -> String {
    hex::encode(sha256(secret.as_bytes()))
}

/// Starts a sign-in that will come back with `next`.
pub(crate) fn begin(inner: &Inner, next: &str) -> Result<FirstPartyStart, OAuthError> {
    let id = random_token();
    let browser_secret = random_token();
    let next: String = next.chars().take(MAX_NEXT).collect();
    let state = inner.sealer.seal(
        SEAL_STATE,
        &State {
            id: id.clone(),
            browser: browser_digest(&browser_secret),
            next,
            exp: now_ms() + i64::try_from(FIRST_PARTY_TTL_SECS * 1000).unwrap_or(i64::MAX),
        },
    );
    let challenge = s256(&inner.first_party_key.code_verifier(&id));
    let mut url = Url::parse(&inner.endpoint("/oauth/authorize"))
        .map_err(|e| OAuthError::Config(format!("issuer: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CONSOLE_CLIENT_ID)
        .append_pair("redirect_uri", &callback(inner))
        .append_pair("scope", &inner.config.scopes.join(" "))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &state);
    Ok(FirstPartyStart {
        authorize_url: url.into(),
        browser_secret,
    })
}

/// The state's `next`, if `state` is intact and unexpired (for reporting an error response
/// with the place the user was going).
pub(crate) fn next_of(inner: &Inner, state: &str) -> Option<String> {
    let state: State = inner.sealer.open(SEAL_STATE, state)?;
    (state.exp > now_ms()).then_some(state.next)
}

/// Finishes a sign-in: checks the state against the browser's secret and redeems the code.
pub(crate) async fn finish(
    inner: &Inner,
    state: &str,
    code: &str,
    browser_secret: Option<&str>,
) -> Result<FirstPartySignIn, FirstPartyError> {
    let state: State = inner
        .sealer
        .open(SEAL_STATE, state)
        .ok_or(FirstPartyError::State)?;
    if state.exp <= now_ms() {
        return Err(FirstPartyError::State);
    }
    let bound = browser_secret
        .is_some_and(|secret| ct_eq(browser_digest(secret).as_bytes(), state.browser.as_bytes()));
    if !bound {
        return Err(FirstPartyError::State);
    }
    let verifier = inner.first_party_key.code_verifier(&state.id);
    let token = crate::token::redeem_code(
        inner,
        &console_client(inner),
        code,
        &verifier,
        &callback(inner),
    )
    .await
    .map_err(|e| {
        if e.code == "server_error" {
            FirstPartyError::Server(OAuthError::InvalidClient(e.description))
        } else {
            FirstPartyError::Code(e.description)
        }
    })?;
    let claims = inner.signer.verify(&token)?;
    Ok(FirstPartySignIn {
        claims,
        next: state.next,
    })
}

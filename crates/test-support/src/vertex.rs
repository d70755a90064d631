//! Google Cloud's Vertex AI as the mock speaks it, written from Google's public references
//! (OAuth 2.0 for server-to-server applications, the Vertex AI REST reference, Anthropic's
//! Claude on Vertex AI):
//!
//! - **The token endpoint**, `POST /token` (Google's `https://oauth2.googleapis.com/token`):
//!   the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion=<JWT>`), checked as Google checks it — an RS256 signature by the service
//!   account's key (the test key pair in `keys/`, its `kid` the key id), `iss` a known
//!   service account, `aud` Google's token endpoint or this endpoint's own URL, a `scope`, and `iat`/`exp` at most an hour
//!   apart around now — with Google's OAuth errors (`invalid_grant`, `invalid_scope`,
//!   `unsupported_grant_type`). It issues `ya29.`-style access tokens that expire after
//!   [`MockOptions::vertex_token_lifetime`](crate::MockOptions::vertex_token_lifetime).
//! - **The models**, `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`
//!   (and `/v1beta1/…`, which `google-genai` uses): each needs a live bearer token with the
//!   `cloud-platform` scope (else 401 `UNAUTHENTICATED` or 403), and the project
//!   [`PROJECT`]. `publishers/google` answers `generateContent` and `streamGenerateContent`
//!   as the mock's Gemini API does (same checks and triggers); `publishers/anthropic` answers
//!   `rawPredict` and `streamRawPredict` for `claude-*` models as the mock's Messages API
//!   does, the body needing `anthropic_version: vertex-2023-10-16` and carrying no `model`
//!   (it is in the URL); `claude-mock-…` names trigger the mock's cases, a 429 in Google's
//!   format as Vertex AI's quota answers it.
//! - **Embeddings**, `:predict` on Google's embedding models (`text-embedding-*`,
//!   `text-multilingual-embedding-*`, `gemini-embedding-*`): `instances` of `{content,
//!   task_type?, title?}` (at most 250, one for `gemini-embedding-*`; a `title` only with
//!   `RETRIEVAL_DOCUMENT`), `parameters` `outputDimensionality` (up to 768, or 3072 for
//!   Gemini's) and `autoTruncate`; unknown members refused as Google refuses them. Answered with
//!   `predictions[].embeddings.values` and `statistics` (`token_count`, `truncated`) and
//!   `metadata.billableCharacterCount`.
//! - **The publisher models**, `GET /v1beta1/publishers/{publisher}/models` (Model Garden's
//!   ListPublisherModels, which `google-genai`'s `models.list()` reads on Vertex AI), with a
//!   live token: `publisherModels` (`name` `publishers/google/models/{id}`, `versionId`,
//!   `launchStage`, `openSourceCategory`, `publisherModelTemplate`) of a fixed catalogue
//!   ([`PUBLISHER_MODELS`]), at most `pageSize` a page (and at most [`MAX_PAGE_SIZE`], as a
//!   server may return fewer than asked) with `nextPageToken` while more remain; a `pageToken`
//!   it did not issue is Google's 400 `INVALID_ARGUMENT`; an empty list is `{}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response};
use serde_json::{Value, json};

use crate::reply::{MockBody, json_response};
use crate::scenario::Responder;
use crate::{anthropic, gemini};

/// The mock's project.
pub const PROJECT: &str = "mock-project";
/// The mock's service account.
pub const CLIENT_EMAIL: &str = "portcullis-test@mock-project.iam.gserviceaccount.com";
/// The id of its key.
pub const PRIVATE_KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
/// Google's token endpoint, which assertions may name as their audience.
pub const GOOGLE_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
/// The scope Vertex AI needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The service account's private key (a test key, see `keys/README.md`).
pub const PRIVATE_KEY: &str = include_str!("../keys/vertex-test-service-account.pem");
const PUBLIC_KEY: &str = include_str!("../keys/vertex-test-service-account.pub.pem");
/// A key the mock does not know.
pub const UNKNOWN_PRIVATE_KEY: &str = include_str!("../keys/vertex-test-unknown-key.pem");

/// A service account's key file as Google writes it, for the mock's account with
/// `private_key`, its grants sent to `token_uri`.
pub fn service_account_json(private_key: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/portcullis-test%40mock-project.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

/// The access tokens the mock issued, and how many grants it answered.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, (Instant, String)>>,
    grants: AtomicU64,
}

impl Tokens {
    /// Grants answered with a token so far.
    pub(crate) fn grants(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }
}

/// Whether `path` is Vertex AI's (or its token endpoint's).
pub fn handles(path: &str) -> bool {
    path == "/token"
        || path.starts_with("/v1/projects/")
        || path.starts_with("/v1beta1/projects/")
        || path.starts_with("/v1beta1/publishers/")
}

/// The mock's publisher models by publisher: Google's Gemini models and others that are not
/// for chat (embeddings, images), Anthropic's Claude.
pub const PUBLISHER_MODELS: &[(&str, &[&str])] = &[
    (
        "google",
        &[
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-2.0-flash-001",
            "gemini-embedding-001",
            "text-embedding-005",
            "imagen-4.0-generate-001",
            "gemma3",
        ],
    ),
    ("anthropic", &["claude-sonnet-4-5", "claude-haiku-4-5"]),
];

/// The most models on one page of the publisher model list.
pub const MAX_PAGE_SIZE: usize = 5;

/// `GET /v1beta1/publishers/{publisher}/models`.
fn publisher_models(parts: &Parts) -> Response<MockBody> {
    let path = parts.uri.path();
    let publisher = path
        .strip_prefix("/v1beta1/publishers/")
        .and_then(|r| r.strip_suffix("/models"))
        .filter(|p| !p.contains('/'));
    let Some(publisher) = publisher else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL {path} was not found on this server."),
        );
    };
    if parts.method != http::Method::GET {
        return google_error(
            405,
            "METHOD_NOT_ALLOWED",
            "Method not allowed on this resource.",
        );
    }
    let models = PUBLISHER_MODELS
        .iter()
        .find(|(p, _)| *p == publisher)
        .map_or(&[][..], |(_, m)| *m);
    let (mut size, mut start) = (MAX_PAGE_SIZE, 0usize);
    for pair in parts.uri.query().unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "pageSize" => match v.parse::<i64>() {
                Ok(n) if n > 0 => size = (n as usize).min(MAX_PAGE_SIZE),
                Ok(0) => {}
                _ => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Invalid value at 'page_size' (TYPE_INT32), \"{v}\""),
                    );
                }
            },
            "pageToken" if !v.is_empty() => {
                match v.strip_prefix("mock-page-").and_then(|n| n.parse().ok()) {
                    Some(n) if n < models.len() => start = n,
                    _ => {
                        return google_error(400, "INVALID_ARGUMENT", "Invalid page token.");
                    }
                }
            }
            _ => {}
        }
    }
    let end = (start + size).min(models.len());
    let page: Vec<Value> = models[start..end]
        .iter()
        .map(|id| {
            json!({
                "name": format!("publishers/{publisher}/models/{id}"),
                "versionId": "001",
                "openSourceCategory": if publisher == "google" { "PROPRIETARY" } else { "THIRD_PARTY_OWNED_OSS" },
                "launchStage": "GA",
                "publisherModelTemplate": format!(
                    "projects/{{project}}/locations/{{location}}/publishers/{publisher}/models/{id}"
                ),
            })
        })
        .collect();
    let mut body = serde_json::Map::new();
    if !page.is_empty() {
        body.insert("publisherModels".into(), Value::Array(page));
    }
    if end < models.len() {
        body.insert("nextPageToken".into(), json!(format!("mock-page-{end}")));
    }
    json_response(200, &Value::Object(body), &[])
}

fn oauth_error(error: &str, description: &str) -> Response<MockBody> {
    json_response(
        400,
        &json!({"error": error, "error_description": description}),
        &[],
    )
}

/// Google's error body.
fn google_error(code: u16, status: &str, message: &str) -> Response<MockBody> {
    gemini::error(code, status, message, None)
}

fn b64(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

fn verify_rs256(message: &[u8], signature: &[u8]) -> bool {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let Ok(key) = rsa::RsaPublicKey::from_public_key_pem(PUBLIC_KEY) else {
        return false;
    };
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    let Ok(signature) = rsa::pkcs1v15::Signature::try_from(signature) else {
        return false;
    };
    verifier.verify(message, &signature).is_ok()
}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| anthropic::percent_decode(&v.replace('+', " ")))
    })
}

/// `POST /token`: the JWT-bearer grant, checked as Google's token endpoint checks it.
fn token(
    tokens: &Tokens,
    lifetime: Duration,
    parts: &Parts,
    raw: &[u8],
    n: u64,
) -> Response<MockBody> {
    if parts.method != http::Method::POST {
        return json_response(405, &json!({"error": "invalid_request"}), &[]);
    }
    let grant_type = form_value(raw, "grant_type").unwrap_or_default();
    if grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant_type}"),
        );
    }
    let Some(assertion) = form_value(raw, "assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let pieces: Vec<&str> = assertion.split('.').collect();
    let [head, body, signature] = pieces.as_slice() else {
        return oauth_error("invalid_grant", "Invalid JWT: malformed.");
    };
    let header: Option<Value> = b64(head).and_then(|h| serde_json::from_slice(&h).ok());
    let claims: Option<Value> = b64(body).and_then(|c| serde_json::from_slice(&c).ok());
    let (Some(header), Some(claims)) = (header, claims) else {
        return oauth_error("invalid_grant", "Invalid JWT: malformed.");
    };
    if claims.get("iss").and_then(Value::as_str) != Some(CLIENT_EMAIL) {
        return oauth_error("invalid_grant", "Invalid grant: account not found");
    }
    let signed = format!("{head}.{body}");
    let signature_ok = header.get("alg").and_then(Value::as_str) == Some("RS256")
        && header
            .get("kid")
            .and_then(Value::as_str)
            .is_none_or(|kid| kid == PRIVATE_KEY_ID)
        && b64(signature).is_some_and(|s| verify_rs256(signed.as_bytes(), &s));
    if !signature_ok {
        return oauth_error("invalid_grant", "Invalid JWT Signature.");
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    // Google takes its own token endpoint's canonical URL (which `google-auth` always names,
    // whatever the file's `token_uri`) or the URL the grant was sent to.
    let audience = format!("http://{host}/token");
    let aud = claims.get("aud").and_then(Value::as_str);
    if aud != Some(audience.as_str()) && aud != Some(GOOGLE_TOKEN_ENDPOINT) {
        return oauth_error(
            "invalid_grant",
            &format!("Invalid JWT: Failed audience check. The right audience is {audience}"),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    // Google allows a few minutes of clock skew, never an hour-long assertion more.
    let timely = exp > iat && exp - iat <= 3600 && iat <= now + 300 && exp + 300 > now;
    if !timely {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let scope = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if scope.trim().is_empty() {
        return oauth_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    let access_token = format!("ya29.c.mock-{n}-{}", now % 100_000);
    if let Ok(mut issued) = tokens.issued.lock() {
        issued.insert(access_token.clone(), (Instant::now() + lifetime, scope));
    }
    tokens.grants.fetch_add(1, Ordering::Relaxed);
    json_response(
        200,
        &json!({"access_token": access_token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
        &[(
            "cache-control".into(),
            "no-cache, no-store, max-age=0, must-revalidate".into(),
        )],
    )
}

/// The bearer token's check: `None` when it is live and has the `cloud-platform` scope.
fn check_token(tokens: &Tokens, h: &HeaderMap) -> Option<Response<MockBody>> {
    let presented = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return Some(google_error(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access \
             token, login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        ));
    };
    let found = tokens
        .issued
        .lock()
        .ok()
        .and_then(|issued| issued.get(presented).cloned());
    match found {
        Some((expires, _)) if Instant::now() >= expires => Some(google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )),
        Some((_, scope)) if !scope.split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) => {
            Some(google_error(
                403,
                "PERMISSION_DENIED",
                "Request had insufficient authentication scopes.",
            ))
        }
        Some(_) => None,
        None => Some(google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )),
    }
}

/// What Vertex AI answers before anything else: the token endpoint's answer, or a model
/// request's refusal for its token. `None`: a model request that may go on.
pub(crate) fn authenticate(
    tokens: &Tokens,
    lifetime: Duration,
    parts: &Parts,
    raw: &[u8],
    n: u64,
) -> Option<Response<MockBody>> {
    if parts.uri.path() == "/token" {
        return Some(token(tokens, lifetime, parts, raw, n));
    }
    check_token(tokens, &parts.headers)
}

/// The parts of a model path: project, location, publisher, model, method.
fn model_path(path: &str) -> Option<(&str, &str, &str, String, &str)> {
    let rest = path
        .strip_prefix("/v1/projects/")
        .or_else(|| path.strip_prefix("/v1beta1/projects/"))?;
    let (project, rest) = rest.split_once("/locations/")?;
    let (location, rest) = rest.split_once("/publishers/")?;
    let (publisher, rest) = rest.split_once("/models/")?;
    let (model, method) = rest.rsplit_once(':')?;
    Some((
        project,
        location,
        publisher,
        anthropic::percent_decode(model),
        method,
    ))
}

/// Serves one model request (its token already checked).
pub async fn handle(
    responder: Option<&dyn Responder>,
    frame_delay: Duration,
    parts: &Parts,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let path = parts.uri.path();
    if path.starts_with("/v1beta1/publishers/") {
        return publisher_models(parts);
    }
    let Some((project, location, publisher, model, method)) = model_path(path) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("The requested URL {path} was not found on this server."),
        );
    };
    if project != PROJECT {
        return google_error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'aiplatform.endpoints.predict' denied on resource \
                 '//aiplatform.googleapis.com/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}' \
                 (or it may not exist)."
            ),
        );
    }
    if !body.is_object() {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received. Unexpected token.",
        );
    }
    let query = parts.uri.query().unwrap_or_default();
    match (publisher, method) {
        ("google", "generateContent") => gemini::generate(&model, body, None, n).await,
        ("google", "streamGenerateContent") => {
            let sse = query.split('&').any(|p| p == "alt=sse");
            gemini::generate(&model, body, Some((sse, frame_delay)), n).await
        }
        ("google", "countTokens") => count_google(&model, body),
        ("google", "predict") => predict(&model, body),
        ("anthropic", "rawPredict") if model == "count-tokens" => {
            if body.get("anthropic_version").and_then(Value::as_str) != Some("vertex-2023-10-16") {
                return anthropic::error(
                    400,
                    "invalid_request_error",
                    "anthropic_version: Input should be 'vertex-2023-10-16'",
                    n,
                );
            }
            if !body
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("claude-"))
            {
                return anthropic::error(400, "invalid_request_error", "model: Field required", n);
            }
            let mut counted = body.clone();
            if let Some(m) = counted.as_object_mut() {
                m.remove("anthropic_version");
            }
            anthropic::count(&counted, n)
        }
        ("anthropic", "rawPredict" | "streamRawPredict") if model.starts_with("claude-") => {
            if body.get("model").is_some() {
                return anthropic::error(
                    400,
                    "invalid_request_error",
                    "model: Extra inputs are not permitted",
                    n,
                );
            }
            match body.get("anthropic_version").and_then(Value::as_str) {
                Some("vertex-2023-10-16") => {}
                Some(other) => {
                    return anthropic::error(
                        400,
                        "invalid_request_error",
                        &format!(
                            "anthropic_version: Input should be 'vertex-2023-10-16', got '{other}'"
                        ),
                        n,
                    );
                }
                None => {
                    return anthropic::error(
                        400,
                        "invalid_request_error",
                        "anthropic_version: Field required",
                        n,
                    );
                }
            }
            // `claude-mock-…` names trigger the mock's cases; a quota error comes from Vertex
            // AI itself, in Google's format, the others from the model, in Anthropic's.
            let scenario = model
                .strip_prefix("claude-")
                .filter(|m| m.starts_with("mock-"))
                .unwrap_or(&model);
            if scenario == "mock-error-429" {
                return google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    &format!(
                        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model \
                         with base model: anthropic-{model}. Please submit a quota increase request."
                    ),
                );
            }
            let mut messages = body.clone();
            if let Some(m) = messages.as_object_mut() {
                m.remove("anthropic_version");
                m.insert("model".to_owned(), Value::String(scenario.to_owned()));
            }
            anthropic::answer(responder, frame_delay, &messages, n).await
        }
        _ => google_error(
            404,
            "NOT_FOUND",
            &format!(
                "Publisher Model `projects/{project}/locations/{location}/publishers/{publisher}/models/{model}` \
                 not found or method `{method}` is not supported."
            ),
        ),
    }
}

const TASK_TYPES: &[&str] = &[
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
];

/// `:predict` on one of Google's embedding models.
fn predict(model: &str, body: &Value) -> Response<MockBody> {
    let invalid = |m: &str| google_error(400, "INVALID_ARGUMENT", m);
    let gemini = model.starts_with("gemini-embedding-");
    if !(gemini
        || model.starts_with("text-embedding-")
        || model.starts_with("text-multilingual-embedding-"))
    {
        return google_error(
            400,
            "FAILED_PRECONDITION",
            &format!("Model {model} does not support the predict method."),
        );
    }
    if let Some(extra) = body.as_object().and_then(|o| {
        o.keys()
            .find(|k| !matches!(k.as_str(), "instances" | "parameters"))
    }) {
        return invalid(&format!(
            "Invalid JSON payload received. Unknown name \"{extra}\": Cannot find field."
        ));
    }
    let Some(instances) = body
        .get("instances")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
    else {
        return invalid("instances must not be empty.");
    };
    let limit = if gemini { 1 } else { 250 };
    if instances.len() > limit {
        return invalid(&format!(
            "Unable to submit request because the model supports only {limit} instance(s) per              request, but {} were sent.",
            instances.len()
        ));
    }
    let max_dims: u64 = if gemini { 3072 } else { 768 };
    let mut dims = max_dims;
    if let Some(params) = body.get("parameters") {
        let Some(params) = params.as_object() else {
            return invalid("parameters must be an object.");
        };
        for (k, v) in params {
            match k.as_str() {
                "outputDimensionality" => match v.as_u64() {
                    Some(d) if (1..=max_dims).contains(&d) => dims = d,
                    _ => {
                        return invalid(&format!(
                            "outputDimensionality must be between 1 and {max_dims}, got {v}."
                        ));
                    }
                },
                "autoTruncate" if v.is_boolean() => {}
                _ => {
                    return invalid(&format!("Invalid parameter \"{k}\" for model {model}."));
                }
            }
        }
    }
    let mut predictions = Vec::with_capacity(instances.len());
    let mut characters = 0usize;
    for (i, instance) in instances.iter().enumerate() {
        let Some(obj) = instance.as_object() else {
            return invalid(&format!("instances[{i}] must be an object."));
        };
        if let Some(extra) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "content" | "task_type" | "title"))
        {
            return invalid(&format!(
                "Invalid instance field \"{extra}\" in instances[{i}]."
            ));
        }
        let Some(text) = obj.get("content").and_then(Value::as_str) else {
            return invalid(&format!("instances[{i}].content is required."));
        };
        let task = obj.get("task_type").map(|t| t.as_str().unwrap_or_default());
        if let Some(t) = task
            && !TASK_TYPES.contains(&t)
        {
            return invalid(&format!("Invalid task_type \"{t}\" in instances[{i}]."));
        }
        if obj.contains_key("title") && task != Some("RETRIEVAL_DOCUMENT") {
            return invalid("title is only valid with task_type RETRIEVAL_DOCUMENT.");
        }
        characters += text.chars().count();
        let values = crate::openai::embedding(text, usize::try_from(dims).unwrap_or(768));
        predictions.push(json!({"embeddings": {
            "statistics": {"truncated": false, "token_count": crate::scenario::tokens(text)},
            "values": values,
        }}));
    }
    json_response(
        200,
        &json!({"predictions": predictions, "metadata": {"billableCharacterCount": characters}}),
        &[],
    )
}

/// Vertex AI's `:countTokens` for Google's models: `contents` (with `systemInstruction`,
/// `tools`, `generationConfig`) counted as the Gemini mock counts, answered with `totalTokens`
/// and `totalBillableCharacters`; any other member refused as Google refuses unknown fields.
fn count_google(model: &str, body: &Value) -> Response<MockBody> {
    let known = [
        "contents",
        "systemInstruction",
        "tools",
        "generationConfig",
        "instances",
        "model",
    ];
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            &format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
            ),
        );
    }
    let Some(contents) = body.get("contents").filter(|c| c.is_array()) else {
        return google_error(
            400,
            "INVALID_ARGUMENT",
            &format!("Unable to submit request because it has an empty contents field ({model})."),
        );
    };
    let mut text = contents.to_string();
    for member in ["systemInstruction", "tools"] {
        if let Some(v) = body.get(member) {
            text.push_str(&v.to_string());
        }
    }
    json_response(
        200,
        &json!({"totalTokens": crate::scenario::tokens(&text),
                "totalBillableCharacters": text.chars().count()}),
        &[],
    )
}

/// The bytes of a recorded form body, for tests that read what the token endpoint got.
pub fn form_field(raw: &Bytes, name: &str) -> Option<String> {
    form_value(raw, name)
}

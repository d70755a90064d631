//! Mock upstream LLM providers for tests and benchmarks.
//!
//! [`MockUpstream`] is one HTTP server on `127.0.0.1:0` that speaks both OpenAI's API
//! (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`, and the Responses API's
//! `/v1/responses`) and Anthropic's (`/v1/messages`,
//! and `/v1/models` when asked with Anthropic's headers),
//! written from the providers' public API references: their authentication, status codes,
//! headers, error bodies, usage fields and SSE framing. It is deliberately independent of the
//! gateway's own codecs so that it can serve as the oracle they are tested against.
//!
//! Without scripted replies the mock answers deterministically from the request, so tests in
//! any language can trigger each case:
//! - a text reply, `Hello from the mock! You said: <last user text>` (streamed word by word);
//! - with tools offered and `[tool]` in the last user text (or a forced tool choice): one tool
//!   call with arguments `{"query": "<last user text>"}`, streamed in small fragments; `[tools2]`
//!   gives two calls;
//! - models named `mock-error-<status>` fail with that provider's real error body,
//!   `mock-slow-<ms>` answer late, `mock-drop-midstream` cut the connection mid-stream and
//!   `mock-error-midstream` report an error inside the stream;
//! - first of all, a directive `[call <tool> <JSON object>]` in the conversation's last message
//!   (a user's text or a tool result): that call, whether the tool is offered or not — as a
//!   model obeys an instruction injected into what a tool returned.
//!
//! `GET /mock/requests` lists the requests received so far (method, path, query, JSON body).
//!
//! The same server answers as Google's Gemini API ([`gemini`]): `POST
//! /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse`),
//! `:countTokens`, `:embedContent`, `:batchEmbedContents` and the model list, the key
//! ([`MockOptions::gemini_api_key`]) in `x-goog-api-key` or `?key=`; the same model names
//! trigger the same cases.
//!
//! The same server answers as Amazon Bedrock Runtime ([`bedrock`]): `POST
//! /model/{modelId}/converse` and `/converse-stream` (an AWS event stream), and `/invoke` for
//! the Titan and Cohere embedding models, every request's
//! AWS Signature Version 4 checked ([`sigv4`]) against [`MockOptions::aws_access_key_id`] and
//! its secret, for service `bedrock` in [`MockOptions::aws_region`]; the same model names
//! trigger the same cases.
//!
//! The same server answers as Azure OpenAI ([`azure`]): `POST
//! /openai/deployments/{deployment}/chat/completions` and `…/embeddings` with `?api-version=`,
//! and the `/openai/v1/` form, the key ([`MockOptions::azure_api_key`]) in `api-key`; its
//! answers carry Azure's content-filter annotations, and the same model names (deployments)
//! trigger the same cases. Microsoft Entra ID's token endpoint (`/{tenant}/oauth2/v2.0/token`,
//! the client-credentials grant for [`MockOptions::azure_client_id`]) issues the bearer tokens
//! the Azure OpenAI API also accepts.
//!
//! The same server answers as Google Cloud's Vertex AI ([`vertex`]): a token endpoint, `POST
//! /token`, checking service accounts' JWT-bearer grants as Google does and issuing expiring
//! access tokens, and, under `/v1/projects/{project}/locations/{location}/publishers/…`, Gemini
//! models (`generateContent`, `streamGenerateContent`) and Claude models (`rawPredict`,
//! `streamRawPredict`) that want a live token; the same model names trigger the same cases.
//!
//! [`MockIssuer`] ([`oidc`]) is a mock OpenID Connect issuer (discovery document, JWKS,
//! token minting and key rotation) for the tests of bearer-JWT validation.
//!
//! Scripted [`Reply`]s queued with [`MockUpstream::push_reply`] take precedence, for tests that
//! need an exact upstream answer. Module map: [`server`] (listener and connections),
//! [`openai`] and [`anthropic`] (each provider's protocol), [`scenario`] (what to answer),
//! [`reply`] (scripted replies and response bodies), [`oidc`] (an OpenID Connect issuer and
//! provider), [`postgres`] (a fresh PostgreSQL schema per test), [`mcp`] (a minimal
//! Streamable HTTP MCP server, [`MockMcpServer`], for tests and the benchmark), [`injection`]
//! (the indirect-prompt-injection scenario set, the scripted model that obeys injections, an
//! MCP twin of its tools and the agent loop that drives them through a gateway).

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod injection;
pub mod mcp;
pub mod mcp_oauth;
pub mod oidc;
pub mod openai;
pub mod postgres;
pub mod reply;
pub mod responses;
pub mod scenario;
pub mod server;
pub mod sigv4;
pub mod vertex;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use mcp::MockMcpServer;
pub use oidc::{MockAlg, MockIssuer, MockIssuerOptions};
pub use reply::{Reply, SseFrame, StreamEnd};

/// Settings of a mock server.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Added before every answer (the benchmark's slow-upstream scenario uses 50 ms).
    pub latency: Duration,
    /// Pause between SSE frames.
    pub stream_frame_delay: Duration,
    /// The API key OpenAI requests must carry.
    pub openai_api_key: String,
    /// The API key Anthropic requests must carry.
    pub anthropic_api_key: String,
    /// The API key Gemini requests must carry.
    pub gemini_api_key: String,
    /// Keep every request for [`MockUpstream::requests`]; the benchmark turns this off.
    pub record_requests: bool,
    /// Further API keys accepted by both APIs (several accounts on one upstream).
    pub extra_api_keys: Vec<String>,
    /// The AWS access key id Bedrock requests must be signed with.
    pub aws_access_key_id: String,
    /// Its secret access key.
    pub aws_secret_access_key: String,
    /// The session token Bedrock requests must carry (temporary credentials); with `None`
    /// they must carry none.
    pub aws_session_token: Option<String>,
    /// The region Bedrock requests must be signed for.
    pub aws_region: String,
    /// How long the access tokens of the Vertex AI token endpoint last.
    pub vertex_token_lifetime: Duration,
    /// The key Azure OpenAI requests must carry (`api-key`).
    pub azure_api_key: String,
    /// The Microsoft Entra ID tenant whose token endpoint the mock serves
    /// (`/{tenant}/oauth2/v2.0/token`); its tokens are accepted by the Azure OpenAI API.
    pub azure_tenant_id: String,
    /// The application (client) id Entra ID knows.
    pub azure_client_id: String,
    /// Its client secret.
    pub azure_client_secret: String,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            stream_frame_delay: Duration::ZERO,
            openai_api_key: "sk-mock-openai".to_owned(),
            anthropic_api_key: "sk-ant-mock".to_owned(),
            gemini_api_key: "AIza-mock-gemini".to_owned(),
            record_requests: true,
            extra_api_keys: Vec::new(),
            // AWS's documentation example key.
            aws_access_key_id: "AKIAIOSFODNN7EXAMPLE".to_owned(),
            aws_secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            aws_session_token: None,
            aws_region: "us-east-1".to_owned(),
            vertex_token_lifetime: Duration::from_secs(3599),
            azure_api_key: "azure-mock-key".to_owned(),
            azure_tenant_id: "00000000-0000-4000-8000-00000000a2e1".to_owned(),
            azure_client_id: "11111111-1111-4111-8111-1111111111c1".to_owned(),
            azure_client_secret: "mock~entra~secret".to_owned(),
        }
    }
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string (empty when there is none).
    pub query: String,
    /// Headers, names lower-cased (repeated headers joined with `, `).
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: serde_json::Value,
    /// The raw body.
    pub raw: bytes::Bytes,
}

/// State shared by the server's connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) options: MockOptions,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    /// The responses the mock's Responses API keeps.
    pub(crate) responses: responses::Stored,
    pub(crate) replies: Mutex<VecDeque<Reply>>,
    pub(crate) hits: AtomicU64,
    pub(crate) responder: std::sync::RwLock<Option<Arc<dyn scenario::Responder>>>,
    pub(crate) vertex_tokens: vertex::Tokens,
    /// Access tokens the mock's Entra ID issued, accepted by its Azure OpenAI API.
    pub(crate) azure_tokens: Mutex<Vec<String>>,
}

/// A running mock server. Dropping it stops the server.
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl MockUpstream {
    /// Starts a mock with default options on `127.0.0.1:0`.
    pub async fn start() -> MockUpstream {
        Self::start_with(MockOptions::default()).await
    }

    /// Starts a mock with `options` on `127.0.0.1:0`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test environment).
    pub async fn start_with(options: MockOptions) -> MockUpstream {
        #[allow(clippy::expect_used)]
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the mock upstream");
        Self::serve(listener, options)
    }

    /// Serves on an already bound listener.
    pub fn serve(listener: tokio::net::TcpListener, options: MockOptions) -> MockUpstream {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Arc::new(Shared {
            options,
            requests: Mutex::new(Vec::new()),
            responses: responses::Stored::default(),
            replies: Mutex::new(VecDeque::new()),
            hits: AtomicU64::new(0),
            responder: std::sync::RwLock::new(None),
            vertex_tokens: vertex::Tokens::default(),
            azure_tokens: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(server::run(listener, shared.clone(), stopped));
        MockUpstream {
            addr,
            shared,
            _stop: stop,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for OpenAI clients: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL for Anthropic clients: `http://127.0.0.1:PORT` (no `/v1`).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for Gemini clients: `http://127.0.0.1:PORT` (no `/v1beta`).
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Endpoint URL for Bedrock Runtime clients: `http://127.0.0.1:PORT`.
    pub fn bedrock_endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The resource endpoint for Azure OpenAI clients: `http://127.0.0.1:PORT` (no `/openai`).
    pub fn azure_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL for Vertex AI clients: `http://127.0.0.1:PORT` (the paths begin with `/v1`).
    pub fn vertex_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint of Vertex AI's service accounts: `http://127.0.0.1:PORT/token`.
    pub fn vertex_token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The key file of the mock's service account, its grants going to this mock.
    pub fn vertex_service_account(&self) -> String {
        vertex::service_account_json(vertex::PRIVATE_KEY, &self.vertex_token_uri())
    }

    /// JWT-bearer grants the token endpoint answered with a token so far.
    pub fn vertex_grants(&self) -> u64 {
        self.shared.vertex_tokens.grants()
    }

    /// Every request received so far (when recording is on).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Queues a scripted reply, used (first in, first out) before the default behaviour.
    pub fn push_reply(&self, reply: Reply) {
        if let Ok(mut q) = self.shared.replies.lock() {
            q.push_back(reply);
        }
    }

    /// Answers chat requests with `responder` from now on (where it gives an answer), before
    /// the default behaviour; scripted replies still come first.
    pub fn set_responder(&self, responder: Arc<dyn scenario::Responder>) {
        if let Ok(mut r) = self.shared.responder.write() {
            *r = Some(responder);
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.shared.hits.load(Ordering::Relaxed)
    }
}

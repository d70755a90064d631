//! A configured provider: its name, kind, credential and headers around the [`ProviderApi`]
//! of its wire format, which turns canonical requests into upstream HTTP requests and reads
//! the answers back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use portcullis_core::{ChatRequest, ChatResponse, Dialect, EmbeddingsRequest, GatewayError};
use portcullis_dialects::StreamDecoder;
use portcullis_dialects::frame::Framer;

use crate::anthropic::AnthropicApi;
use crate::api::{Authentication, ProviderApi, Wire};
use crate::azure::AzureApi;
use crate::bedrock::BedrockApi;
use crate::entra::{COGNITIVE_SERVICES_SCOPE, ClientCredentialsGrant};
use crate::gemini::GeminiApi;
use crate::google_auth::{CLOUD_PLATFORM_SCOPE, JwtBearerGrant, ServiceAccount};
use crate::kind::{AuthScheme, CloudflareUpstream, ProviderKind};
use crate::openai::OpenAiApi;
use crate::secret::Secret;
use crate::sigv4::{AwsCredentials, SigV4Signing};
use crate::vertex::VertexApi;

/// A provider as configured, before validation.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    /// Name used in `provider/model` and in logs.
    pub name: String,
    /// Kind.
    pub kind: ProviderKind,
    /// Base URL, overriding the kind's default.
    pub base_url: Option<String>,
    /// The default API key.
    pub api_key: Option<Secret>,
    /// Extra headers sent on every upstream request.
    pub headers: Vec<(String, Secret)>,
    /// Models this provider advertises in `/v1/models` and serves by bare name.
    pub models: Vec<String>,
    /// Cloudflare AI Gateway settings (kind `cloudflare` only).
    pub cloudflare: Option<CloudflareSpec>,
    /// `max_tokens` sent to Anthropic-dialect upstreams when the client gave none.
    pub default_max_tokens: Option<u32>,
    /// Models served through the provider's Responses API rather than Chat Completions
    /// (beside OpenAI's own Responses-only models).
    pub responses_models: Vec<String>,
    /// Vertex AI settings (kind `vertex` only).
    pub vertex: Option<VertexSpec>,
    /// Azure OpenAI settings (kind `azure` only).
    pub azure: Option<AzureSpec>,
    /// Amazon Bedrock's region and AWS credentials (kind `bedrock` only).
    pub aws: Option<AwsSpec>,
}

impl ProviderSpec {
    /// A spec with only a name and kind set.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        Self {
            name: name.into(),
            kind,
            base_url: None,
            api_key: None,
            headers: Vec::new(),
            models: Vec::new(),
            cloudflare: None,
            default_max_tokens: None,
            responses_models: Vec::new(),
            vertex: None,
            azure: None,
            aws: None,
        }
    }
}

/// How an Azure OpenAI resource is addressed.
#[derive(Debug, Clone, Default)]
pub struct AzureSpec {
    /// The `api-version` of the deployments form; `None` for the v1 form.
    pub api_version: Option<String>,
    /// Model names callers use → deployment names, in the order written.
    pub deployments: Vec<(String, String)>,
    /// A Microsoft Entra ID application whose tokens are sent instead of a key.
    pub entra: Option<EntraSpec>,
}

/// A Microsoft Entra ID application (service principal) and its client secret, for the
/// client-credentials grant.
#[derive(Debug, Clone)]
pub struct EntraSpec {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The authority's base URL; `None`: `https://login.microsoftonline.com`.
    pub authority: Option<String>,
}

/// Where a Vertex AI provider's models are and whose credentials it uses.
#[derive(Debug, Clone, Default)]
pub struct VertexSpec {
    /// The Google Cloud project; `None`: the credentials' `project_id`.
    pub project: Option<String>,
    /// The location (`us-east5`, `europe-west1`, `global`, …).
    pub location: Option<String>,
    /// The service account's key file, read when the provider is built.
    pub credentials: Option<PathBuf>,
}

/// The region and AWS credentials a Bedrock provider signs its requests with.
#[derive(Debug, Clone, Default)]
pub struct AwsSpec {
    /// The region requests are signed for (and whose endpoint is the default base URL).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// Its secret access key.
    pub secret_access_key: Option<Secret>,
    /// The session token of temporary credentials, sent as `x-amz-security-token`.
    pub session_token: Option<Secret>,
    /// The control plane's endpoint (the model list), when not the base URL or the region's
    /// (`AWS_ENDPOINT_URL_BEDROCK`).
    pub control_plane_url: Option<String>,
}

/// Where a Cloudflare AI Gateway is and what it forwards to.
#[derive(Debug, Clone)]
pub struct CloudflareSpec {
    /// Cloudflare account id.
    pub account_id: String,
    /// AI Gateway id.
    pub gateway_id: String,
    /// Provider path behind the gateway: `compat`, `openai`, `anthropic`, `workers-ai`, `groq`, ….
    pub upstream: String,
    /// Token for authenticated gateways, sent as `cf-aig-authorization: Bearer …`.
    pub token: Option<Secret>,
}

/// Why a provider could not be built from its spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No base URL was configured and the kind has no default.
    #[error("`base_url` is required for providers of kind `{0}`")]
    MissingBaseUrl(&'static str),
    /// The base URL is not an absolute http(s) URL.
    #[error("`base_url` `{0}` is not an absolute http:// or https:// URL")]
    InvalidBaseUrl(String),
    /// A key is required and none was given.
    #[error("an API key is required for providers of kind `{0}`")]
    MissingApiKey(&'static str),
    /// Cloudflare settings are missing.
    #[error("providers of kind `cloudflare` need `account_id` and `gateway_id` (or a `base_url`)")]
    MissingCloudflare,
    /// A header name or value cannot be sent.
    #[error("header `{0}` has an invalid name or value")]
    InvalidHeader(String),
    /// A credential holds characters that cannot go in a header.
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    InvalidApiKey,
    /// A Vertex AI setting or its credentials file is missing or wrong (never quoting the
    /// file's key).
    #[error("{0}")]
    Vertex(String),
    /// A Bedrock setting is missing or wrong (never quoting a secret).
    #[error("{0}")]
    Bedrock(String),
    /// Keys (stored or configured) do not apply to the kind, which authenticates otherwise.
    #[error("providers of kind `{0}` take no API key")]
    NoApiKeys(&'static str),
    /// An Azure `api_version` that cannot go in a query string.
    #[error("`api_version` `{0}` is not an API version (letters, digits, `-`, `_`, `.`)")]
    InvalidApiVersion(String),
    /// An Azure deployment name that is not one.
    #[error(
        "`deployments.{model}`: `{deployment}` is not a deployment name (letters, digits, `-`, `_`, `.`)"
    )]
    InvalidDeployment {
        /// The model name mapped.
        model: String,
        /// The deployment it maps to.
        deployment: String,
    },
    /// An Azure provider's Entra ID settings are incomplete or wrong (never quoting the
    /// secret).
    #[error("{0}")]
    Entra(String),
}

/// A provider credential ready to send: its id (recorded in logs) and its header.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The credential's id, never the secret.
    pub id: String,
    header: (HeaderName, HeaderValue),
}

impl Credential {
    fn new(
        id: impl Into<String>,
        secret: &Secret,
        scheme: AuthScheme,
    ) -> Result<Self, ProviderError> {
        let header = match scheme {
            AuthScheme::Bearer => (
                AUTHORIZATION,
                HeaderValue::try_from(format!("Bearer {}", secret.expose())),
            ),
            AuthScheme::XApiKey => (
                HeaderName::from_static("x-api-key"),
                HeaderValue::try_from(secret.expose()),
            ),
            AuthScheme::GoogApiKey => (
                HeaderName::from_static("x-goog-api-key"),
                HeaderValue::try_from(secret.expose()),
            ),
            AuthScheme::AzureApiKey => (
                HeaderName::from_static("api-key"),
                HeaderValue::try_from(secret.expose()),
            ),
        };
        let mut value = header.1.map_err(|_| ProviderError::InvalidApiKey)?;
        value.set_sensitive(true);
        Ok(Self {
            id: id.into(),
            header: (header.0, value),
        })
    }
}

/// An HTTP request for an upstream, built by a provider and sent by the gateway.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Method.
    pub method: Method,
    /// Full URL.
    pub uri: Uri,
    /// Headers, credentials included (marked sensitive).
    pub headers: HeaderMap,
    /// JSON body.
    pub body: Bytes,
}

/// Client headers a provider may forward upstream.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardedHeaders<'a> {
    /// `anthropic-beta`, forwarded to Anthropic-dialect upstreams.
    pub anthropic_beta: Option<&'a HeaderValue>,
}

/// A configured, validated provider: its name and kind, its credential and headers, and the
/// [`ProviderApi`] that speaks its wire format.
#[derive(Debug)]
pub struct Provider {
    name: String,
    kind: ProviderKind,
    api: Box<dyn ProviderApi>,
    base_headers: Vec<(HeaderName, HeaderValue)>,
    credential: Option<Credential>,
    authentication: Authentication,
    models: Vec<String>,
    /// The base URL without its version segment: what the native pass-through puts before the
    /// rest of a caller's path.
    native_root: String,
}

const CLOUDFLARE_BASE: &str = "https://gateway.ai.cloudflare.com/v1";
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// `base` followed by `path`, as a URL.
pub(crate) fn join(base: &str, path: &str) -> Result<Uri, ProviderError> {
    format!("{base}{path}")
        .parse::<Uri>()
        .map_err(|_| ProviderError::InvalidBaseUrl(base.to_owned()))
}

/// `base` without a trailing version segment (`/v1`, `/v1beta`).
fn native_root(base: &str) -> &str {
    ["/v1", "/v1beta"]
        .iter()
        .find_map(|v| base.strip_suffix(v))
        .unwrap_or(base)
}

/// A Vertex AI provider's project, location and token grant, from its spec and credentials
/// file.
struct VertexSetup {
    project: String,
    location: String,
    grant: JwtBearerGrant,
}

fn vertex_setup(spec: Option<&VertexSpec>) -> Result<VertexSetup, ProviderError> {
    let spec = spec.cloned().unwrap_or_default();
    let Some(path) = spec.credentials else {
        return Err(ProviderError::Vertex(
            "kind `vertex` needs `credentials`: a service account's key file".to_owned(),
        ));
    };
    let Some(location) = spec.location.filter(|l| !l.is_empty()) else {
        return Err(ProviderError::Vertex(
            "kind `vertex` needs `location` (a region such as `us-east5`, or `global`)".to_owned(),
        ));
    };
    let account = ServiceAccount::read(&path).map_err(|e| ProviderError::Vertex(e.to_string()))?;
    let Some(project) = spec
        .project
        .filter(|p| !p.is_empty())
        .or_else(|| account.project_id.clone())
    else {
        return Err(ProviderError::Vertex(format!(
            "kind `vertex` needs `project`: the credentials file `{}` names none",
            path.display()
        )));
    };
    let grant = JwtBearerGrant::new(account, CLOUD_PLATFORM_SCOPE)
        .map_err(|e| ProviderError::Vertex(e.to_string()))?;
    Ok(VertexSetup {
        project,
        location,
        grant,
    })
}

/// A Bedrock provider's signing: its region and credentials, all required (the configuration
/// fills them from the `AWS_*` variables when the file leaves them out).
fn bedrock_signing(spec: Option<&AwsSpec>) -> Result<SigV4Signing, ProviderError> {
    let spec = spec.cloned().unwrap_or_default();
    let Some(region) = spec.region.filter(|r| !r.is_empty()) else {
        return Err(ProviderError::Bedrock(
            "kind `bedrock` needs `region` (or AWS_REGION), such as `us-east-1`".to_owned(),
        ));
    };
    if !region
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ProviderError::Bedrock(format!(
            "`region` `{region}` is not an AWS region"
        )));
    }
    let (Some(access_key_id), Some(secret_access_key)) = (
        spec.access_key_id.filter(|k| !k.is_empty()),
        spec.secret_access_key.filter(|k| !k.is_empty()),
    ) else {
        return Err(ProviderError::Bedrock(
            "kind `bedrock` needs `access_key_id` and `secret_access_key` (or AWS_ACCESS_KEY_ID \
             and AWS_SECRET_ACCESS_KEY)"
                .to_owned(),
        ));
    };
    let printable = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
    let token = spec.session_token.filter(|t| !t.is_empty());
    if !printable(&access_key_id)
        || !printable(secret_access_key.expose())
        || token.as_ref().is_some_and(|t| !printable(t.expose()))
    {
        return Err(ProviderError::Bedrock(
            "the AWS credentials contain characters that cannot be signed or sent".to_owned(),
        ));
    }
    Ok(SigV4Signing {
        credentials: AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: token,
        },
        region,
        service: crate::bedrock::SIGNING_SERVICE,
    })
}

impl Provider {
    /// Validates a spec into a provider.
    pub fn new(spec: ProviderSpec) -> Result<Self, ProviderError> {
        let preset = spec.kind.preset();
        let cloudflare_upstream = spec
            .cloudflare
            .as_ref()
            .map(|c| CloudflareUpstream::parse(&c.upstream));
        let (wire, auth_scheme) = match &cloudflare_upstream {
            Some(up) => (up.wire(), up.auth_scheme()),
            None => (spec.kind.wire(), spec.kind.auth_scheme()),
        };

        let vertex = match spec.kind {
            ProviderKind::Vertex => Some(vertex_setup(spec.vertex.as_ref())?),
            _ => None,
        };
        let bedrock = match spec.kind {
            ProviderKind::Bedrock => Some(bedrock_signing(spec.aws.as_ref())?),
            _ => None,
        };
        // Bedrock's control plane (its model list): the one named, else a configured base
        // URL (a private endpoint or test double serving both), else the region's.
        let bedrock_control = bedrock.as_ref().map(|b| {
            spec.aws
                .as_ref()
                .and_then(|a| a.control_plane_url.clone())
                .or_else(|| spec.base_url.clone())
                .unwrap_or_else(|| crate::bedrock::default_control_plane_url(&b.region))
        });
        // Bedrock's endpoint is its region's unless one is configured.
        let mut spec = spec;
        if spec.base_url.is_none()
            && let Some(b) = &bedrock
        {
            spec.base_url = Some(crate::bedrock::default_base_url(&b.region));
        }
        let base = match (&spec.base_url, &spec.cloudflare) {
            (Some(b), _) => b.clone(),
            (None, Some(cf)) => format!(
                "{CLOUDFLARE_BASE}/{}/{}/{}",
                cf.account_id,
                cf.gateway_id,
                CloudflareUpstream::parse(&cf.upstream).path()
            ),
            (None, None) if spec.kind == ProviderKind::Cloudflare => {
                return Err(ProviderError::MissingCloudflare);
            }
            (None, None) => match &vertex {
                Some(v) => crate::vertex::default_base_url(&v.location),
                None => preset
                    .base_url
                    .ok_or(ProviderError::MissingBaseUrl(preset.id))?
                    .to_owned(),
            },
        };
        let base = base.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ProviderError::InvalidBaseUrl(base.to_owned()));
        }
        let azure = spec.azure.clone().unwrap_or_default();
        // Azure OpenAI with an Entra ID application: its tokens instead of a key.
        let entra = match (&azure.entra, spec.kind) {
            (Some(e), ProviderKind::Azure) => Some(ClientCredentialsGrant::new(
                e.authority.as_deref(),
                &e.tenant_id,
                &e.client_id,
                &e.client_secret,
                COGNITIVE_SERVICES_SCOPE,
            )?),
            _ => None,
        };
        let default_max_tokens = spec.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        let api: Box<dyn ProviderApi> = match wire {
            // Vertex AI: Gemini's format, or Anthropic's for Claude, per model.
            _ if spec.kind == ProviderKind::Vertex => {
                let v = vertex
                    .as_ref()
                    .ok_or(ProviderError::MissingBaseUrl(preset.id))?;
                Box::new(VertexApi::new(
                    base,
                    &v.project,
                    &v.location,
                    default_max_tokens,
                )?)
            }
            // Azure speaks OpenAI's format at URLs of its own.
            Wire::OpenAi if spec.kind == ProviderKind::Azure => Box::new(AzureApi::new(
                base,
                azure.api_version.as_deref(),
                &azure.deployments,
            )?),
            Wire::OpenAi => Box::new(OpenAiApi::new(
                base,
                spec.kind == ProviderKind::OpenAi,
                spec.responses_models.clone(),
            )?),
            Wire::Anthropic => Box::new(AnthropicApi::new(base, default_max_tokens)?),
            Wire::Gemini => Box::new(GeminiApi::new(base)?),
            Wire::Bedrock => Box::new(BedrockApi::new(
                base,
                bedrock_control.as_deref().unwrap_or(base),
            )?),
            // No kind speaks it alone: OpenAI's provider hands it the models served only there.
            Wire::OpenAiResponses => Box::new(crate::responses::ResponsesApi::new(base)?),
        };

        let credential = match &spec.api_key {
            Some(key) if !key.is_empty() => Some(Credential::new(
                format!("{}:default", spec.name),
                key,
                auth_scheme,
            )?),
            _ if preset.key_optional || entra.is_some() => None,
            _ => return Err(ProviderError::MissingApiKey(preset.id)),
        };
        let authentication = match vertex {
            Some(v) => {
                if credential.is_some() {
                    return Err(ProviderError::NoApiKeys(preset.id));
                }
                Authentication::Token(Arc::new(v.grant))
            }
            None => Authentication::Header(auth_scheme),
        };
        // Bedrock signs every request; no key is sent.
        let authentication = match bedrock {
            Some(signing) => {
                if credential.is_some() {
                    return Err(ProviderError::NoApiKeys(preset.id));
                }
                Authentication::SigV4(Arc::new(signing))
            }
            None => authentication,
        };
        let authentication = match entra {
            Some(grant) => {
                if credential.is_some() {
                    return Err(ProviderError::Entra(
                        "an Azure provider takes `api_key` or an Entra ID application \
                         (`tenant_id`, `client_id`, `client_secret`), not both"
                            .to_owned(),
                    ));
                }
                Authentication::Token(Arc::new(grant))
            }
            None => authentication,
        };

        let mut base_headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        for (name, value) in api.fixed_headers() {
            base_headers.push((
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            ));
        }
        if let Some(token) = spec.cloudflare.as_ref().and_then(|c| c.token.as_ref()) {
            let mut v = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                .map_err(|_| ProviderError::InvalidHeader("cf-aig-authorization".into()))?;
            v.set_sensitive(true);
            base_headers.push((HeaderName::from_static("cf-aig-authorization"), v));
        }
        for (name, value) in &spec.headers {
            let n = HeaderName::try_from(name.as_str())
                .map_err(|_| ProviderError::InvalidHeader(name.clone()))?;
            let mut v = HeaderValue::try_from(value.expose())
                .map_err(|_| ProviderError::InvalidHeader(name.clone()))?;
            v.set_sensitive(true);
            base_headers.push((n, v));
        }

        // A mapped model name is one the provider serves, listed and reachable by bare name.
        let mut models = spec.models;
        for (model, _) in &azure.deployments {
            if !models.contains(model) {
                models.push(model.clone());
            }
        }

        Ok(Self {
            name: spec.name,
            kind: spec.kind,
            api,
            base_headers,
            credential,
            authentication,
            models,
            native_root: native_root(base).to_owned(),
        })
    }

    /// The provider's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider's kind.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The API serving `model` (see [`ProviderApi::for_model`]).
    fn api(&self, model: &str) -> &dyn ProviderApi {
        self.api.for_model(model).unwrap_or(&*self.api)
    }

    /// The wire format the provider speaks for `model` (one per provider but Vertex AI's).
    pub fn wire(&self, model: &str) -> Wire {
        self.api(model).wire()
    }

    /// The client dialect whose bytes the provider's answers for `model` are, if any (see
    /// [`Wire::dialect`]).
    pub fn passthrough_dialect(&self, model: &str) -> Option<Dialect> {
        self.api(model).wire().dialect()
    }

    /// How the provider's requests are authenticated.
    pub fn authentication(&self) -> &Authentication {
        &self.authentication
    }

    /// The models the provider advertises.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The credential configured for this provider, if any.
    pub fn default_credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Builds a credential for this provider from a secret (for keys resolved per identity).
    pub fn credential(
        &self,
        id: impl Into<String>,
        secret: &Secret,
    ) -> Result<Credential, ProviderError> {
        match &self.authentication {
            Authentication::Header(scheme) => Credential::new(id, secret, *scheme),
            _ => Err(ProviderError::NoApiKeys(self.kind.id())),
        }
    }

    /// Whether the provider serves `model` when it is named without a provider.
    pub fn serves_bare(&self, model: &str) -> bool {
        self.kind.serves_well_known(model) || self.models.iter().any(|m| m == model)
    }

    /// Whether the provider serves `model`, named without a provider, when no provider
    /// [serves it](Self::serves_bare) (Azure OpenAI and OpenAI's well-known names).
    pub fn serves_bare_as_fallback(&self, model: &str) -> bool {
        self.kind.serves_well_known_as_fallback(model)
    }

    fn headers(&self, credential: Option<&Credential>, extra: usize) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(self.base_headers.len() + 1 + extra);
        for (n, v) in &self.base_headers {
            h.append(n.clone(), v.clone());
        }
        if let Some(c) = credential {
            h.insert(c.header.0.clone(), c.header.1.clone());
        }
        h
    }

    /// Builds the upstream request for a chat completion served by `model`.
    pub fn chat_request(
        &self,
        req: &ChatRequest,
        model: &str,
        credential: Option<&Credential>,
        forwarded: ForwardedHeaders<'_>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let mut headers = self.headers(credential, 1);
        let (uri, body) = self.api(model).chat(req, model, forwarded, &mut headers)?;
        Ok(UpstreamRequest {
            method: Method::POST,
            uri,
            headers,
            body: Bytes::from(body),
        })
    }

    /// Builds the request counting the input tokens of `req` for `model` at the provider's
    /// own count endpoint; `None` when its API has none (the gateway estimates the count).
    pub fn count_tokens_request(
        &self,
        req: &ChatRequest,
        model: &str,
        credential: Option<&Credential>,
        forwarded: ForwardedHeaders<'_>,
    ) -> Option<Result<UpstreamRequest, GatewayError>> {
        let mut headers = self.headers(credential, 1);
        let built = self
            .api(model)
            .count_tokens(req, model, forwarded, &mut headers)?;
        Some(built.map(|(uri, body)| UpstreamRequest {
            method: Method::POST,
            uri,
            headers,
            body: Bytes::from(body),
        }))
    }

    /// Reads a successful answer of `model`'s token count endpoint: the input tokens.
    pub fn count_tokens_response(&self, model: &str, body: &[u8]) -> Result<u64, GatewayError> {
        self.api(model).count_tokens_response(body)
    }

    /// The provider's base URL without a trailing version segment (`/v1`, `/v1beta`): a
    /// caller's path under `/{provider}` of the native pass-through follows it, written as
    /// the provider's own SDKs write it (`/v1/images/generations`).
    pub fn native_root(&self) -> &str {
        &self.native_root
    }

    /// The URL of the provider's model list, when its API has one the gateway reads.
    pub fn models_uri(&self) -> Option<&Uri> {
        self.api.models_uri()
    }

    /// The headers a native request (pass-through, model listing) carries: the provider's
    /// configured and fixed headers and `credential`'s, without a content type (the request's
    /// own is kept).
    pub fn native_headers(&self, credential: Option<&Credential>) -> HeaderMap {
        let mut h = self.headers(credential, 0);
        h.remove(CONTENT_TYPE);
        h
    }

    /// Builds the upstream request for embeddings served by `model`.
    pub fn embeddings_request(
        &self,
        req: &EmbeddingsRequest,
        model: &str,
        credential: Option<&Credential>,
    ) -> Result<UpstreamRequest, GatewayError> {
        let Some(built) = self.api(model).embeddings(req, model) else {
            return Err(GatewayError::invalid_request(format!(
                "The provider `{}` does not serve embeddings",
                self.name
            ))
            .with_param("model"));
        };
        let (uri, body) = built?;
        Ok(UpstreamRequest {
            method: Method::POST,
            uri,
            headers: self.headers(credential, 0),
            body: Bytes::from(body),
        })
    }

    /// A successful embeddings answer to `req` from `model` in OpenAI's format (the embeddings
    /// dialect).
    pub fn embeddings_response(
        &self,
        req: &EmbeddingsRequest,
        body: Bytes,
        model: &str,
    ) -> Result<Bytes, GatewayError> {
        self.api(model).embeddings_response(req, body, model)
    }

    /// Decodes a successful non-streamed chat answer from `model`.
    pub fn decode_chat_response(
        &self,
        model: &str,
        body: &[u8],
    ) -> Result<ChatResponse, GatewayError> {
        self.api(model).decode_chat_response_from(body, model)
    }

    /// A decoder for this provider's streams from `model`.
    pub fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        self.api(model).stream_decoder_from(model)
    }

    /// How this provider's streams are framed: `None` for server-sent events.
    pub fn stream_framer(&self) -> Option<Box<dyn Framer>> {
        self.api.stream_framer()
    }

    /// Turns an upstream error answer (`status`, its `Retry-After`, its body) into a
    /// [`GatewayError`] in the provider's terms.
    pub fn decode_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> GatewayError {
        self.api.decode_error(status, retry_after, body, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Message, Role};

    fn chat() -> ChatRequest {
        ChatRequest {
            model: "x".into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        }
    }

    #[test]
    fn openai_compatible_presets_use_bearer_and_their_base_url() {
        let mut spec = ProviderSpec::new("groq", ProviderKind::Groq);
        spec.api_key = Some(Secret::new("gsk_1"));
        let p = Provider::new(spec).unwrap();
        let r = p
            .chat_request(
                &chat(),
                "llama",
                p.default_credential(),
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(r.uri, "https://api.groq.com/openai/v1/chat/completions");
        assert_eq!(r.headers["authorization"], "Bearer gsk_1");
        assert!(r.headers["authorization"].is_sensitive());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["model"], "llama");
    }

    #[test]
    fn anthropic_uses_x_api_key_version_and_forwards_beta() {
        let mut spec = ProviderSpec::new("anthropic", ProviderKind::Anthropic);
        spec.api_key = Some(Secret::new("sk-ant"));
        spec.base_url = Some("http://127.0.0.1:9/v1/".into());
        let p = Provider::new(spec).unwrap();
        let beta = HeaderValue::from_static("prompt-caching-2024-07-31");
        let r = p
            .chat_request(
                &chat(),
                "claude-x",
                p.default_credential(),
                ForwardedHeaders {
                    anthropic_beta: Some(&beta),
                },
            )
            .unwrap();
        assert_eq!(r.uri, "http://127.0.0.1:9/v1/messages");
        assert_eq!(r.headers["x-api-key"], "sk-ant");
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");
        assert_eq!(r.headers["anthropic-beta"], "prompt-caching-2024-07-31");
        assert!(r.headers.get("authorization").is_none());
    }

    #[test]
    fn gemini_chooses_its_url_per_request_and_sends_x_goog_api_key() {
        let mut spec = ProviderSpec::new("gemini", ProviderKind::Gemini);
        spec.api_key = Some(Secret::new("AIza-test"));
        let p = Provider::new(spec).unwrap();
        assert_eq!(p.wire("gemini-2.5-flash"), Wire::Gemini);
        assert_eq!(p.passthrough_dialect("gemini-2.5-flash"), None);
        let r = p
            .chat_request(
                &chat(),
                "gemini-2.5-flash",
                p.default_credential(),
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(r.headers["x-goog-api-key"], "AIza-test");
        assert!(r.headers["x-goog-api-key"].is_sensitive());
        assert!(r.headers.get("authorization").is_none());
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["contents"][0]["parts"][0]["text"], "hi");
        assert!(body.get("model").is_none(), "the model is in the URL");

        let mut spec = ProviderSpec::new("g", ProviderKind::Gemini);
        spec.api_key = Some(Secret::new("k"));
        spec.base_url = Some("http://127.0.0.1:9/prefix/v1beta/".into());
        let p = Provider::new(spec).unwrap();
        let mut streamed = chat();
        streamed.stream = true;
        let r = p
            .chat_request(
                &streamed,
                "gemini-3-pro-preview",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "http://127.0.0.1:9/prefix/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
        );
        assert_eq!(r.headers["accept"], "text/event-stream");
    }

    #[test]
    fn cloudflare_builds_the_gateway_url_and_sends_its_token() {
        let mut spec = ProviderSpec::new("cf", ProviderKind::Cloudflare);
        spec.api_key = Some(Secret::new("sk-ant"));
        spec.cloudflare = Some(CloudflareSpec {
            account_id: "acct".into(),
            gateway_id: "gw".into(),
            upstream: "anthropic".into(),
            token: Some(Secret::new("cf-token")),
        });
        let p = Provider::new(spec).unwrap();
        assert_eq!(p.wire("claude-x"), Wire::Anthropic);
        let r = p
            .chat_request(
                &chat(),
                "claude-x",
                p.default_credential(),
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "https://gateway.ai.cloudflare.com/v1/acct/gw/anthropic/v1/messages"
        );
        assert_eq!(r.headers["cf-aig-authorization"], "Bearer cf-token");
        assert_eq!(r.headers["x-api-key"], "sk-ant");
    }

    #[test]
    fn missing_keys_and_urls_are_configuration_errors() {
        assert_eq!(
            Provider::new(ProviderSpec::new("openai", ProviderKind::OpenAi)).unwrap_err(),
            ProviderError::MissingApiKey("openai")
        );
        assert_eq!(
            Provider::new(ProviderSpec::new("c", ProviderKind::Custom)).unwrap_err(),
            ProviderError::MissingBaseUrl("custom")
        );
        assert!(Provider::new(ProviderSpec::new("o", ProviderKind::Ollama)).is_ok());
        let mut bad = ProviderSpec::new("c", ProviderKind::Custom);
        bad.base_url = Some("localhost:8000".into());
        assert!(matches!(
            Provider::new(bad),
            Err(ProviderError::InvalidBaseUrl(_))
        ));
    }

    #[test]
    fn anthropic_has_no_embeddings() {
        let mut spec = ProviderSpec::new("anthropic", ProviderKind::Anthropic);
        spec.api_key = Some(Secret::new("k"));
        let p = Provider::new(spec).unwrap();
        let req = EmbeddingsRequest {
            model: "m".into(),
            input: portcullis_core::EmbeddingInput::Text("x".into()),
            dimensions: None,
            encoding_format: None,
            user: None,
            extras: Default::default(),
        };
        assert_eq!(
            p.embeddings_request(&req, "m", None)
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }

    fn bedrock_spec() -> ProviderSpec {
        let mut spec = ProviderSpec::new("bedrock", ProviderKind::Bedrock);
        spec.aws = Some(AwsSpec {
            region: Some("eu-west-3".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("secret")),
            session_token: None,
            control_plane_url: None,
        });
        spec
    }

    #[test]
    fn bedrock_goes_to_its_regions_endpoint_and_signs_instead_of_sending_a_key() {
        let p = Provider::new(bedrock_spec()).unwrap();
        assert_eq!(p.wire("amazon.nova-pro-v1:0"), Wire::Bedrock);
        assert!(p.default_credential().is_none());
        let Authentication::SigV4(signing) = p.authentication() else {
            panic!("Bedrock signs");
        };
        assert_eq!(signing.region, "eu-west-3");
        assert_eq!(signing.service, "bedrock");
        let r = p
            .chat_request(
                &chat(),
                "arn:aws:bedrock:eu-west-3:1:inference-profile/eu.amazon.nova-pro-v1:0",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/\
             arn%3Aaws%3Abedrock%3Aeu-west-3%3A1%3Ainference-profile%2Feu.amazon.nova-pro-v1%3A0/converse"
        );
        assert!(
            r.headers.get("authorization").is_none(),
            "signed by the gateway"
        );
        // Keys from the vault cannot sign.
        assert_eq!(
            p.credential("k1", &Secret::new("x")).unwrap_err(),
            ProviderError::NoApiKeys("bedrock")
        );

        let mut with_key = bedrock_spec();
        with_key.api_key = Some(Secret::new("sk"));
        assert_eq!(
            Provider::new(with_key).unwrap_err(),
            ProviderError::NoApiKeys("bedrock")
        );
        let mut no_region = bedrock_spec();
        if let Some(aws) = no_region.aws.as_mut() {
            aws.region = None;
        }
        assert!(
            matches!(Provider::new(no_region), Err(ProviderError::Bedrock(m)) if m.contains("region"))
        );
        let mut no_secret = bedrock_spec();
        if let Some(aws) = no_secret.aws.as_mut() {
            aws.secret_access_key = None;
        }
        let e = Provider::new(no_secret).unwrap_err().to_string();
        assert!(e.contains("secret_access_key"), "{e}");
        let mut endpoint = bedrock_spec();
        endpoint.base_url = Some("http://127.0.0.1:9/".into());
        let p = Provider::new(endpoint).unwrap();
        let mut streamed = chat();
        streamed.stream = true;
        let r = p
            .chat_request(
                &streamed,
                "meta.llama3-3-70b-instruct-v1:0",
                None,
                ForwardedHeaders::default(),
            )
            .unwrap();
        assert_eq!(
            r.uri,
            "http://127.0.0.1:9/model/meta.llama3-3-70b-instruct-v1%3A0/converse-stream"
        );
        assert!(p.stream_framer().is_some(), "AWS's event stream");
    }
}

//! What each configured provider says it serves, read from its own list endpoint: per provider
//! kind, the request that lists its models and how to read the answer, page by page
//! ([`lister`]); and the [`ModelCatalog`], which keeps each provider's last good list for
//! `GET /v1/models`.
//!
//! A provider's list is fetched the first time a listing needs it (listings wait for it until
//! [`FIRST_WAIT`] after that fetch began), then again in the background when a listing finds it older than
//! [`REFRESH_AFTER`], or [`RETRY_AFTER`] after a failed fetch, or after a reload. Every fetch
//! (all its pages) has [`FETCH_TIMEOUT`]. A fetch that fails keeps the provider's last good
//! list, and never touches another provider's. A provider whose list endpoint or credential
//! changed starts afresh. Fetches use the gateway's own credential for the provider: the
//! vault's default key when it holds one, else the configured key. Every page's request is
//! authenticated as the provider's chat requests are, by
//! [`UpstreamAuth`](crate::upstream_auth::UpstreamAuth) (a key header, a SigV4 signature, a
//! token from the provider's token source), just before it is sent.
//!
//! Adding a provider kind's listing is one arm in [`lister`] and a [`ListFormat`]: the query
//! for the page after another and the parser of its answer.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use parking_lot::Mutex;
use portcullis_core::{ErrorKind, GatewayError, Identity};
use portcullis_providers::provider::Credential;
use portcullis_providers::{Provider, ProviderKind, Registry, UpstreamRequest};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::dispatch::{Dispatcher, KeyChoice};
use crate::upstream::{UpstreamClient, read_body};
use crate::upstream_auth::UpstreamAuth;

/// A list older than this is fetched again, in the background, by the next listing.
pub const REFRESH_AFTER: Duration = Duration::from_secs(600);
/// After a failed fetch, the next listing tries again once this has passed.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// A whole fetch, every page of it, ends by then.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after a provider's first fetch began listings wait for it.
pub const FIRST_WAIT: Duration = Duration::from_secs(3);
/// Pages read at most from one provider in one fetch.
const MAX_PAGES: usize = 100;
/// Models kept at most from one provider.
const MAX_MODELS: usize = 10_000;

/// One model as its provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    /// The provider's name for it.
    pub id: String,
    /// When it was created or released, in Unix seconds, when the provider says.
    pub created: Option<i64>,
    /// A human-readable name, when the provider gives one.
    pub display_name: Option<String>,
}

/// One page of a provider's list.
#[derive(Debug, Default)]
pub struct Page {
    /// The models on the page.
    pub models: Vec<ListedModel>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// How one provider's models are listed: the request for each page and the reading of its
/// answer. Built for a provider and credential by [`lister`]; never sends anything itself.
pub trait ModelLister: Send + Sync {
    /// The list endpoint (what, with the credential's id, identifies a provider's list).
    fn endpoint(&self) -> &str;
    /// The request for the first page (`after` = `None`) or the page after the cursor.
    fn request(&self, after: Option<&str>) -> Result<UpstreamRequest, GatewayError>;
    /// Reads one page of the answer.
    fn parse(&self, body: &[u8]) -> Result<Page, String>;
}

/// The lister of `provider`'s models with `credential`, when its kind has a list endpoint.
pub fn lister(
    provider: &Provider,
    credential: Option<&Credential>,
) -> Option<Box<dyn ModelLister>> {
    match provider.kind() {
        ProviderKind::Anthropic => listed(provider, credential, AnthropicList),
        ProviderKind::Gemini => listed(provider, credential, GoogleList::Gemini),
        ProviderKind::Bedrock => listed(provider, credential, BedrockList),
        ProviderKind::Vertex => listed(provider, credential, GoogleList::Vertex),
        ProviderKind::OpenAi
        | ProviderKind::Groq
        | ProviderKind::Mistral
        | ProviderKind::Cerebras
        | ProviderKind::OpenRouter
        | ProviderKind::DeepSeek
        | ProviderKind::XAi
        | ProviderKind::Together
        | ProviderKind::Fireworks
        | ProviderKind::Vllm
        | ProviderKind::Ollama
        | ProviderKind::Custom => listed(provider, credential, OpenAiList),
        ProviderKind::Azure => listed(provider, credential, AzureList),
        // Perplexity has no list endpoint; a Cloudflare AI Gateway's paths depend on the
        // provider behind it. Their models are the configured ones.
        ProviderKind::Perplexity | ProviderKind::Cloudflare => None,
    }
}

/// The provider's list endpoint, as its API builds it from the base URL
/// ([`Provider::models_uri`]), and the headers its requests carry (base headers, configured
/// headers, the credential). `None` when its API has no list the gateway reads.
fn endpoint_of(
    provider: &Provider,
    credential: Option<&Credential>,
) -> Option<(String, HeaderMap)> {
    let uri = provider.models_uri()?;
    Some((uri.to_string(), provider.native_headers(credential)))
}

fn get(uri: &str, headers: &HeaderMap) -> Result<UpstreamRequest, GatewayError> {
    let uri: Uri = uri.parse().map_err(|e| {
        GatewayError::internal("The model list request could not be built").with_source(e)
    })?;
    Ok(UpstreamRequest {
        method: Method::GET,
        uri,
        headers: headers.clone(),
        body: Bytes::new(),
    })
}

/// What differs between providers' model lists: how the page after another is asked for,
/// and how a page reads.
trait ListFormat: Send + Sync {
    /// The query (with its `?`) asking for the page after the cursor `after` (`None`: the
    /// first page). One-page lists ask with none.
    fn query(&self, after: Option<&str>) -> String {
        let _ = after;
        String::new()
    }

    /// The models of one page, and the next page's cursor.
    fn parse(&self, body: &[u8]) -> Result<Page, String>;
}

/// A provider's list endpoint, its requests' headers, and the list's format.
struct Listed<F> {
    uri: String,
    headers: HeaderMap,
    format: F,
}

impl<F: ListFormat> ModelLister for Listed<F> {
    fn endpoint(&self) -> &str {
        &self.uri
    }

    fn request(&self, after: Option<&str>) -> Result<UpstreamRequest, GatewayError> {
        get(
            &format!("{}{}", self.uri, self.format.query(after)),
            &self.headers,
        )
    }

    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        self.format.parse(body)
    }
}

/// `provider`'s list in `format`, when its API has a list endpoint ([`endpoint_of`]).
fn listed<F: ListFormat + 'static>(
    provider: &Provider,
    credential: Option<&Credential>,
    format: F,
) -> Option<Box<dyn ModelLister>> {
    let (uri, headers) = endpoint_of(provider, credential)?;
    Some(Box::new(Listed {
        uri,
        headers,
        format,
    }))
}

/// OpenAI's `GET /models` (and every OpenAI-compatible server's): `{"object":"list","data":
/// [{"id","created","owned_by"}]}` in one page; a bare array (Together) is read too.
struct OpenAiList;

impl ListFormat for OpenAiList {
    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let items = match &v {
            Value::Array(items) => items,
            Value::Object(o) => o
                .get("data")
                .and_then(Value::as_array)
                .ok_or("no `data` array")?,
            _ => return Err("not a model list".to_owned()),
        };
        let models = items
            .iter()
            .filter_map(|m| {
                Some(ListedModel {
                    id: m.get("id")?.as_str()?.to_owned(),
                    created: m.get("created").and_then(Value::as_i64),
                    display_name: ["display_name", "name"]
                        .iter()
                        .find_map(|k| m.get(*k).and_then(Value::as_str))
                        .map(str::to_owned),
                })
            })
            .collect();
        Ok(Page { models, next: None })
    }
}

/// Anthropic's `GET /v1/models`: pages of at most 1000 (`limit`), the next one asked for with
/// `after_id` = the page's `last_id` while `has_more`.
struct AnthropicList;

impl ListFormat for AnthropicList {
    fn query(&self, after: Option<&str>) -> String {
        match after {
            None => "?limit=1000".to_owned(),
            Some(id) => format!("?limit=1000&after_id={}", percent_encode(id)),
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let items = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or("no `data` array")?;
        let models = items
            .iter()
            .filter_map(|m| {
                Some(ListedModel {
                    id: m.get("id")?.as_str()?.to_owned(),
                    created: m
                        .get("created_at")
                        .and_then(Value::as_str)
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map(|t| t.as_second()),
                    display_name: m
                        .get("display_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect();
        let more = v.get("has_more").and_then(Value::as_bool) == Some(true);
        let next = more
            .then(|| v.get("last_id").and_then(Value::as_str).map(str::to_owned))
            .flatten();
        Ok(Page { models, next })
    }
}

/// A Google model list: pages of at most 1000 (`pageSize`), the next one asked for with
/// `pageToken` = the page's `nextPageToken`; an empty list is `{}` (Google leaves out empty
/// members). What differs between Google's lists — the member that holds the models, and
/// which names the provider serves under which id — is which list it is.
#[derive(Clone, Copy)]
enum GoogleList {
    /// Google's Gemini API's `GET /v1beta/models`. Models are named `models/…`; callers use
    /// the name without that prefix (`gemini-2.5-flash`), as the chat URL takes it.
    Gemini,
    /// Vertex AI's publisher models, `GET {base}/v1beta1/publishers/google/models` (Model
    /// Garden's list of Google's models), named `publishers/google/models/…`. Those the
    /// provider serves — the Gemini models (`gemini-*`, by `generateContent`, or `:predict` for
    /// `gemini-embedding-*`) and the text embedding models (`text-embedding-*`,
    /// `text-multilingual-embedding-*`) — are listed by their short name, as callers send it;
    /// image models and open models (deployed to endpoints) are not. Claude on Vertex AI is
    /// enabled per project in Model Garden, which this list does not say: Claude models are
    /// listed when configured (`models`).
    Vertex,
}

impl GoogleList {
    /// The member of a page that holds its models.
    fn member(self) -> &'static str {
        match self {
            GoogleList::Gemini => "models",
            GoogleList::Vertex => "publisherModels",
        }
    }

    /// The id callers use for the model named `name`, if the provider serves it.
    fn id_of(self, name: &str) -> Option<&str> {
        match self {
            GoogleList::Gemini => Some(name.strip_prefix("models/").unwrap_or(name)),
            GoogleList::Vertex => {
                let id = name.rsplit('/').next()?;
                let served = id.starts_with("gemini-")
                    || id.starts_with("text-embedding-")
                    || id.starts_with("text-multilingual-embedding-");
                served.then_some(id)
            }
        }
    }
}

impl ListFormat for GoogleList {
    fn query(&self, after: Option<&str>) -> String {
        match after {
            None => "?pageSize=1000".to_owned(),
            Some(token) => format!("?pageSize=1000&pageToken={}", percent_encode(token)),
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let Some(obj) = v.as_object() else {
            return Err("not a model list".to_owned());
        };
        let member = self.member();
        let items = match obj.get(member) {
            None => &Vec::new(),
            Some(m) => m
                .as_array()
                .ok_or_else(|| format!("`{member}` is not an array"))?,
        };
        let models = items
            .iter()
            .filter_map(|m| {
                let id = self.id_of(m.get("name")?.as_str()?)?;
                Some(ListedModel {
                    id: id.to_owned(),
                    created: None,
                    display_name: m
                        .get("displayName")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect();
        let next = obj
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Page { models, next })
    }
}

/// Amazon Bedrock's ListFoundationModels, `GET /foundation-models` on the control plane (one
/// page, `{"modelSummaries":[{"modelId","modelName","outputModalities",
/// "inferenceTypesSupported",…}]}`): the models that answer text on demand, the ones Converse
/// takes by id. Those served only through inference profiles, provisioned throughput, or that
/// answer images or embeddings are left out.
struct BedrockList;

impl ListFormat for BedrockList {
    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let items = v
            .get("modelSummaries")
            .and_then(Value::as_array)
            .ok_or("no `modelSummaries` array")?;
        let has = |m: &Value, list: &str, what: &str| {
            m.get(list)
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(what)))
        };
        let models = items
            .iter()
            .filter(|m| has(m, "outputModalities", "TEXT"))
            .filter(|m| has(m, "inferenceTypesSupported", "ON_DEMAND"))
            .filter_map(|m| {
                Some(ListedModel {
                    id: m.get("modelId")?.as_str()?.to_owned(),
                    created: None,
                    display_name: m
                        .get("modelName")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect();
        Ok(Page { models, next: None })
    }
}

/// Whether Azure's list entry `m` is a model callers can use now (`now` in Unix seconds).
fn azure_usable(m: &Value, now: i64) -> bool {
    let capable = |what: &str| {
        m.get("capabilities")
            .and_then(|c| c.get(what))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let retired = m
        .get("lifecycle_status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("deprecated") || s.eq_ignore_ascii_case("retired"))
        || m.get("deprecation")
            .and_then(|d| d.get("inference"))
            .and_then(Value::as_i64)
            .is_some_and(|t| t <= now);
    let trained = m
        .get("status")
        .and_then(Value::as_str)
        .is_none_or(|s| s == "succeeded");
    (capable("chat_completion") || capable("embeddings")) && !retired && trained
}

/// Azure OpenAI's "Models - List", `GET {endpoint}/openai/models?api-version=…` (deployments
/// form) or `GET {endpoint}/openai/v1/models` (v1 form), one page: `{"object":"list","data":
/// [{"id","capabilities":{"chat_completion","embeddings",…},"lifecycle_status","deprecation":
/// {"inference",…},"created_at",…}]}`. It names the models the resource may deploy, not its
/// deployments; a model is called by a deployment of that name. Kept: the models that chat or
/// embed (`capabilities`), not retired (`lifecycle_status` `deprecated` or `retired`, or a
/// `deprecation.inference` date passed) and, for fine-tuned ones, whose training succeeded.
struct AzureList;

impl ListFormat for AzureList {
    fn parse(&self, body: &[u8]) -> Result<Page, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let items = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or("no `data` array")?;
        let now = jiff::Timestamp::now().as_second();
        let models = items
            .iter()
            .filter(|m| azure_usable(m, now))
            .filter_map(|m| {
                Some(ListedModel {
                    id: m.get("id")?.as_str()?.to_owned(),
                    created: ["created_at", "created"]
                        .iter()
                        .find_map(|k| m.get(*k).and_then(Value::as_i64)),
                    display_name: None,
                })
            })
            .collect();
        Ok(Page { models, next: None })
    }
}

/// `s` percent-encoded for a query value: every byte but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fetches every page of a provider's list, each request authenticated as the provider's
/// authentication says.
async fn fetch(
    client: &UpstreamClient,
    auth: &UpstreamAuth,
    provider: &Provider,
    lister: &dyn ModelLister,
) -> Result<Vec<ListedModel>, GatewayError> {
    let mut out: Vec<ListedModel> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = lister.request(after.as_deref())?;
        auth.authenticate(provider, &mut request, client).await?;
        let provider = provider.name();
        let response = client.send(request, provider, Some(FETCH_TIMEOUT)).await?;
        let status = response.status();
        let body = read_body(response.into_body(), provider).await?;
        if !status.is_success() {
            return Err(GatewayError::new(
                ErrorKind::Upstream,
                format!("The model list of `{provider}` answered {status}"),
            )
            .with_detail(String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()));
        }
        let page = lister.parse(&body).map_err(|e| {
            GatewayError::new(
                ErrorKind::Upstream,
                format!("The model list of `{provider}` could not be read"),
            )
            .with_detail(e)
        })?;
        out.extend(page.models);
        match page.next {
            Some(next) if out.len() < MAX_MODELS && after.as_deref() != Some(next.as_str()) => {
                after = Some(next);
            }
            _ => break,
        }
    }
    out.truncate(MAX_MODELS);
    let mut seen = std::collections::HashSet::new();
    out.retain(|m| seen.insert(m.id.clone()));
    Ok(out)
}

/// Each provider's last good list, by provider name, kept across reloads.
#[derive(Debug, Default)]
pub struct ModelCatalog {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The registry the slots were last checked against: a new one (a reload) makes every
    /// list due for a refresh and drops those of providers no longer configured.
    registry: Mutex<Weak<Registry>>,
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    /// Bumped whenever a fetch ends, for the listings waiting on a first list.
    done: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The endpoint and credential id the list was fetched with.
    source: String,
    models: Option<Arc<[ListedModel]>>,
    fetched: Option<Instant>,
    failed: Option<Instant>,
    /// When the fetch in flight began.
    started: Option<Instant>,
    /// A refresh is due at the next listing (after a reload).
    due: bool,
    fetching: bool,
}

impl SlotState {
    fn refresh_due(&self, now: Instant) -> bool {
        if self.fetching {
            return false;
        }
        if self.due {
            return true;
        }
        match (self.fetched, self.failed) {
            (_, Some(failed)) => now.duration_since(failed) >= RETRY_AFTER,
            (Some(fetched), None) => now.duration_since(fetched) >= REFRESH_AFTER,
            (None, None) => true,
        }
    }
}

impl ModelCatalog {
    /// The lists of `registry`'s providers as known now, by provider name; starts the fetches
    /// that are due and waits for the lists never fetched before (until [`FIRST_WAIT`] after
    /// their fetch began).
    pub async fn lists(
        &self,
        registry: &Arc<Registry>,
        dispatcher: &Dispatcher,
    ) -> HashMap<String, Arc<[ListedModel]>> {
        self.follow(registry);
        // No user or team: the vault's default key for the provider, else the configured one.
        let gateway = Identity::master();
        let keys = KeyChoice {
            identity: &gateway,
            alias: None,
        };
        let client = dispatcher.client.current();
        let now = Instant::now();
        let mut wanted = Vec::new();
        let mut first = Vec::new();
        for provider in registry.providers() {
            let credential = match dispatcher.credential_for(provider, &keys) {
                Ok(c) => c.map(|c| (*c).clone()),
                Err(_) => continue,
            };
            let Some(lister) = lister(provider, credential.as_ref()) else {
                continue;
            };
            let source = format!(
                "{} {}",
                lister.endpoint(),
                credential.as_ref().map_or("", |c| c.id.as_str())
            );
            let slot = self.slot(provider.name());
            let mut state = slot.state.lock();
            if state.source != source {
                // Another endpoint or key: the old list says nothing about the new one.
                *state = SlotState {
                    source: source.clone(),
                    ..SlotState::default()
                };
            }
            if state.refresh_due(now) {
                state.fetching = true;
                state.due = false;
                state.started = Some(now);
                tokio::spawn(refresh(
                    slot.clone(),
                    source,
                    client.clone(),
                    dispatcher.upstream_auth.clone(),
                    provider.clone(),
                    lister,
                ));
            }
            if state.models.is_none()
                && state.failed.is_none()
                && state.fetching
                && let Some(started) = state.started
            {
                first.push((slot.done.subscribe(), started + FIRST_WAIT));
            }
            drop(state);
            wanted.push((provider.name().to_owned(), slot));
        }
        futures_util::future::join_all(
            first
                .iter_mut()
                .map(|(rx, until)| tokio::time::timeout_at(*until, rx.changed())),
        )
        .await;
        wanted
            .into_iter()
            .filter_map(|(name, slot)| {
                let models = slot.state.lock().models.clone()?;
                Some((name, models))
            })
            .collect()
    }

    fn slot(&self, provider: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .entry(provider.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    state: Mutex::new(SlotState::default()),
                    done: watch::Sender::new(0),
                })
            })
            .clone()
    }

    /// After a reload: every list is due for a refresh, and those of providers gone are dropped.
    fn follow(&self, registry: &Arc<Registry>) {
        let mut seen = self.registry.lock();
        if std::ptr::eq(seen.as_ptr(), Arc::as_ptr(registry)) {
            return;
        }
        *seen = Arc::downgrade(registry);
        let mut slots = self.slots.lock();
        slots.retain(|name, _| registry.provider(name).is_some());
        for slot in slots.values() {
            slot.state.lock().due = true;
        }
    }
}

/// One fetch of a provider's list, stored unless the provider's source changed meanwhile.
async fn refresh(
    slot: Arc<Slot>,
    source: String,
    client: Arc<UpstreamClient>,
    auth: Arc<UpstreamAuth>,
    provider: Arc<Provider>,
    lister: Box<dyn ModelLister>,
) {
    let fetching = fetch(&client, &auth, &provider, lister.as_ref());
    let provider = provider.name();
    let result = match tokio::time::timeout(FETCH_TIMEOUT, fetching).await {
        Ok(r) => r,
        Err(_) => Err(GatewayError::new(
            ErrorKind::Timeout,
            format!(
                "The model list of `{provider}` did not arrive within {} s",
                FETCH_TIMEOUT.as_secs()
            ),
        )),
    };
    {
        let mut state = slot.state.lock();
        if state.source != source {
            return;
        }
        state.fetching = false;
        let now = Instant::now();
        match result {
            Ok(models) => {
                tracing::debug!(
                    provider,
                    models = models.len(),
                    "fetched the provider's model list"
                );
                state.models = Some(models.into());
                state.fetched = Some(now);
                state.failed = None;
            }
            Err(e) => {
                // Once per run of failures; the last good list stays.
                if state.failed.is_none() {
                    tracing::warn!(
                        provider,
                        error = e.message(),
                        detail = e.detail().unwrap_or_default(),
                        kept = state.models.as_ref().map_or(0, |m| m.len()),
                        "the provider's model list could not be fetched; its last good list is kept"
                    );
                }
                state.failed = Some(now);
            }
        }
    }
    slot.done.send_modify(|n| *n += 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_providers::{ProviderSpec, Secret};

    fn provider(kind: ProviderKind, base: &str) -> Provider {
        let mut spec = ProviderSpec::new(kind.id(), kind);
        spec.api_key = Some(Secret::new("k"));
        spec.base_url = Some(base.into());
        spec.headers = vec![("x-org".into(), Secret::new("o"))];
        Provider::new(spec).unwrap()
    }

    #[test]
    fn list_requests_use_the_providers_base_url_headers_and_credential() {
        let p = provider(ProviderKind::Groq, "http://127.0.0.1:9/openai/v1/");
        let l = lister(&p, p.default_credential()).unwrap();
        let r = l.request(None).unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.uri, "http://127.0.0.1:9/openai/v1/models");
        assert_eq!(r.headers["authorization"], "Bearer k");
        assert_eq!(r.headers["x-org"], "o");
        assert!(r.headers.get("content-type").is_none());

        let p = provider(ProviderKind::Anthropic, "http://127.0.0.1:9/v1");
        let l = lister(&p, p.default_credential()).unwrap();
        let r = l.request(Some("claude x/1")).unwrap();
        assert_eq!(
            r.uri,
            "http://127.0.0.1:9/v1/models?limit=1000&after_id=claude%20x%2F1"
        );
        assert_eq!(r.headers["x-api-key"], "k");
        assert_eq!(r.headers["anthropic-version"], "2023-06-01");

        let p = provider(ProviderKind::Gemini, "http://127.0.0.1:9/v1beta");
        let l = lister(&p, p.default_credential()).unwrap();
        let r = l.request(Some("t/1")).unwrap();
        assert_eq!(
            r.uri,
            "http://127.0.0.1:9/v1beta/models?pageSize=1000&pageToken=t%2F1"
        );
        assert_eq!(r.headers["x-goog-api-key"], "k");
        assert_eq!(r.headers["x-org"], "o");
        assert!(r.headers.get("content-type").is_none());
        let page = l
            .parse(
                br#"{"models":[{"name":"models/gemini-2.5-flash","displayName":"Gemini 2.5 Flash"},
                     {"displayName":"nameless"}],"nextPageToken":"2"}"#,
            )
            .unwrap();
        assert_eq!(page.models.len(), 1);
        assert_eq!(page.models[0].id, "gemini-2.5-flash");
        assert_eq!(
            page.models[0].display_name.as_deref(),
            Some("Gemini 2.5 Flash")
        );
        assert_eq!(page.next.as_deref(), Some("2"));
        let last = l.parse(b"{}").unwrap();
        assert!(last.models.is_empty() && last.next.is_none());
        assert!(l.parse(br#"{"models":{}}"#).is_err());

        let p = provider(ProviderKind::Perplexity, "http://127.0.0.1:9");
        assert!(lister(&p, p.default_credential()).is_none());
    }

    #[test]
    fn bedrock_lists_from_its_control_plane_the_text_models_served_on_demand() {
        let mut spec = ProviderSpec::new("bedrock", ProviderKind::Bedrock);
        let aws = |control: Option<&str>| portcullis_providers::AwsSpec {
            region: Some("eu-west-3".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("s")),
            session_token: None,
            control_plane_url: control.map(str::to_owned),
        };
        spec.aws = Some(aws(None));
        let uri = |spec: &ProviderSpec| {
            let p = Provider::new(spec.clone()).unwrap();
            lister(&p, None).unwrap().request(None).unwrap().uri
        };
        // The control plane's host, not the runtime's.
        assert_eq!(
            uri(&spec),
            "https://bedrock.eu-west-3.amazonaws.com/foundation-models"
        );
        // A configured base URL (a private endpoint, a test double) serves both.
        spec.base_url = Some("https://vpce-1.example.com/".into());
        assert_eq!(uri(&spec), "https://vpce-1.example.com/foundation-models");
        // AWS_ENDPOINT_URL_BEDROCK names the control plane.
        spec.aws = Some(aws(Some("http://127.0.0.1:9/")));
        assert_eq!(uri(&spec), "http://127.0.0.1:9/foundation-models");

        let p = Provider::new(spec).unwrap();
        let l = lister(&p, None).unwrap();
        let page = l
            .parse(
                br#"{"modelSummaries":[
                {"modelId":"amazon.nova-pro-v1:0","modelName":"Nova Pro","outputModalities":["TEXT"],"inferenceTypesSupported":["ON_DEMAND"]},
                {"modelId":"anthropic.claude-sonnet-4-5-20250929-v1:0","outputModalities":["TEXT"],"inferenceTypesSupported":["INFERENCE_PROFILE"]},
                {"modelId":"amazon.titan-embed-text-v2:0","outputModalities":["EMBEDDING"],"inferenceTypesSupported":["ON_DEMAND"]},
                {"modelId":"meta.llama3-8b-instruct-v1:0","outputModalities":["TEXT"],"inferenceTypesSupported":["PROVISIONED","ON_DEMAND"]},
                {"modelName":"no id","outputModalities":["TEXT"],"inferenceTypesSupported":["ON_DEMAND"]}]}"#,
            )
            .unwrap();
        let ids: Vec<&str> = page.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["amazon.nova-pro-v1:0", "meta.llama3-8b-instruct-v1:0"]
        );
        assert_eq!(page.models[0].display_name.as_deref(), Some("Nova Pro"));
        assert!(page.next.is_none());
        assert!(l.parse(br#"{"models":[]}"#).is_err());
    }

    #[test]
    fn azure_lists_in_its_form_the_models_that_chat_or_embed_and_are_not_retired() {
        let mut spec = ProviderSpec::new("azure", ProviderKind::Azure);
        spec.api_key = Some(Secret::new("k"));
        spec.base_url = Some("https://res.openai.azure.com/".into());
        let uri = |spec: &ProviderSpec| {
            let p = Provider::new(spec.clone()).unwrap();
            let r = lister(&p, p.default_credential())
                .unwrap()
                .request(None)
                .unwrap();
            assert_eq!(r.headers["api-key"], "k");
            r.uri
        };
        assert_eq!(uri(&spec), "https://res.openai.azure.com/openai/v1/models");
        spec.azure = Some(portcullis_providers::AzureSpec {
            api_version: Some("2024-10-21".into()),
            ..Default::default()
        });
        assert_eq!(
            uri(&spec),
            "https://res.openai.azure.com/openai/models?api-version=2024-10-21"
        );

        let p = Provider::new(spec).unwrap();
        let l = lister(&p, None).unwrap();
        let page = l
            .parse(
                br#"{"object":"list","data":[
                {"id":"gpt-4o","created_at":1715367049,"lifecycle_status":"generally-available","status":"succeeded",
                 "capabilities":{"chat_completion":true,"completion":false,"embeddings":false},"deprecation":{"inference":4102444800}},
                {"id":"text-embedding-3-small","capabilities":{"chat_completion":false,"embeddings":true},"lifecycle_status":"preview"},
                {"id":"gpt-35-turbo-0613","capabilities":{"chat_completion":true},"lifecycle_status":"deprecated"},
                {"id":"gpt-35-turbo-0301","capabilities":{"chat_completion":true},"lifecycle_status":"generally-available","deprecation":{"inference":1709284527}},
                {"id":"dall-e-3","capabilities":{"chat_completion":false,"completion":false,"embeddings":false,"inference":true}},
                {"id":"davinci-002","capabilities":{"completion":true}},
                {"id":"gpt-4o-mini.ft-1","status":"running","capabilities":{"chat_completion":true}}]}"#,
            )
            .unwrap();
        let ids: Vec<&str> = page.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["gpt-4o", "text-embedding-3-small"]);
        assert_eq!(page.models[0].created, Some(1_715_367_049));
        assert!(page.next.is_none());
        assert!(l.parse(br#"{"error":{"code":"401"}}"#).is_err());
    }

    #[test]
    fn pages_are_read_in_each_providers_shape() {
        let p = provider(ProviderKind::Together, "http://127.0.0.1:9/v1");
        let l = lister(&p, None).unwrap();
        let page = l
            .parse(br#"[{"id":"m1","created":5,"display_name":"M 1"},{"object":"model"}]"#)
            .unwrap();
        assert_eq!(
            page.models,
            [ListedModel {
                id: "m1".into(),
                created: Some(5),
                display_name: Some("M 1".into())
            }]
        );
        let page = l
            .parse(br#"{"object":"list","data":[{"id":"gpt-4o","created":1,"owned_by":"system"}]}"#)
            .unwrap();
        assert_eq!(page.models[0].id, "gpt-4o");
        assert!(page.next.is_none());
        assert!(l.parse(b"<html>").is_err());

        let p = provider(ProviderKind::Anthropic, "http://127.0.0.1:9");
        let l = lister(&p, None).unwrap();
        let page = l
            .parse(
                br#"{"data":[{"type":"model","id":"claude-a","display_name":"A","created_at":"2025-02-19T00:00:00Z"}],
                     "has_more":true,"first_id":"claude-a","last_id":"claude-a"}"#,
            )
            .unwrap();
        assert_eq!(page.models[0].created, Some(1_739_923_200));
        assert_eq!(page.models[0].display_name.as_deref(), Some("A"));
        assert_eq!(page.next.as_deref(), Some("claude-a"));
        let last = l
            .parse(br#"{"data":[],"has_more":false,"first_id":null,"last_id":null}"#)
            .unwrap();
        assert!(last.next.is_none());
    }
}

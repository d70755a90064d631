//! Azure OpenAI as the mock speaks it, written from Azure's public REST reference (data plane,
//! inference) and its content-filtering documentation:
//! - the deployments form, `POST /openai/deployments/{deployment}/chat/completions` and
//!   `…/embeddings`, with `?api-version=` required (none: 404 `Resource not found`; one Azure
//!   has not published: 400 `API version not supported`);
//! - the v1 form, `POST /openai/v1/chat/completions` and `/openai/v1/embeddings`, the
//!   deployment as the body's `model` (`api-version` optional: `preview`, `latest` or `v1`);
//! - the model list ("Models - List", [`MODELS`]) in both forms: `GET /openai/models` with
//!   `?api-version=` required (as above), and `GET /openai/v1/models`.
//!
//! What Azure checks, it checks too: the key in `api-key` (or, in the v1 form, as a bearer
//! token), else 401 `Access denied due to invalid subscription key…`; the deployment, else 404
//! `DeploymentNotFound`; the operation against the deployment's model (chat on an embeddings
//! model: 400 `OperationNotSupported`); `max_tokens` refused by reasoning models;
//! `stream_options` refused by API versions before 2024-09-01.
//!
//! Deployments: [`DEPLOYMENTS`], plus any name starting with `mock-` (a chat deployment), so
//! [`crate::scenario`]'s triggers work as for the other APIs (`mock-error-<status>` with
//! Azure's error bodies — a 429 with `retry-after` and `retry-after-ms` —, `mock-slow-<ms>`,
//! `mock-drop-midstream`, `mock-error-midstream`, `[tool]`, `[tools2]`, forced calls, call
//! directives). Every answer carries Azure's content-filter annotations: the prompt's
//! (`prompt_filter_results`; in a stream, a first chunk with no choices, an empty id and
//! model) and each choice's (`content_filter_results`). In the last user text,
//! `[filter-prompt <category>]` has the prompt refused (400, `code: "content_filter"`, the
//! category filtered in `innererror.content_filter_result`) and `[filter-answer <category>]`
//! has the answer stopped by the filter (`finish_reason: "content_filter"`, streamed up to
//! where it stopped); categories are `hate`, `sexual`, `violence`, `self_harm` and, for
//! prompts, `jailbreak`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::request::Parts;
use http::{HeaderMap, Response};
use serde_json::{Map, Value, json};

use crate::reply::{MockBody, SseFrame, StreamEnd, json_response, sse_response};
use crate::scenario::{self, Outcome, tokens};

/// Whether `path` is Azure OpenAI's.
pub fn handles(path: &str) -> bool {
    path.starts_with("/openai/")
}

/// What a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Chat completions.
    Chat,
    /// Chat completions, a reasoning model (`max_completion_tokens`, no `max_tokens`).
    Reasoning,
    /// Embeddings.
    Embeddings,
}

/// The mock resource's deployments: name, the model version it runs, what it serves.
pub const DEPLOYMENTS: [(&str, &str, Serves); 6] = [
    ("gpt-4o", "gpt-4o-2024-11-20", Serves::Chat),
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", Serves::Chat),
    ("chat-prod", "gpt-4o-2024-11-20", Serves::Chat),
    ("o3-mini", "o3-mini-2025-01-31", Serves::Reasoning),
    (
        "text-embedding-3-small",
        "text-embedding-3-small",
        Serves::Embeddings,
    ),
    ("embed-prod", "text-embedding-3-small", Serves::Embeddings),
];

/// The GA API versions the mock knows (any `YYYY-MM-DD-preview` is accepted too).
pub const GA_VERSIONS: [&str; 7] = [
    "2022-12-01",
    "2023-05-15",
    "2024-02-01",
    "2024-06-01",
    "2024-10-21",
    "2025-04-01",
    "2025-06-01",
];

/// The first API version taking `stream_options`.
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn headers(n: u64) -> Vec<(String, String)> {
    vec![
        ("apim-request-id".into(), scenario::id("", n)),
        ("x-request-id".into(), scenario::id("", n + 1)),
        ("x-ms-region".into(), "East US".into()),
        ("x-ms-rai-invoked".into(), "true".into()),
        ("x-ratelimit-remaining-requests".into(), "499".into()),
        ("x-ratelimit-remaining-tokens".into(), "79000".into()),
        ("x-content-type-options".into(), "nosniff".into()),
    ]
}

/// Azure's service error body: `{"error":{"code","message"}}`.
pub fn service_error(status: u16, code: &str, message: &str, n: u64) -> Response<MockBody> {
    let mut h = headers(n);
    if status == 429 {
        h.push(("retry-after".into(), "1".into()));
        h.push(("retry-after-ms".into(), "1000".into()));
    }
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
        &h,
    )
}

/// The model's own error body, as Azure relays it: OpenAI's
/// `{"error":{"message","type","param","code"}}`.
pub fn model_error(
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
    n: u64,
) -> Response<MockBody> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
        &headers(n),
    )
}

fn resource_not_found(n: u64) -> Response<MockBody> {
    service_error(404, "404", "Resource not found", n)
}

/// The error Azure answers with for a status.
pub fn status_error(status: u16, version: &str, n: u64) -> Response<MockBody> {
    match status {
        400 => model_error(
            400,
            "Invalid 'messages': the request is malformed.",
            Some("messages"),
            None,
            n,
        ),
        401 => unauthorized(n),
        403 => service_error(
            403,
            "403",
            "Access denied due to Virtual Network/Firewall rules.",
            n,
        ),
        404 => deployment_not_found(n),
        429 => service_error(
            429,
            "429",
            &format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version \
                 {version} have exceeded token rate limit of your current OpenAI S0 pricing tier. \
                 Please retry after 1 second. Please go here: https://aka.ms/oai/quotaincrease if \
                 you would like to further increase the default rate limit."
            ),
            n,
        ),
        500 => json_response(
            500,
            &json!({"error": {"message": "The server had an error processing your request. Sorry about that! You can retry your request, or contact us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.", "type": "server_error", "param": null, "code": null}}),
            &headers(n),
        ),
        503 => service_error(
            503,
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
            n,
        ),
        s => service_error(s, &s.to_string(), "The request failed.", n),
    }
}

fn unauthorized(n: u64) -> Response<MockBody> {
    service_error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
         provide a valid key for an active subscription and use a correct regional API endpoint \
         for your resource.",
        n,
    )
}

fn deployment_not_found(n: u64) -> Response<MockBody> {
    service_error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment \
         within the last 5 minutes, please wait a moment and try again.",
        n,
    )
}

/// Which URL form a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Deployments,
    V1,
}

/// Whether the request presents one of the resource's keys: `api-key`, or (v1 form only) a
/// bearer token holding it; `bearer_ok` accepts further bearer tokens (Entra ID access tokens).
fn authenticated(
    keys: &[&str],
    h: &HeaderMap,
    form: Form,
    bearer_ok: &(dyn Fn(&str) -> bool + Sync),
) -> bool {
    if let Some(k) = h.get("api-key").and_then(|v| v.to_str().ok()) {
        return keys.contains(&k);
    }
    let Some(token) = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    bearer_ok(token) || (form == Form::V1 && keys.contains(&token))
}

/// The value of query parameter `name`.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn is_published_version(v: &str) -> bool {
    if GA_VERSIONS.contains(&v) {
        return true;
    }
    let Some(date) = v.strip_suffix("-preview") else {
        return false;
    };
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && date >= "2023-03-15"
}

/// The deployment `name` in the mock resource: the model it runs and what it serves.
fn deployment(name: &str) -> Option<(String, Serves)> {
    if let Some((_, model, serves)) = DEPLOYMENTS.iter().find(|d| d.0 == name) {
        return Some(((*model).to_owned(), *serves));
    }
    name.starts_with("mock-")
        .then(|| (name.to_owned(), Serves::Chat))
}

/// Serves one Azure OpenAI request, `keys` being the resource's keys; `bearer_ok` accepts
/// bearer tokens other than a key.
pub async fn handle(
    keys: &[&str],
    bearer_ok: &(dyn Fn(&str) -> bool + Sync),
    frame_delay: Duration,
    parts: &Parts,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    let version = query_param(query, "api-version");
    let post = parts.method == http::Method::POST;
    let (form, named, operation) = if let Some(rest) = path.strip_prefix("/openai/v1/") {
        (Form::V1, None, rest)
    } else if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        match rest.split_once('/') {
            Some((d, op)) if !d.is_empty() => (Form::Deployments, Some(d), op),
            _ => return resource_not_found(n),
        }
    } else if path == "/openai/models" && !post {
        // The deployments form's model list, versioned.
        return match version {
            None => resource_not_found(n),
            Some(v) if !is_published_version(v) => {
                service_error(400, "BadRequest", "API version not supported", n)
            }
            Some(_) if !authenticated(keys, &parts.headers, Form::Deployments, bearer_ok) => {
                unauthorized(n)
            }
            Some(_) => models(n),
        };
    } else {
        return resource_not_found(n);
    };
    let version = match (form, version) {
        (Form::Deployments, None) => return resource_not_found(n),
        (Form::Deployments, Some(v)) if !is_published_version(v) => {
            return service_error(400, "BadRequest", "API version not supported", n);
        }
        (Form::V1, Some(v)) if !matches!(v, "preview" | "latest" | "v1") => {
            return service_error(400, "BadRequest", "API version not supported", n);
        }
        (_, v) => v.unwrap_or("v1"),
    };
    if !authenticated(keys, &parts.headers, form, bearer_ok) {
        return unauthorized(n);
    }
    match (post, operation) {
        (false, "models") if form == Form::V1 => return models(n),
        (true, "chat/completions" | "embeddings") => {}
        _ => return resource_not_found(n),
    }
    if !body.is_object() {
        return model_error(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON.",
            None,
            None,
            n,
        );
    }
    let name = match named {
        Some(d) => d.to_owned(),
        None => match body.get("model").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None => {
                return model_error(
                    400,
                    "Missing required parameter: 'model'.",
                    Some("model"),
                    Some("missing_required_parameter"),
                    n,
                );
            }
        },
    };
    let Some((model, serves)) = deployment(&name) else {
        return deployment_not_found(n);
    };
    let embeddings = operation == "embeddings";
    if embeddings != (serves == Serves::Embeddings) {
        let op = if embeddings {
            "embeddings"
        } else {
            "chatCompletion"
        };
        return service_error(
            400,
            "OperationNotSupported",
            &format!(
                "The {op} operation does not work with the specified model, {model}. Please \
                 choose different model and try again. You can learn more about which models \
                 can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."
            ),
            n,
        );
    }
    if embeddings {
        return embed(&model, body, n);
    }
    if form == Form::Deployments
        && version < STREAM_OPTIONS_SINCE
        && body.get("stream_options").is_some()
    {
        return model_error(
            400,
            "Unrecognized request argument supplied: stream_options",
            None,
            None,
            n,
        );
    }
    if serves == Serves::Reasoning && body.get("max_tokens").is_some() {
        return model_error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use \
             'max_completion_tokens' instead.",
            Some("max_tokens"),
            Some("unsupported_parameter"),
            n,
        );
    }
    chat(&name, &model, version, frame_delay, body, n).await
}

/// Content-filter results for every category, none filtered (`prompt` adds the prompt-only
/// ones).
fn clean_results(prompt: bool) -> Map<String, Value> {
    let mut m = Map::new();
    for c in ["hate", "self_harm", "sexual", "violence"] {
        m.insert(c.into(), json!({"filtered": false, "severity": "safe"}));
    }
    if prompt {
        m.insert(
            "jailbreak".into(),
            json!({"filtered": false, "detected": false}),
        );
    } else {
        m.insert(
            "protected_material_code".into(),
            json!({"filtered": false, "detected": false}),
        );
        m.insert(
            "protected_material_text".into(),
            json!({"filtered": false, "detected": false}),
        );
    }
    m
}

/// The results with `category` filtered.
fn filtered_results(prompt: bool, category: &str) -> Value {
    let mut m = clean_results(prompt);
    let flagged = match category {
        "jailbreak" => json!({"filtered": true, "detected": true}),
        "self_harm" | "sexual" => json!({"filtered": true, "severity": "medium"}),
        "violence" => json!({"filtered": true, "severity": "medium"}),
        _ => json!({"filtered": true, "severity": "high"}),
    };
    m.insert(category.to_owned(), flagged);
    Value::Object(m)
}

/// The category named by a `[marker <category>]` in `text`.
fn marked(text: &str, marker: &str, default: &str) -> Option<String> {
    let (_, rest) = text.split_once(marker)?;
    let category = rest
        .trim_start()
        .split(|c: char| c == ']' || c.is_whitespace())
        .next()
        .filter(|c| ["hate", "sexual", "violence", "self_harm", "jailbreak"].contains(c))
        .unwrap_or(default);
    Some(category.to_owned())
}

fn prompt_filter_results(results: Value) -> Value {
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

async fn chat(
    deployment: &str,
    model: &str,
    version: &str,
    frame_delay: Duration,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return model_error(
            400,
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
            n,
        );
    };
    if messages.is_empty() {
        return model_error(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
            n,
        );
    }
    let text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| crate::openai::content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    if let Some(category) = marked(&text, "[filter-prompt", "hate") {
        return json_response(
            400,
            &json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation",
                               "content_filter_result": filtered_results(true, &category)}}}),
            &headers(n),
        );
    }
    let filtered_answer = marked(&text, "[filter-answer", "violence");
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let forced = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(String::new()),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let plan = match scenario::instructed_call(&scenario::last_message_text(messages)) {
        Some(call) => scenario::Plan {
            outcome: Outcome::ToolCalls(vec![call]),
            delay: Duration::ZERO,
        },
        None => scenario::plan(deployment, &text, &tools, forced.as_deref()),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prompt_tokens = tokens(&Value::Array(messages.clone()).to_string());
    let answer = Answer {
        id: scenario::id("chatcmpl-", n),
        created: now(),
        model,
        include_usage,
        n,
    };
    match plan.outcome {
        Outcome::Error(status) => status_error(status, version, n),
        Outcome::Text(text) => {
            let (text, finish, results) = match &filtered_answer {
                // The filter stops the answer partway.
                Some(category) => {
                    let kept: String = scenario::pieces(&text).into_iter().take(2).collect();
                    (kept, "content_filter", filtered_results(false, category))
                }
                None => (text, "stop", Value::Object(clean_results(false))),
            };
            let usage = usage(prompt_tokens, tokens(&text));
            if !stream {
                let content = if filtered_answer.is_some() {
                    Value::Null
                } else {
                    Value::String(text)
                };
                return answer.complete(
                    json!({"role": "assistant", "content": content, "refusal": null, "annotations": []}),
                    finish,
                    results,
                    usage,
                );
            }
            let mut frames = vec![
                answer.prompt_frame(),
                answer.frame(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                    json!({}),
                ),
            ];
            for p in scenario::pieces(&text) {
                frames.push(answer.frame(
                    json!({"content": p}),
                    None,
                    Value::Object(clean_results(false)),
                ));
            }
            frames.push(answer.frame(json!({}), Some(finish), results));
            answer.stream(frames, usage, frame_delay)
        }
        Outcome::ToolCalls(calls) => {
            let completion: u64 = calls
                .iter()
                .map(|c| tokens(&c.name) + tokens(&c.arguments))
                .sum();
            let usage = usage(prompt_tokens, completion);
            let call_ids: Vec<String> = (0..calls.len())
                .map(|i| scenario::id("call_", n * 10 + i as u64))
                .collect();
            if !stream {
                let tool_calls: Vec<Value> = calls.iter().zip(&call_ids).map(|(c, id)| json!({
                    "id": id, "type": "function", "function": {"name": c.name, "arguments": c.arguments},
                })).collect();
                return answer.complete(
                    json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": tool_calls, "annotations": []}),
                    "tool_calls",
                    json!({}),
                    usage,
                );
            }
            let mut frames = vec![
                answer.prompt_frame(),
                answer.frame(
                    json!({"role": "assistant", "content": null, "refusal": null}),
                    None,
                    json!({}),
                ),
            ];
            for (i, (c, call_id)) in calls.iter().zip(&call_ids).enumerate() {
                frames.push(answer.frame(
                    json!({"tool_calls": [{"index": i, "id": call_id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}),
                    None,
                    json!({}),
                ));
                for f in scenario::fragments(&c.arguments) {
                    frames.push(answer.frame(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]}),
                        None,
                        json!({}),
                    ));
                }
            }
            frames.push(answer.frame(json!({}), Some("tool_calls"), json!({})));
            answer.stream(frames, usage, frame_delay)
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let mut frames = vec![
                answer.prompt_frame(),
                answer.frame(json!({"role": "assistant", "content": ""}), None, json!({})),
                answer.frame(
                    json!({"content": "Partial "}),
                    None,
                    Value::Object(clean_results(false)),
                ),
            ];
            let end = if plan.outcome == Outcome::DropMidstream {
                StreamEnd::Abort
            } else {
                frames.push(SseFrame::data(
                    json!({"error": {"message": "The server had an error processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}).to_string(),
                ));
                StreamEnd::Complete
            };
            sse_response(frames, frame_delay, end, &headers(n))
        }
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

/// One answer's identity, for its body or its chunks.
struct Answer<'a> {
    id: String,
    created: u64,
    model: &'a str,
    include_usage: bool,
    n: u64,
}

impl Answer<'_> {
    fn complete(
        &self,
        message: Value,
        finish: &str,
        results: Value,
        usage: Value,
    ) -> Response<MockBody> {
        json_response(
            200,
            &json!({
                "id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "system_fingerprint": "fp_mock_azure",
                "prompt_filter_results": prompt_filter_results(Value::Object(clean_results(true))),
                "choices": [{"index": 0, "message": message, "logprobs": null,
                             "finish_reason": finish, "content_filter_results": results}],
                "usage": usage,
            }),
            &headers(self.n),
        )
    }

    /// The stream's first chunk: the prompt's annotations, before any choice.
    fn prompt_frame(&self) -> SseFrame {
        SseFrame::data(
            json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                   "prompt_filter_results": prompt_filter_results(Value::Object(clean_results(true)))})
            .to_string(),
        )
    }

    fn frame(&self, delta: Value, finish: Option<&str>, results: Value) -> SseFrame {
        let mut v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": "fp_mock_azure",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
                         "content_filter_results": results}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        SseFrame::data(v.to_string())
    }

    fn stream(
        &self,
        mut frames: Vec<SseFrame>,
        usage: Value,
        frame_delay: Duration,
    ) -> Response<MockBody> {
        if self.include_usage {
            frames.push(SseFrame::data(
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "system_fingerprint": "fp_mock_azure",
                    "choices": [], "usage": usage,
                })
                .to_string(),
            ));
        }
        frames.push(SseFrame::data("[DONE]"));
        sse_response(frames, frame_delay, StreamEnd::Complete, &headers(self.n))
    }
}

/// An embeddings request to a deployment running `model`.
fn embed(model: &str, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(code) = model
        .strip_prefix("mock-error-")
        .and_then(|c| c.parse::<u16>().ok())
    {
        return status_error(code, "v1", n);
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        _ => {
            return model_error(
                400,
                "'input' is a required property",
                Some("input"),
                None,
                n,
            );
        }
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|d| d as usize)
        .unwrap_or(8)
        .clamp(1, 4096);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = crate::openai::embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let prompt: u64 = inputs.iter().map(|t| tokens(t)).sum();
    json_response(
        200,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}),
        &headers(n),
    )
}

/// One entry of the resource's model list: id, what it can do (chat, completion, embeddings),
/// its lifecycle status and the Unix second its inference ends.
type CatalogueEntry = (&'static str, [bool; 3], &'static str, i64);

/// The models the mock resource may deploy, as Azure's "Models - List" names them (models, not
/// deployments): those its deployments run, a dated version deployed under no name, a retired
/// chat model, a completions-only model and an image model.
pub const MODELS: [CatalogueEntry; 9] = [
    (
        "gpt-4o",
        [true, false, false],
        "generally-available",
        4_102_444_800,
    ),
    (
        "gpt-4o-2024-11-20",
        [true, false, false],
        "generally-available",
        4_102_444_800,
    ),
    (
        "gpt-4o-mini",
        [true, false, false],
        "generally-available",
        4_102_444_800,
    ),
    (
        "o3-mini",
        [true, false, false],
        "generally-available",
        4_102_444_800,
    ),
    (
        "text-embedding-3-small",
        [false, false, true],
        "generally-available",
        4_102_444_800,
    ),
    (
        "gpt-4o-mini-2024-07-18",
        [true, false, false],
        "preview",
        4_102_444_800,
    ),
    (
        "gpt-35-turbo-0613",
        [true, true, false],
        "deprecated",
        1_739_404_800,
    ),
    (
        "davinci-002",
        [false, true, false],
        "generally-available",
        4_102_444_800,
    ),
    (
        "dall-e-3",
        [false, false, false],
        "generally-available",
        4_102_444_800,
    ),
];

/// Models - List, in either form: every entry of [`MODELS`], in Azure's shape.
fn models(n: u64) -> Response<MockBody> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, [chat, completion, embeddings], lifecycle, end)| {
            json!({"id": id, "object": "model", "created_at": 1_715_367_049,
                   "status": "succeeded", "lifecycle_status": lifecycle,
                   "capabilities": {"chat_completion": chat, "completion": completion,
                                    "embeddings": embeddings, "fine_tune": false,
                                    "inference": true},
                   "deprecation": {"inference": end}})
        })
        .collect();
    json_response(200, &json!({"object": "list", "data": data}), &headers(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_those_azure_publishes() {
        assert!(is_published_version("2024-10-21"));
        assert!(is_published_version("2025-01-01-preview"));
        assert!(!is_published_version("2024-10-22"));
        assert!(!is_published_version("latest"));
        assert!(!is_published_version("2024-1-01-preview"));
    }

    #[test]
    fn markers_name_their_category() {
        assert_eq!(
            marked("x [filter-prompt jailbreak] y", "[filter-prompt", "hate").as_deref(),
            Some("jailbreak")
        );
        assert_eq!(
            marked("[filter-answer]", "[filter-answer", "violence").as_deref(),
            Some("violence")
        );
        assert_eq!(marked("plain", "[filter-answer", "violence"), None);
    }
}

/// The scope Azure OpenAI's tokens are asked for.
pub const ENTRA_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Whether `path` is Microsoft Entra ID's token endpoint, `/{tenant}/oauth2/v2.0/token`.
pub fn handles_token(path: &str) -> bool {
    path.strip_suffix("/oauth2/v2.0/token")
        .is_some_and(|tenant| tenant.len() > 1 && !tenant[1..].contains('/'))
}

/// The application Entra ID knows: its tenant, client id and secret.
#[derive(Debug, Clone, Copy)]
pub struct EntraApp<'a> {
    /// The directory (tenant) id.
    pub tenant_id: &'a str,
    /// The application (client) id.
    pub client_id: &'a str,
    /// Its client secret.
    pub client_secret: &'a str,
}

fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Response<MockBody> {
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
            "error_uri": "https://login.microsoftonline.com/error?code=".to_owned() + &code.to_string(),
        }),
        &[],
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`, the OAuth 2.0 client-credentials grant as Microsoft
/// Entra ID answers it (form-encoded `grant_type`, `client_id`, `client_secret`, `scope`):
/// an access token for [`ENTRA_SCOPE`] (handed to `issued`, which the Azure OpenAI API then
/// accepts as a bearer token), or Entra's error body naming the `AADSTS` code.
pub fn token(
    app: EntraApp<'_>,
    parts: &Parts,
    raw: &[u8],
    n: u64,
    issued: &dyn Fn(String),
) -> Response<MockBody> {
    let tenant = parts
        .uri
        .path()
        .strip_suffix("/oauth2/v2.0/token")
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or_default();
    if parts.method != http::Method::POST {
        return entra_error(
            405,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let form_encoded = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    let body = String::from_utf8_lossy(raw);
    let field = |name: &str| {
        body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| crate::anthropic::percent_decode(&v.replace('+', " ")))
        })
    };
    if tenant != app.tenant_id {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    match field("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        None => {
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let client_id = field("client_id").unwrap_or_default();
    if client_id != app.client_id {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    if field("client_secret").as_deref() != Some(app.client_secret) {
        return entra_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let scope = field("scope").unwrap_or_default();
    if scope != ENTRA_SCOPE {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    }
    let access_token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}",
        scenario::id("entra", n)
    );
    issued(access_token.clone());
    json_response(
        200,
        &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": access_token}),
        &[],
    )
}

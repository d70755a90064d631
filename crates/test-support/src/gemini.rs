//! Google's Gemini API (AI Studio, v1beta) as the mock speaks it, written from Google's public
//! API reference: `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (server-sent events with `?alt=sse`, else one JSON array),
//! `:countTokens`, `:embedContent` and `:batchEmbedContents`, `GET /v1beta/models` (paged by
//! `pageSize` and `pageToken`) and `GET /v1beta/models/{model}`.
//!
//! What a real Gemini endpoint checks, it checks too, so a translation that gets it wrong fails
//! here as it would there:
//! - the key, in `x-goog-api-key` or `?key=`: none is a 403 `PERMISSION_DENIED`, a wrong one a
//!   400 `INVALID_ARGUMENT` with `ErrorInfo` reason `API_KEY_INVALID`;
//! - the body: unknown fields (`Invalid JSON payload received. Unknown name …`), empty
//!   `contents`, roles other than `user` and `model`, `parameters` and `parametersJsonSchema`
//!   together, and a function-response turn that does not answer every call of the model turn
//!   before it;
//! - for `gemini-3*` models, whose function calls carry a `thoughtSignature`: a call of the
//!   current turn sent back without its signature (400, as Gemini 3 answers).
//!
//! Answers follow [`crate::scenario`]'s triggers like the other APIs (text, `[tool]`,
//! `[tools2]` for parallel calls, forced calls through `toolConfig`, `mock-error-<status>` with
//! Google's error bodies — a 429 with `RetryInfo` —, `mock-slow-<ms>`, `mock-drop-midstream`,
//! `mock-error-midstream`, call directives), plus `mock-blocked-prompt` (a prompt refused by
//! `promptFeedback.blockReason`) and `mock-safety-stop` (a candidate stopped for `SAFETY`).
//! A request with `thinkingConfig.includeThoughts` gets a thought part and thought tokens.
//! Function calls are streamed whole, as Gemini streams them; `usageMetadata` is cumulative.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Response};
use serde_json::{Map, Value, json};

use crate::reply::{MockBody, StreamEnd, chunked_response, json_response};
use crate::scenario::{self, Outcome, tokens};

/// Whether `path` is the Gemini API's.
pub fn handles(path: &str) -> bool {
    path.starts_with("/v1beta/models") || path.starts_with("/v1beta/tunedModels")
}

fn headers(n: u64) -> Vec<(String, String)> {
    vec![
        ("x-goog-request-id".into(), scenario::id("", n)),
        ("server".into(), "scaffolding on HTTPServer2".into()),
        ("vary".into(), "Origin, X-Origin, Referer".into()),
    ]
}

/// Google's error body: `{"error":{"code","message","status","details"?}}`.
pub fn error(code: u16, status: &str, message: &str, details: Option<Value>) -> Response<MockBody> {
    let mut e = json!({"code": code, "message": message, "status": status});
    if let Some(d) = details {
        e["details"] = d;
    }
    json_response(code, &json!({ "error": e }), &headers(0))
}

/// The error the Gemini API answers with for a status.
pub fn status_error(code: u16, model: &str) -> Response<MockBody> {
    match code {
        400 => error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            None,
        ),
        403 => error(
            403,
            "PERMISSION_DENIED",
            "You do not have permission to access this resource.",
            None,
        ),
        404 => error(
            404,
            "NOT_FOUND",
            &format!(
                "models/{model} is not found for API version v1beta, or is not supported for \
                 generateContent. Call ListModels to see the list of available models and their \
                 supported methods."
            ),
            None,
        ),
        413 => error(
            413,
            "INVALID_ARGUMENT",
            "The request size exceeds the limit.",
            None,
        ),
        429 => error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            Some(json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                                 "quotaDimensions": {"location": "global", "model": model},
                                 "quotaValue": "10"}]},
                {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
            ])),
        ),
        500 => error(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            None,
        ),
        503 => error(
            503,
            "UNAVAILABLE",
            "The model is overloaded. Please try again later.",
            None,
        ),
        504 => error(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
            None,
        ),
        c => error(c, "UNKNOWN", "Unknown error.", None),
    }
}

fn bad_request(message: &str) -> Response<MockBody> {
    error(400, "INVALID_ARGUMENT", message, None)
}

/// The key a request presents: `x-goog-api-key`, else the `key` query parameter.
fn presented_key(h: &HeaderMap, query: &str) -> Option<String> {
    h.get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query.split('&').find_map(|pair| {
                pair.strip_prefix("key=")
                    .map(crate::anthropic::percent_decode)
            })
        })
}

fn check_auth(keys: &[&str], h: &HeaderMap, query: &str) -> Option<Response<MockBody>> {
    match presented_key(h, query) {
        Some(k) if keys.contains(&k.as_str()) => None,
        Some(_) => Some(error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            Some(json!([
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                 "message": "API key not valid. Please pass a valid API key."}
            ])),
        )),
        None => Some(error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
            None,
        )),
    }
}

/// The models the mock's Gemini API lists: name, display name, methods.
pub const MODELS: [(&str, &str, &[&str]); 4] = [
    (
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        &["generateContent", "countTokens", "createCachedContent"],
    ),
    (
        "gemini-2.5-pro",
        "Gemini 2.5 Pro",
        &["generateContent", "countTokens", "createCachedContent"],
    ),
    (
        "gemini-3-pro-preview",
        "Gemini 3 Pro Preview",
        &["generateContent", "countTokens", "createCachedContent"],
    ),
    (
        "gemini-embedding-001",
        "Gemini Embedding 001",
        &["embedContent", "countTextTokens", "countTokens"],
    ),
];

fn model_object((name, display, methods): (&str, &str, &[&str])) -> Value {
    json!({
        "name": format!("models/{name}"), "version": "001", "displayName": display,
        "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
        "supportedGenerationMethods": methods,
    })
}

/// Serves one Gemini API request.
pub async fn handle(
    keys: &[&str],
    frame_delay: Duration,
    parts: &Parts,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let query = parts.uri.query().unwrap_or_default();
    if let Some(refused) = check_auth(keys, &parts.headers, query) {
        return refused;
    }
    let path = parts.uri.path();
    let rest = path.strip_prefix("/v1beta/").unwrap_or(path);
    if parts.method == http::Method::GET {
        return match rest.strip_prefix("models/") {
            None if rest == "models" => list_models(query, n),
            Some(name) => match MODELS.iter().find(|m| m.0 == name) {
                Some(m) => json_response(200, &model_object(*m), &headers(n)),
                None => error(
                    404,
                    "NOT_FOUND",
                    &format!(
                        "models/{name} is not found for API version v1beta, or is not supported for GET."
                    ),
                    None,
                ),
            },
            None => not_found(path),
        };
    }
    let Some((resource, method)) = rest.rsplit_once(':') else {
        return not_found(path);
    };
    let model = resource
        .strip_prefix("models/")
        .or_else(|| resource.strip_prefix("tunedModels/"))
        .map(crate::anthropic::percent_decode)
        .unwrap_or_default();
    if body.is_null() || !body.is_object() {
        return bad_request("Invalid JSON payload received. Unexpected token.");
    }
    match method {
        "generateContent" => generate(&model, body, None, n).await,
        "streamGenerateContent" => {
            let sse = query.split('&').any(|p| p == "alt=sse");
            generate(&model, body, Some((sse, frame_delay)), n).await
        }
        "countTokens" => {
            let text = body
                .get("contents")
                .or_else(|| body.pointer("/generateContentRequest/contents"))
                .map(Value::to_string)
                .unwrap_or_default();
            json_response(200, &json!({"totalTokens": tokens(&text)}), &headers(n))
        }
        "embedContent" => embed_one(&model, body, n),
        "batchEmbedContents" => embed_batch(&model, body, n),
        _ => not_found(path),
    }
}

fn not_found(path: &str) -> Response<MockBody> {
    error(
        404,
        "NOT_FOUND",
        &format!("The requested URL {path} was not found on this server."),
        None,
    )
}

fn list_models(query: &str, n: u64) -> Response<MockBody> {
    let param = |name: &str| {
        query.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let size = param("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let start = param("pageToken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MODELS.len());
    let end = (start + size).min(MODELS.len());
    let models: Vec<Value> = MODELS[start..end]
        .iter()
        .map(|m| model_object(*m))
        .collect();
    let mut page = json!({ "models": models });
    if end < MODELS.len() {
        page["nextPageToken"] = Value::String(end.to_string());
    }
    json_response(200, &page, &headers(n))
}

/// Request fields Gemini knows (proto JSON accepts both spellings).
const REQUEST_FIELDS: &[&str] = &[
    "contents",
    "model",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "cachedContent",
    "cached_content",
    "labels",
];

const GENERATION_FIELDS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
];

const PART_FIELDS: &[&str] = &[
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
];

fn unknown_field(at: &str, name: &str) -> Response<MockBody> {
    bad_request(&format!(
        "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
    ))
}

/// What Gemini refuses in a `GenerateContentRequest` before generating anything.
fn validate(model: &str, body: &Value) -> Option<Response<MockBody>> {
    let obj = body.as_object()?;
    if let Some(k) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Some(unknown_field("", k));
    }
    if let Some(config) = obj.get("generationConfig").and_then(Value::as_object)
        && let Some(k) = config
            .keys()
            .find(|k| !GENERATION_FIELDS.contains(&k.as_str()))
    {
        return Some(unknown_field("generation_config", k));
    }
    let contents = obj
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Some(bad_request(
            "* GenerateContentRequest.contents: contents is not specified\n",
        ));
    };
    for (i, content) in contents.iter().enumerate() {
        match content.get("role").and_then(Value::as_str) {
            None | Some("user" | "model") => {}
            Some(_) => return Some(bad_request("Please use a valid role: user, model.")),
        }
        let parts = content.get("parts").and_then(Value::as_array);
        let Some(parts) = parts.filter(|p| !p.is_empty()) else {
            return Some(bad_request(&format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )));
        };
        for part in parts {
            if let Some(k) = part
                .as_object()
                .and_then(|p| p.keys().find(|k| !PART_FIELDS.contains(&k.as_str())))
            {
                return Some(unknown_field(&format!("contents[{i}].parts[0]"), k));
            }
        }
    }
    // Each function-response turn answers every call of the model turn before it.
    for pair in contents.windows(2) {
        let count = |c: &Value, key: &str| {
            c.get("parts")
                .and_then(Value::as_array)
                .map_or(0, |p| p.iter().filter(|p| p.get(key).is_some()).count())
        };
        let calls = count(&pair[0], "functionCall");
        let responses = count(&pair[1], "functionResponse");
        if responses > 0 && responses != calls {
            return Some(bad_request(
                "Please ensure that the number of function response parts is equal to the number \
                 of function call parts of the function call turn.",
            ));
        }
    }
    for tool in obj
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for d in tool
            .get("functionDeclarations")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if d.get("parameters").is_some() && d.get("parametersJsonSchema").is_some() {
                return Some(bad_request(
                    "parameters and parameters_json_schema cannot both be set.",
                ));
            }
            let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
            if !valid {
                return Some(bad_request(&format!(
                    "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name. Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum length of 64. ({name})\n"
                )));
            }
        }
    }
    // Gemini 3 wants every function call of the current turn back with its signature.
    if model.starts_with("gemini-3") {
        let turn_start = contents
            .iter()
            .rposition(|c| {
                c.get("role").and_then(Value::as_str) != Some("model")
                    && c.get("parts")
                        .and_then(Value::as_array)
                        .is_some_and(|p| p.iter().any(|p| p.get("text").is_some()))
            })
            .unwrap_or(0);
        for (i, c) in contents.iter().enumerate().skip(turn_start) {
            let parts = c.get("parts").and_then(Value::as_array);
            // Of parallel calls, only the first carries the signature.
            let first_call = parts
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .find(|p| p.get("functionCall").is_some());
            if let Some(p) = first_call {
                let call = &p["functionCall"];
                let signed = p
                    .get("thoughtSignature")
                    .and_then(Value::as_str)
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .is_some_and(|s| s.starts_with(b"mock-thought:"));
                if !signed {
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    return Some(bad_request(&format!(
                        "Function call `{name}` in the {i}. content block is missing a `thought_signature`. Learn more: https://ai.google.dev/gemini-api/docs/thought-signatures"
                    )));
                }
            }
        }
    }
    None
}

/// The text a request's last content carries: its text parts and function responses (the
/// results of parallel calls separated by a space).
fn last_text(contents: &[Value]) -> String {
    let Some(parts) = contents
        .last()
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
    else {
        return String::new();
    };
    let mut pieces: Vec<String> = Vec::new();
    for p in parts {
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            pieces.push(t.to_owned());
        } else if let Some(r) = p.pointer("/functionResponse/response") {
            pieces.push(
                match r.get("output").or_else(|| r.get("error")).unwrap_or(r) {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                },
            );
        }
    }
    pieces.join(" ")
}

/// One part of an answer.
enum Answer {
    Text(String),
    Call { name: String, args: Value },
}

/// Answers a `generateContent` or `streamGenerateContent` request (`stream`: SSE or not, and
/// the pause between chunks) that passed its API's checks: Gemini's own, or Vertex AI's.
pub(crate) async fn generate(
    model: &str,
    body: &Value,
    stream: Option<(bool, Duration)>,
    n: u64,
) -> Response<MockBody> {
    if let Some(refused) = validate(model, body) {
        return refused;
    }
    let contents = body
        .get("contents")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let text = last_text(contents);
    let tools: Vec<String> = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
                .flatten()
                .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let calling = body.pointer("/toolConfig/functionCallingConfig");
    let forced = match calling.and_then(|c| c.get("mode")).and_then(Value::as_str) {
        Some("ANY") => Some(
            calling
                .and_then(|c| c.pointer("/allowedFunctionNames/0"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => None,
    };
    // Proto JSON takes either spelling of a field (the Python SDK writes this one snake_case).
    let thinking = body.pointer("/generationConfig/thinkingConfig");
    let thoughts = thinking
        .and_then(|t| {
            t.get("includeThoughts")
                .or_else(|| t.get("include_thoughts"))
        })
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let plan = match scenario::instructed_call(&text) {
        Some(call) => scenario::Plan {
            outcome: Outcome::ToolCalls(vec![call]),
            delay: Duration::ZERO,
        },
        None => scenario::plan(model, &text, &tools, forced.as_deref()),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let mut prompt = Value::Array(contents.to_vec()).to_string();
    if let Some(system) = body.get("systemInstruction") {
        prompt.push_str(&system.to_string());
    }
    let prompt_tokens = tokens(&prompt);
    let response_id = scenario::id("", n);
    let signed = model.starts_with("gemini-3");
    let answers = match plan.outcome {
        Outcome::Error(code) => return status_error(code, model),
        Outcome::Text(t) => vec![Answer::Text(t)],
        Outcome::ToolCalls(calls) => calls
            .into_iter()
            .map(|c| Answer::Call {
                name: c.name,
                args: serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({})),
            })
            .collect(),
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let first = chunk(
                vec![json!({"text": "Partial "})],
                None,
                usage(prompt_tokens, 1, 0),
                model,
                &response_id,
            );
            let mut chunks = vec![sse_bytes(&first)];
            let end = if plan.outcome == Outcome::DropMidstream {
                StreamEnd::Abort
            } else {
                chunks.push(sse_bytes(&json!({"error": {
                    "code": 503, "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE"}})));
                StreamEnd::Complete
            };
            let delay = stream.map_or(Duration::ZERO, |(_, d)| d);
            return chunked_response(chunks, "text/event-stream", delay, end, &headers(n));
        }
    };
    let blocked = model == "mock-blocked-prompt";
    let safety_stop = model == "mock-safety-stop";
    let thought_tokens = if thoughts { 12 } else { 0 };
    let thought = thoughts.then(|| json!({"text": "Thinking about the request.", "thought": true}));
    let mut parts: Vec<Value> = Vec::new();
    let mut candidate_tokens = 0;
    for (i, a) in answers.iter().enumerate() {
        match a {
            Answer::Text(t) => {
                candidate_tokens += tokens(t);
                parts.push(json!({ "text": t }));
            }
            Answer::Call { name, args } => {
                candidate_tokens += tokens(name) + tokens(&args.to_string());
                let mut p = json!({"functionCall": {"name": name, "args": args}});
                // Gemini 3 signs the first call of a turn (each call, in parallel ones, is
                // answered by name; only the first carries the signature).
                if signed && i == 0 {
                    p["thoughtSignature"] = Value::String(
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("mock-thought:{response_id}:{name}")),
                    );
                }
                parts.push(p);
            }
        }
    }
    let finish = if safety_stop { "SAFETY" } else { "STOP" };
    if safety_stop {
        parts.clear();
        candidate_tokens = 0;
    }

    let Some((sse, delay)) = stream else {
        let mut body = Map::new();
        if blocked {
            body.insert(
                "promptFeedback".into(),
                json!({"blockReason": "SAFETY", "safetyRatings": safety_ratings("HIGH")}),
            );
        } else {
            let mut all = Vec::new();
            all.extend(thought.clone());
            all.extend(parts);
            let mut candidate = json!({
                "content": {"parts": all, "role": "model"},
                "finishReason": finish, "index": 0,
            });
            if safety_stop {
                candidate["content"] = json!({"role": "model"});
                candidate["safetyRatings"] = safety_ratings("HIGH");
            }
            body.insert("candidates".into(), json!([candidate]));
        }
        body.insert(
            "usageMetadata".into(),
            usage(
                prompt_tokens,
                if blocked { 0 } else { candidate_tokens },
                thought_tokens,
            ),
        );
        body.insert("modelVersion".into(), Value::String(model.to_owned()));
        body.insert("responseId".into(), Value::String(response_id));
        return json_response(200, &Value::Object(body), &headers(n));
    };

    // The stream: the thought, then text word by word, then the calls whole; the last chunk
    // carries the finish reason and the whole usage.
    let mut chunks: Vec<Value> = Vec::new();
    if blocked {
        chunks.push(json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": safety_ratings("HIGH")},
            "usageMetadata": usage(prompt_tokens, 0, 0),
            "modelVersion": model, "responseId": response_id,
        }));
    } else {
        if let Some(t) = thought {
            chunks.push(chunk(
                vec![t],
                None,
                usage(prompt_tokens, 0, thought_tokens),
                model,
                &response_id,
            ));
        }
        let mut pending: Vec<Value> = Vec::new();
        for p in parts {
            match p.get("text").and_then(Value::as_str) {
                Some(t) => {
                    let mut text_so_far = String::new();
                    for piece in scenario::pieces(t) {
                        // Cumulative, as Gemini counts: the tokens of everything sent so far.
                        text_so_far.push_str(&piece);
                        let so_far = tokens(&text_so_far);
                        chunks.push(chunk(
                            vec![json!({ "text": piece })],
                            None,
                            usage(prompt_tokens, so_far, thought_tokens),
                            model,
                            &response_id,
                        ));
                    }
                }
                None => pending.push(p),
            }
        }
        let whole = usage(prompt_tokens, candidate_tokens, thought_tokens);
        let last_is_text = chunks
            .last()
            .is_some_and(|c| c.pointer("/candidates/0/content/parts/0/text").is_some());
        if pending.is_empty() && last_is_text && !safety_stop {
            // Gemini puts the finish reason on the last text chunk when no call follows.
            if let Some(c) = chunks.last_mut() {
                c["candidates"][0]["finishReason"] = Value::String(finish.to_owned());
                c["usageMetadata"] = whole;
            }
        } else {
            chunks.push(chunk(pending, Some(finish), whole, model, &response_id));
        }
    }
    // The first chunk comes one frame delay after the head, as a model's first token does
    // (the empty chunk writes nothing).
    if sse {
        let bytes = std::iter::once(Bytes::new())
            .chain(chunks.iter().map(sse_bytes))
            .collect();
        chunked_response(
            bytes,
            "text/event-stream",
            delay,
            StreamEnd::Complete,
            &headers(n),
        )
    } else {
        // Without `alt=sse`: one JSON array of the chunks, written as they come.
        let mut bytes: Vec<Bytes> = Vec::with_capacity(chunks.len() + 1);
        for (i, c) in chunks.iter().enumerate() {
            let sep = if i == 0 { "[" } else { ",\r\n" };
            bytes.push(Bytes::from(format!("{sep}{c}")));
        }
        bytes.push(Bytes::from_static(b"]"));
        chunked_response(
            bytes,
            "application/json; charset=UTF-8",
            delay,
            StreamEnd::Complete,
            &headers(n),
        )
    }
}

/// One `data:` event as Google writes it (CRLF line ends).
fn sse_bytes(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

fn chunk(
    parts: Vec<Value>,
    finish: Option<&str>,
    usage: Value,
    model: &str,
    response_id: &str,
) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = Value::String(f.to_owned());
    }
    if finish == Some("SAFETY") {
        candidate["content"] = json!({"role": "model"});
        candidate["safetyRatings"] = safety_ratings("HIGH");
    }
    json!({"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
           "responseId": response_id})
}

fn usage(prompt: u64, candidates: u64, thoughts: u64) -> Value {
    let mut u = json!({
        "promptTokenCount": prompt,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if candidates > 0 {
        u["candidatesTokenCount"] = candidates.into();
    }
    if thoughts > 0 {
        u["thoughtsTokenCount"] = thoughts.into();
    }
    u
}

fn safety_ratings(dangerous: &str) -> Value {
    json!([
        {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": dangerous}
    ])
}

/// The text of an embedding request's `content`.
fn content_text(content: Option<&Value>) -> Option<String> {
    let parts = content?.get("parts")?.as_array()?;
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then_some(text)
}

fn dimensions(request: &Value) -> usize {
    request
        .get("outputDimensionality")
        .and_then(Value::as_u64)
        .map_or(768, |d| usize::try_from(d).unwrap_or(768))
        .clamp(1, 3072)
}

fn embed_one(model: &str, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(code) = model
        .strip_prefix("mock-error-")
        .and_then(|c| c.parse().ok())
    {
        return status_error(code, model);
    }
    let Some(text) = content_text(body.get("content")) else {
        return bad_request("* EmbedContentRequest.content: content is not specified\n");
    };
    let values = crate::openai::embedding(&text, dimensions(body));
    json_response(200, &json!({"embedding": {"values": values}}), &headers(n))
}

fn embed_batch(model: &str, body: &Value, n: u64) -> Response<MockBody> {
    if let Some(code) = model
        .strip_prefix("mock-error-")
        .and_then(|c| c.parse().ok())
    {
        return status_error(code, model);
    }
    let Some(requests) = body
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
    else {
        return bad_request("* BatchEmbedContentsRequest.requests: requests is not specified\n");
    };
    let mut embeddings = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        if r.get("model").and_then(Value::as_str) != Some(&format!("models/{model}")) {
            return bad_request(&format!(
                "* BatchEmbedContentsRequest.requests[{i}].model: model in the request must match the model in the URL\n"
            ));
        }
        let Some(text) = content_text(r.get("content")) else {
            return bad_request(&format!(
                "* BatchEmbedContentsRequest.requests[{i}].content: content is not specified\n"
            ));
        };
        embeddings.push(json!({"values": crate::openai::embedding(&text, dimensions(r))}));
    }
    json_response(200, &json!({ "embeddings": embeddings }), &headers(n))
}

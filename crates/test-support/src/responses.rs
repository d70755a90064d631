//! OpenAI's Responses API as the mock speaks it, written from OpenAI's API reference:
//! `POST /v1/responses` (complete, or streamed as the Responses events, each with its
//! `sequence_number`), `GET` and `DELETE /v1/responses/{id}`. It checks what OpenAI checks —
//! the key, `model` and `input`, item and content types, a `function_call_output` answering a
//! call of the conversation, `previous_response_id` naming a stored response — keeps responses
//! unless `store` is false, continues a stored conversation, stops at `max_output_tokens`
//! (`incomplete`), and answers with OpenAI's error bodies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Response;
use serde_json::{Map, Value, json};

use crate::openai::{check_auth, error, status_error};
use crate::reply::{MockBody, SseFrame, StreamEnd, json_response, sse_response};
use crate::scenario::{self, Outcome, tokens};

/// Responses the mock keeps: the object and the conversation it ends (items).
#[derive(Debug, Default)]
pub(crate) struct Stored(Mutex<HashMap<String, (Value, Vec<Value>)>>);

impl Stored {
    fn get(&self, id: &str) -> Option<(Value, Vec<Value>)> {
        self.0.lock().ok().and_then(|m| m.get(id).cloned())
    }
}

/// Whether the mock's Responses API serves `path`.
pub fn handles(path: &str) -> bool {
    path == "/v1/responses" || path.starts_with("/v1/responses/")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response<MockBody> {
    json_response(
        400,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
        &[],
    )
}

fn not_found(message: &str, param: Option<&str>, code: Option<&str>) -> Response<MockBody> {
    json_response(
        404,
        &json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}),
        &[],
    )
}

/// Serves a Responses API request.
pub(crate) async fn handle(
    stored: &Stored,
    key: &str,
    frame_delay: Duration,
    parts: &http::request::Parts,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let (method, path, h) = (&parts.method, parts.uri.path(), &parts.headers);
    if let Some(r) = check_auth(h, key, n) {
        return r;
    }
    if let Some(id) = path.strip_prefix("/v1/responses/") {
        return match *method {
            http::Method::GET => match stored.get(id) {
                Some((object, _)) => json_response(200, &object, &[]),
                None => not_found(&format!("Response with id '{id}' not found."), None, None),
            },
            http::Method::DELETE => {
                let gone = stored.0.lock().ok().and_then(|mut m| m.remove(id));
                match gone {
                    Some(_) => json_response(
                        200,
                        &json!({"id": id, "object": "response", "deleted": true}),
                        &[],
                    ),
                    None => not_found(&format!("Response with id '{id}' not found."), None, None),
                }
            }
            _ => error(405, "Method not allowed", "invalid_request_error", None, n),
        };
    }
    if *method != http::Method::POST {
        return error(405, "Method not allowed", "invalid_request_error", None, n);
    }
    create(stored, frame_delay, body, n).await
}

async fn create(
    stored: &Stored,
    frame_delay: Duration,
    body: &Value,
    n: u64,
) -> Response<MockBody> {
    let Some(req) = body.as_object() else {
        return invalid(
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return invalid(
            "Missing required parameter: 'model'.",
            Some("model"),
            Some("missing_required_parameter"),
        );
    };
    let input: Vec<Value> = match req.get("input") {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user", "content": s})],
        Some(Value::Array(items)) => items.clone(),
        None => {
            return invalid(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            );
        }
        Some(_) => {
            return invalid(
                "Invalid type for 'input': expected one of a string or an array of input items.",
                Some("input"),
                Some("invalid_type"),
            );
        }
    };
    let mut conversation = Vec::new();
    if let Some(prev) = req.get("previous_response_id").and_then(Value::as_str) {
        match stored.get(prev) {
            Some((_, items)) => conversation = items,
            None => {
                return not_found(
                    &format!("Previous response with id '{prev}' not found."),
                    Some("previous_response_id"),
                    Some("previous_response_not_found"),
                );
            }
        }
    }
    for (i, item) in input.iter().enumerate() {
        if let Some(refused) = check_item(item, i, &conversation, &input[..i]) {
            return refused;
        }
    }
    conversation.extend(input.iter().cloned());
    let mut tools = Vec::new();
    for (i, t) in req
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match (
            t.get("type").and_then(Value::as_str),
            t.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => tools.push(name.to_owned()),
            (Some("function"), None) => {
                return invalid(
                    &format!("Missing required parameter: 'tools[{i}].name'."),
                    Some(&format!("tools[{i}].name")),
                    Some("missing_required_parameter"),
                );
            }
            _ => {}
        }
    }
    let forced = match req.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => Some(String::new()),
        Some(Value::Object(o)) => o.get("name").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    let last = conversation.last().map(item_text).unwrap_or_default();
    let plan = match scenario::instructed_call(&last) {
        Some(call) => scenario::Plan {
            outcome: Outcome::ToolCalls(vec![call]),
            delay: Duration::ZERO,
        },
        None => scenario::plan(model, &last, &tools, forced.as_deref()),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let store = req.get("store").and_then(Value::as_bool).unwrap_or(true);
    let max_output = req.get("max_output_tokens").and_then(Value::as_u64);
    let id = scenario::id("resp_", n);
    let input_tokens = tokens(&Value::Array(conversation.clone()).to_string());
    let response = Answer {
        id: id.clone(),
        model: model.to_owned(),
        created_at: now(),
        echo: echo(req),
        input_tokens,
    };
    let (output, output_tokens, incomplete) = match plan.outcome {
        Outcome::Error(status) => return status_error(status, model, n),
        Outcome::Text(mut text) => {
            let mut incomplete = false;
            if let Some(max) = max_output
                && tokens(&text) > max
            {
                text = text
                    .chars()
                    .take(usize::try_from(max * 4).unwrap_or(0))
                    .collect();
                incomplete = true;
            }
            let t = tokens(&text);
            let item = json!({"id": scenario::id("msg_", n), "type": "message", "status": if incomplete {"incomplete"} else {"completed"}, "role": "assistant",
                              "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]});
            (vec![item], t, incomplete)
        }
        Outcome::ToolCalls(calls) => {
            let t = calls
                .iter()
                .map(|c| tokens(&c.name) + tokens(&c.arguments))
                .sum();
            let items = calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let k = n * 10 + i as u64;
                    json!({"id": scenario::id("fc_", k), "type": "function_call", "status": "completed",
                           "arguments": c.arguments, "call_id": scenario::id("call_", k), "name": c.name})
                })
                .collect();
            (items, t, false)
        }
        Outcome::DropMidstream | Outcome::ErrorMidstream => {
            let failing = plan.outcome == Outcome::ErrorMidstream;
            let frames = response.failing_stream(failing);
            let end = if failing {
                StreamEnd::Complete
            } else {
                StreamEnd::Abort
            };
            return sse_response(frames, frame_delay, end, &[]);
        }
    };
    let status = if incomplete {
        "incomplete"
    } else {
        "completed"
    };
    let object = response.object(status, &output, Some(output_tokens), incomplete);
    if store && let Ok(mut m) = stored.0.lock() {
        let mut items = conversation;
        items.extend(output.iter().cloned());
        m.insert(id, (object.clone(), items));
    }
    if !stream {
        return json_response(200, &object, &[]);
    }
    let frames = response.stream(&output, &object);
    sse_response(frames, frame_delay, StreamEnd::Complete, &[])
}

/// Refuses an input item as OpenAI does.
fn check_item(
    item: &Value,
    i: usize,
    before: &[Value],
    earlier: &[Value],
) -> Option<Response<MockBody>> {
    let kind = match item.get("type").and_then(Value::as_str) {
        Some(k) => k,
        None if item.get("role").is_some() => "message",
        None => {
            return Some(invalid(
                &format!("Missing required parameter: 'input[{i}].type'."),
                Some(&format!("input[{i}].type")),
                Some("missing_required_parameter"),
            ));
        }
    };
    match kind {
        "message" => {
            let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
            if !["user", "assistant", "system", "developer"].contains(&role) {
                return Some(invalid(
                    &format!(
                        "Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and 'user'."
                    ),
                    Some(&format!("input[{i}].role")),
                    Some("invalid_value"),
                ));
            }
            if let Some(parts) = item.get("content").and_then(Value::as_array) {
                for (j, p) in parts.iter().enumerate() {
                    let t = p.get("type").and_then(Value::as_str).unwrap_or_default();
                    let ok = match role {
                        "assistant" => ["output_text", "refusal"].contains(&t),
                        _ => ["input_text", "input_image", "input_file"].contains(&t),
                    };
                    if !ok {
                        return Some(invalid(
                            &format!(
                                "Invalid value: '{t}'. Supported values are: 'input_text', 'input_image', 'output_text', 'refusal', 'input_file', 'computer_screenshot', and 'summary_text'."
                            ),
                            Some(&format!("input[{i}].content[{j}].type")),
                            Some("invalid_value"),
                        ));
                    }
                }
            }
            None
        }
        "function_call" | "reasoning" => None,
        "function_call_output" => {
            let call_id = item
                .get("call_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let answered = before.iter().chain(earlier).any(|p| {
                p.get("type").and_then(Value::as_str) == Some("function_call")
                    && p.get("call_id").and_then(Value::as_str) == Some(call_id)
            });
            (!answered).then(|| {
                invalid(
                    &format!("No tool call found for function call output with call_id {call_id}."),
                    Some("input"),
                    None,
                )
            })
        }
        other => Some(invalid(
            &format!(
                "Invalid value: '{other}'. Supported values are: 'message', 'function_call', 'function_call_output' and 'reasoning'."
            ),
            Some(&format!("input[{i}].type")),
            Some("invalid_value"),
        )),
    }
}

/// The text an item carries: a message's text, a call's output.
fn item_text(item: &Value) -> String {
    if let Some(out) = item.get("output") {
        return crate::openai::content_text(out);
    }
    crate::openai::content_text(item.get("content").unwrap_or(&Value::Null))
}

/// What the response object repeats of the request.
fn echo(req: &Map<String, Value>) -> Map<String, Value> {
    let mut e = Map::new();
    let get = |k: &str, d: Value| req.get(k).cloned().unwrap_or(d);
    e.insert("instructions".into(), get("instructions", Value::Null));
    e.insert(
        "max_output_tokens".into(),
        get("max_output_tokens", Value::Null),
    );
    e.insert("metadata".into(), get("metadata", json!({})));
    e.insert(
        "parallel_tool_calls".into(),
        get("parallel_tool_calls", json!(true)),
    );
    e.insert(
        "previous_response_id".into(),
        get("previous_response_id", Value::Null),
    );
    e.insert(
        "reasoning".into(),
        get("reasoning", json!({"effort": null, "summary": null})),
    );
    e.insert("store".into(), get("store", json!(true)));
    e.insert("temperature".into(), get("temperature", json!(1.0)));
    e.insert(
        "text".into(),
        get("text", json!({"format": {"type": "text"}})),
    );
    e.insert("tool_choice".into(), get("tool_choice", json!("auto")));
    e.insert("tools".into(), get("tools", json!([])));
    e.insert("top_p".into(), get("top_p", json!(1.0)));
    e.insert("truncation".into(), get("truncation", json!("disabled")));
    e.insert("user".into(), get("user", Value::Null));
    e
}

struct Answer {
    id: String,
    model: String,
    created_at: u64,
    echo: Map<String, Value>,
    input_tokens: u64,
}

impl Answer {
    fn object(
        &self,
        status: &str,
        output: &[Value],
        output_tokens: Option<u64>,
        incomplete: bool,
    ) -> Value {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("object".into(), json!("response"));
        o.insert("created_at".into(), json!(self.created_at));
        o.insert("status".into(), json!(status));
        o.insert("background".into(), json!(false));
        o.insert("error".into(), Value::Null);
        o.insert(
            "incomplete_details".into(),
            if incomplete {
                json!({"reason": "max_output_tokens"})
            } else {
                Value::Null
            },
        );
        o.insert("model".into(), json!(self.model));
        o.insert("output".into(), Value::Array(output.to_vec()));
        o.insert("service_tier".into(), json!("default"));
        for (k, v) in &self.echo {
            o.insert(k.clone(), v.clone());
        }
        o.insert(
            "usage".into(),
            match output_tokens {
                Some(out) => json!({
                    "input_tokens": self.input_tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": out,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": self.input_tokens + out,
                }),
                None => Value::Null,
            },
        );
        Value::Object(o)
    }

    fn stream(&self, output: &[Value], done: &Value) -> Vec<SseFrame> {
        let mut seq = 0u64;
        let mut frames = Vec::new();
        let mut push = |kind: &str, mut v: Value| {
            v["type"] = json!(kind);
            v["sequence_number"] = json!(seq);
            seq += 1;
            frames.push(SseFrame::event(kind, v.to_string()));
        };
        let start = self.object("in_progress", &[], None, false);
        push("response.created", json!({"response": start}));
        push("response.in_progress", json!({"response": start}));
        for (i, item) in output.iter().enumerate() {
            let id = item["id"].clone();
            match item["type"].as_str() {
                Some("message") => {
                    let text = item["content"][0]["text"].as_str().unwrap_or_default();
                    let mut added = item.clone();
                    added["status"] = json!("in_progress");
                    added["content"] = json!([]);
                    push(
                        "response.output_item.added",
                        json!({"output_index": i, "item": added}),
                    );
                    push(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": i, "content_index": 0,
                        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
                    );
                    for piece in scenario::pieces(text) {
                        push(
                            "response.output_text.delta",
                            json!({"item_id": id, "output_index": i, "content_index": 0, "delta": piece, "logprobs": []}),
                        );
                    }
                    push(
                        "response.output_text.done",
                        json!({"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []}),
                    );
                    push(
                        "response.content_part.done",
                        json!({"item_id": id, "output_index": i, "content_index": 0, "part": item["content"][0]}),
                    );
                }
                _ => {
                    let arguments = item["arguments"].as_str().unwrap_or_default();
                    let mut added = item.clone();
                    added["status"] = json!("in_progress");
                    added["arguments"] = json!("");
                    push(
                        "response.output_item.added",
                        json!({"output_index": i, "item": added}),
                    );
                    for f in scenario::fragments(arguments) {
                        push(
                            "response.function_call_arguments.delta",
                            json!({"item_id": id, "output_index": i, "delta": f}),
                        );
                    }
                    push(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": i, "name": item["name"], "arguments": arguments}),
                    );
                }
            }
            push(
                "response.output_item.done",
                json!({"output_index": i, "item": item}),
            );
        }
        let kind = if done["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        push(kind, json!({"response": done}));
        frames
    }

    /// A stream cut after some text, ending with `response.failed` when `failing`.
    fn failing_stream(&self, failing: bool) -> Vec<SseFrame> {
        let id = scenario::id("msg_", 0);
        let start = self.object("in_progress", &[], None, false);
        let mut frames = vec![
            SseFrame::event("response.created", json!({"type": "response.created", "sequence_number": 0, "response": start}).to_string()),
            SseFrame::event("response.output_item.added", json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}).to_string()),
            SseFrame::event("response.output_text.delta", json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": id, "output_index": 0, "content_index": 0, "delta": "Partial ", "logprobs": []}).to_string()),
        ];
        if failing {
            let mut failed = self.object("failed", &[], None, false);
            failed["error"] = json!({"code": "server_error", "message": "The server had an error while processing your request."});
            frames.push(SseFrame::event(
                "response.failed",
                json!({"type": "response.failed", "sequence_number": 3, "response": failed})
                    .to_string(),
            ));
        }
        frames
    }
}

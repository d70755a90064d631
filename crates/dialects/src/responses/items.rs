//! Responses API items: the conversation as the Responses API writes it — `message` items
//! (with `input_text`, `input_image`, `output_text` and `refusal` parts), `function_call`,
//! `function_call_output` and `reasoning` items — read into canonical messages, and canonical
//! content written back as items (a client's output items; an upstream's input items).

use portcullis_core::{GatewayError, ImageSource, Message, Part, Role};
use serde_json::{Map, Value, json};

use super::response::ResponseContext;

/// Decodes Responses items into canonical messages appended to `out`; `path` names the items
/// in errors (`input`). Consecutive assistant items (a message, reasoning, function calls) are
/// one assistant turn; a function call's output is a tool message.
pub fn decode_items(
    items: &[Value],
    path: &str,
    out: &mut Vec<Message>,
) -> Result<(), GatewayError> {
    let mut assistant: Option<Message> = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(invalid(&at, "expected an object"));
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None | Some(Value::Null) if obj.contains_key("role") => "message",
            None | Some(Value::Null) => {
                return Err(missing(&format!("{at}.type")));
            }
            Some(_) => return Err(invalid(&format!("{at}.type"), "expected a string")),
        };
        match kind {
            "message" => {
                let role = match obj.get("role").and_then(Value::as_str) {
                    Some("user") => Role::User,
                    Some("system") => Role::System,
                    Some("developer") => Role::Developer,
                    Some("assistant") => Role::Assistant,
                    Some(other) => {
                        return Err(invalid(
                            &format!("{at}.role"),
                            &format!(
                                "`{other}` is not one of `user`, `assistant`, `system`, `developer`"
                            ),
                        ));
                    }
                    None => return Err(missing(&format!("{at}.role"))),
                };
                let content = decode_content(obj.get("content"), &format!("{at}.content"))?;
                if role == Role::Assistant {
                    assistant_turn(&mut assistant).content.extend(content);
                } else {
                    flush(&mut assistant, out);
                    out.push(Message {
                        role,
                        content,
                        name: None,
                    });
                }
            }
            "function_call" => {
                let call_id = required_str(obj, "call_id", &at)?;
                let name = required_str(obj, "name", &at)?;
                let arguments = match obj.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(v) => v.to_string(),
                };
                assistant_turn(&mut assistant).content.push(Part::ToolCall {
                    id: call_id,
                    name,
                    arguments,
                    cache_control: None,
                });
            }
            "function_call_output" => {
                flush(&mut assistant, out);
                let call_id = required_str(obj, "call_id", &at)?;
                let content = match obj.get("output") {
                    Some(Value::String(s)) => vec![Part::text(s.clone())],
                    Some(Value::Array(parts)) => decode_parts(parts, &format!("{at}.output"))?,
                    None | Some(Value::Null) => return Err(missing(&format!("{at}.output"))),
                    Some(_) => {
                        return Err(invalid(
                            &format!("{at}.output"),
                            "expected a string or an array of content parts",
                        ));
                    }
                };
                out.push(Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id,
                        content,
                        is_error: false,
                        cache_control: None,
                    }],
                    name: None,
                });
            }
            "reasoning" => {
                let text = reasoning_text(obj);
                let encrypted = obj
                    .get("encrypted_content")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let part = match (text.is_empty(), encrypted) {
                    (false, signature) => Part::Thinking { text, signature },
                    (true, Some(data)) => Part::RedactedThinking { data },
                    (true, None) => continue,
                };
                assistant_turn(&mut assistant).content.push(part);
            }
            other => {
                return Err(GatewayError::invalid_request(format!(
                    "Invalid value for `{at}.type`: `{other}` is not supported; the supported item types are `message`, `function_call`, `function_call_output` and `reasoning`"
                ))
                .with_param(format!("{at}.type"))
                .with_code("invalid_value"));
            }
        }
    }
    flush(&mut assistant, out);
    Ok(())
}

fn assistant_turn(assistant: &mut Option<Message>) -> &mut Message {
    assistant.get_or_insert_with(|| Message {
        role: Role::Assistant,
        content: Vec::new(),
        name: None,
    })
}

fn flush(assistant: &mut Option<Message>, out: &mut Vec<Message>) {
    if let Some(m) = assistant.take() {
        out.push(m);
    }
}

/// A reasoning item's text: its `content` (`reasoning_text` parts), else its summary.
fn reasoning_text(obj: &Map<String, Value>) -> String {
    let joined = |key: &str| -> String {
        obj.get(key)
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n")
            })
            .unwrap_or_default()
    };
    let content = joined("content");
    if content.is_empty() {
        joined("summary")
    } else {
        content
    }
}

fn decode_content(content: Option<&Value>, at: &str) -> Result<Vec<Part>, GatewayError> {
    match content {
        Some(Value::String(s)) => Ok(vec![Part::text(s.clone())]),
        Some(Value::Array(parts)) => decode_parts(parts, at),
        None | Some(Value::Null) => Err(missing(at)),
        Some(_) => Err(invalid(
            at,
            "expected a string or an array of content parts",
        )),
    }
}

fn decode_parts(parts: &[Value], at: &str) -> Result<Vec<Part>, GatewayError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let Some(obj) = p.as_object() else {
            return Err(invalid(&at, "expected an object"));
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        let part = match kind {
            "input_text" | "output_text" | "text" => Part::text(required_str(obj, "text", &at)?),
            "refusal" => Part::Refusal {
                text: required_str(obj, "refusal", &at)?,
            },
            "input_image" => match obj.get("image_url").and_then(Value::as_str) {
                Some(url) => Part::Image {
                    source: ImageSource::from_url(url.to_owned()),
                    detail: obj
                        .get("detail")
                        .and_then(Value::as_str)
                        .filter(|d| *d != "auto")
                        .map(str::to_owned),
                    cache_control: None,
                },
                None => {
                    return Err(GatewayError::invalid_request(format!(
                        "Invalid `{at}`: only images given by `image_url` (a URL or a data URL) are supported; `file_id` needs the provider's file storage"
                    ))
                    .with_param(format!("{at}.image_url"))
                    .with_code("unsupported_value"));
                }
            },
            "" => return Err(missing(&format!("{at}.type"))),
            other => {
                return Err(GatewayError::invalid_request(format!(
                    "Invalid value for `{at}.type`: `{other}` is not supported; the supported content types are `input_text`, `input_image`, `output_text` and `refusal`"
                ))
                .with_param(format!("{at}.type"))
                .with_code("invalid_value"));
            }
        };
        out.push(part);
    }
    Ok(out)
}

fn required_str(obj: &Map<String, Value>, key: &str, at: &str) -> Result<String, GatewayError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(missing(&format!("{at}.{key}"))),
        Some(_) => Err(invalid(&format!("{at}.{key}"), "expected a string")),
    }
}

pub(crate) fn missing(param: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Missing required parameter: `{param}`"))
        .with_param(param.to_owned())
        .with_code("missing_required_parameter")
}

pub(crate) fn invalid(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid_request(format!("Invalid value for `{param}`: {why}"))
        .with_param(param.to_owned())
        .with_code("invalid_value")
}

/// The output items of a complete answer's content, named after `ctx`'s response.
pub fn encode_output_items(ctx: &ResponseContext, content: &[Part]) -> Vec<Value> {
    let mut items = Vec::new();
    let mut message: Vec<Value> = Vec::new();
    let close = |message: &mut Vec<Value>, items: &mut Vec<Value>| {
        if !message.is_empty() {
            let id = ctx.item_id("msg", items.len());
            items.push(message_item(&id, std::mem::take(message), "completed"));
        }
    };
    for part in content {
        match part {
            Part::Text { text, .. } => message.push(output_text(text)),
            Part::Refusal { text } => message.push(refusal(text)),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                close(&mut message, &mut items);
                let item_id = ctx.item_id("fc", items.len());
                items.push(function_call_item(
                    &item_id,
                    id,
                    name,
                    arguments,
                    "completed",
                ));
            }
            Part::Thinking { text, signature } => {
                close(&mut message, &mut items);
                let item_id = ctx.item_id("rs", items.len());
                items.push(reasoning_item(&item_id, text, signature.as_deref()));
            }
            Part::RedactedThinking { data } => {
                close(&mut message, &mut items);
                let item_id = ctx.item_id("rs", items.len());
                items.push(reasoning_item(&item_id, "", Some(data)));
            }
            Part::Image { .. } | Part::ToolResult { .. } | Part::Opaque { .. } => {}
        }
    }
    close(&mut message, &mut items);
    items
}

/// An `output_text` content part.
pub(crate) fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `refusal` content part.
pub(crate) fn refusal(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

/// An assistant `message` output item.
pub(crate) fn message_item(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A `function_call` output item.
pub(crate) fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id, "name": name})
}

/// A `reasoning` output item: the text as `reasoning_text` content, a signature or encrypted
/// reasoning as `encrypted_content`.
pub(crate) fn reasoning_item(id: &str, text: &str, encrypted: Option<&str>) -> Value {
    let mut item = json!({"id": id, "type": "reasoning", "summary": []});
    if !text.is_empty() {
        item["content"] = json!([{"type": "reasoning_text", "text": text}]);
    }
    if let Some(e) = encrypted {
        item["encrypted_content"] = Value::String(e.to_owned());
    }
    item
}

/// The input items of canonical messages, for a Responses upstream. Instructions stay
/// messages (`system`, `developer`); tool results become `function_call_output` items
/// wherever they were; reasoning is left out (an upstream only takes back its own).
pub(crate) fn encode_input(messages: &[Message]) -> Vec<Value> {
    let mut items = Vec::new();
    for m in messages {
        match m.role {
            Role::Assistant => {
                let mut content = Vec::new();
                for part in &m.content {
                    match part {
                        Part::Text { text, .. } => content.push(output_text(text)),
                        Part::Refusal { text } => content.push(refusal(text)),
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                            ..
                        } => {
                            flush_assistant(&mut content, &mut items);
                            items.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments}));
                        }
                        _ => {}
                    }
                }
                flush_assistant(&mut content, &mut items);
            }
            role => {
                let role = match role {
                    Role::System => "system",
                    Role::Developer => "developer",
                    _ => "user",
                };
                let mut content = Vec::new();
                for part in &m.content {
                    match part {
                        Part::Text { text, .. } => {
                            content.push(json!({"type": "input_text", "text": text}));
                        }
                        Part::Image { source, detail, .. } => content.push(json!({
                            "type": "input_image",
                            "image_url": source.to_url(),
                            "detail": detail.as_deref().unwrap_or("auto"),
                        })),
                        Part::ToolResult {
                            call_id,
                            content: result,
                            ..
                        } => items.push(json!({
                            "type": "function_call_output",
                            "call_id": call_id,
                            "output": result_text(result),
                        })),
                        _ => {}
                    }
                }
                if !content.is_empty() {
                    items.push(json!({"type": "message", "role": role, "content": content}));
                }
            }
        }
    }
    items
}

fn flush_assistant(content: &mut Vec<Value>, items: &mut Vec<Value>) {
    if !content.is_empty() {
        items.push(
            json!({"type": "message", "role": "assistant", "content": std::mem::take(content)}),
        );
    }
}

/// A tool result's text.
fn result_text(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        if let Part::Text { text, .. } = p {
            out.push_str(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assistant_items_form_one_turn_and_outputs_are_tool_messages() {
        let items = json!([
            {"role": "user", "content": "weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "think"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"P\"}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
        ]);
        let mut out = Vec::new();
        decode_items(items.as_array().unwrap(), "input", &mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].role, Role::User);
        assert_eq!(out[1].role, Role::Assistant);
        assert_eq!(out[1].content.len(), 3);
        assert!(matches!(&out[1].content[0], Part::Thinking { text, .. } if text == "think"));
        assert_eq!(out[2].role, Role::Tool);
        assert!(matches!(&out[3].content[0], Part::ToolResult { call_id, .. } if call_id == "c2"));
    }

    #[test]
    fn bad_items_name_their_place() {
        let mut out = Vec::new();
        let e = decode_items(&[json!({"type": "web_search_call"})], "input", &mut out).unwrap_err();
        assert_eq!(e.param(), Some("input[0].type"));
        let e = decode_items(
            &[json!({"role": "user", "content": [{"type": "input_file", "file_id": "f"}]})],
            "input",
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("input[0].content[0].type"));
        let e = decode_items(
            &[json!({"type": "function_call", "name": "x"})],
            "input",
            &mut out,
        )
        .unwrap_err();
        assert_eq!(e.param(), Some("input[0].call_id"));
    }

    #[test]
    fn canonical_messages_become_input_items() {
        let mut msgs = Vec::new();
        decode_items(
            json!([
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ])
            .as_array()
            .unwrap(),
            "input",
            &mut msgs,
        )
        .unwrap();
        let items = encode_input(&msgs);
        let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message",
                "message",
                "message",
                "function_call",
                "function_call_output"
            ]
        );
        assert_eq!(items[0]["role"], "developer");
        assert_eq!(items[4]["output"], "ok");
    }
}

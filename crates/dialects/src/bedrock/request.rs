//! Converse requests (`ConverseRequest`, the same body for `converse-stream`) encoded from the
//! canonical model. The model is not in the body: it is in the URL.

use portcullis_core::{ChatRequest, GatewayError, ImageSource, Message, Part, Role, ToolChoice};
use serde_json::{Map, Value, json};

use super::is_anthropic;

/// Encodes `req`, to be served by `model`, as a Converse body.
pub fn encode_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_request(
            "Bedrock models give one choice per request; `n` must be 1",
        )
        .with_param("n"));
    }
    let anthropic = is_anthropic(model);
    let mut body = Map::new();
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut has_tool_blocks = false;
    for message in &req.messages {
        if message.role.is_instruction() {
            for part in &message.content {
                match part {
                    Part::Text {
                        text,
                        cache_control,
                    } => {
                        if !text.is_empty() {
                            system.push(json!({ "text": text }));
                        }
                        if cache_control.is_some() {
                            system.push(cache_point());
                        }
                    }
                    other => return Err(unsupported(other, "system prompts")),
                }
            }
            continue;
        }
        let role = match message.role {
            Role::Assistant => "assistant",
            _ => "user",
        };
        let blocks = encode_blocks(message, anthropic, &mut has_tool_blocks)?;
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["content"].as_array_mut() {
                    existing.extend(blocks);
                }
            }
            _ => messages.push(json!({ "role": role, "content": blocks })),
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(req);
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    let none = req.tool_choice == Some(ToolChoice::None);
    if !req.tools.is_empty() && (!none || has_tool_blocks) {
        let mut tools = Vec::with_capacity(req.tools.len());
        for t in &req.tools {
            let mut spec = Map::new();
            spec.insert("name".into(), Value::String(t.name.clone()));
            if let Some(desc) = t.description.as_deref().filter(|d| !d.is_empty()) {
                spec.insert("description".into(), Value::String(desc.to_owned()));
            }
            let schema = if t.parameters.is_null() {
                json!({ "type": "object", "properties": {} })
            } else {
                t.parameters.to_value()
            };
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            tools.push(json!({ "toolSpec": spec }));
            if t.cache_control.is_some() {
                tools.push(cache_point());
            }
        }
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(tools));
        let choice = match &req.tool_choice {
            Some(ToolChoice::Required) => Some(json!({ "any": {} })),
            Some(ToolChoice::Tool(name)) => Some(json!({ "tool": { "name": name } })),
            Some(ToolChoice::Auto) => Some(json!({ "auto": {} })),
            Some(ToolChoice::None) | None => None,
        };
        if let Some(choice) = choice {
            config.insert("toolChoice".into(), choice);
        }
        body.insert("toolConfig".into(), Value::Object(config));
    } else if has_tool_blocks {
        return Err(GatewayError::invalid_request(
            "The conversation holds tool calls or results but the request declares no tools; \
             Bedrock needs the tools they use",
        )
        .with_param("tools"));
    }
    let additional = additional_fields(req, anthropic);
    if !additional.is_empty() {
        body.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

fn cache_point() -> Value {
    json!({ "cachePoint": { "type": "default" } })
}

fn unsupported(part: &Part, place: &str) -> GatewayError {
    let kind = match part {
        Part::Opaque { value, .. } => value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        Part::Image { .. } => "image".to_owned(),
        Part::ToolCall { .. } => "tool call".to_owned(),
        Part::ToolResult { .. } => "tool result".to_owned(),
        _ => "this".to_owned(),
    };
    GatewayError::invalid_request(format!(
        "Content of type `{kind}` cannot be sent to a Bedrock model in {place}"
    ))
    .with_param("messages")
}

fn encode_blocks(
    message: &Message,
    anthropic: bool,
    has_tool_blocks: &mut bool,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(message.content.len());
    for part in &message.content {
        match part {
            Part::Text {
                text,
                cache_control,
            } => {
                // Bedrock refuses blank text blocks.
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
                if cache_control.is_some() && !out.is_empty() {
                    out.push(cache_point());
                }
            }
            Part::Refusal { text } if !text.is_empty() => out.push(json!({ "text": text })),
            Part::Refusal { .. } => {}
            Part::Image {
                source,
                cache_control,
                ..
            } => {
                out.push(image(source)?);
                if cache_control.is_some() {
                    out.push(cache_point());
                }
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                *has_tool_blocks = true;
                let input = if arguments.trim().is_empty() {
                    json!({})
                } else {
                    match serde_json::from_str::<Value>(arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            return Err(GatewayError::invalid_request(format!(
                                "The arguments of the call to tool `{name}` are not a JSON object"
                            ))
                            .with_param("messages"));
                        }
                    }
                };
                out.push(json!({ "toolUse": { "toolUseId": id, "name": name, "input": input } }));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                cache_control,
            } => {
                *has_tool_blocks = true;
                let mut blocks = Vec::with_capacity(content.len().max(1));
                for p in content {
                    match p {
                        Part::Text { text, .. } => blocks.push(json!({ "text": text })),
                        Part::Image { source, .. } => blocks.push(image(source)?),
                        other => return Err(unsupported(other, "tool results")),
                    }
                }
                if blocks.is_empty() {
                    blocks.push(json!({ "text": "" }));
                }
                let status = if *is_error { "error" } else { "success" };
                out.push(json!({ "toolResult": {
                    "toolUseId": call_id, "content": blocks, "status": status
                } }));
                if cache_control.is_some() {
                    out.push(cache_point());
                }
            }
            // Claude's reasoning goes back signed, as Anthropic's API takes it; other families
            // neither produce nor read it.
            Part::Thinking {
                text,
                signature: Some(signature),
            } if anthropic => out.push(json!({ "reasoningContent": {
                "reasoningText": { "text": text, "signature": signature }
            } })),
            Part::RedactedThinking { data } if anthropic => {
                out.push(json!({ "reasoningContent": { "redactedContent": data } }));
            }
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
            Part::Opaque { .. } => return Err(unsupported(part, "messages")),
        }
    }
    Ok(out)
}

/// An image block: bytes (base64 in JSON) or an `s3://` location; Bedrock fetches nothing else.
fn image(source: &ImageSource) -> Result<Value, GatewayError> {
    match source {
        ImageSource::Base64 { media_type, data } => {
            let format = image_format(media_type).ok_or_else(|| {
                GatewayError::invalid_request(format!(
                    "Bedrock models take PNG, JPEG, GIF or WebP images, not `{media_type}`"
                ))
                .with_param("messages")
            })?;
            Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
        }
        ImageSource::Url(url) if url.starts_with("s3://") => {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let ext = path
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            let format = match ext.as_str() {
                "png" => "png",
                "gif" => "gif",
                "webp" => "webp",
                _ => "jpeg",
            };
            Ok(json!({ "image": { "format": format, "source": { "s3Location": { "uri": url } } } }))
        }
        ImageSource::Url(_) => Err(GatewayError::invalid_request(
            "Bedrock models take images as data (a data: URL or base64), or from S3 \
             (s3://…); they fetch no other URL",
        )
        .with_param("messages")),
    }
}

fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn inference_config(req: &ChatRequest) -> Map<String, Value> {
    let mut c = Map::new();
    if let Some(n) = req.max_tokens {
        c.insert("maxTokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        c.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        c.insert("topP".into(), p.into());
    }
    if !req.stop.is_empty() {
        c.insert("stopSequences".into(), json!(req.stop));
    }
    c
}

/// Claude's thinking budget for an OpenAI-style effort (1024 is the least Claude takes).
fn effort_budget(effort: &str) -> u32 {
    match effort {
        "minimal" => 1024,
        "low" => 2048,
        "medium" => 8192,
        _ => 24576,
    }
}

fn additional_fields(req: &ChatRequest, anthropic: bool) -> Map<String, Value> {
    let mut a = Map::new();
    if !anthropic {
        return a;
    }
    if let Some(k) = req.top_k {
        a.insert("top_k".into(), k.into());
    }
    if let Some(r) = req.reasoning.as_ref().filter(|r| r.enabled) {
        let budget = r
            .budget_tokens
            .or_else(|| r.effort.as_deref().map(effort_budget))
            .unwrap_or(effort_budget("medium"));
        a.insert(
            "thinking".into(),
            json!({ "type": "enabled", "budget_tokens": budget }),
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{RawJson, Reasoning, ToolDefinition};

    fn encode(req: &ChatRequest, model: &str) -> Value {
        serde_json::from_slice(&encode_request(req, model).unwrap()).unwrap()
    }

    fn call(id: &str, name: &str, args: &str) -> Part {
        Part::ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: args.into(),
            cache_control: None,
        }
    }

    fn result(id: &str, text: &str, is_error: bool) -> Message {
        Message {
            role: Role::Tool,
            content: vec![Part::ToolResult {
                call_id: id.into(),
                content: vec![Part::text(text)],
                is_error,
                cache_control: None,
            }],
            name: None,
        }
    }

    fn tool(name: &str) -> ToolDefinition {
        ToolDefinition {
            name: name.into(),
            description: Some("d".into()),
            parameters: RawJson::from(json!({"type": "object"})),
            strict: None,
            cache_control: None,
        }
    }

    #[test]
    fn parallel_calls_and_their_results_go_as_one_turn_each() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::System, "Be brief."),
                Message::text(Role::User, "Weather?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        call("t1", "weather", r#"{"city":"Paris"}"#),
                        call("t2", "time", ""),
                    ],
                    name: None,
                },
                result("t1", "21C", false),
                result("t2", "boom", true),
            ],
            tools: vec![tool("weather"), tool("time")],
            tool_choice: Some(ToolChoice::Tool("weather".into())),
            max_tokens: Some(50),
            temperature: Some(0.5),
            top_p: Some(0.9),
            top_k: Some(5),
            stop: vec!["END".into()],
            ..ChatRequest::default()
        };
        let body = encode(&req, "mistral.mistral-large-2407-v1:0");
        assert_eq!(body["system"], json!([{"text": "Be brief."}]));
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{body}");
        assert_eq!(
            messages[1]["content"][1],
            json!({"toolUse": {"toolUseId": "t2", "name": "time", "input": {}}})
        );
        assert_eq!(
            messages[2]["content"],
            json!([
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "21C"}], "status": "success"}},
                {"toolResult": {"toolUseId": "t2", "content": [{"text": "boom"}], "status": "error"}}
            ])
        );
        assert_eq!(
            body["inferenceConfig"],
            json!({"maxTokens": 50, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]})
        );
        assert_eq!(
            body["toolConfig"]["toolChoice"],
            json!({"tool": {"name": "weather"}})
        );
        assert_eq!(
            body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"],
            json!({"json": {"type": "object"}})
        );
        assert!(
            body.get("additionalModelRequestFields").is_none(),
            "top_k is Claude's"
        );
        let claude = encode(&req, "us.anthropic.claude-sonnet-4-20250514-v1:0");
        assert_eq!(claude["additionalModelRequestFields"], json!({"top_k": 5}));
    }

    #[test]
    fn tool_choice_none_leaves_the_tools_out_unless_the_conversation_uses_them() {
        let mut req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi")],
            tools: vec![tool("weather")],
            tool_choice: Some(ToolChoice::None),
            ..ChatRequest::default()
        };
        assert!(
            encode(&req, "amazon.nova-pro-v1:0")
                .get("toolConfig")
                .is_none()
        );
        req.messages.push(Message {
            role: Role::Assistant,
            content: vec![call("t1", "weather", "{}")],
            name: None,
        });
        req.messages.push(result("t1", "sunny", false));
        let body = encode(&req, "amazon.nova-pro-v1:0");
        assert!(body["toolConfig"].get("toolChoice").is_none());
        assert_eq!(
            body["toolConfig"]["tools"][0]["toolSpec"]["name"],
            "weather"
        );
        req.tools.clear();
        assert_eq!(
            encode_request(&req, "amazon.nova-pro-v1:0")
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }

    #[test]
    fn images_go_as_bytes_or_from_s3_and_thinking_back_to_claude_only() {
        let image = |source| Part::Image {
            source,
            detail: None,
            cache_control: None,
        };
        let req = ChatRequest {
            messages: vec![
                Message {
                    role: Role::User,
                    content: vec![
                        Part::text("What is this?"),
                        image(ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        }),
                        image(ImageSource::Url("s3://bucket/cat.webp".into())),
                    ],
                    name: None,
                },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Thinking {
                            text: "hmm".into(),
                            signature: Some("sig".into()),
                        },
                        Part::text("A cat."),
                    ],
                    name: None,
                },
                Message::text(Role::User, "Sure?"),
            ],
            reasoning: Some(Reasoning {
                enabled: true,
                effort: Some("low".into()),
                budget_tokens: None,
            }),
            ..ChatRequest::default()
        };
        let body = encode(&req, "anthropic.claude-3-7-sonnet-20250219-v1:0");
        assert_eq!(
            body["messages"][0]["content"][1],
            json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
        );
        assert_eq!(
            body["messages"][0]["content"][2]["image"]["source"]["s3Location"]["uri"],
            "s3://bucket/cat.webp"
        );
        assert_eq!(
            body["messages"][1]["content"][0]["reasoningContent"]["reasoningText"],
            json!({"text": "hmm", "signature": "sig"})
        );
        assert_eq!(
            body["additionalModelRequestFields"]["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        let nova = encode(&req, "amazon.nova-lite-v1:0");
        assert_eq!(nova["messages"][1]["content"], json!([{"text": "A cat."}]));

        let web = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![image(ImageSource::Url("https://x/cat.png".into()))],
                name: None,
            }],
            ..ChatRequest::default()
        };
        assert_eq!(
            encode_request(&web, "amazon.nova-lite-v1:0")
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }
}

//! Gemini `GenerateContentRequest`s encoded from the canonical model.
//!
//! System and developer messages become the `systemInstruction`; user and tool messages are
//! `user` contents, assistant messages `model` contents, consecutive contents of one role
//! merged into one (so the results of parallel calls travel together, as Gemini wants them).
//! Tools are `functionDeclarations` whose JSON Schema goes as `parametersJsonSchema`,
//! unchanged. Tool results become `functionResponse` parts named after their call (looked up
//! by id in the conversation). The model is not in the body: it is in the URL.

use std::collections::HashMap;

use portcullis_core::{
    ChatRequest, Dialect, GatewayError, ImageSource, Message, Part, RawJson, Role, ToolChoice,
};
use serde_json::{Map, Value, json};

use super::call_signature;

/// How to encode a request for a Gemini upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct EncodeOptions {
    /// Whether `generationConfig.thinkingConfig.includeThoughts` is asked for when the request
    /// enables reasoning (the thoughts come back as thinking parts).
    pub include_thoughts: bool,
}

/// Encodes `req` as a `generateContent` / `streamGenerateContent` body.
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, GatewayError> {
    let mut body = Map::new();
    let names = call_names(&req.messages);
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for message in &req.messages {
        if message.role.is_instruction() {
            for part in &message.content {
                match part {
                    Part::Text { text, .. } => system.push(json!({ "text": text })),
                    other => {
                        return Err(unsupported(other, "system instructions"));
                    }
                }
            }
            continue;
        }
        let role = match message.role {
            Role::Assistant => "model",
            _ => "user",
        };
        let parts = encode_parts(message, &names)?;
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["parts"].as_array_mut() {
                    existing.extend(parts);
                }
            }
            _ => contents.push(json!({ "role": role, "parts": parts })),
        }
    }
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if !req.tools.is_empty() {
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), Value::String(t.name.clone()));
                if let Some(desc) = &t.description {
                    d.insert("description".into(), Value::String(desc.clone()));
                }
                if !t.parameters.is_null() {
                    d.insert("parametersJsonSchema".into(), t.parameters.to_value());
                }
                Value::Object(d)
            })
            .collect();
        body.insert(
            "tools".into(),
            json!([{ "functionDeclarations": declarations }]),
        );
    }
    if let Some(choice) = &req.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({ "mode": "AUTO" }),
            ToolChoice::None => json!({ "mode": "NONE" }),
            ToolChoice::Required => json!({ "mode": "ANY" }),
            ToolChoice::Tool(name) => json!({ "mode": "ANY", "allowedFunctionNames": [name] }),
        };
        body.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }
    let config = generation_config(req, opts);
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| GatewayError::internal(format!("encoding request: {e}")))
}

/// Every call id of the conversation and the name of the tool it called.
fn call_names(messages: &[Message]) -> HashMap<&str, &str> {
    let mut names = HashMap::new();
    for m in messages {
        for p in &m.content {
            if let Part::ToolCall { id, name, .. } = p {
                names.insert(id.as_str(), name.as_str());
            }
        }
    }
    names
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
        "Content of type `{kind}` cannot be sent to a Gemini model in {place}"
    ))
    .with_param("messages")
}

fn encode_parts(
    message: &Message,
    names: &HashMap<&str, &str>,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::with_capacity(message.content.len());
    for part in &message.content {
        match part {
            Part::Text { text, .. } => {
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            Part::Refusal { text } => out.push(json!({ "text": text })),
            Part::Image { source, .. } => out.push(image(source)),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => {
                let args = if arguments.trim().is_empty() {
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
                let mut p = json!({ "functionCall": { "name": name, "args": args } });
                if let Some(sig) = call_signature(id) {
                    p["thoughtSignature"] = Value::String(sig);
                }
                out.push(p);
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
                ..
            } => {
                let Some(name) = names.get(call_id.as_str()) else {
                    return Err(GatewayError::invalid_request(format!(
                        "The tool result for call `{call_id}` answers no tool call of the \
                         conversation; Gemini models need the called tool's name"
                    ))
                    .with_param("messages"));
                };
                let mut text = String::new();
                let mut images = Vec::new();
                for p in content {
                    match p {
                        Part::Text { text: t, .. } => text.push_str(t),
                        Part::Image { source, .. } => images.push(image(source)),
                        _ => {}
                    }
                }
                // Gemini reads `output` (or `error`) as the function's result.
                let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
                let key = if *is_error { "error" } else { "output" };
                out.push(json!({
                    "functionResponse": { "name": name, "response": { key: value } }
                }));
                out.extend(images);
            }
            // Thoughts are not sent back; Gemini keeps its reasoning in the signatures.
            Part::Thinking { .. } | Part::RedactedThinking { .. } => {}
            Part::Opaque { .. } => return Err(unsupported(part, "messages")),
        }
    }
    Ok(out)
}

fn image(source: &ImageSource) -> Value {
    match source {
        ImageSource::Base64 { media_type, data } => {
            json!({ "inlineData": { "mimeType": media_type, "data": data } })
        }
        ImageSource::Url(url) => {
            json!({ "fileData": { "mimeType": image_type(url), "fileUri": url } })
        }
    }
}

/// The MIME type of an image URL, from its extension (JPEG when it says nothing).
fn image_type(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        _ => "image/jpeg",
    }
}

/// Gemini's thinking budget for an OpenAI-style effort.
fn effort_budget(effort: &str) -> u32 {
    match effort {
        "minimal" => 512,
        "low" => 2048,
        "medium" => 8192,
        _ => 24576,
    }
}

fn generation_config(req: &ChatRequest, opts: &EncodeOptions) -> Map<String, Value> {
    let mut c = Map::new();
    if let Some(n) = req.max_tokens {
        c.insert("maxOutputTokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        c.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        c.insert("topP".into(), p.into());
    }
    if let Some(k) = req.top_k {
        c.insert("topK".into(), k.into());
    }
    if !req.stop.is_empty() {
        c.insert("stopSequences".into(), json!(req.stop));
    }
    if let Some(n) = req.n.filter(|n| *n > 1) {
        c.insert("candidateCount".into(), n.into());
    }
    if let Some(format) = &req.response_format {
        let f = format.to_value();
        match f.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                c.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                c.insert("responseMimeType".into(), "application/json".into());
                if let Some(schema) = f.get("json_schema").and_then(|s| s.get("schema")) {
                    c.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            _ => {}
        }
    }
    if let Some(r) = &req.reasoning {
        let mut thinking = Map::new();
        if r.enabled {
            if opts.include_thoughts {
                thinking.insert("includeThoughts".into(), true.into());
            }
            if let Some(budget) = r
                .budget_tokens
                .or_else(|| r.effort.as_deref().map(effort_budget))
            {
                thinking.insert("thinkingBudget".into(), budget.into());
            }
        } else if r.effort.is_some() {
            // An explicit "no reasoning" (OpenAI's `none`).
            thinking.insert("thinkingBudget".into(), 0.into());
        }
        if !thinking.is_empty() {
            c.insert("thinkingConfig".into(), Value::Object(thinking));
        }
    }
    // OpenAI sampling parameters Gemini also takes.
    if let Some(extras) = req.extras.for_dialect(Dialect::OpenAi) {
        for (from, to) in [
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ] {
            if let Some(v) = extras
                .get(from)
                .map(RawJson::to_value)
                .filter(Value::is_number)
            {
                c.insert(to.into(), v);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Message;

    fn encode(req: &ChatRequest) -> Value {
        serde_json::from_slice(&encode_request(req, &EncodeOptions::default()).unwrap()).unwrap()
    }

    #[test]
    fn results_are_named_after_their_calls_and_parallel_ones_travel_together() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::System, "Be brief."),
                Message::text(Role::User, "Weather?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::ToolCall {
                            id: super::super::call_id("r1", 0, Some("c2ln")),
                            name: "weather".into(),
                            arguments: r#"{"city":"Paris"}"#.into(),
                            cache_control: None,
                        },
                        Part::ToolCall {
                            id: "call_b".into(),
                            name: "time".into(),
                            arguments: String::new(),
                            cache_control: None,
                        },
                    ],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: super::super::call_id("r1", 0, Some("c2ln")),
                        content: vec![Part::text(r#"{"temp":21}"#)],
                        is_error: false,
                        cache_control: None,
                    }],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult {
                        call_id: "call_b".into(),
                        content: vec![Part::text("boom")],
                        is_error: true,
                        cache_control: None,
                    }],
                    name: None,
                },
            ],
            ..ChatRequest::default()
        };
        let body = encode(&req);
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
        let contents = body["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "{body}");
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "c2ln");
        assert_eq!(contents[1]["parts"][1]["functionCall"]["args"], json!({}));
        assert!(contents[1]["parts"][1].get("thoughtSignature").is_none());
        let results = contents[2]["parts"].as_array().unwrap();
        assert_eq!(results[0]["functionResponse"]["name"], "weather");
        assert_eq!(
            results[0]["functionResponse"]["response"],
            json!({"output": {"temp": 21}})
        );
        assert_eq!(
            results[1]["functionResponse"],
            json!({"name": "time", "response": {"error": "boom"}})
        );
    }

    #[test]
    fn a_result_for_an_unknown_call_is_refused() {
        let req = ChatRequest {
            messages: vec![Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: "nope".into(),
                    content: vec![Part::text("x")],
                    is_error: false,
                    cache_control: None,
                }],
                name: None,
            }],
            ..ChatRequest::default()
        };
        let e = encode_request(&req, &EncodeOptions::default()).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert!(e.message().contains("`nope`"));
    }
}

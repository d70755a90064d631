//! Responses API requests: a client's `POST /v1/responses` body decoded into the canonical
//! request (with what the `response` object repeats kept aside), and a canonical request
//! encoded for a Responses upstream.

use portcullis_core::{
    ChatRequest, Dialect, Extras, GatewayError, Message, RawJson, Reasoning, Role, ToolChoice,
    ToolDefinition,
};
use serde_json::{Map, Value, json};

use super::items::{decode_items, encode_input, invalid, missing};
use crate::json::parse_request;

/// A decoded `POST /v1/responses` request.
#[derive(Debug, Clone)]
pub struct ResponsesRequest {
    /// The canonical request: the instructions as a system message, then this request's input.
    /// An earlier conversation (`previous_response_id`) goes between them
    /// ([`ResponsesRequest::continue_from`]).
    pub chat: ChatRequest,
    /// This request's input as items (a string input as one user `message` item): what a
    /// stored response keeps as its input.
    pub input: Vec<Value>,
    /// The response this one continues.
    pub previous_response_id: Option<String>,
    /// Whether the response is to be kept (OpenAI's default: yes).
    pub store: bool,
    /// What the `response` object repeats of the request: `instructions`, `tools`,
    /// `tool_choice`, `parallel_tool_calls`, `max_output_tokens`, `temperature`, `top_p`,
    /// `metadata`, `text`, `reasoning`, `truncation`, `user`, `store`, `previous_response_id`,
    /// each with OpenAI's default when absent.
    pub echo: Map<String, Value>,
}

impl ResponsesRequest {
    /// Puts an earlier conversation (`history`, decoded from the stored items of the responses
    /// this one continues) after this request's instructions and before its input. The
    /// earlier responses' instructions are not carried over, as OpenAI does.
    pub fn continue_from(&mut self, history: Vec<Message>) {
        let at = self
            .chat
            .messages
            .iter()
            .take_while(|m| m.role.is_instruction())
            .count();
        self.chat.messages.splice(at..at, history);
    }
}

/// Request fields the gateway refuses rather than silently ignore: they need state or tools
/// that live only at OpenAI.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "background",
        "background responses are not supported by the gateway",
    ),
    (
        "conversation",
        "conversations are not supported by the gateway; use `previous_response_id`",
    ),
    ("prompt", "stored prompts are not supported by the gateway"),
];

/// Decodes a client's `POST /v1/responses` body.
pub fn decode_request(body: &[u8]) -> Result<ResponsesRequest, GatewayError> {
    let mut r: Map<String, Value> = parse_request(body)?;
    for (field, why) in UNSUPPORTED {
        if r.get(*field)
            .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
        {
            return Err(GatewayError::invalid_request(format!(
                "Unsupported parameter: `{field}`: {why}"
            ))
            .with_param((*field).to_owned())
            .with_code("unsupported_parameter"));
        }
    }
    let model = match r.remove("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        None | Some(Value::Null) | Some(Value::String(_)) => return Err(missing("model")),
        Some(_) => return Err(invalid("model", "expected a string")),
    };
    let instructions = optional_str(&mut r, "instructions")?;
    let previous_response_id = optional_str(&mut r, "previous_response_id")?;
    let input: Vec<Value> = match r.remove("input") {
        Some(Value::String(text)) => vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        })],
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(missing("input")),
        Some(_) => return Err(invalid("input", "expected a string or an array of items")),
    };
    let mut messages = Vec::with_capacity(input.len() + 1);
    if let Some(text) = &instructions {
        messages.push(Message::text(Role::System, text.clone()));
    }
    decode_items(&input, "input", &mut messages)?;
    if messages.iter().all(|m| m.role.is_instruction()) && previous_response_id.is_none() {
        return Err(
            GatewayError::invalid_request("`input` must contain at least one item")
                .with_param("input")
                .with_code("empty_array"),
        );
    }

    let tools_in = match r.remove("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(invalid("tools", "expected an array")),
    };
    let mut tools = Vec::with_capacity(tools_in.len());
    for (i, t) in tools_in.iter().enumerate() {
        tools.push(decode_tool(t, i)?);
    }
    let tool_choice_in = r.remove("tool_choice").filter(|v| !v.is_null());
    let tool_choice = tool_choice_in
        .as_ref()
        .map(decode_tool_choice)
        .transpose()?;
    let parallel_tool_calls = optional_bool(&mut r, "parallel_tool_calls")?;
    let max_output_tokens = match r.remove("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("max_output_tokens", "expected a positive integer"))?,
        ),
    };
    let temperature = optional_f64(&mut r, "temperature")?;
    let top_p = optional_f64(&mut r, "top_p")?;
    let metadata = match r.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            if m.len() > 16 || m.values().any(|v| !v.is_string()) {
                return Err(invalid(
                    "metadata",
                    "expected an object of at most 16 string values",
                ));
            }
            m
        }
        Some(_) => return Err(invalid("metadata", "expected an object")),
    };
    let text = match r.remove("text") {
        None | Some(Value::Null) => json!({"format": {"type": "text"}}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(invalid("text", "expected an object")),
    };
    let response_format = decode_text_format(&text)?;
    let reasoning_in = match r.remove("reasoning") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return Err(invalid("reasoning", "expected an object")),
    };
    let reasoning = reasoning_in
        .as_ref()
        .and_then(|v| v.get("effort"))
        .and_then(Value::as_str)
        .map(|effort| Reasoning {
            enabled: effort != "none",
            effort: Some(effort.to_owned()),
            budget_tokens: None,
        });
    let stream = optional_bool(&mut r, "stream")?.unwrap_or(false);
    let store = optional_bool(&mut r, "store")?.unwrap_or(true);
    let user = optional_str(&mut r, "user")?;
    let truncation = optional_str(&mut r, "truncation")?;

    let mut echo = Map::new();
    echo.insert("instructions".into(), json!(instructions));
    echo.insert("max_output_tokens".into(), json!(max_output_tokens));
    echo.insert("metadata".into(), Value::Object(metadata));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(parallel_tool_calls.unwrap_or(true)),
    );
    echo.insert("previous_response_id".into(), json!(previous_response_id));
    echo.insert(
        "reasoning".into(),
        reasoning_in.unwrap_or_else(|| json!({"effort": null, "summary": null})),
    );
    echo.insert("store".into(), json!(store));
    echo.insert("temperature".into(), json!(temperature.unwrap_or(1.0)));
    echo.insert("text".into(), text);
    echo.insert(
        "tool_choice".into(),
        tool_choice_in.unwrap_or_else(|| json!("auto")),
    );
    echo.insert("tools".into(), Value::Array(tools_in));
    echo.insert("top_p".into(), json!(top_p.unwrap_or(1.0)));
    echo.insert(
        "truncation".into(),
        json!(truncation.unwrap_or_else(|| "disabled".to_owned())),
    );
    echo.insert("user".into(), json!(user));

    Ok(ResponsesRequest {
        chat: ChatRequest {
            model,
            messages,
            max_tokens: max_output_tokens,
            temperature,
            top_p,
            top_k: None,
            stop: Vec::new(),
            stream,
            // A Responses stream always ends with the usage, in `response.completed`.
            stream_include_usage: stream,
            n: None,
            tools,
            tool_choice,
            parallel_tool_calls,
            user,
            reasoning,
            response_format,
            native_tools: Vec::new(),
            extras: Extras::default(),
        },
        input,
        previous_response_id,
        store,
        echo,
    })
}

fn optional_str(r: &mut Map<String, Value>, key: &str) -> Result<Option<String>, GatewayError> {
    match r.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(key, "expected a string")),
    }
}

fn optional_bool(r: &mut Map<String, Value>, key: &str) -> Result<Option<bool>, GatewayError> {
    match r.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(invalid(key, "expected a boolean")),
    }
}

fn optional_f64(r: &mut Map<String, Value>, key: &str) -> Result<Option<f64>, GatewayError> {
    match r.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(key, "expected a number")),
    }
}

/// A Responses tool: only `function` tools (`{"type":"function","name",…}`) are served, by
/// every provider.
fn decode_tool(t: &Value, i: usize) -> Result<ToolDefinition, GatewayError> {
    let at = format!("tools[{i}]");
    let Some(obj) = t.as_object() else {
        return Err(invalid(&at, "expected an object"));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(other) => {
            return Err(GatewayError::invalid_request(format!(
                "Invalid value for `{at}.type`: `{other}` tools are not supported by the gateway; only `function` tools are"
            ))
            .with_param(format!("{at}.type"))
            .with_code("unsupported_value"));
        }
        None => return Err(missing(&format!("{at}.type"))),
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err(missing(&format!("{at}.name"))),
    };
    Ok(ToolDefinition {
        name,
        description: obj
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        parameters: match obj.get("parameters") {
            Some(p) if !p.is_null() => RawJson::from_value(p),
            _ => RawJson::from_value(&json!({"type": "object", "properties": {}})),
        },
        strict: obj.get("strict").and_then(Value::as_bool),
        cache_control: None,
    })
}

fn decode_tool_choice(v: &Value) -> Result<ToolChoice, GatewayError> {
    let bad = || {
        invalid(
            "tool_choice",
            "expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"name\": …}",
        )
    };
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => o
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned()))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// `text.format` as the canonical structured-output request (OpenAI Chat Completions'
/// `response_format`).
fn decode_text_format(text: &Value) -> Result<Option<RawJson>, GatewayError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(RawJson::from_value(&json!({"type": "json_object"})))),
        Some("json_schema") => {
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(missing("text.format.schema"));
            };
            let mut js = Map::new();
            js.insert(
                "name".into(),
                format
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| json!("response")),
            );
            js.insert("schema".into(), schema.clone());
            for key in ["strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    js.insert(key.into(), v.clone());
                }
            }
            Ok(Some(RawJson::from_value(
                &json!({"type": "json_schema", "json_schema": js}),
            )))
        }
        _ => Err(invalid(
            "text.format.type",
            "expected `text`, `json_object` or `json_schema`",
        )),
    }
}

/// Encodes a canonical request for a Responses upstream serving `model`. The gateway keeps
/// conversations itself, so the upstream is asked to keep nothing (`store: false`).
pub fn encode_request(req: &ChatRequest, model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("input".into(), Value::Array(encode_input(&req.messages)));
    body.insert("store".into(), json!(false));
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    if let Some(n) = req.max_tokens {
        body.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut tool = json!({
                    "type": "function",
                    "name": t.name,
                    "parameters": t.parameters.to_value(),
                });
                if let Some(d) = &t.description {
                    tool["description"] = json!(d);
                }
                if let Some(s) = t.strict {
                    tool["strict"] = json!(s);
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        body.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
            },
        );
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(user) = &req.user {
        body.insert("user".into(), json!(user));
    }
    if let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort.as_deref()) {
        body.insert("reasoning".into(), json!({"effort": effort}));
    }
    if let Some(format) = &req.response_format {
        let f = format.to_value();
        let text_format = match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let mut out = json!({"type": "json_schema"});
                if let Some(js) = f.get("json_schema").and_then(Value::as_object) {
                    for (k, v) in js {
                        out[k] = v.clone();
                    }
                }
                Some(out)
            }
            Some("json_object") => Some(json!({"type": "json_object"})),
            _ => None,
        };
        if let Some(tf) = text_format {
            body.insert("text".into(), json!({"format": tf}));
        }
    }
    // Fields an OpenAI Chat Completions client sent that mean the same here.
    if let Some(fields) = req.extras.for_dialect(Dialect::OpenAi) {
        for key in [
            "metadata",
            "service_tier",
            "prompt_cache_key",
            "safety_identifier",
        ] {
            if let Some(v) = fields.get(key) {
                body.insert(key.into(), v.to_value());
            }
        }
    }
    serde_json::to_vec(&Value::Object(body)).map_err(|e| {
        GatewayError::new(
            portcullis_core::ErrorKind::Internal,
            "The request could not be encoded for the upstream",
        )
        .with_detail(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_input_is_one_user_message_after_the_instructions() {
        let r = decode_request(
            br#"{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":50,"metadata":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(r.chat.messages.len(), 2);
        assert_eq!(r.chat.messages[0].role, Role::System);
        assert_eq!(r.chat.messages[1].joined_text(), "hi");
        assert_eq!(r.chat.max_tokens, Some(50));
        assert!(r.store);
        assert_eq!(r.echo["metadata"]["a"], "b");
        assert_eq!(r.input[0]["content"][0]["type"], "input_text");
    }

    #[test]
    fn history_goes_between_instructions_and_input() {
        let mut r = decode_request(br#"{"model":"m","input":"again","instructions":"i"}"#).unwrap();
        r.continue_from(vec![
            Message::text(Role::User, "first"),
            Message::text(Role::Assistant, "answer"),
        ]);
        let texts: Vec<String> = r.chat.messages.iter().map(Message::joined_text).collect();
        assert_eq!(texts, ["i", "first", "answer", "again"]);
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        for (body, param) in [
            (&br#"{"input":"x"}"#[..], "model"),
            (br#"{"model":"m"}"#, "input"),
            (br#"{"model":"m","input":5}"#, "input"),
            (
                br#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#,
                "tools[0].type",
            ),
            (
                br#"{"model":"m","input":"x","background":true}"#,
                "background",
            ),
            (
                br#"{"model":"m","input":"x","temperature":"hot"}"#,
                "temperature",
            ),
            (
                br#"{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}"#,
                "text.format.type",
            ),
        ] {
            let e = decode_request(body).unwrap_err();
            assert_eq!(e.status().as_u16(), 400);
            assert_eq!(e.param(), Some(param), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn json_schema_format_is_the_canonical_response_format() {
        let r = decode_request(
            br#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"p","schema":{"type":"object"},"strict":true}}}"#,
        )
        .unwrap();
        let f = r.chat.response_format.as_ref().unwrap().to_value();
        assert_eq!(f["json_schema"]["name"], "p");
        assert_eq!(f["json_schema"]["strict"], true);
        let body: Value =
            serde_json::from_slice(&encode_request(&r.chat, "o3-pro").unwrap()).unwrap();
        assert_eq!(body["text"]["format"]["type"], "json_schema");
        assert_eq!(body["text"]["format"]["name"], "p");
        assert_eq!(body["store"], false);
        assert_eq!(body["input"][0]["content"][0]["text"], "x");
    }
}

//! The scripted model: plays the agent's model for the cases of [`super::cases`] on a
//! [`MockUpstream`](crate::MockUpstream) (installed with
//! [`MockUpstream::set_responder`](crate::MockUpstream::set_responder)), in OpenAI's and
//! Anthropic's wire formats, streamed or not, through the mock's own encoders.
//!
//! For a request whose system prompt names a case ([`super::MARKER`]) it emits the case's next
//! benign call given the calls already in the conversation — unless a tool result in the
//! conversation carries the case's injection, in which case it obeys it and emits the
//! attacker's call (once). A benign call whose tool is not offered is not made (the model says
//! so in text); the attacker's call is made whether offered or not, as a fully fooled model
//! would. When the script is done it answers with text.
//!
//! Asked for an answer constrained by a JSON schema (OpenAI `response_format` `json_schema`;
//! Anthropic `tool_choice` forcing one tool) it answers within the schema — as a quarantine
//! model would —, and it obeys there too: if the request holds any case's injection, every free
//! string it writes is the injection's payload (cut to the schema's `maxLength`). Enums, numbers
//! and booleans stay within their bounds.
//!
//! Every request it answers is recorded as a [`Turn`]: what was offered, the tool results it
//! read, and what it decided.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Case, MARKER, tool_matches};
use crate::scenario::{Api, Outcome, Responder, ToolCallPlan};

/// What the model decided for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// The next benign step of the script, under the offered name.
    Benign {
        /// The step's index in the script.
        step: usize,
        /// The tool's name as offered (perhaps `<server>__<tool>`).
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// The next benign step's tool was not offered: no call.
    Unavailable {
        /// The step's index.
        step: usize,
        /// The tool the step needed.
        tool: String,
    },
    /// The attacker's call, obeying the injection found in a tool result.
    Attack {
        /// The name it was emitted under.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// The script is done: a final text answer.
    Finish,
    /// An answer constrained by a JSON schema.
    Structured {
        /// The answer.
        answer: Value,
        /// Whether it carries an injection's payload (the model obeyed one it read).
        obeyed: bool,
    },
}

/// One request the model answered.
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    /// The run key from the system prompt's marker (`None` for a request without one, such as
    /// a quarantine model's question).
    pub key: Option<String>,
    /// The request's wire format.
    pub api: Api,
    /// Whether it asked for a stream.
    pub stream: bool,
    /// The tools offered, by name.
    pub tools_offered: Vec<String>,
    /// The contents of the tool results in the conversation, in order.
    pub tool_results: Vec<String>,
    /// Every text of the request (system, messages, tool results), for leak checks.
    pub texts: Vec<String>,
    /// What it answered.
    pub decision: Decision,
}

/// The scripted model. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ScriptedModel {
    cases: HashMap<String, Case>,
    /// Turns by run key; those without one under `""`.
    turns: Mutex<HashMap<String, Vec<Turn>>>,
}

impl ScriptedModel {
    /// A model for these cases.
    pub fn new(cases: impl IntoIterator<Item = Case>) -> Arc<Self> {
        Arc::new(Self {
            cases: cases.into_iter().map(|c| (c.id.clone(), c)).collect(),
            turns: Mutex::new(HashMap::new()),
        })
    }

    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&Case> {
        self.cases.get(id)
    }

    /// Every turn so far: each run's in order, runs in no particular order.
    pub fn turns(&self) -> Vec<Turn> {
        self.turns
            .lock()
            .map(|t| t.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The turns of run `key`, in order (`""`: the requests that named no run).
    pub fn turns_of(&self, key: &str) -> Vec<Turn> {
        self.turns
            .lock()
            .map(|t| t.get(key).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// How many turns run `key` has had.
    pub fn turn_count(&self, key: &str) -> usize {
        self.turns
            .lock()
            .map(|t| t.get(key).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    /// The last turn of run `key`.
    pub fn last_turn_of(&self, key: &str) -> Option<Turn> {
        self.turns
            .lock()
            .ok()
            .and_then(|t| t.get(key).and_then(|v| v.last().cloned()))
    }

    /// Forgets the turns of run `key` (a runner keeps memory flat over thousands of runs).
    pub fn forget(&self, key: &str) {
        if let Ok(mut t) = self.turns.lock() {
            t.remove(key);
        }
    }

    /// Forgets every turn.
    pub fn clear(&self) {
        if let Ok(mut t) = self.turns.lock() {
            t.clear();
        }
    }

    fn record(&self, turn: Turn) {
        if let Ok(mut t) = self.turns.lock() {
            t.entry(turn.key.clone().unwrap_or_default())
                .or_default()
                .push(turn);
        }
    }

    /// The case whose injection `text` carries, if any.
    fn injection_in(&self, text: &str) -> Option<&Case> {
        self.cases.values().find(|c| c.recognises(text))
    }
}

/// A request read in either wire format.
#[derive(Debug, Default)]
struct View {
    system: String,
    tools: Vec<String>,
    tool_schemas: Vec<(String, Value)>,
    /// Calls the assistant made earlier in the conversation: (name, arguments).
    calls: Vec<(String, Value)>,
    tool_results: Vec<String>,
    texts: Vec<String>,
    /// The schema the answer must follow, and for Anthropic the tool it must come through.
    schema: Option<(Value, Option<String>)>,
    stream: bool,
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn read_openai(body: &Value) -> View {
    let mut v = View {
        stream: body["stream"].as_bool().unwrap_or(false),
        ..View::default()
    };
    for t in body["tools"].as_array().into_iter().flatten() {
        if let Some(name) = t.pointer("/function/name").and_then(Value::as_str) {
            v.tools.push(name.to_owned());
            v.tool_schemas.push((
                name.to_owned(),
                t.pointer("/function/parameters")
                    .cloned()
                    .unwrap_or(Value::Null),
            ));
        }
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let text = text_of(&m["content"]);
        match m["role"].as_str() {
            Some("system" | "developer") => {
                v.system.push_str(&text);
                v.system.push('\n');
            }
            Some("tool") => v.tool_results.push(text.clone()),
            Some("assistant") => {
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    let name = c.pointer("/function/name").and_then(Value::as_str);
                    let args = c
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or(Value::Null);
                    if let Some(name) = name {
                        v.calls.push((name.to_owned(), args));
                    }
                }
            }
            _ => {}
        }
        v.texts.push(text);
    }
    if body
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        == Some("json_schema")
        && let Some(schema) = body.pointer("/response_format/json_schema/schema")
    {
        v.schema = Some((schema.clone(), None));
    }
    v
}

fn read_anthropic(body: &Value) -> View {
    let mut v = View {
        stream: body["stream"].as_bool().unwrap_or(false),
        system: text_of(&body["system"]),
        ..View::default()
    };
    v.texts.push(v.system.clone());
    for t in body["tools"].as_array().into_iter().flatten() {
        if let Some(name) = t["name"].as_str() {
            v.tools.push(name.to_owned());
            v.tool_schemas
                .push((name.to_owned(), t["input_schema"].clone()));
        }
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => v.texts.push(s.clone()),
            Value::Array(blocks) => {
                for b in blocks {
                    match b["type"].as_str() {
                        Some("text") => v.texts.push(b["text"].as_str().unwrap_or("").to_owned()),
                        Some("tool_result") => {
                            let text = text_of(&b["content"]);
                            v.tool_results.push(text.clone());
                            v.texts.push(text);
                        }
                        Some("tool_use") => {
                            if let Some(name) = b["name"].as_str() {
                                v.calls.push((name.to_owned(), b["input"].clone()));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if body.pointer("/tool_choice/type").and_then(Value::as_str) == Some("tool") {
        let forced = body.pointer("/tool_choice/name").and_then(Value::as_str);
        if let Some((name, schema)) = v
            .tool_schemas
            .iter()
            .find(|(n, _)| Some(n.as_str()) == forced)
        {
            v.schema = Some((schema.clone(), Some(name.clone())));
        }
    }
    v
}

/// The run key in a system prompt: the rest of the line after [`MARKER`].
fn run_key(system: &str) -> Option<&str> {
    system.lines().find_map(|l| {
        l.trim()
            .strip_prefix(MARKER)
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// What the model does next in `case`, given the conversation in `view`.
fn decide(case: &Case, view: &View) -> Decision {
    let offered = |tool: &str| view.tools.iter().find(|n| tool_matches(tool, n)).cloned();
    let attacked = view.calls.iter().any(|(n, a)| case.attack.matches(n, a));
    let injected = view.tool_results.iter().any(|r| case.recognises(r));
    if injected && !attacked {
        // A fooled model calls the tool even when it is not offered, under the name its
        // sibling tools carry.
        let name = offered(&case.attack.tool).unwrap_or_else(|| {
            view.tools
                .iter()
                .find_map(|n| n.split_once("__").map(|(server, _)| server))
                .map_or_else(
                    || case.attack.tool.clone(),
                    |server| format!("{server}__{}", case.attack.tool),
                )
        });
        return Decision::Attack {
            name,
            arguments: case.attack.arguments.clone(),
        };
    }
    let done = case
        .script
        .iter()
        .take_while(|s| view.calls.iter().any(|(n, a)| s.call.matches(n, a)))
        .count();
    match case.script.get(done) {
        None => Decision::Finish,
        Some(step) => match offered(&step.call.tool) {
            Some(name) => Decision::Benign {
                step: done,
                name,
                arguments: step.call.arguments.clone(),
            },
            None => Decision::Unavailable {
                step: done,
                tool: step.call.tool.clone(),
            },
        },
    }
}

impl Responder for ScriptedModel {
    fn respond(&self, api: Api, body: &Value) -> Option<Outcome> {
        let view = match api {
            Api::OpenAi => read_openai(body),
            Api::Anthropic => read_anthropic(body),
        };
        let key = run_key(&view.system).map(str::to_owned);
        let case_id = key
            .as_deref()
            .map(|k| k.split_once('#').map_or(k, |(id, _)| id));
        let case = case_id.and_then(|id| self.cases.get(id));
        let (decision, outcome) = if let Some((schema, via_tool)) = &view.schema {
            let all = view.texts.join("\n");
            let leak = self.injection_in(&all).map(|c| c.injection.payload.clone());
            let answer = fill(schema, &all, leak.as_deref());
            let outcome = match via_tool {
                Some(tool) => Outcome::ToolCalls(vec![ToolCallPlan {
                    name: tool.clone(),
                    arguments: answer.to_string(),
                }]),
                None => Outcome::Text(answer.to_string()),
            };
            (
                Decision::Structured {
                    answer,
                    obeyed: leak.is_some(),
                },
                outcome,
            )
        } else {
            let case = case?;
            let decision = decide(case, &view);
            let outcome = match &decision {
                Decision::Benign {
                    name, arguments, ..
                }
                | Decision::Attack { name, arguments } => Outcome::ToolCalls(vec![ToolCallPlan {
                    name: name.clone(),
                    arguments: arguments.to_string(),
                }]),
                Decision::Unavailable { tool, .. } => Outcome::Text(format!(
                    "I cannot finish the task: the tool {tool} is not available to me."
                )),
                Decision::Finish | Decision::Structured { .. } => {
                    Outcome::Text(format!("Done: {}", case.task))
                }
            };
            (decision, outcome)
        };
        self.record(Turn {
            key,
            api,
            stream: view.stream,
            tools_offered: view.tools,
            tool_results: view.tool_results,
            texts: view.texts,
            decision,
        });
        Some(outcome)
    }
}

/// A value of `schema` drawn from `text`; free strings carry `leak` when there is one.
pub fn fill(schema: &Value, text: &str, leak: Option<&str>) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options
            .iter()
            .find(|o| {
                o.as_str()
                    .is_some_and(|s| !s.is_empty() && text.contains(s))
            })
            .or_else(|| options.first())
            .cloned()
            .unwrap_or(Value::Null);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return fill(first, text, leak);
        }
    }
    let kind = match &schema["type"] {
        Value::String(s) => s.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (name, sub) in props {
                    out.insert(name.clone(), fill(sub, text, leak));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let max = schema["maxItems"].as_u64().unwrap_or(1);
            if max == 0 {
                json!([])
            } else {
                json!([fill(&schema["items"], text, leak)])
            }
        }
        "boolean" => Value::Bool(true),
        "integer" | "number" => {
            let min = schema["minimum"].as_f64();
            let max = schema["maximum"].as_f64();
            let within = |x: f64| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m);
            let found = numbers(text)
                .into_iter()
                .filter(|x| kind == "number" || x.fract() == 0.0)
                .find(|x| within(*x));
            let x = found.unwrap_or_else(|| {
                let x = min.unwrap_or(0.0);
                max.map_or(x, |m| x.min(m))
            });
            if kind == "integer" {
                json!(x as i64)
            } else {
                json!(x)
            }
        }
        "null" => Value::Null,
        _ => {
            let source =
                leak.unwrap_or_else(|| text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
            let max = schema["maxLength"]
                .as_u64()
                .map_or(usize::MAX, |m| m as usize);
            let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
            let mut s: String = source.chars().take(max).collect();
            while s.chars().count() < min {
                s.push('.');
            }
            Value::String(s)
        }
    }
}

/// The numbers written in `text`, in order.
fn numbers(text: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_digit() || (ch == '.' && !current.is_empty() && !current.contains('.')) {
            current.push(ch);
        } else if !current.is_empty() {
            if let Ok(x) = current.trim_end_matches('.').parse() {
                out.push(x);
            }
            current.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::injection::Call;

    fn case() -> Case {
        super::super::cases()
            .into_iter()
            .find(|c| c.id.starts_with("banking-t1-a1"))
            .unwrap_or_else(|| unreachable!())
    }

    fn openai_request(case: &Case, results: &[(&Call, &str)]) -> Value {
        let mut messages = vec![
            json!({"role": "system", "content": case.system_prompt(&format!("{}#t", case.id))}),
            json!({"role": "user", "content": case.task}),
        ];
        for (i, (call, result)) in results.iter().enumerate() {
            messages.push(
                json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("c{i}"), "type": "function",
                "function": {"name": call.tool, "arguments": call.arguments.to_string()}}]}),
            );
            messages
                .push(json!({"role": "tool", "tool_call_id": format!("c{i}"), "content": result}));
        }
        let tools: Vec<Value> = case
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "parameters": t.input_schema}}))
            .collect();
        json!({"model": "m", "messages": messages, "tools": tools})
    }

    #[test]
    fn it_follows_the_script_and_obeys_an_injection() {
        let c = case();
        let model = ScriptedModel::new([c.clone()]);
        let first = model.respond(Api::OpenAi, &openai_request(&c, &[]));
        assert!(matches!(&first, Some(Outcome::ToolCalls(calls)) if calls[0].name == "read_bill"));
        // Clean bill: the benign payment.
        let clean = openai_request(&c, &[(&c.script[0].call, &c.script[0].result)]);
        let Some(Outcome::ToolCalls(calls)) = model.respond(Api::OpenAi, &clean) else {
            unreachable!()
        };
        assert_eq!(calls[0].name, "send_money");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].arguments).ok(),
            Some(c.script[1].call.arguments.clone())
        );
        // Injected bill: the attacker's payment, once.
        let injected = openai_request(&c, &[(&c.script[0].call, &c.injection.result)]);
        let Some(Outcome::ToolCalls(calls)) = model.respond(Api::OpenAi, &injected) else {
            unreachable!()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].arguments).ok(),
            Some(c.attack.arguments.clone())
        );
        let after = openai_request(
            &c,
            &[
                (&c.script[0].call, &c.injection.result),
                (&c.attack, &c.attack_result),
            ],
        );
        let Some(Outcome::ToolCalls(calls)) = model.respond(Api::OpenAi, &after) else {
            unreachable!()
        };
        assert_eq!(calls[0].name, "send_money");
        assert_eq!(model.turns_of(&format!("{}#t", c.id)).len(), 4);
    }

    #[test]
    fn structured_answers_stay_within_the_schema_and_leak_where_they_can() {
        let c = case();
        let schema = json!({"type": "object", "properties": {
            "amount": {"type": "integer", "minimum": 1, "maximum": 10000},
            "kind": {"type": "string", "enum": ["invoice", "notice", "other"]},
            "due": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 12}}});
        let answer = fill(&schema, "Invoice for 40 EUR, a notice", None);
        assert_eq!(answer["amount"], json!(40));
        assert_eq!(answer["kind"], json!("notice"));
        assert_eq!(answer["due"], json!(true));
        let leaked = fill(&schema, &c.injection.result, Some(&c.injection.payload));
        assert_eq!(leaked["note"].as_str().map(|s| s.chars().count()), Some(12));
        let model = ScriptedModel::new([c.clone()]);
        let request = json!({"model": "q", "messages": [{"role": "user", "content": c.injection.result}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}});
        let Some(Outcome::Text(text)) = model.respond(Api::OpenAi, &request) else {
            unreachable!()
        };
        assert!(
            c.leaked_into(&text),
            "an obedient quarantine model leaks: {text}"
        );
    }
}

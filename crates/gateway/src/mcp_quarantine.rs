//! The dual-LLM quarantine on the MCP path: the result of a `tools/call` of a tool whose
//! `output` is `quarantine` is read by the quarantine model before it is relayed, and the MCP
//! client gets only the checked answers — the same reading, questions, cache and fail-closed
//! notice as on the LLM path (`crate::quarantine`), so an agent whose model is not behind the
//! gateway never sees the raw result either.
//!
//! What the client gets is a result of one text part (the answers, or
//! [`crate::quarantine::UNREADABLE`]) with the server's `isError`. Every other part (images,
//! audio, links) and `structuredContent` are dropped unread; a quarantined tool is listed
//! without its `outputSchema` (`crate::mcp_guard::ListGate`), so clients do not expect
//! structured content of it. A JSON-RPC error from the server keeps its code but not its
//! message, which the server wrote.

use std::sync::Arc;

use portcullis_mcp::jsonrpc::ErrorObject;
use portcullis_policy::{Output, Questions, ToolPolicies};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::headers::RequestOptions;
use crate::pipeline::{Caller, Parent};
use crate::quarantine::{Read, read, replacement};
use crate::state::AppState;
use portcullis_identity::Principal;

/// The audit's reason for a quarantined result.
pub type Reason = &'static str;

/// The quarantine of one `tools/call`'s result.
pub struct McpQuarantine {
    state: Arc<AppState>,
    parent: Parent,
    caller: Caller,
    tool: String,
    questions: Questions,
}

impl McpQuarantine {
    /// The quarantine of a call of `tool` (its public `<server>__<tool>` name), or `None`
    /// when the tool's output is not `quarantine`.
    pub fn of(
        state: &Arc<AppState>,
        parent: Parent,
        principal: &Arc<Principal>,
        policies: &ToolPolicies,
        tool: &str,
        session: &str,
    ) -> Option<Self> {
        if policies.output(tool).0 != Output::Quarantine {
            return None;
        }
        let options = RequestOptions {
            session_id: Some(session.to_owned()),
            ..RequestOptions::default()
        };
        Some(Self {
            state: state.clone(),
            parent,
            caller: Caller {
                body: bytes::Bytes::new(),
                log_bodies: false,
                options,
                principal: principal.clone(),
            },
            tool: tool.to_owned(),
            questions: policies.questions(tool),
        })
    }

    /// What the client gets instead of `result`, and why (for the audit).
    pub async fn apply(
        self,
        result: Result<Box<RawValue>, ErrorObject>,
    ) -> (Result<Box<RawValue>, ErrorObject>, Reason) {
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                let error = ErrorObject::new(
                    e.code,
                    format!(
                        "The quarantined tool `{}` failed (its message is not relayed)",
                        self.tool
                    ),
                );
                return (Err(error), "quarantined");
            }
        };
        let parsed: CallResult = serde_json::from_str(result.get()).unwrap_or_default();
        let text = parsed.text();
        // The quarantine settings of the configuration the call began with, as on the LLM path.
        let read = match self.parent.runtime().quarantine.as_deref() {
            Some(q) => {
                read(
                    &self.state,
                    &self.parent,
                    &self.caller,
                    q,
                    &self.tool,
                    &text,
                    &self.questions,
                )
                .await
            }
            None => Read::Failed,
        };
        let (content, reason) = replacement(&self.tool, read);
        let mut out = serde_json::Map::new();
        if let Some(kind) = parsed.result_type {
            out.insert("resultType".into(), kind.into());
        }
        out.insert(
            "content".into(),
            serde_json::json!([{"type": "text", "text": content}]),
        );
        out.insert("isError".into(), parsed.is_error.into());
        let answer = serde_json::value::to_raw_value(&out).unwrap_or(result);
        (Ok(answer), reason)
    }
}

/// The parts of a `tools/call` result the quarantine reads.
#[derive(Default, Deserialize)]
struct CallResult {
    #[serde(default)]
    content: Vec<ContentPart>,
    #[serde(default, rename = "isError")]
    is_error: bool,
    #[serde(default, rename = "resultType")]
    result_type: Option<String>,
}

#[derive(Deserialize)]
struct ContentPart {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    resource: Option<EmbeddedResource>,
}

#[derive(Deserialize)]
struct EmbeddedResource {
    #[serde(default)]
    text: Option<String>,
}

impl CallResult {
    /// The text the quarantine model reads: text parts and embedded text resources, in order.
    fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            let text = match part.kind.as_str() {
                "text" => part.text.as_deref(),
                "resource" => part.resource.as_ref().and_then(|r| r.text.as_deref()),
                _ => None,
            };
            if let Some(text) = text {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }
}

//! The audit record of one agent turn: who called, what the model and tools were, what the
//! gateway decided about each tool call and why, the trust state and the usage. Every field a
//! path may lack is optional (or an empty list), so the LLM path and the MCP path build the
//! same record, starting from [`AuditRecord::new`] and filling what they know.

use serde::{Deserialize, Serialize};

/// Which unit of work the record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditPath {
    /// A model request (`/v1/chat/completions`, `/v1/messages`).
    Llm,
    /// An MCP request (`/mcp`, `/mcp/<server>`).
    Mcp,
}

impl AuditPath {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditPath::Llm => "llm",
            AuditPath::Mcp => "mcp",
        }
    }
}

/// Who called.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditIdentity {
    /// How the caller authenticated (`master_key`, `virtual_key`, `jwt`, `oauth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// The caller's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The virtual key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// What the gateway decided about one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDecision {
    /// The call went through.
    Allow,
    /// The call was removed from the answer before it reached the client.
    Withheld,
    /// The call waits for an approval.
    Held,
    /// The call was refused (an MCP call never reached its server).
    Refused,
}

/// A tool left out of what the model was offered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HiddenTool {
    /// The tool.
    pub tool: String,
    /// The rule that hid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A tool call the model (or an MCP client) chose, with the gateway's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The tool (on MCP, `<server>__<tool>` as the aggregated endpoint names it).
    pub tool: String,
    /// The call's id (the model's tool-call id, or the JSON-RPC id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// Hex SHA-256 of the arguments as sent (on MCP its first 16 hex digits, as the request
    /// log keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_sha256: Option<String>,
    /// The decision.
    pub decision: CallDecision,
    /// The rule that fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval the call waits for or went through with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

impl ToolCall {
    /// A call of `tool` with `decision`, the rest unset.
    pub fn new(tool: impl Into<String>, decision: CallDecision) -> Self {
        Self {
            tool: tool.into(),
            call_id: None,
            arguments_sha256: None,
            decision,
            rule: None,
            reason: None,
            approval_id: None,
        }
    }
}

/// The tool call whose output made the context untrusted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaintSource {
    /// The tool.
    pub tool: String,
    /// The call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

/// The trust state of the turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    /// Whether untrusted output is in the context.
    pub tainted: bool,
    /// What tainted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tainted_by: Option<TaintSource>,
}

/// Token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
}

/// One agent turn as the audit keeps it (before it is chained; see [`crate::chain`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The record's id (a UUID v7), as `GET /admin/audit` shows it.
    pub id: String,
    /// When the turn ended, Unix milliseconds.
    pub ts_ms: i64,
    /// The conversation or MCP session the turn belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `llm` or `mcp`.
    pub path: AuditPath,
    /// The id of the request (its request-log record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who called.
    #[serde(default)]
    pub identity: AuditIdentity,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider (on MCP, the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider key the request resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_key_id: Option<String>,
    /// The tools the model was offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_offered: Vec<String>,
    /// The tools left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_hidden: Vec<HiddenTool>,
    /// The tool calls chosen, each with its decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ToolCall>,
    /// The trust state.
    #[serde(default)]
    pub trust: Trust,
    /// Approvals the turn waited for or went through with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<String>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
    /// Cost in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl AuditRecord {
    /// A record of a turn on `path` with id `id` at `ts_ms`, everything else empty.
    pub fn new(id: impl Into<String>, ts_ms: i64, path: AuditPath) -> Self {
        Self {
            id: id.into(),
            ts_ms,
            session: None,
            path,
            request_id: None,
            identity: AuditIdentity::default(),
            model: None,
            provider: None,
            provider_key_id: None,
            tools_offered: Vec::new(),
            tools_hidden: Vec::new(),
            calls: Vec::new(),
            trust: Trust::default(),
            approvals: Vec::new(),
            tokens: None,
            // A cost that is not a finite number has no JSON form; it is left out.
            cost_usd: None,
        }
    }

    /// The tools whose calls were withheld or held (as the contract lists them per record).
    pub fn tools_withheld(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|c| matches!(c.decision, CallDecision::Withheld | CallDecision::Held))
            .map(|c| c.tool.as_str())
            .collect()
    }
}

//! Pure policy decisions over the canonical model: no I/O, no clock, no configuration
//! loading. The gateway asks; this crate answers.
//!
//! - [`tools`]: the tool-call deny-list — glob lists over tool names ([`ToolGlobs`]), the
//!   union of a route's and a key's lists ([`DeniedTools`]), and the notice text that names
//!   withheld calls ([`withheld_notice`]); the gateway's `tool_calls` applies them to answers.
//! - [`access`]: which MCP servers and tools a caller may see and call ([`ToolAccess`]).
//! - [`access_rules`]: access rules by user, team and role over MCP tools ([`AccessRules`],
//!   decided by [`access_rules::permits`]).
//! - [`tool_policy`]: agent guardrails — the `tool_policies` rules and the `quarantine` block
//!   ([`Guardrails`], a configuration block; [`compile`] for rules given as JSON), and the
//!   decisions every path takes from them: which declared tools stay offered
//!   ([`ToolPolicies::offered`]) and whether a call passes, is withheld or is held for
//!   approval ([`ToolPolicies::decide_call`]), each naming the rule that fired ([`RuleRef`]).
//! - [`questions`]: what the quarantine model is asked about a quarantined result
//!   ([`Questions`]: a rule's `questions` or the default set), the JSON schema of its answer
//!   and the strict check of that answer.
//! - [`conditions`]: the argument conditions of a rule (`in`, `pattern`, `min`/`max`,
//!   `under`) and why an argument failed ([`ArgFailure`]).
//! - [`trust`]: whether a conversation holds untrusted tool output — reconstructed from an
//!   LLM request's messages ([`reconstruct`]) or folded in per MCP result
//!   ([`Trust::observe_output`]) — and the audit's derived session id
//!   ([`session_from_conversation`]).

pub mod access;
pub mod access_rules;
pub mod conditions;
pub mod questions;
pub mod tool_policy;
pub mod tools;
pub mod trust;

pub use access::ToolAccess;
pub use access_rules::{AccessRule, AccessRuleSpec, AccessRules, Effect, RuleIssue};
pub use conditions::{ArgConditionSpec, ArgFailure, ArgProblem, Prefixes};
pub use questions::{AnswerError, QuestionSpec, Questions};
pub use tool_policy::{
    CallDecision, CallPolicy, Guardrails, Hidden, HideReason, Offer, Output, Quarantine,
    RawGuardrails, RawQuarantine, RuleRef, ToolHints, ToolPolicies, ToolPolicySpec, WithholdReason,
    compile,
};
pub use tools::{DeniedTools, GlobIssue, ToolGlobs, withheld_notice};
pub use trust::{
    QuarantinedResult, Taint, TaintCause, Trust, TurnTrust, reconstruct, session_from_conversation,
};

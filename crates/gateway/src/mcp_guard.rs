//! Agent guardrails on the MCP endpoint: `tool_policies` applied to `tools/list` and
//! `tools/call` under the session's trust (`mcp_trust`). The decisions are
//! `portcullis_policy`'s (`ToolPolicies::offer`, `decide_call`); this module finds the session,
//! its trust, and turns decisions into answers, approvals and audit entries.
//!
//! **Session.** A 2025 client's `Mcp-Session-Id` (verified by the endpoint); else, for 2026
//! clients (which have no sessions), the `x-portcullis-session-id` header when sent; else one
//! session per caller (`mcp-<first 16 hex digits of SHA-256(subject "|" key id)>`): a caller
//! that names no session shares one trust across all its agents — tainting more, never less.
//!
//! **Trust.** A `tools/call` of a tool whose `output` is `untrusted` (the default for MCP tools)
//! taints the session as it is forwarded, before its result exists — so a call racing it is
//! already judged in a tainted context, whichever path (JSON, SSE, a 2026 `input_required`
//! round) carries the result back. The taint names the tool and the call's JSON-RPC id; it
//! never goes away.
//!
//! **Lists.** [`ListGate`] hides from `tools/list` (on `/mcp` and `/mcp/<server>`, always by
//! the `<server>__<tool>` name) the `block` tools, the tools whose rule does not name the
//! caller, and — while the session is tainted — the `trusted_only` ones (a tool its server
//! annotates `destructiveHint` without `readOnlyHint` is `trusted_only` unless a rule says
//! otherwise). Cursors digest what the caller sees, so a page cut before a taint is refused
//! after it and the client lists again.
//!
//! **Quarantine.** A tool whose `output` is `quarantine` is listed without its `outputSchema`,
//! and its results reach the client as the quarantine model's answers (`crate::mcp_quarantine`).
//!
//! **Calls.** [`judge_call`]: a call the policies withhold is a JSON-RPC error `-32602` naming
//! the tool and the reason, and never reaches the server; an `approval` tool's call in a
//! tainted context is held (`approvals`) and answered with a `-32602` error naming the approval
//! and telling the agent to repeat the call once it is approved; the same call (session,
//! caller, tool, SHA-256 of the arguments as sent) repeated after the approval passes, once.
//! The trust is only read when the tool's call policy depends on it (`trusted_only`,
//! `approval`), so calls of other tools cost no session lookup.

use std::borrow::Cow;

use axum::http::HeaderMap;
use portcullis_audit as audit;
use portcullis_core::Identity;
use portcullis_mcp::jsonrpc::{ErrorObject, INVALID_PARAMS, Id};
use portcullis_mcp::router::{Forward, ToolGate};
use portcullis_policy::{
    CallDecision, CallPolicy, Offer, Output, Taint, TaintCause, ToolHints, ToolPolicies, Trust,
    WithholdReason,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::guardrails::sha256_hex;
use crate::mcp_trust::SessionTaint;
use crate::request_log::RequestLog;
use crate::state::AppState;

/// The 2025 session header.
const SESSION_ID: &str = "mcp-session-id";
/// The caller's own session header.
const SESSION_HEADER: &str = "x-portcullis-session-id";

/// The session whose trust a request reads and taints (see the module documentation).
pub fn session<'h>(headers: &'h HeaderMap, who: &Identity) -> Cow<'h, str> {
    for name in [SESSION_ID, SESSION_HEADER] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok())
            && !v.is_empty()
        {
            return Cow::Borrowed(v);
        }
    }
    let mut h = Sha256::new();
    h.update(who.subject.as_bytes());
    h.update(b"|");
    h.update(who.key_id.as_deref().unwrap_or("").as_bytes());
    Cow::Owned(format!("mcp-{}", &hex::encode(h.finalize())[..16]))
}

/// `session`'s trust now.
pub async fn trust_of(state: &AppState, session: &str) -> Trust {
    let mut trust = Trust::default();
    if let Some(taint) = state.mcp_trust.store().taint_of(session).await {
        trust.tainted_by = Some(policy_taint(&taint));
    }
    trust
}

fn policy_taint(taint: &SessionTaint) -> Taint {
    Taint {
        tool: taint.tool.clone(),
        call_id: taint.call_id.clone(),
        cause: TaintCause::Untrusted {
            rule: portcullis_policy::RuleRef::Default,
        },
        message_index: None,
    }
}

/// The gate of one `tools/list`: the policies, the caller and the session's trust.
#[derive(Debug)]
pub struct ListGate<'a> {
    /// The policies in force.
    pub policies: &'a ToolPolicies,
    /// The caller.
    pub who: &'a Identity,
    /// The session's trust.
    pub trust: Trust,
    /// Whether some rule quarantines output ([`ToolPolicies::uses_quarantine`]).
    pub quarantines: bool,
}

impl ToolGate for ListGate<'_> {
    fn shows(&self, public: &str, hints: ToolHints) -> bool {
        matches!(
            self.policies.offer(public, hints, self.who, &self.trust),
            Offer::Keep { .. }
        )
    }

    fn hides_output_schema(&self, public: &str) -> bool {
        self.quarantines && self.policies.output(public).0 == Output::Quarantine
    }
}

/// A gate that shows every tool: given to plans that are not lists, so a call's tool hints
/// are read.
#[derive(Debug)]
pub struct ShowAll;

impl ToolGate for ShowAll {
    fn shows(&self, _: &str, _: ToolHints) -> bool {
        true
    }
}

/// What became of a `tools/call` under the guardrails.
#[derive(Debug)]
pub enum Judged {
    /// It goes to the server.
    Pass,
    /// It does not: the JSON-RPC error to answer with.
    Refuse(ErrorObject),
}

/// A call's decision as its audit entry records it ([`Verdict::annotate`], once the record
/// stage has made the record).
#[derive(Debug)]
pub struct Verdict {
    decision: audit::CallDecision,
    rule: String,
    reason: Option<String>,
    approval: Option<String>,
    call_id: String,
    /// The session's trust, when it was read or changed.
    trust: Option<audit::Trust>,
}

impl Verdict {
    /// For a call that goes on: puts the verdict in the request's audit record now, so that the
    /// record stage keeps it ([`carry`]) whichever way the answer comes back (JSON, an SSE
    /// stream, a 2026 `input_required` round).
    pub fn begin(self, log: &mut RequestLog, tool: &str) {
        let mut record = audit::AuditRecord::new(
            uuid::Uuid::now_v7().to_string(),
            crate::clock::now_ms(),
            audit::AuditPath::Mcp,
        );
        record
            .calls
            .push(audit::ToolCall::new(tool, audit::CallDecision::Allow));
        self.annotate(Some(&mut record));
        log.set_audit(record);
    }

    /// Completes the call's entry in `record` (decision, rule, reason, approval) and the
    /// record's trust.
    pub fn annotate(self, record: Option<&mut audit::AuditRecord>) {
        let Some(record) = record else {
            return;
        };
        if let Some(call) = record.calls.first_mut() {
            call.decision = self.decision;
            call.rule = Some(self.rule);
            if self.reason.is_some() {
                call.reason = self.reason;
            }
            call.approval_id.clone_from(&self.approval);
            call.call_id = Some(self.call_id);
        }
        if let Some(id) = self.approval {
            record.approvals.push(id);
        }
        if let Some(trust) = self.trust {
            record.trust = trust;
        }
    }
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// The arguments of a call as sent (their JSON text; empty when absent).
fn arguments_of(forward: &Forward) -> &str {
    forward
        .params
        .as_deref()
        .and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok())
        .and_then(|p| p.arguments)
        .map_or("", RawValue::get)
}

/// A JSON-RPC id as the audit and the taint name the call: the number, or the string itself.
fn id_text(id: &Id) -> String {
    match id {
        Id::Number(n) => n.to_string(),
        Id::String(s) => s.clone(),
    }
}

/// Carries what the guardrails put in `earlier` (the call's rule, reason, approval and id, the
/// session's trust, the approvals) into `record`, the call's audit record as the record stage
/// made it; what `record` says already stays.
pub fn carry(earlier: &audit::AuditRecord, record: &mut audit::AuditRecord) {
    if let (Some(was), Some(call)) = (earlier.calls.first(), record.calls.first_mut()) {
        if call.rule.is_none() {
            call.rule.clone_from(&was.rule);
        }
        if call.reason.is_none() {
            call.reason.clone_from(&was.reason);
        }
        if call.approval_id.is_none() {
            call.approval_id.clone_from(&was.approval_id);
        }
        if call.call_id.is_none() {
            call.call_id.clone_from(&was.call_id);
        }
    }
    if earlier.trust.tainted && !record.trust.tainted {
        record.trust = earlier.trust.clone();
    }
    for id in &earlier.approvals {
        if !record.approvals.contains(id) {
            record.approvals.push(id.clone());
        }
    }
}

/// Judges a `tools/call` about to be forwarded (`call_id` its JSON-RPC id) and taints the
/// session when the call passes and its tool's output is untrusted; `None` when `forward` is
/// not a `tools/call`. The [`Verdict`] for the audit is made only when `audited`.
pub async fn judge_call(
    state: &AppState,
    policies: &ToolPolicies,
    who: &Identity,
    session: &str,
    forward: &Forward,
    call_id: &Id,
    audited: bool,
) -> Option<(Judged, Option<Verdict>)> {
    let tool = forward.tool()?;
    let (call, rule) = policies.call_policy(tool, forward.hints);
    let needs_trust = matches!(call, CallPolicy::TrustedOnly | CallPolicy::Approval);
    let trust = match needs_trust {
        true => trust_of(state, session).await,
        false => Trust::default(),
    };
    // The arguments are read out of the parameters only when a rule tests them or a held call
    // needs their digest.
    let has_conditions = rule
        .index()
        .and_then(|i| policies.specs().get(i))
        .is_some_and(|spec| !spec.args.is_empty());
    let arguments = match has_conditions || call == CallPolicy::Approval {
        true => arguments_of(forward),
        false => "",
    };
    let decision = policies.decide_call_raw(tool, forward.hints, arguments, who, &trust);
    let mut entry = Verdict {
        decision: audit::CallDecision::Allow,
        rule: String::new(),
        reason: None,
        approval: None,
        call_id: String::new(),
        trust: None,
    };
    if audited {
        entry.rule = decision.rule().to_string();
        entry.call_id = id_text(call_id);
    }
    let judged = match decision {
        CallDecision::Allow { .. } => Judged::Pass,
        CallDecision::Withhold { reason, .. } => {
            entry.decision = audit::CallDecision::Refused;
            entry.reason = Some(reason.code().to_owned());
            // On MCP the context is the session, not a conversation.
            let message = match reason {
                WithholdReason::Untrusted => format!(
                    "Tool `{tool}` is withheld by policy: the session holds untrusted tool \
                     output and this tool needs a trusted context"
                ),
                reason => format!("Tool `{tool}` is withheld by policy: {reason}"),
            };
            Judged::Refuse(ErrorObject::new(INVALID_PARAMS, message))
        }
        CallDecision::Hold { rule } => {
            let digest = sha256_hex(arguments);
            let approved = state.approvals.approved(session, &who.subject).await;
            match approved
                .into_iter()
                .find(|a| a.tool == tool && a.arguments_sha256 == digest)
            {
                Some(approval) => {
                    state.approvals.consume(&approval.id);
                    entry.reason = Some("approved".to_owned());
                    entry.approval = Some(approval.id);
                    Judged::Pass
                }
                None => {
                    let why = "the session holds untrusted tool output and this tool needs an \
                               approval then";
                    let id = state
                        .approvals
                        .hold_confirmed(crate::approvals::HeldCall {
                            tool: tool.to_owned(),
                            arguments: arguments.to_owned(),
                            arguments_sha256: digest,
                            identity: who.clone(),
                            key_id: who.key_id.clone(),
                            session: session.to_owned(),
                            reason: format!("{rule}: {why} (tainted by {})", taint_text(&trust)),
                        })
                        .await;
                    entry.decision = audit::CallDecision::Held;
                    entry.reason = Some("approval".to_owned());
                    let message = format!(
                        "Tool `{tool}` is held for approval `{id}`: {why}. Once it is approved, \
                         repeat this call with the same arguments and it will pass"
                    );
                    entry.approval = Some(id);
                    Judged::Refuse(ErrorObject::new(INVALID_PARAMS, message))
                }
            }
        }
    };
    let mut trust = trust;
    if matches!(judged, Judged::Pass) && policies.output(tool).0 == Output::Untrusted {
        let store = state.mcp_trust.store();
        // Already tainted: nothing to write (a trust read above was current).
        let first = if trust.tainted_by.is_some() {
            None
        } else {
            let known = match needs_trust {
                true => None,
                false => store.taint_of(session).await,
            };
            Some(match known {
                Some(first) => first,
                None => {
                    let taint = SessionTaint {
                        tool: tool.to_owned(),
                        call_id: id_text(call_id),
                    };
                    store.taint(session, taint).await
                }
            })
        };
        if audited && let Some(first) = first {
            trust.tainted_by = Some(policy_taint(&first));
        }
    }
    if !audited {
        return Some((judged, None));
    }
    if trust.is_tainted() || needs_trust {
        entry.trust = Some(audit_trust(&trust));
    }
    Some((judged, Some(entry)))
}

fn taint_text(trust: &Trust) -> String {
    match &trust.tainted_by {
        Some(t) if !t.tool.is_empty() => format!("`{}`", t.tool),
        _ => "an unknown result".to_owned(),
    }
}

/// A trust state as the audit records it.
fn audit_trust(trust: &Trust) -> audit::Trust {
    audit::Trust {
        tainted: trust.is_tainted(),
        tainted_by: trust.tainted_by.as_ref().map(|t| audit::TaintSource {
            tool: t.tool.clone(),
            call_id: (!t.call_id.is_empty()).then(|| t.call_id.clone()),
        }),
    }
}

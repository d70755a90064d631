//! Agent guardrails on the LLM path: the **guard** stage of a chat turn and the judge of the
//! tool calls in its answer. The decisions themselves are `portcullis_policy`'s
//! (`tool_policy`, `trust`); this module applies them to a request and its answer.
//!
//! **guard** ([`guard`], after authorize, before admit and the caches): the turn's trust state
//! is reconstructed from the messages the client sent (stateless: every turn resends them, so
//! any replica reaches the same state); the declared tools the caller may not be offered now
//! (`block`, not named for the caller, `trusted_only` in a tainted context) are removed from the
//! request before any upstream (or cache key) sees it; the turn's audit record is begun. The
//! results of `output: quarantine` tools it finds are then read by the quarantine model
//! (`crate::quarantine`) before anything else sees the request.
//!
//! **judge** ([`PolicyJudge`], a [`CallJudge`] for `tool_calls::CallFilter` and
//! `complete_body`): each call of the answer is decided with its arguments — the deny-list
//! first, then the policy — and every decision goes into the turn's audit record. A call of an
//! `approval` tool in a tainted context is held: it is recorded as a pending approval and
//! withheld with a notice naming the approval, and it passes when the agent repeats the turn
//! after an admin approved that exact call (same session, caller, tool and arguments).

use std::sync::Arc;

use portcullis_audit as audit;
use portcullis_core::{ChatRequest, Identity, Part, ToolChoice};
use portcullis_policy::{
    CallDecision, DeniedTools, Hidden, QuarantinedResult, ToolHints, ToolPolicies, Trust,
    WithholdReason, reconstruct, session_from_conversation,
};
use portcullis_store::ApprovalStatus;
use sha2::{Digest, Sha256};

use crate::approvals::{Approvals, Approved, HeldCall};
use crate::request_log::AuditCalls;
use crate::tool_calls::{CallJudge, Verdict};

/// What the guard stage learned of a turn: its trust, its session, what stays offered.
#[derive(Debug)]
pub struct Guard {
    policies: Arc<ToolPolicies>,
    who: Identity,
    trust: Trust,
    session: String,
    /// The results of `output: quarantine` tools in the messages, for `crate::quarantine`.
    quarantined: Vec<QuarantinedResult>,
}

impl Guard {
    /// The results of `output: quarantine` tools in the request's messages (taken: the
    /// quarantine step replaces them once).
    pub fn take_quarantined(&mut self) -> Vec<QuarantinedResult> {
        std::mem::take(&mut self.quarantined)
    }

    /// The turn's session: the caller's `x-portcullis-session-id`, else derived from the
    /// conversation's opening.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether the conversation holds untrusted output.
    pub fn is_tainted(&self) -> bool {
        self.trust.is_tainted()
    }

    /// Whether some call of this turn could be held for an approval (and approvals already
    /// given are worth looking up).
    pub fn may_hold(&self) -> bool {
        self.trust.is_tainted()
            && self
                .policies
                .specs()
                .iter()
                .any(|rule| rule.call.as_deref() == Some("approval"))
    }

    /// The judge of the answer's calls: the deny-list `denied` first, then the policies;
    /// decisions recorded in `calls`; `approved` the approvals already given for this
    /// session and caller (through `approvals`, which also holds new calls).
    pub fn judge(
        self,
        denied: Option<DeniedTools>,
        calls: AuditCalls,
        approved: Vec<Approved>,
        approvals: Arc<Approvals>,
    ) -> PolicyJudge {
        PolicyJudge {
            guard: self,
            denied,
            calls,
            approved,
            approvals,
        }
    }
}

/// **guard**: `request`'s trust under `policies`, its tools that `who` may not be offered
/// removed (with `tool_choice` kept consistent), and the turn's audit record begun in
/// `record` (tools offered and hidden, trust). `None` when the request involves no tools (no
/// declared tool, no call or result in its messages): nothing to guard or audit.
pub fn guard(
    policies: &Arc<ToolPolicies>,
    request: &mut ChatRequest,
    who: &Identity,
    session_header: Option<&str>,
    record: Option<&mut audit::AuditRecord>,
) -> Option<Guard> {
    let involves_tools = !request.tools.is_empty()
        || request.messages.iter().any(|m| {
            m.content
                .iter()
                .any(|p| matches!(p, Part::ToolCall { .. } | Part::ToolResult { .. }))
        });
    if !involves_tools {
        return None;
    }
    let turn = reconstruct(policies, &request.messages);
    let (trust, quarantined) = (turn.trust, turn.quarantined);
    let hidden = policies.offered(
        request
            .tools
            .iter()
            .map(|t| (t.name.as_str(), ToolHints::NONE)),
        who,
        &trust,
    );
    let session = match session_header {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => session_from_conversation(who, &request.messages),
    };
    if let Some(record) = record {
        record.session = Some(session.clone());
        record.identity = audit_identity(who);
        record.model = Some(request.model.clone());
        record.tools_hidden = hidden
            .iter()
            .map(|h| audit::HiddenTool {
                tool: request.tools[h.index].name.clone(),
                rule: Some(h.rule.to_string()),
                reason: Some(h.reason.as_str().to_owned()),
            })
            .collect();
        record.trust = audit_trust(&trust);
        remove_hidden(request, &hidden);
        record.tools_offered = request.tools.iter().map(|t| t.name.clone()).collect();
    } else {
        remove_hidden(request, &hidden);
    }
    Some(Guard {
        policies: policies.clone(),
        who: who.clone(),
        trust,
        session,
        quarantined,
    })
}

/// Removes the `hidden` tools from `request`; a `tool_choice` naming one becomes `auto`, and
/// with no tool left the request asks for none.
fn remove_hidden(request: &mut ChatRequest, hidden: &[Hidden]) {
    if hidden.is_empty() {
        return;
    }
    let mut at = 0;
    let mut next = hidden.iter().map(|h| h.index).peekable();
    let mut removed = Vec::with_capacity(hidden.len());
    request.tools.retain(|tool| {
        let hide = next.peek() == Some(&at);
        if hide {
            next.next();
            removed.push(tool.name.clone());
        }
        at += 1;
        !hide
    });
    if request.tools.is_empty() {
        request.tool_choice = None;
        request.parallel_tool_calls = None;
    } else if let Some(ToolChoice::Tool(name)) = &request.tool_choice
        && removed.contains(name)
    {
        request.tool_choice = Some(ToolChoice::Auto);
    }
}

/// Who called, as the audit records it.
pub fn audit_identity(who: &Identity) -> audit::AuditIdentity {
    audit::AuditIdentity {
        auth_method: Some(who.method.as_str().to_owned()),
        subject: Some(who.subject.clone()),
        key_id: who.key_id.clone(),
        user: who.user.clone(),
        team: who.team.clone(),
        role: Some(who.role.as_str().to_owned()),
    }
}

/// A trust state as the audit records it.
pub fn audit_trust(trust: &Trust) -> audit::Trust {
    audit::Trust {
        tainted: trust.is_tainted(),
        tainted_by: trust.tainted_by.as_ref().map(|t| audit::TaintSource {
            tool: t.tool.clone(),
            call_id: (!t.call_id.is_empty()).then(|| t.call_id.clone()),
        }),
    }
}

/// Hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Judges the calls of one turn's answer (see the module documentation).
pub struct PolicyJudge {
    guard: Guard,
    denied: Option<DeniedTools>,
    calls: AuditCalls,
    approved: Vec<Approved>,
    approvals: Arc<Approvals>,
}

impl PolicyJudge {
    fn record(&self, call: audit::ToolCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    /// The decision on a call, recorded, as a verdict.
    fn decided(
        &mut self,
        id: &str,
        name: &str,
        arguments: &str,
        decision: CallDecision,
    ) -> Verdict {
        let mut entry = audit::ToolCall::new(name, audit::CallDecision::Allow);
        entry.call_id = (!id.is_empty()).then(|| id.to_owned());
        entry.rule = Some(decision.rule().to_string());
        let verdict = match decision {
            CallDecision::Allow { .. } => Verdict::Pass,
            CallDecision::Withhold { reason, .. } => {
                entry.decision = audit::CallDecision::Withheld;
                entry.reason = Some(reason.code().to_owned());
                Verdict::Withhold(reason.to_string())
            }
            CallDecision::Hold { .. } => {
                let digest = sha256_hex(arguments);
                entry.arguments_sha256 = Some(digest.clone());
                if let Some(at) = self
                    .approved
                    .iter()
                    .position(|a| a.tool == name && a.arguments_sha256 == digest)
                {
                    // Approved before: passes, once.
                    let approval = self.approved.swap_remove(at);
                    self.approvals.consume(&approval.id);
                    entry.approval_id = Some(approval.id);
                    entry.reason = Some("approved".to_owned());
                    Verdict::Pass
                } else {
                    let why = "the conversation holds untrusted tool output and this tool needs \
                               an approval then";
                    let guard = &self.guard;
                    let id = self.approvals.hold(HeldCall {
                        tool: name.to_owned(),
                        arguments: arguments.to_owned(),
                        arguments_sha256: digest,
                        identity: guard.who.clone(),
                        key_id: guard.who.key_id.clone(),
                        session: guard.session.clone(),
                        reason: match &guard.trust.tainted_by {
                            Some(taint) => format!("{why} (tainted by {taint})"),
                            None => why.to_owned(),
                        },
                    });
                    entry.decision = audit::CallDecision::Held;
                    entry.reason = Some("approval".to_owned());
                    let status = self
                        .approvals
                        .status(&guard.session, &guard.who.subject, &id);
                    let text = if status == Some(ApprovalStatus::Denied) {
                        entry.decision = audit::CallDecision::Withheld;
                        entry.reason = Some("denied".to_owned());
                        format!("{why}, and approval `{id}` for this call was denied")
                    } else {
                        format!(
                            "{why}; it is held as approval `{id}`: once it is approved, repeat \
                             this request and the same call will pass"
                        )
                    };
                    entry.approval_id = Some(id);
                    Verdict::Withhold(text)
                }
            }
        };
        if entry.arguments_sha256.is_none() && !arguments.is_empty() {
            entry.arguments_sha256 = Some(sha256_hex(arguments));
        }
        self.record(entry);
        verdict
    }
}

impl CallJudge for PolicyJudge {
    fn on_name(&mut self, name: &str) -> Option<Verdict> {
        if let Some(denied) = &self.denied
            && denied.denies(name)
        {
            let mut entry = audit::ToolCall::new(name, audit::CallDecision::Withheld);
            entry.rule = Some("tools_denied".to_owned());
            entry.reason = Some("denied".to_owned());
            self.record(entry);
            return Some(Verdict::Denied);
        }
        // Decided on the name alone when no argument could change the outcome: withheld
        // (blocked, not for this caller, needing a trusted context), or passed (no argument
        // condition, not held for an approval: its bytes then go by untouched, and it is
        // recorded with its arguments' digest once they are complete). Otherwise the call is
        // held until its arguments are complete.
        let policies = &self.guard.policies;
        let decision = policies.decide_call_raw(
            name,
            ToolHints::NONE,
            "",
            &self.guard.who,
            &self.guard.trust,
        );
        match decision {
            CallDecision::Withhold {
                reason:
                    WithholdReason::Blocked | WithholdReason::Identity | WithholdReason::Untrusted,
                ..
            } => Some(self.decided("", name, "", decision)),
            CallDecision::Allow { .. }
                if policies
                    .rule_index(name)
                    .and_then(|i| policies.specs().get(i))
                    .is_none_or(|rule| rule.args.is_empty()) =>
            {
                Some(Verdict::Pass)
            }
            _ => None,
        }
    }

    fn wants_passed(&self) -> bool {
        true
    }

    fn on_passed(&mut self, id: &str, name: &str, arguments: &str, _complete: bool) {
        let decision = self.guard.policies.decide_call_raw(
            name,
            ToolHints::NONE,
            "",
            &self.guard.who,
            &self.guard.trust,
        );
        self.decided(id, name, arguments, decision);
    }

    fn on_call(&mut self, id: &str, name: &str, arguments: &str) -> Verdict {
        let decision = self.guard.policies.decide_call_raw(
            name,
            ToolHints::NONE,
            arguments,
            &self.guard.who,
            &self.guard.trust,
        );
        self.decided(id, name, arguments, decision)
    }
}

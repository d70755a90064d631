//! Tool policies (`tool_policies`, `quarantine`): per tool, what its output does to the
//! conversation's trust and when it may be called — and the decisions every path takes from
//! them: which declared tools are offered to the model ([`ToolPolicies::offered`]) and whether
//! a call the model emitted passes, is withheld or is held for approval
//! ([`ToolPolicies::decide_call`]).
//!
//! # The rules
//!
//! ```yaml
//! tool_policies:
//!   - {match: "read_*", output: untrusted}
//!   - match: send_money
//!     call: approval
//!     args:
//!       iban: {in: [DE89370400440532013000, FR1420041010050500013M02606]}
//!       amount: {max: 5000}
//!   - {match: read_file, output: trusted, args: {path: {under: /reports}}}
//!   - {match: "delete_*", call: trusted_only, roles: [admin]}
//!   - {match: "web__fetch", output: quarantine}
//! quarantine: {model: openai/gpt-4o-mini}
//! ```
//!
//! Rules are checked in order; the first whose `match` fits the tool's name decides for it
//! (later rules are not consulted, even when the first leaves an aspect out). `match` is a glob
//! with the rules of [`crate::ToolGlobs`] over the name as declared in an LLM request's
//! `tools`, or `<server>__<tool>` for MCP.
//!
//! - `output` — what a result of the tool does to the context: `trusted` (nothing),
//!   `untrusted` (taints it), `quarantine` (the raw result never reaches the privileged model;
//!   it is read by the `quarantine.model` and does not taint). **Default `untrusted`**: a tool
//!   nobody vouched for may return anything an attacker wrote (a mail, a web page, a file), so
//!   its output is treated as such until a rule says otherwise.
//! - `call` — when the model may call it: `allow`, `block` (never offered, never called),
//!   `trusted_only` (offered and callable only while the context is untrusted-free), `approval`
//!   (always offered; in a tainted context each call is held for a decision, in a trusted one
//!   it passes). **Default `allow`**, except for an MCP tool whose server annotates it
//!   `destructiveHint: true` without `readOnlyHint: true`: `trusted_only` (see [`ToolHints`]).
//! - `users`, `teams`, `roles` — who may use the tool at all: a caller none of them names
//!   (any one matching is enough; none given means everyone) does not get the tool offered and
//!   its calls are withheld.
//! - `args` — conditions on the call's arguments ([`crate::conditions`]); a call that fails
//!   one is withheld, whatever the trust state.
//!
//! # How the parts combine
//!
//! For a call, in this order, the first that applies decides ([`CallDecision`]):
//! 1. `call: block` → withheld;
//! 2. the caller is not among the rule's `users`/`teams`/`roles` → withheld;
//! 3. `call: trusted_only` in a tainted context → withheld;
//! 4. an `args` condition fails → withheld, naming the argument and the test;
//! 5. `call: approval` in a tainted context → held for approval;
//! 6. otherwise → allowed.
//!
//! Offering ([`ToolPolicies::offer`]) applies steps 1–3 (arguments are not known yet):
//! `block` tools and tools the caller is not named for are always hidden, `trusted_only` tools
//! while the context is tainted; `approval` tools always stay.
//!
//! Every decision carries the rule that fired ([`RuleRef`]) for the audit.
//!
//! # Cost
//!
//! Compilation indexes literal patterns in a hash map and keeps `prefix*` / `*suffix`
//! patterns as plain string comparisons, so finding a tool's rule is one lookup plus a scan of
//! the non-literal patterns that come before the literal hit; only patterns with other
//! metacharacters run a glob matcher. Decisions allocate nothing except a withheld call's
//! reason (a reference-counted argument name), and [`ToolPolicies::offered`] allocates only
//! when it hides something.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use portcullis_core::config::{Block, Issue, Issues, index, key};
use portcullis_core::{AccessRole, Identity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conditions::{ArgCondition, ArgConditionSpec, ArgFailure};
use crate::questions::{QuestionSpec, Questions};
use crate::tools::ToolGlobs;
use crate::trust::Trust;

/// Where the rules sit in the configuration file (and the prefix of their issue paths).
pub const TOOL_POLICIES_KEY: &str = "tool_policies";

/// What a tool's output does to the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// Nothing: the tool returns only what the operator vouches for.
    Trusted,
    /// Taints the context.
    Untrusted,
    /// Read only by the quarantine model; does not taint.
    Quarantine,
}

impl Output {
    /// The output of a tool no rule (or no rule's `output`) covers.
    pub const DEFAULT: Output = Output::Untrusted;

    /// `trusted`, `untrusted` or `quarantine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Trusted => "trusted",
            Output::Untrusted => "untrusted",
            Output::Quarantine => "quarantine",
        }
    }

    /// Parses [`Output::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Output> {
        match s {
            "trusted" => Some(Output::Trusted),
            "untrusted" => Some(Output::Untrusted),
            "quarantine" => Some(Output::Quarantine),
            _ => None,
        }
    }
}

/// When a tool may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallPolicy {
    /// Always (subject to the rule's conditions).
    Allow,
    /// Never offered, never called.
    Block,
    /// Only while the context is not tainted.
    TrustedOnly,
    /// In a tainted context, each call is held for a decision.
    Approval,
}

impl CallPolicy {
    /// `allow`, `block`, `trusted_only` or `approval`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallPolicy::Allow => "allow",
            CallPolicy::Block => "block",
            CallPolicy::TrustedOnly => "trusted_only",
            CallPolicy::Approval => "approval",
        }
    }

    /// Parses [`CallPolicy::as_str`]'s names.
    pub fn parse(s: &str) -> Option<CallPolicy> {
        match s {
            "allow" => Some(CallPolicy::Allow),
            "block" => Some(CallPolicy::Block),
            "trusted_only" => Some(CallPolicy::TrustedOnly),
            "approval" => Some(CallPolicy::Approval),
            _ => None,
        }
    }
}

/// What the tool's server says about it (MCP `annotations`); [`ToolHints::NONE`] for tools
/// declared in an LLM request, which carry no annotations.
///
/// Only an explicit `destructiveHint: true` counts (the MCP specification's implicit default
/// of `true` for unannotated tools would make every such tool `trusted_only`), and
/// `readOnlyHint: true` overrides it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ToolHints {
    /// `destructiveHint: true`.
    pub destructive: bool,
    /// `readOnlyHint: true`.
    pub read_only: bool,
}

impl ToolHints {
    /// No annotations.
    pub const NONE: ToolHints = ToolHints {
        destructive: false,
        read_only: false,
    };

    /// From an MCP tool's `annotations` object (absent hints count as `false`).
    pub fn from_annotations(annotations: Option<&Value>) -> ToolHints {
        let flag = |name: &str| {
            annotations
                .and_then(|a| a.get(name))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        ToolHints {
            destructive: flag("destructiveHint"),
            read_only: flag("readOnlyHint"),
        }
    }

    /// The `call` of a tool no rule (or no rule's `call`) covers.
    pub fn default_call(self) -> CallPolicy {
        if self.destructive && !self.read_only {
            CallPolicy::TrustedOnly
        } else {
            CallPolicy::Allow
        }
    }
}

/// The rule that decided, for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleRef {
    /// `tool_policies[index]`, whose `match` was `pattern`.
    Rule {
        /// The rule's position.
        index: usize,
        /// Its `match`.
        pattern: Arc<str>,
    },
    /// No rule fits the tool: the defaults decided.
    Default,
}

impl RuleRef {
    /// The rule's position, if a rule decided.
    pub fn index(&self) -> Option<usize> {
        match self {
            RuleRef::Rule { index, .. } => Some(*index),
            RuleRef::Default => None,
        }
    }
}

impl fmt::Display for RuleRef {
    /// `tool_policies[2] (send_*)` or `default`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Rule { index, pattern } => {
                write!(f, "{TOOL_POLICIES_KEY}[{index}] ({pattern})")
            }
            RuleRef::Default => f.write_str("default"),
        }
    }
}

/// Why a declared tool is not offered to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HideReason {
    /// `call: block`.
    Blocked,
    /// The rule's `users`/`teams`/`roles` do not name the caller.
    Identity,
    /// `trusted_only` (by rule or by the destructive default) in a tainted context.
    Untrusted,
}

impl HideReason {
    /// `blocked`, `identity` or `untrusted`.
    pub fn as_str(self) -> &'static str {
        match self {
            HideReason::Blocked => "blocked",
            HideReason::Identity => "identity",
            HideReason::Untrusted => "untrusted",
        }
    }
}

impl fmt::Display for HideReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HideReason::Blocked => "the tool is blocked by policy",
            HideReason::Identity => "the caller may not use this tool",
            HideReason::Untrusted => {
                "the conversation holds untrusted tool output and this tool needs a trusted context"
            }
        })
    }
}

/// Whether a declared tool stays offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// It stays.
    Keep {
        /// The rule that decided.
        rule: RuleRef,
    },
    /// It is removed from the request's tools.
    Hide {
        /// Why.
        reason: HideReason,
        /// The rule that decided.
        rule: RuleRef,
    },
}

/// A declared tool that is not offered: its position among the tools given to
/// [`ToolPolicies::offered`], why, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// Position in the input.
    pub index: usize,
    /// Why.
    pub reason: HideReason,
    /// The rule that decided.
    pub rule: RuleRef,
}

/// Why a call is withheld (the text a notice may show; it never quotes an argument's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithholdReason {
    /// `call: block`.
    Blocked,
    /// The rule's `users`/`teams`/`roles` do not name the caller.
    Identity,
    /// `trusted_only` in a tainted context.
    Untrusted,
    /// An argument failed its condition.
    Argument(ArgFailure),
    /// The rule has argument conditions and the arguments are not valid JSON.
    InvalidArguments,
}

impl WithholdReason {
    /// A short code for the audit: `blocked`, `identity`, `untrusted`, `argument`,
    /// `invalid_arguments`.
    pub fn code(&self) -> &'static str {
        match self {
            WithholdReason::Blocked => "blocked",
            WithholdReason::Identity => "identity",
            WithholdReason::Untrusted => "untrusted",
            WithholdReason::Argument(_) => "argument",
            WithholdReason::InvalidArguments => "invalid_arguments",
        }
    }
}

impl fmt::Display for WithholdReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithholdReason::Blocked => f.write_str("the tool is blocked by policy"),
            WithholdReason::Identity => f.write_str("the caller may not use this tool"),
            WithholdReason::Untrusted => f.write_str(
                "the conversation holds untrusted tool output and this tool needs a trusted context",
            ),
            WithholdReason::Argument(failure) => failure.fmt(f),
            WithholdReason::InvalidArguments => f.write_str("the arguments are not valid JSON"),
        }
    }
}

/// The decision on one call the model emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallDecision {
    /// It passes.
    Allow {
        /// The rule that decided.
        rule: RuleRef,
    },
    /// It never reaches the client or the tool.
    Withhold {
        /// Why.
        reason: WithholdReason,
        /// The rule that decided.
        rule: RuleRef,
    },
    /// `approval` in a tainted context: held until someone decides.
    Hold {
        /// The rule that decided.
        rule: RuleRef,
    },
}

impl CallDecision {
    /// The rule that decided.
    pub fn rule(&self) -> &RuleRef {
        match self {
            CallDecision::Allow { rule }
            | CallDecision::Withhold { rule, .. }
            | CallDecision::Hold { rule } => rule,
        }
    }

    /// Whether the call passes.
    pub fn is_allowed(&self) -> bool {
        matches!(self, CallDecision::Allow { .. })
    }

    /// `allow`, `withhold` or `hold`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallDecision::Allow { .. } => "allow",
            CallDecision::Withhold { .. } => "withhold",
            CallDecision::Hold { .. } => "hold",
        }
    }
}

/// One rule as written, in the configuration file or as JSON (the admin API's form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicySpec {
    /// Glob over the tool's name.
    #[serde(rename = "match")]
    pub pattern: String,
    /// `trusted`, `untrusted` or `quarantine`; absent: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `allow`, `block`, `trusted_only` or `approval`; absent: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
    /// User ids that may use the tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Team ids that may use the tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Roles (`admin`, `member`, `viewer`) that may use the tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Conditions on arguments, by top-level name or JSON pointer.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, ArgConditionSpec>,
    /// With `output: quarantine`, what the quarantine model is asked about a result (absent:
    /// [`Questions::default_set`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<IndexMap<String, QuestionSpec>>,
}

/// How a rule's `match` is tested.
#[derive(Debug, Clone)]
enum NameMatcher {
    /// `prefix*` (the rest must not hold a `/`, as `*` does not cross one).
    Prefix(Box<str>),
    /// `*suffix`.
    Suffix(Box<str>),
    /// Anything else.
    Glob(ToolGlobs),
}

impl NameMatcher {
    /// The matcher for `pattern`, or `None` when it is a literal (indexed apart).
    fn new(pattern: &str) -> Result<Option<NameMatcher>, String> {
        const META: [char; 5] = ['*', '?', '[', '{', '\\'];
        if !pattern.contains(META) {
            return Ok(None);
        }
        if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(META)
        {
            return Ok(Some(NameMatcher::Prefix(prefix.into())));
        }
        if let Some(suffix) = pattern.strip_prefix('*')
            && !suffix.contains(META)
        {
            return Ok(Some(NameMatcher::Suffix(suffix.into())));
        }
        ToolGlobs::new(&[pattern])
            .map(|g| Some(NameMatcher::Glob(g)))
            .map_err(|issues| {
                issues
                    .into_iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NameMatcher::Prefix(p) => name
                .strip_prefix(&**p)
                .is_some_and(|rest| !rest.contains('/')),
            NameMatcher::Suffix(s) => name
                .strip_suffix(&**s)
                .is_some_and(|rest| !rest.contains('/')),
            NameMatcher::Glob(g) => g.matches(name),
        }
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    rule: RuleRef,
    output: Option<Output>,
    call: Option<CallPolicy>,
    users: Box<[String]>,
    teams: Box<[String]>,
    roles: Box<[AccessRole]>,
    args: Box<[ArgCondition]>,
    questions: Option<Questions>,
}

impl Rule {
    /// Whether the rule's identity condition admits `who`.
    fn admits(&self, who: &Identity) -> bool {
        if self.users.is_empty() && self.teams.is_empty() && self.roles.is_empty() {
            return true;
        }
        who.user
            .as_deref()
            .is_some_and(|u| self.users.iter().any(|x| x == u))
            || who
                .teams
                .iter()
                .chain(who.team.iter())
                .any(|t| self.teams.iter().any(|x| x == t))
            || self.roles.contains(&who.role)
    }
}

#[derive(Debug, Default)]
struct Inner {
    specs: Vec<ToolPolicySpec>,
    rules: Vec<Rule>,
    /// Literal patterns → the first rule with that pattern.
    literals: HashMap<Box<str>, usize>,
    /// The other patterns, in rule order.
    patterned: Vec<(usize, NameMatcher)>,
}

/// The compiled rules. Cheap to clone; an empty set applies only the defaults.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicies {
    inner: Arc<Inner>,
}

impl PartialEq for ToolPolicies {
    fn eq(&self, other: &Self) -> bool {
        self.inner.specs == other.inner.specs
    }
}

/// Compiles rules given as JSON or YAML specs (the admin API's entry point); problems are
/// reported under `tool_policies[i]…`.
pub fn compile(specs: Vec<ToolPolicySpec>) -> Result<ToolPolicies, Vec<Issue>> {
    ToolPolicies::compile_at(specs, TOOL_POLICIES_KEY).map_err(Issues::into_vec)
}

impl ToolPolicies {
    /// No rules: the defaults alone.
    pub fn empty() -> ToolPolicies {
        ToolPolicies::default()
    }

    /// Compiles `specs`, reporting problems under `at` (`at[i].match`, …).
    pub fn compile_at(specs: Vec<ToolPolicySpec>, at: &str) -> Result<ToolPolicies, Issues> {
        let mut issues = Issues::new();
        let mut rules = Vec::with_capacity(specs.len());
        let mut literals = HashMap::new();
        let mut patterned = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = index(at, i);
            let before = issues.len();
            if spec.pattern.is_empty() {
                issues.at(&at, "match", "a pattern must not be empty");
            } else {
                match NameMatcher::new(&spec.pattern) {
                    Ok(None) => {
                        literals.entry(spec.pattern.as_str().into()).or_insert(i);
                    }
                    Ok(Some(m)) => patterned.push((i, m)),
                    Err(message) => issues.at(&at, "match", message),
                }
            }
            let output = spec.output.as_deref().and_then(|o| {
                let parsed = Output::parse(o);
                if parsed.is_none() {
                    issues.at(
                        &at,
                        "output",
                        format!("unknown value `{o}`, expected trusted, untrusted or quarantine"),
                    );
                }
                parsed
            });
            let call = spec.call.as_deref().and_then(|c| {
                let parsed = CallPolicy::parse(c);
                if parsed.is_none() {
                    issues.at(
                        &at,
                        "call",
                        format!(
                            "unknown value `{c}`, expected allow, block, trusted_only or approval"
                        ),
                    );
                }
                parsed
            });
            let mut roles = Vec::with_capacity(spec.roles.len());
            for (r, role) in spec.roles.iter().enumerate() {
                match AccessRole::parse(role) {
                    Some(role) => roles.push(role),
                    None => issues.push(
                        index(&key(&at, "roles"), r),
                        format!("unknown role `{role}`, expected admin, member or viewer"),
                    ),
                }
            }
            for (field, list) in [("users", &spec.users), ("teams", &spec.teams)] {
                for (n, name) in list.iter().enumerate() {
                    if name.is_empty() {
                        issues.push(index(&key(&at, field), n), "must not be empty");
                    }
                }
            }
            let args_at = key(&at, "args");
            let args: Vec<ArgCondition> = spec
                .args
                .iter()
                .filter_map(|(name, cond)| ArgCondition::compile(name, cond, &args_at, &mut issues))
                .collect();
            let questions = spec.questions.as_ref().and_then(|specs| {
                let questions_at = key(&at, "questions");
                if output != Some(Output::Quarantine) {
                    issues.push(
                        &questions_at,
                        "questions are asked only of a rule with `output: quarantine`",
                    );
                }
                Questions::compile(specs, &questions_at, &mut issues)
            });
            if issues.len() > before {
                continue;
            }
            rules.push(Rule {
                rule: RuleRef::Rule {
                    index: i,
                    pattern: spec.pattern.as_str().into(),
                },
                output,
                call,
                users: spec.users.clone().into(),
                teams: spec.teams.clone().into(),
                roles: roles.into(),
                args: args.into(),
                questions,
            });
        }
        issues.finish(ToolPolicies {
            inner: Arc::new(Inner {
                specs,
                rules,
                literals,
                patterned,
            }),
        })
    }

    /// The rules as written.
    pub fn specs(&self) -> &[ToolPolicySpec] {
        &self.inner.specs
    }

    /// Whether there is no rule (only the defaults apply).
    pub fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// Whether some rule has `output: quarantine` (the `quarantine` block is then required).
    pub fn uses_quarantine(&self) -> bool {
        self.inner
            .rules
            .iter()
            .any(|r| r.output == Some(Output::Quarantine))
    }

    /// The position of the first rule whose `match` fits `tool`.
    pub fn rule_index(&self, tool: &str) -> Option<usize> {
        let literal = self.inner.literals.get(tool).copied();
        for (i, matcher) in &self.inner.patterned {
            if literal.is_some_and(|l| *i > l) {
                break;
            }
            if matcher.matches(tool) {
                return Some(*i);
            }
        }
        literal
    }

    fn rule(&self, tool: &str) -> Option<&Rule> {
        // Rules are only kept when every rule compiled, so positions are indices.
        self.rule_index(tool).and_then(|i| self.inner.rules.get(i))
    }

    fn rule_ref(rule: Option<&Rule>) -> RuleRef {
        rule.map_or(RuleRef::Default, |r| r.rule.clone())
    }

    /// What `tool`'s output does to the context, and the rule that says so.
    pub fn output(&self, tool: &str) -> (Output, RuleRef) {
        let rule = self.rule(tool);
        (
            rule.and_then(|r| r.output).unwrap_or(Output::DEFAULT),
            Self::rule_ref(rule),
        )
    }

    /// What the quarantine model is asked about a result of `tool`: its rule's `questions`,
    /// else [`Questions::default_set`].
    pub fn questions(&self, tool: &str) -> Questions {
        self.rule(tool)
            .and_then(|r| r.questions.clone())
            .unwrap_or_else(Questions::default_set)
    }

    /// When `tool` may be called, and the rule that says so.
    pub fn call_policy(&self, tool: &str, hints: ToolHints) -> (CallPolicy, RuleRef) {
        let rule = self.rule(tool);
        (
            rule.and_then(|r| r.call)
                .unwrap_or_else(|| hints.default_call()),
            Self::rule_ref(rule),
        )
    }

    /// Whether the tool `tool` stays offered to `who` in a context of `trust`.
    pub fn offer(&self, tool: &str, hints: ToolHints, who: &Identity, trust: &Trust) -> Offer {
        let rule = self.rule(tool);
        match Self::gate(rule, hints, who, trust) {
            Some(reason) => Offer::Hide {
                reason,
                rule: Self::rule_ref(rule),
            },
            None => Offer::Keep {
                rule: Self::rule_ref(rule),
            },
        }
    }

    /// Steps 1–3 of the module documentation: why the tool is out of reach, if it is.
    fn gate(
        rule: Option<&Rule>,
        hints: ToolHints,
        who: &Identity,
        trust: &Trust,
    ) -> Option<HideReason> {
        let call = rule
            .and_then(|r| r.call)
            .unwrap_or_else(|| hints.default_call());
        if call == CallPolicy::Block {
            return Some(HideReason::Blocked);
        }
        if rule.is_some_and(|r| !r.admits(who)) {
            return Some(HideReason::Identity);
        }
        if call == CallPolicy::TrustedOnly && trust.is_tainted() {
            return Some(HideReason::Untrusted);
        }
        None
    }

    /// The declared tools (name and hints, in request order) that are not offered to `who` in
    /// a context of `trust`, in input order. Empty (no allocation) when every tool stays.
    pub fn offered<'t, I>(&self, tools: I, who: &Identity, trust: &Trust) -> Vec<Hidden>
    where
        I: IntoIterator<Item = (&'t str, ToolHints)>,
    {
        let mut hidden = Vec::new();
        for (index, (tool, hints)) in tools.into_iter().enumerate() {
            let rule = self.rule(tool);
            if let Some(reason) = Self::gate(rule, hints, who, trust) {
                hidden.push(Hidden {
                    index,
                    reason,
                    rule: Self::rule_ref(rule),
                });
            }
        }
        hidden
    }

    /// The decision on a call of `tool` with `arguments` (already parsed) by `who` in a
    /// context of `trust` (see the module documentation for the order of the checks).
    pub fn decide_call(
        &self,
        tool: &str,
        hints: ToolHints,
        arguments: &Value,
        who: &Identity,
        trust: &Trust,
    ) -> CallDecision {
        self.decide(tool, hints, who, trust, |_| {
            Ok(std::borrow::Cow::Borrowed(arguments))
        })
    }

    /// [`ToolPolicies::decide_call`] for arguments as the raw JSON text the model produced
    /// (the canonical form of a tool call). The text is parsed only when the rule has argument
    /// conditions; empty text counts as `{}`; text that is not JSON is then withheld
    /// ([`WithholdReason::InvalidArguments`]).
    pub fn decide_call_raw(
        &self,
        tool: &str,
        hints: ToolHints,
        arguments: &str,
        who: &Identity,
        trust: &Trust,
    ) -> CallDecision {
        self.decide(tool, hints, who, trust, |_| {
            if arguments.trim().is_empty() {
                return Ok(std::borrow::Cow::Owned(Value::Object(Default::default())));
            }
            serde_json::from_str::<Value>(arguments)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| ())
        })
    }

    fn decide<'a>(
        &self,
        tool: &str,
        hints: ToolHints,
        who: &Identity,
        trust: &Trust,
        arguments: impl FnOnce(()) -> Result<std::borrow::Cow<'a, Value>, ()>,
    ) -> CallDecision {
        let rule = self.rule(tool);
        let rule_ref = Self::rule_ref(rule);
        if let Some(reason) = Self::gate(rule, hints, who, trust) {
            let reason = match reason {
                HideReason::Blocked => WithholdReason::Blocked,
                HideReason::Identity => WithholdReason::Identity,
                HideReason::Untrusted => WithholdReason::Untrusted,
            };
            return CallDecision::Withhold {
                reason,
                rule: rule_ref,
            };
        }
        if let Some(rule) = rule
            && !rule.args.is_empty()
        {
            let Ok(arguments) = arguments(()) else {
                return CallDecision::Withhold {
                    reason: WithholdReason::InvalidArguments,
                    rule: rule_ref,
                };
            };
            for condition in rule.args.iter() {
                if let Err(failure) = condition.check(&arguments) {
                    return CallDecision::Withhold {
                        reason: WithholdReason::Argument(failure),
                        rule: rule_ref,
                    };
                }
            }
        }
        let call = rule
            .and_then(|r| r.call)
            .unwrap_or_else(|| hints.default_call());
        if call == CallPolicy::Approval && trust.is_tainted() {
            return CallDecision::Hold { rule: rule_ref };
        }
        CallDecision::Allow { rule: rule_ref }
    }
}

/// The `quarantine` block as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuarantine {
    /// The model that reads quarantined output (`provider/model`, a route or an alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many times the model is asked before the result is given up (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// How long one question may take (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The quarantine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// The model that reads quarantined output.
    pub model: String,
    /// How many times the model is asked about one result before it fails closed (1 to 5).
    pub max_rounds: u32,
    /// How long one round may take.
    pub timeout: std::time::Duration,
}

impl Quarantine {
    /// Rounds when `max_rounds` is left out.
    pub const DEFAULT_MAX_ROUNDS: u32 = 2;
    /// Most rounds allowed.
    pub const MAX_ROUNDS: u32 = 5;
    /// A round's time limit when `timeout` is left out.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
}

/// `tool_policies` and `quarantine` as written (both top-level keys of the file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawGuardrails {
    /// The rules.
    pub tool_policies: Option<Vec<ToolPolicySpec>>,
    /// The quarantine block.
    pub quarantine: Option<RawQuarantine>,
}

/// `tool_policies` and `quarantine` validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Guardrails {
    /// The rules (empty: defaults only).
    pub tool_policies: ToolPolicies,
    /// The quarantine model, when configured.
    pub quarantine: Option<Quarantine>,
}

impl Block for Guardrails {
    type Raw = RawGuardrails;
    type Valid = Guardrails;

    /// Validates the rules (under `at`'s `tool_policies`) and the `quarantine` block, which
    /// must name a model when present or when a rule has `output: quarantine`.
    fn validate(raw: RawGuardrails, at: &str) -> Result<Guardrails, Issues> {
        let mut issues = Issues::new();
        let policies = issues.take(ToolPolicies::compile_at(
            raw.tool_policies.unwrap_or_default(),
            &key(at, TOOL_POLICIES_KEY),
        ));
        let quarantine_at = key(at, "quarantine");
        let quarantine = match raw.quarantine {
            Some(RawQuarantine {
                model: Some(model),
                max_rounds,
                timeout,
            }) if !model.trim().is_empty() => {
                if model.chars().any(char::is_whitespace) {
                    issues.at(
                        &quarantine_at,
                        "model",
                        format!("`{model}` is not a model name"),
                    );
                }
                let max_rounds = max_rounds.unwrap_or(Quarantine::DEFAULT_MAX_ROUNDS);
                if !(1..=Quarantine::MAX_ROUNDS).contains(&max_rounds) {
                    issues.at(
                        &quarantine_at,
                        "max_rounds",
                        format!("must be from 1 to {}", Quarantine::MAX_ROUNDS),
                    );
                }
                let timeout = match timeout.as_deref().map(portcullis_core::parse_duration) {
                    None => Quarantine::DEFAULT_TIMEOUT,
                    Some(Ok(t)) if !t.is_zero() && t <= std::time::Duration::from_secs(600) => t,
                    Some(Ok(_)) => {
                        issues.at(&quarantine_at, "timeout", "must be above 0 and at most 10m");
                        Quarantine::DEFAULT_TIMEOUT
                    }
                    Some(Err(e)) => {
                        issues.at(&quarantine_at, "timeout", e.to_string());
                        Quarantine::DEFAULT_TIMEOUT
                    }
                };
                Some(Quarantine {
                    model,
                    max_rounds,
                    timeout,
                })
            }
            Some(_) => {
                issues.at(&quarantine_at, "model", "the quarantine model is required");
                None
            }
            None => None,
        };
        if quarantine.is_none()
            && let Some(policies) = &policies
            && let Some(i) = policies
                .inner
                .rules
                .iter()
                .find(|r| r.output == Some(Output::Quarantine))
                .and_then(|r| r.rule.index())
        {
            issues.push(
                key(&quarantine_at, "model"),
                format!(
                    "{} has `output: quarantine`, which needs `quarantine.model`",
                    index(&key(at, TOOL_POLICIES_KEY), i)
                ),
            );
        }
        let Some(tool_policies) = policies else {
            return Err(issues);
        };
        issues.finish(Guardrails {
            tool_policies,
            quarantine,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::conditions::ArgProblem;
    use crate::trust::Taint;

    fn policies(yaml_like: Value) -> ToolPolicies {
        let specs: Vec<ToolPolicySpec> = serde_json::from_value(yaml_like).unwrap();
        compile(specs).unwrap()
    }

    fn issues(yaml_like: Value) -> Vec<String> {
        let specs: Vec<ToolPolicySpec> = serde_json::from_value(yaml_like).unwrap();
        compile(specs)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn member(user: &str, teams: &[&str], role: AccessRole) -> Identity {
        let mut who = Identity::master();
        who.user = Some(user.to_owned());
        who.teams = teams.iter().map(|s| s.to_string()).collect();
        who.team = who.teams.first().cloned();
        who.role = role;
        who
    }

    fn tainted() -> Trust {
        Trust {
            tainted_by: Some(Taint::untrusted(
                "read_email",
                "call_1",
                Some(2),
                RuleRef::Default,
            )),
        }
    }

    fn rule(index: usize, pattern: &str) -> RuleRef {
        RuleRef::Rule {
            index,
            pattern: pattern.into(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_both_aspects() {
        let p = policies(json!([
            {"match": "read_*", "output": "trusted"},
            {"match": "read_mail", "output": "untrusted", "call": "block"},
            {"match": "send_money", "call": "trusted_only"},
            {"match": "*_money", "output": "quarantine", "call": "block"},
        ]));
        assert_eq!(p.output("read_mail"), (Output::Trusted, rule(0, "read_*")));
        let (call, by) = p.call_policy("read_mail", ToolHints::NONE);
        assert_eq!((call, by), (CallPolicy::Allow, rule(0, "read_*")));
        // Rule 2 fits first; its left-out output takes the default, not rule 3's.
        assert_eq!(
            p.output("send_money"),
            (Output::Untrusted, rule(2, "send_money"))
        );
        assert_eq!(
            p.call_policy("send_money", ToolHints::NONE).0,
            CallPolicy::TrustedOnly
        );
        assert_eq!(
            p.output("lend_money"),
            (Output::Quarantine, rule(3, "*_money"))
        );
        assert_eq!(p.output("other"), (Output::Untrusted, RuleRef::Default));
        assert_eq!(
            p.call_policy("other", ToolHints::NONE),
            (CallPolicy::Allow, RuleRef::Default)
        );
        // `*` does not cross `/`.
        assert_eq!(p.rule_index("read_a/b"), None);
        assert_eq!(
            rule(2, "send_money").to_string(),
            "tool_policies[2] (send_money)"
        );
    }

    #[test]
    fn destructive_hints_make_tools_trusted_only_by_default() {
        let p = policies(json!([
            {"match": "fs__delete_all", "call": "allow"},
            {"match": "fs__wipe", "output": "trusted"},
        ]));
        let destructive = ToolHints::from_annotations(Some(&json!({"destructiveHint": true})));
        let read_only = ToolHints::from_annotations(Some(
            &json!({"destructiveHint": true, "readOnlyHint": true}),
        ));
        assert_eq!(
            p.call_policy("fs__rm", destructive).0,
            CallPolicy::TrustedOnly
        );
        assert_eq!(p.call_policy("fs__rm", read_only).0, CallPolicy::Allow);
        assert_eq!(
            p.call_policy("fs__rm", ToolHints::from_annotations(None)).0,
            CallPolicy::Allow
        );
        assert_eq!(
            p.call_policy("fs__delete_all", destructive).0,
            CallPolicy::Allow,
            "a rule's call overrides the hint"
        );
        assert_eq!(
            p.call_policy("fs__wipe", destructive).0,
            CallPolicy::TrustedOnly,
            "a rule that leaves call out keeps the default"
        );
        let who = Identity::master();
        assert_eq!(
            p.offer("fs__rm", destructive, &who, &tainted()),
            Offer::Hide {
                reason: HideReason::Untrusted,
                rule: RuleRef::Default
            }
        );
        assert_eq!(
            p.offer("fs__rm", destructive, &who, &Trust::default()),
            Offer::Keep {
                rule: RuleRef::Default
            }
        );
    }

    #[test]
    fn offering_follows_the_contract() {
        let p = policies(json!([
            {"match": "shell", "call": "block"},
            {"match": "send_money", "call": "trusted_only"},
            {"match": "send_mail", "call": "approval"},
            {"match": "delete_*", "roles": ["admin"]},
        ]));
        let tools = ["shell", "send_money", "send_mail", "delete_file", "search"];
        let bob = member("bob", &["data"], AccessRole::Member);
        let admin = member("ann", &[], AccessRole::Admin);
        let hidden = |who: &Identity, trust: &Trust| -> Vec<(usize, HideReason)> {
            p.offered(tools.iter().map(|t| (*t, ToolHints::NONE)), who, trust)
                .into_iter()
                .map(|h| (h.index, h.reason))
                .collect()
        };
        assert_eq!(
            hidden(&admin, &Trust::default()),
            [(0, HideReason::Blocked)]
        );
        assert_eq!(
            hidden(&admin, &tainted()),
            [(0, HideReason::Blocked), (1, HideReason::Untrusted)]
        );
        assert_eq!(
            hidden(&bob, &tainted()),
            [
                (0, HideReason::Blocked),
                (1, HideReason::Untrusted),
                (3, HideReason::Identity)
            ]
        );
        let all = p.offered(
            tools.iter().map(|t| (*t, ToolHints::NONE)),
            &bob,
            &tainted(),
        );
        assert_eq!(all[2].rule, rule(3, "delete_*"));
    }

    #[test]
    fn calls_follow_the_contract() {
        let p = policies(json!([
            {"match": "shell", "call": "block"},
            {"match": "send_money", "call": "trusted_only"},
            {"match": "send_mail", "call": "approval"},
            {"match": "delete_*", "roles": ["admin"], "teams": ["ops"], "users": ["cy"]},
        ]));
        let bob = member("bob", &["data"], AccessRole::Member);
        let ops = member("dee", &["ops"], AccessRole::Member);
        let cy = member("cy", &[], AccessRole::Viewer);
        let clean = Trust::default();
        let dirty = tainted();
        let args = json!({});
        let decide = |tool: &str, who: &Identity, trust: &Trust| {
            p.decide_call(tool, ToolHints::NONE, &args, who, trust)
        };
        assert_eq!(
            decide("shell", &bob, &clean),
            CallDecision::Withhold {
                reason: WithholdReason::Blocked,
                rule: rule(0, "shell")
            }
        );
        assert!(decide("send_money", &bob, &clean).is_allowed());
        assert_eq!(
            decide("send_money", &bob, &dirty),
            CallDecision::Withhold {
                reason: WithholdReason::Untrusted,
                rule: rule(1, "send_money")
            }
        );
        assert!(decide("send_mail", &bob, &clean).is_allowed());
        assert_eq!(
            decide("send_mail", &bob, &dirty),
            CallDecision::Hold {
                rule: rule(2, "send_mail")
            }
        );
        assert_eq!(
            decide("delete_file", &bob, &clean),
            CallDecision::Withhold {
                reason: WithholdReason::Identity,
                rule: rule(3, "delete_*")
            }
        );
        assert!(decide("delete_file", &ops, &dirty).is_allowed());
        assert!(decide("delete_file", &cy, &clean).is_allowed());
        assert!(decide("delete_file", &Identity::master(), &clean).is_allowed());
        assert_eq!(
            decide("anything", &bob, &dirty),
            CallDecision::Allow {
                rule: RuleRef::Default
            }
        );
    }

    #[test]
    fn argument_conditions_withhold_naming_the_argument() {
        let p = policies(json!([
            {"match": "send_money", "call": "approval", "args": {
                "iban": {"in": ["DE89370400440532013000"]},
                "amount": {"min": 0, "max": 5000}
            }},
            {"match": "read_file", "args": {"path": {"under": "/reports"}}},
        ]));
        let who = Identity::master();
        let clean = Trust::default();
        let ok = json!({"iban": "DE89370400440532013000", "amount": 120});
        assert!(
            p.decide_call("send_money", ToolHints::NONE, &ok, &who, &clean)
                .is_allowed()
        );
        assert_eq!(
            p.decide_call("send_money", ToolHints::NONE, &ok, &who, &tainted()),
            CallDecision::Hold {
                rule: rule(0, "send_money")
            }
        );
        let attacker = json!({"iban": "GB00EVIL0000000000", "amount": 120});
        let decision = p.decide_call("send_money", ToolHints::NONE, &attacker, &who, &tainted());
        let CallDecision::Withhold {
            reason: WithholdReason::Argument(failure),
            rule: by,
        } = &decision
        else {
            panic!("{decision:?}")
        };
        assert_eq!(by, &rule(0, "send_money"));
        assert_eq!(failure.problem, ArgProblem::NotListed);
        let text = WithholdReason::Argument(failure.clone()).to_string();
        assert_eq!(text, "argument `iban` is not one of the allowed values");
        assert!(!text.contains("EVIL"));
        let too_much = json!({"iban": "DE89370400440532013000", "amount": "9000"});
        assert!(matches!(
            p.decide_call("send_money", ToolHints::NONE, &too_much, &who, &clean),
            CallDecision::Withhold { reason: WithholdReason::Argument(f), .. }
                if f.problem == ArgProblem::AboveMax && &*f.argument == "amount"
        ));
        // Raw text: parsed only when conditions exist.
        assert!(
            p.decide_call_raw(
                "read_file",
                ToolHints::NONE,
                r#"{"path": "/reports/q3.pdf"}"#,
                &who,
                &clean
            )
            .is_allowed()
        );
        assert!(matches!(
            p.decide_call_raw("read_file", ToolHints::NONE, r#"{"path": "/reports/../etc/passwd"}"#, &who, &clean),
            CallDecision::Withhold { reason: WithholdReason::Argument(f), .. } if f.problem == ArgProblem::NotUnder
        ));
        assert_eq!(
            p.decide_call_raw("read_file", ToolHints::NONE, "{not json", &who, &clean),
            CallDecision::Withhold {
                reason: WithholdReason::InvalidArguments,
                rule: rule(1, "read_file")
            }
        );
        assert!(matches!(
            p.decide_call_raw("read_file", ToolHints::NONE, "", &who, &clean),
            CallDecision::Withhold { reason: WithholdReason::Argument(f), .. } if f.problem == ArgProblem::Missing
        ));
        assert!(
            p.decide_call_raw("other", ToolHints::NONE, "{not json", &who, &clean)
                .is_allowed(),
            "no conditions: the text is not parsed"
        );
    }

    #[test]
    fn bad_rules_are_reported_with_their_paths() {
        let shown = issues(json!([
            {"match": "ok_*"},
            {"match": "a[", "output": "sometimes"},
            {"match": "", "call": "maybe", "roles": ["root"]},
            {"match": "x", "args": {"iban": {"pattern": "(("}}},
        ]));
        assert_eq!(shown.len(), 6, "{shown:#?}");
        assert!(shown[0].starts_with("tool_policies[1].match: `a[` is not a valid glob"));
        assert_eq!(
            shown[1],
            "tool_policies[1].output: unknown value `sometimes`, expected trusted, untrusted or quarantine"
        );
        assert_eq!(
            shown[2],
            "tool_policies[2].match: a pattern must not be empty"
        );
        assert_eq!(
            shown[3],
            "tool_policies[2].call: unknown value `maybe`, expected allow, block, trusted_only or approval"
        );
        assert_eq!(
            shown[4],
            "tool_policies[2].roles[0]: unknown role `root`, expected admin, member or viewer"
        );
        assert!(shown[5].starts_with("tool_policies[3].args.iban.pattern: `((` is not a valid"));
        let unknown: Result<ToolPolicySpec, _> =
            serde_json::from_value(json!({"match": "x", "cal": "block"}));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `cal`")
        );
    }

    #[test]
    fn quarantine_needs_a_model() {
        let specs: Vec<ToolPolicySpec> =
            serde_json::from_value(json!([{"match": "web__*", "output": "quarantine"}])).unwrap();
        let missing = Guardrails::validate(
            RawGuardrails {
                tool_policies: Some(specs.clone()),
                quarantine: None,
            },
            "",
        )
        .unwrap_err();
        let shown: Vec<String> = missing.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "quarantine.model: tool_policies[0] has `output: quarantine`, which needs `quarantine.model`"
            ]
        );
        let empty = Guardrails::validate(
            RawGuardrails {
                tool_policies: None,
                quarantine: Some(RawQuarantine::default()),
            },
            "",
        )
        .unwrap_err();
        assert!(empty.has("quarantine.model"));
        let ok = Guardrails::validate(
            RawGuardrails {
                tool_policies: Some(specs),
                quarantine: Some(RawQuarantine {
                    model: Some("openai/gpt-4o-mini".into()),
                    ..RawQuarantine::default()
                }),
            },
            "",
        )
        .unwrap();
        assert!(ok.tool_policies.uses_quarantine());
        assert_eq!(ok.quarantine.unwrap().model, "openai/gpt-4o-mini");
        let none = Guardrails::validate(RawGuardrails::default(), "").unwrap();
        assert!(none.tool_policies.is_empty() && none.quarantine.is_none());
    }

    #[test]
    fn quarantine_rounds_timeout_and_questions() {
        let raw = |max_rounds: Option<u32>, timeout: Option<&str>| RawGuardrails {
            tool_policies: None,
            quarantine: Some(RawQuarantine {
                model: Some("q".into()),
                max_rounds,
                timeout: timeout.map(str::to_owned),
            }),
        };
        let q = Guardrails::validate(raw(None, None), "")
            .unwrap()
            .quarantine
            .unwrap();
        assert_eq!((q.max_rounds, q.timeout), (2, Quarantine::DEFAULT_TIMEOUT));
        let q = Guardrails::validate(raw(Some(3), Some("5s")), "")
            .unwrap()
            .quarantine
            .unwrap();
        assert_eq!((q.max_rounds, q.timeout.as_secs()), (3, 5));
        let bad = Guardrails::validate(raw(Some(0), Some("soon")), "").unwrap_err();
        assert!(bad.has("quarantine.max_rounds") && bad.has("quarantine.timeout"));

        let p = policies(json!([
            {"match": "read_bill", "output": "quarantine",
             "questions": {"amount": {"type": "number", "maximum": 10}}},
            {"match": "read_*", "output": "quarantine"},
        ]));
        assert_eq!(p.questions("read_bill").questions()[0].name, "amount");
        assert_eq!(p.questions("read_mail"), Questions::default_set());
        let shown = issues(json!([
            {"match": "a", "output": "untrusted", "questions": {"x": {"type": "boolean"}}},
            {"match": "b", "output": "quarantine", "questions": {"amount": {"type": "string"}}},
        ]));
        assert_eq!(
            shown,
            [
                "tool_policies[0].questions: questions are asked only of a rule with `output: quarantine`",
                "tool_policies[1].questions.amount.type: free strings are not allowed: give the answers as `enum`",
            ]
        );
    }

    #[test]
    fn specs_round_trip_through_json() {
        let written = json!([
            {"match": "send_money", "call": "approval", "roles": ["admin"],
             "args": {"iban": {"in": ["DE89"]}, "amount": {"max": 10.0}, "path": {"under": ["/a", "/b"]}}},
            {"match": "read_*", "output": "untrusted"}
        ]);
        let specs: Vec<ToolPolicySpec> = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(serde_json::to_value(&specs).unwrap(), written);
        let p = compile(specs.clone()).unwrap();
        assert_eq!(p.specs(), &specs[..]);
    }

    mod matching {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// The fast paths agree with the glob semantics of `ToolGlobs`.
            #[test]
            fn fast_paths_agree_with_globs(
                pattern in "(\\*)?[ab_/]{0,4}(\\*)?",
                name in "[ab_/]{0,6}",
            ) {
                prop_assume!(!pattern.is_empty() && pattern != "**");
                let globs = ToolGlobs::new(&[pattern.as_str()]);
                prop_assume!(globs.is_ok());
                let globs = globs.unwrap();
                let p = policies(json!([{"match": pattern}]));
                prop_assert_eq!(p.rule_index(&name).is_some(), globs.matches(&name));
            }

            /// Among many rules, the first that fits decides.
            #[test]
            fn first_fit_wins(
                patterns in proptest::collection::vec("[ab]{0,2}\\*?", 1..12),
                name in "[ab]{0,3}",
            ) {
                let specs: Vec<Value> = patterns
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| json!({"match": p}))
                    .collect();
                prop_assume!(!specs.is_empty());
                let p = policies(Value::Array(specs.clone()));
                let expected = specs.iter().position(|s| {
                    ToolGlobs::new(&[s["match"].as_str().unwrap()]).unwrap().matches(&name)
                });
                prop_assert_eq!(p.rule_index(&name), expected);
            }
        }
    }
}

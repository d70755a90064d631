//! Access rules by identity: which users, teams and roles may see and call which MCP tools,
//! on top of a key's own `tools` globs (a tool must pass both).
//!
//! A rule names tools (globs over `<server>__<tool>`, the rules of [`ToolGlobs`]), who it is
//! about (`users`, `teams`, `roles` — any of them matching is enough; none given means
//! everyone) and whether it allows or denies. The rules of the configuration file and those
//! added at run time form one set; their order does not matter. For a tool `t` and a caller:
//!
//! 1. a **deny** rule naming `t` and about the caller refuses it, whatever else applies;
//! 2. otherwise, when some **allow** rule names `t`, the caller gets `t` only if one of those
//!    allow rules is about them (the tool is reserved to the identities allow rules name);
//! 3. otherwise (no rule names `t`) the caller gets `t`.
//!
//! A deny rule about the caller whose pattern covers every tool of a server (`<server>__*`,
//! a shorter literal start such as `git*`, or `*`) withholds the whole server from them: its
//! own endpoint, its prompts and resources as well as its tools.
//!
//! [`permits`] is the decision; [`crate::ToolAccess`] applies it for the MCP endpoints, to
//! lists and calls alike.

use std::sync::Arc;

use portcullis_core::{AccessRole, Identity};

use crate::tools::{GlobIssue, ToolGlobs};

/// Between a server's name and its tool's in the names the patterns match.
const SEPARATOR: &str = "__";

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Reserves the tools to the identities the rule names.
    Allow,
    /// Refuses the tools to the identities the rule names.
    Deny,
}

impl Effect {
    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// One rule as written (in the configuration or through the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRuleSpec {
    /// The stored rule's id (`None` for rules of the configuration file).
    pub id: Option<String>,
    /// Globs over `<server>__<tool>`; at least one.
    pub tools: Vec<String>,
    /// User ids the rule is about.
    pub users: Vec<String>,
    /// Team ids the rule is about.
    pub teams: Vec<String>,
    /// Roles the rule is about (exactly these roles).
    pub roles: Vec<AccessRole>,
    /// Allow or deny.
    pub effect: Effect,
}

impl AccessRuleSpec {
    /// Whether the rule is about everyone (names no user, team or role).
    pub fn is_about_everyone(&self) -> bool {
        self.users.is_empty() && self.teams.is_empty() && self.roles.is_empty()
    }

    /// Whether the rule is about `who`: their user, one of their teams or their role is
    /// named, or the rule names nobody.
    pub fn is_about(&self, who: &Identity) -> bool {
        if self.is_about_everyone() {
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

/// A rule, its patterns compiled.
#[derive(Debug, Clone)]
pub struct AccessRule {
    spec: AccessRuleSpec,
    globs: ToolGlobs,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleIssue {
    /// No tool pattern.
    #[error("`tools` must name at least one tool pattern")]
    NoTools,
    /// A pattern that is not a glob.
    #[error("tools[{index}]: {issue}")]
    Glob {
        /// The pattern's position.
        index: usize,
        /// What is wrong with it.
        issue: GlobIssue,
    },
}

impl AccessRule {
    /// Compiles `spec`.
    pub fn new(spec: AccessRuleSpec) -> Result<AccessRule, Vec<RuleIssue>> {
        if spec.tools.is_empty() {
            return Err(vec![RuleIssue::NoTools]);
        }
        let globs = ToolGlobs::new(&spec.tools).map_err(|issues| {
            issues
                .into_iter()
                .map(|issue| RuleIssue::Glob {
                    index: issue.index,
                    issue,
                })
                .collect::<Vec<_>>()
        })?;
        Ok(AccessRule { spec, globs })
    }

    /// The rule as written.
    pub fn spec(&self) -> &AccessRuleSpec {
        &self.spec
    }

    /// Whether the rule names the tool `public` (`<server>__<tool>`).
    pub fn names(&self, public: &str) -> bool {
        self.globs.matches(public)
    }

    /// Whether some pattern covers every tool of `server`: after a literal start that agrees
    /// with `<server>__`, only `*` (or `**`) follows.
    fn covers_server(&self, server: &str) -> bool {
        self.spec.tools.iter().any(|pattern| {
            let Some(literal) = pattern.strip_suffix('*') else {
                return false;
            };
            let literal = literal.strip_suffix('*').unwrap_or(literal);
            if literal.contains(['*', '?', '[', '{', '\\']) {
                return false;
            }
            let mut prefix = String::with_capacity(server.len() + SEPARATOR.len());
            prefix.push_str(server);
            prefix.push_str(SEPARATOR);
            prefix.starts_with(literal)
        })
    }
}

impl PartialEq for AccessRule {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Eq for AccessRule {}

/// A set of rules (the configuration's, or those stored at run time). Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    rules: Arc<[AccessRule]>,
}

impl AccessRules {
    /// The set of `rules`.
    pub fn new(rules: Vec<AccessRule>) -> AccessRules {
        AccessRules {
            rules: rules.into(),
        }
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[AccessRule] {
        &self.rules
    }
}

/// The decision: whether `who` may see and call the tool `public` (`<server>__<tool>`) under
/// the union of `sets` (see the module documentation).
pub fn permits(sets: &[&AccessRules], public: &str, who: &Identity) -> bool {
    let mut reserved = false;
    let mut granted = false;
    for rule in sets.iter().flat_map(|s| s.rules.iter()) {
        if !rule.names(public) {
            continue;
        }
        let about = rule.spec.is_about(who);
        match rule.spec.effect {
            Effect::Deny if about => return false,
            Effect::Deny => {}
            Effect::Allow => {
                reserved = true;
                granted |= about;
            }
        }
    }
    !reserved || granted
}

/// Whether a deny rule of `sets` about `who` covers every tool of `server` (the server is
/// withheld from them).
pub fn withholds_server(sets: &[&AccessRules], server: &str, who: &Identity) -> bool {
    sets.iter().flat_map(|s| s.rules.iter()).any(|rule| {
        rule.spec.effect == Effect::Deny && rule.spec.is_about(who) && rule.covers_server(server)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tools: &[&str], teams: &[&str], effect: Effect) -> AccessRule {
        AccessRule::new(AccessRuleSpec {
            id: None,
            tools: tools.iter().map(|s| s.to_string()).collect(),
            users: Vec::new(),
            teams: teams.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
            effect,
        })
        .unwrap()
    }

    fn member(user: &str, teams: &[&str], role: AccessRole) -> Identity {
        let mut who = Identity::master();
        who.user = Some(user.to_owned());
        who.teams = teams.iter().map(|s| s.to_string()).collect();
        who.team = who.teams.first().cloned();
        who.role = role;
        who
    }

    #[test]
    fn allow_rules_reserve_their_tools() {
        let rules = AccessRules::new(vec![rule(&["github__*"], &["platform"], Effect::Allow)]);
        let ann = member("ann", &["platform"], AccessRole::Member);
        let bob = member("bob", &["data"], AccessRole::Member);
        assert!(permits(&[&rules], "github__create_issue", &ann));
        assert!(!permits(&[&rules], "github__create_issue", &bob));
        assert!(permits(&[&rules], "files__read", &bob), "no rule names it");
    }

    #[test]
    fn deny_wins_whatever_the_order() {
        let allow = AccessRules::new(vec![rule(&["db__*"], &[], Effect::Allow)]);
        let deny = AccessRules::new(vec![rule(&["db__drop"], &["data"], Effect::Deny)]);
        let bob = member("bob", &["data"], AccessRole::Member);
        let ann = member("ann", &["platform"], AccessRole::Member);
        assert!(!permits(&[&allow, &deny], "db__drop", &bob));
        assert!(!permits(&[&deny, &allow], "db__drop", &bob));
        assert!(permits(&[&allow, &deny], "db__drop", &ann));
        assert!(permits(&[&allow, &deny], "db__query", &bob));
    }

    #[test]
    fn users_and_roles_select_too() {
        let spec = AccessRuleSpec {
            id: None,
            tools: vec!["admin__*".into()],
            users: vec!["ann".into()],
            teams: Vec::new(),
            roles: vec![AccessRole::Admin],
            effect: Effect::Allow,
        };
        let rules = AccessRules::new(vec![AccessRule::new(spec).unwrap()]);
        assert!(permits(
            &[&rules],
            "admin__x",
            &member("ann", &[], AccessRole::Viewer)
        ));
        assert!(permits(
            &[&rules],
            "admin__x",
            &member("cy", &[], AccessRole::Admin)
        ));
        assert!(!permits(
            &[&rules],
            "admin__x",
            &member("bob", &[], AccessRole::Member)
        ));
    }

    #[test]
    fn whole_server_denials() {
        let rules = AccessRules::new(vec![
            rule(&["github__*"], &["data"], Effect::Deny),
            rule(&["files__write_*"], &[], Effect::Deny),
        ]);
        let bob = member("bob", &["data"], AccessRole::Member);
        let ann = member("ann", &["platform"], AccessRole::Member);
        assert!(withholds_server(&[&rules], "github", &bob));
        assert!(!withholds_server(&[&rules], "github", &ann));
        assert!(!withholds_server(&[&rules], "files", &bob));
        let all = AccessRules::new(vec![rule(&["git*"], &[], Effect::Deny)]);
        assert!(withholds_server(&[&all], "gitlab", &ann));
        assert!(!withholds_server(&[&all], "files", &ann));
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert_eq!(
            AccessRule::new(AccessRuleSpec {
                id: None,
                tools: Vec::new(),
                users: Vec::new(),
                teams: Vec::new(),
                roles: Vec::new(),
                effect: Effect::Deny,
            })
            .unwrap_err(),
            vec![RuleIssue::NoTools]
        );
        assert!(
            AccessRule::new(AccessRuleSpec {
                id: None,
                tools: vec!["a[".into()],
                users: Vec::new(),
                teams: Vec::new(),
                roles: Vec::new(),
                effect: Effect::Deny,
            })
            .is_err()
        );
    }
}

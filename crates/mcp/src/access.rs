//! `mcp.access`: access rules by user, team and role over the tools of every server, as
//! written ([`RawAccessRule`]) and validated into [`AccessRules`].
//!
//! ```yaml
//! mcp:
//!   access:
//!     - tools: ["github__*"]        # globs over <server>__<tool>
//!       teams: [platform]           # who: any of users / teams / roles; none given = everyone
//!       allow: true                 # allow (reserve to these identities) or deny (`allow: false`)
//!     - tools: ["db__drop_*"]
//!       roles: [viewer, member]     # admin | member | viewer (exactly these roles)
//!       allow: false
//! ```
//!
//! How rules combine (order does not matter; rules added through `/admin/mcp-access` join
//! these): a deny rule about the caller refuses the tools it names; otherwise a tool named by
//! some allow rule is reserved to the identities those allow rules are about; a tool no rule
//! names is everyone's. A caller's key `tools` globs apply as well: a tool must pass both. See
//! `portcullis_policy::access_rules`.

use portcullis_core::AccessRole;
use portcullis_core::config::{Issues, index, key};
use portcullis_policy::{AccessRule, AccessRuleSpec, AccessRules, Effect};
use serde::Deserialize;

/// One entry of `mcp.access` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessRule {
    /// Globs over `<server>__<tool>`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// User ids.
    #[serde(default)]
    pub users: Vec<String>,
    /// Team ids.
    #[serde(default)]
    pub teams: Vec<String>,
    /// Roles: `admin`, `member`, `viewer`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `true` allows, `false` denies.
    pub allow: bool,
}

/// Validates `mcp.access` (at `at`), reporting every problem with its path.
pub fn validate(raw: Vec<RawAccessRule>, at: &str, issues: &mut Issues) -> AccessRules {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let here = index(at, i);
        let mut roles = Vec::with_capacity(r.roles.len());
        let mut ok = true;
        for (j, role) in r.roles.iter().enumerate() {
            match AccessRole::parse(role) {
                Some(role) => roles.push(role),
                None => {
                    ok = false;
                    issues.push(
                        index(&key(&here, "roles"), j),
                        "must be `admin`, `member` or `viewer`",
                    );
                }
            }
        }
        for (field, list) in [("users", &r.users), ("teams", &r.teams)] {
            for (j, id) in list.iter().enumerate() {
                if id.trim().is_empty() {
                    ok = false;
                    issues.push(index(&key(&here, field), j), "must not be empty");
                }
            }
        }
        let spec = AccessRuleSpec {
            id: None,
            tools: r.tools,
            users: r.users,
            teams: r.teams,
            roles,
            effect: if r.allow { Effect::Allow } else { Effect::Deny },
        };
        match AccessRule::new(spec) {
            Ok(rule) if ok => rules.push(rule),
            Ok(_) => {}
            Err(problems) => {
                for p in problems {
                    match p {
                        portcullis_policy::RuleIssue::NoTools => {
                            issues.push(key(&here, "tools"), p.to_string());
                        }
                        portcullis_policy::RuleIssue::Glob { index: j, issue } => {
                            issues.push(index(&key(&here, "tools"), j), issue.to_string());
                        }
                    }
                }
            }
        }
    }
    AccessRules::new(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(tools: &[&str], roles: &[&str], allow: bool) -> RawAccessRule {
        RawAccessRule {
            tools: tools.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            allow,
            ..RawAccessRule::default()
        }
    }

    #[test]
    fn problems_name_their_place() {
        let mut issues = Issues::new();
        let rules = validate(
            vec![
                raw(&["github__*"], &["admin"], true),
                raw(&[], &["boss"], false),
                raw(&["a["], &[], false),
            ],
            "mcp.access",
            &mut issues,
        );
        assert_eq!(rules.rules().len(), 1);
        let text: Vec<String> = issues
            .into_vec()
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        assert!(text.iter().any(|t| t.starts_with("mcp.access[1].roles[0]")));
        assert!(text.iter().any(|t| t.starts_with("mcp.access[1].tools:")));
        assert!(text.iter().any(|t| t.starts_with("mcp.access[2].tools[0]")));
    }
}

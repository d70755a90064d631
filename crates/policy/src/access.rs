//! Which MCP servers and tools a caller may see and call.
//!
//! A virtual key may carry `tools: ["<server>__<glob>", …]`: globs (the rules of
//! [`ToolGlobs`]) over `<server>__<tool>`, with the tool's own name as its server lists it.
//! A key without the list may use every tool. The rule is the same on the aggregated endpoint
//! and on a server's own endpoint, where tool `t` of server `s` is visible and callable only if
//! `s__t` matches. A server is usable when some pattern could match one of its tools — its
//! literal start (up to the first wildcard) agrees with `<server>__`; a usable server whose
//! tools all fail the patterns simply lists none.

use portcullis_core::Identity;

use crate::access_rules::{AccessRules, permits, withholds_server};
use crate::tools::ToolGlobs;

/// Between a server's name and its tool's in the names the patterns match.
const SEPARATOR: &str = "__";

/// What one caller may use on the MCP endpoints.
#[derive(Debug, Clone, Copy)]
pub struct ToolAccess<'a> {
    allowed: Option<&'a ToolGlobs>,
    /// The access rules by identity (`crate::access_rules`) and who is asking.
    rules: Option<ByIdentity<'a>>,
}

/// The rule sets that apply (the configuration's and the stored ones) and the caller.
#[derive(Debug, Clone, Copy)]
struct ByIdentity<'a> {
    sets: [&'a AccessRules; 2],
    who: &'a Identity,
}

impl<'a> ToolAccess<'a> {
    /// Every tool of every server.
    pub fn everything() -> Self {
        Self {
            allowed: None,
            rules: None,
        }
    }

    /// The tools `allowed` matches (`None`: every tool).
    pub fn new(allowed: Option<&'a ToolGlobs>) -> Self {
        Self {
            allowed,
            rules: None,
        }
    }

    /// The same, with the access rules of `configured` and `stored` applied to `who` on top: a
    /// tool must pass both the globs and the rules.
    pub fn with_rules(
        self,
        configured: &'a AccessRules,
        stored: &'a AccessRules,
        who: &'a Identity,
    ) -> Self {
        let rules = (!configured.is_empty() || !stored.is_empty()).then_some(ByIdentity {
            sets: [configured, stored],
            who,
        });
        Self { rules, ..self }
    }

    /// Whether the caller has no restriction.
    pub fn is_unrestricted(&self) -> bool {
        self.allowed.is_none() && self.rules.is_none()
    }

    /// Whether the caller may see and call `server`'s tool `tool` (its own name). `scratch` is
    /// reused to build `<server>__<tool>`, so checking a whole list allocates once.
    pub fn allows_tool(&self, server: &str, tool: &str, scratch: &mut String) -> bool {
        if self.allowed.is_none() && self.rules.is_none() {
            return true;
        }
        scratch.clear();
        scratch.push_str(server);
        scratch.push_str(SEPARATOR);
        scratch.push_str(tool);
        self.allowed.is_none_or(|globs| globs.matches(scratch))
            && self.rules.is_none_or(|r| permits(&r.sets, scratch, r.who))
    }

    /// Whether the caller may use `server` at all (see the module documentation).
    pub fn allows_server(&self, server: &str) -> bool {
        if let Some(r) = self.rules
            && withholds_server(&r.sets, server, r.who)
        {
            return false;
        }
        let Some(globs) = self.allowed else {
            return true;
        };
        globs.patterns().iter().any(|pattern| {
            let literal = literal_start(pattern);
            let prefix_len = server.len() + SEPARATOR.len();
            if literal.len() >= prefix_len {
                literal.starts_with(server) && literal[server.len()..].starts_with(SEPARATOR)
            } else {
                // The pattern's literal start is shorter than `<server>__`: it must agree with
                // as much of it as it has.
                let mut full = String::with_capacity(prefix_len);
                full.push_str(server);
                full.push_str(SEPARATOR);
                full.starts_with(literal)
            }
        })
    }
}

/// The part of a glob before its first special character.
fn literal_start(pattern: &str) -> &str {
    let end = pattern
        .find(['*', '?', '[', '{', '\\'])
        .unwrap_or(pattern.len());
    &pattern[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(patterns: &[&str]) -> ToolGlobs {
        ToolGlobs::new(patterns).unwrap()
    }

    #[test]
    fn tools_match_server_and_own_name() {
        let list = globs(&["files__read_*", "github__*"]);
        let access = ToolAccess::new(Some(&list));
        let mut s = String::new();
        assert!(access.allows_tool("files", "read_file", &mut s));
        assert!(!access.allows_tool("files", "write_file", &mut s));
        assert!(access.allows_tool("github", "create_issue", &mut s));
        assert!(!access.allows_tool("gitlab", "create_issue", &mut s));
        assert!(ToolAccess::everything().allows_tool("any", "thing", &mut s));
    }

    #[test]
    fn servers_are_usable_when_a_pattern_could_reach_them() {
        let list = globs(&["files__read_*", "git*"]);
        let access = ToolAccess::new(Some(&list));
        assert!(access.allows_server("files"));
        assert!(access.allows_server("github"));
        assert!(access.allows_server("gitlab"));
        assert!(!access.allows_server("db"));
        assert!(
            !access.allows_server("file"),
            "`files__` does not start `file__`"
        );
        let everything = globs(&["*"]);
        assert!(ToolAccess::new(Some(&everything)).allows_server("db"));
        let none = ToolGlobs::empty();
        assert!(!ToolAccess::new(Some(&none)).allows_server("db"));
    }
}

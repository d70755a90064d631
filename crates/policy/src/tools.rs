//! The tool-call deny-list: which tool calls of an answer are withheld from the client.
//!
//! A list is a set of case-sensitive shell globs over the tool's name as declared in the
//! request (`tools_denied: ["shell_*", "delete_file"]`), compiled once with [`globset`]:
//! `*` matches any run of characters and `?` any one character, except that neither crosses a
//! `/` (`literal_separator`: `fs/*` denies `fs/read` but not `fs/a/b`; `fs/**` denies both);
//! `[abc]`, `[!a-z]` and `{a,b}` work as in a shell, and `\` escapes the next character. A
//! pattern without any of these matches exactly one name.
//!
//! A route and a virtual key may each carry a list; a call is denied when either denies it
//! ([`DeniedTools`] is their union). A denied call is withheld whole — its id, name and every
//! argument fragment — and the answer instead says in text which tools were withheld
//! ([`withheld_notice`]); a choice left with no call finishes as a normal end of turn rather
//! than as a request to run tools.

use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled list of tool-name globs.
#[derive(Debug, Clone)]
pub struct ToolGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

/// One pattern of a list that is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a valid glob: {message}")]
pub struct GlobIssue {
    /// The pattern's position in the list.
    pub index: usize,
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub message: String,
}

impl ToolGlobs {
    /// Compiles `patterns`, or reports every pattern that is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, Vec<GlobIssue>> {
        let mut builder = GlobSetBuilder::new();
        let mut issues = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let pattern = pattern.as_ref();
            let issue = |message: String| GlobIssue {
                index,
                pattern: pattern.to_owned(),
                message,
            };
            if pattern.is_empty() {
                issues.push(issue("a pattern must not be empty".to_owned()));
                continue;
            }
            match GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(false)
                .build()
            {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => issues.push(issue(e.kind().to_string())),
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let set = builder.build().map_err(|e| {
            vec![GlobIssue {
                index: 0,
                pattern: String::new(),
                message: e.to_string(),
            }]
        })?;
        Ok(Self {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
        })
    }

    /// A list without patterns: denies nothing.
    pub fn empty() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    /// Whether some pattern matches the tool name `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the list has no pattern (denies nothing).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl PartialEq for ToolGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for ToolGlobs {}

/// The tools denied to one request: the union of the lists that apply to it (its route's and
/// its key's).
#[derive(Debug, Clone, Default)]
pub struct DeniedTools {
    /// The route's list and the key's, each kept only when it denies something: at most two,
    /// so building the union for a request allocates nothing.
    lists: [Option<Arc<ToolGlobs>>; 2],
}

impl DeniedTools {
    /// The union of a route's and a key's lists, or `None` when neither denies anything (so
    /// the caller can skip the filtering altogether).
    pub fn union(route: Option<&Arc<ToolGlobs>>, key: Option<&Arc<ToolGlobs>>) -> Option<Self> {
        let keep = |l: Option<&Arc<ToolGlobs>>| l.filter(|l| !l.is_empty()).cloned();
        let lists = [keep(route), keep(key)];
        lists.iter().any(Option::is_some).then_some(Self { lists })
    }

    /// Whether a call of the tool `name` is withheld.
    pub fn denies(&self, name: &str) -> bool {
        self.lists.iter().flatten().any(|l| l.matches(name))
    }
}

/// The text that replaces withheld calls, naming each withheld tool once, in order.
pub fn withheld_notice<S: AsRef<str>>(names: &[S]) -> String {
    let mut unique: Vec<&str> = Vec::with_capacity(names.len());
    for n in names {
        if !unique.contains(&n.as_ref()) {
            unique.push(n.as_ref());
        }
    }
    let listed = unique
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if unique.len() == 1 {
        format!("[The gateway withheld a call to the tool {listed}: it is denied by policy.]")
    } else {
        format!("[The gateway withheld calls to the tools {listed}: they are denied by policy.]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(p: &[&str]) -> Arc<ToolGlobs> {
        Arc::new(ToolGlobs::new(p).unwrap())
    }

    #[test]
    fn globs_are_case_sensitive_and_stop_at_slashes() {
        let g = globs(&["shell_*", "delete_file", "fs/*", "net/**", "get_{a,b}?"]);
        assert!(g.matches("shell_exec"));
        assert!(g.matches("shell_"));
        assert!(!g.matches("Shell_exec"));
        assert!(g.matches("delete_file"));
        assert!(!g.matches("delete_files"));
        assert!(g.matches("fs/read"));
        assert!(!g.matches("fs/a/b"));
        assert!(g.matches("net/a/b"));
        assert!(g.matches("get_a1"));
        assert!(!g.matches("get_c1"));
        assert!(!g.matches("lookup"));
    }

    #[test]
    fn invalid_patterns_are_all_reported_with_their_position() {
        let issues = ToolGlobs::new(&["ok", "[unclosed", "", "a{b"]).unwrap_err();
        let at: Vec<usize> = issues.iter().map(|i| i.index).collect();
        assert_eq!(at, vec![1, 2, 3]);
        assert!(
            issues[0]
                .to_string()
                .starts_with("`[unclosed` is not a valid glob")
        );
    }

    #[test]
    fn a_call_is_denied_by_the_route_or_the_key() {
        let route = globs(&["a*"]);
        let key = globs(&["b"]);
        let d = DeniedTools::union(Some(&route), Some(&key)).unwrap();
        assert!(d.denies("alpha") && d.denies("b") && !d.denies("c"));
        assert!(DeniedTools::union(None, None).is_none());
        assert!(DeniedTools::union(Some(&globs(&[])), None).is_none());
    }

    #[test]
    fn the_notice_names_each_tool_once() {
        assert_eq!(
            withheld_notice(&["rm"]),
            "[The gateway withheld a call to the tool `rm`: it is denied by policy.]"
        );
        let n = withheld_notice(&["rm", "sh", "rm"]);
        assert!(
            n.contains("`rm`, `sh`") && n.matches("`rm`").count() == 1,
            "{n}"
        );
    }
}

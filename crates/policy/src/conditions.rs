//! Argument conditions of a tool policy rule: which argument values a call may carry.
//!
//! A rule's `args` maps an argument address to the tests its value must pass:
//!
//! ```yaml
//! args:
//!   iban: {in: [DE89370400440532013000, FR1420041010050500013M02606]}
//!   amount: {min: 0, max: 5000}
//!   /recipient/email: {pattern: '[^@]+@example\.com'}
//!   path: {under: [/reports, /shared/reports]}
//! ```
//!
//! - **Address**: a key starting with `/` is a JSON pointer (RFC 6901) into the arguments
//!   object (`/recipient/email`); any other key names a top-level argument.
//! - **Tests**: `in` (the value equals one of the listed scalars; a string and a number are
//!   compared as text, so `in: [12345]` admits `"12345"`), `pattern` (a regular expression of
//!   the `regex` crate, anchored at both ends; numbers are matched on their JSON text),
//!   `min`/`max` (inclusive bounds; the value is a number or a string holding one), `under`
//!   (one directory or a list: the value is an absolute path that, once `.` and `..` are
//!   resolved, is the directory itself or lies below it; a path that climbs above `/`, or holds
//!   a backslash, a NUL or a percent-encoded `.`, `/` or `\`, fails as traversal).
//! - **Combination**: every test of a condition must pass, and every condition of the rule.
//!   An absent argument (or `null`) fails every condition naming it (fail closed). An array
//!   value passes when each of its elements does (a list of recipients is checked recipient by
//!   recipient).
//!
//! A failure ([`ArgFailure`]) names the argument and the test, never the value: arguments are
//! the model's and may carry what a log should not.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use portcullis_core::config::{Issues, key};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest compiled size of one `pattern`, in bytes.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The tests one argument must pass, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgConditionSpec {
    /// The value must equal one of these scalars (strings, numbers, booleans).
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The value must match this regular expression, anchored at both ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The value must be a number at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The value must be a number at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The value must be an absolute path under one of these directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under: Option<Prefixes>,
}

/// One directory or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prefixes {
    /// A single directory.
    One(String),
    /// Several directories; any of them will do.
    Many(Vec<String>),
}

impl Prefixes {
    fn as_slice(&self) -> &[String] {
        match self {
            Prefixes::One(one) => std::slice::from_ref(one),
            Prefixes::Many(many) => many,
        }
    }
}

/// Why an argument failed its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgProblem {
    /// The argument is absent or `null`.
    Missing,
    /// The arguments are not a JSON object (so no argument can be found).
    NotAnObject,
    /// `in`: the value is not one of the listed values.
    NotListed,
    /// `pattern`: the value does not match.
    NoMatch,
    /// `min`/`max`: the value is not a number.
    NotANumber,
    /// `min`: the value is below the bound.
    BelowMin,
    /// `max`: the value is above the bound.
    AboveMax,
    /// `pattern`/`under`: the value is not a string (or, for `pattern`, a number).
    NotAString,
    /// `under`: the value is not an absolute path.
    NotAbsolute,
    /// `under`: the path climbs above `/` or hides separators or dots.
    Traversal,
    /// `under`: the path lies outside every allowed directory.
    NotUnder,
}

impl ArgProblem {
    /// The test that failed (`in`, `pattern`, `min`, `max`, `under`), or `None` when the
    /// argument could not be found.
    pub fn test(self) -> Option<&'static str> {
        match self {
            ArgProblem::Missing | ArgProblem::NotAnObject => None,
            ArgProblem::NotListed => Some("in"),
            ArgProblem::NoMatch | ArgProblem::NotAString => Some("pattern"),
            ArgProblem::NotANumber | ArgProblem::BelowMin => Some("min"),
            ArgProblem::AboveMax => Some("max"),
            ArgProblem::NotAbsolute | ArgProblem::Traversal | ArgProblem::NotUnder => Some("under"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ArgProblem::Missing => "is missing",
            ArgProblem::NotAnObject => "cannot be read: the arguments are not a JSON object",
            ArgProblem::NotListed => "is not one of the allowed values",
            ArgProblem::NoMatch => "does not match the allowed pattern",
            ArgProblem::NotANumber => "is not a number",
            ArgProblem::BelowMin => "is below the allowed minimum",
            ArgProblem::AboveMax => "is above the allowed maximum",
            ArgProblem::NotAString => "is not a string",
            ArgProblem::NotAbsolute => "is not an absolute path",
            ArgProblem::Traversal => "is a path that escapes its directory",
            ArgProblem::NotUnder => "is not under an allowed directory",
        }
    }
}

/// An argument that failed its rule's condition: which one and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgFailure {
    /// The argument as the rule addresses it (`iban`, `/recipient/email`).
    pub argument: Arc<str>,
    /// What is wrong with it.
    pub problem: ArgProblem,
}

impl fmt::Display for ArgFailure {
    /// `argument `iban` is not one of the allowed values`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument `{}` {}",
            self.argument,
            self.problem.describe()
        )
    }
}

/// The listed values of `in`, ready for lookup.
#[derive(Debug, Clone)]
struct OneOf {
    /// Every listed value as text (strings as they are, numbers and booleans as JSON text).
    texts: HashSet<Box<str>>,
    /// The listed numbers.
    numbers: Vec<f64>,
}

/// Where an argument is found.
#[derive(Debug, Clone)]
enum Address {
    /// A top-level key.
    Name(Box<str>),
    /// A JSON pointer.
    Pointer(Box<str>),
}

/// A compiled condition on one argument.
#[derive(Debug, Clone)]
pub(crate) struct ArgCondition {
    argument: Arc<str>,
    address: Address,
    one_of: Option<OneOf>,
    pattern: Option<Regex>,
    min: Option<f64>,
    max: Option<f64>,
    under: Vec<Box<str>>,
}

impl ArgCondition {
    /// Compiles the condition on `argument`, recording problems under `at` (the rule's
    /// `args` key).
    pub(crate) fn compile(
        argument: &str,
        spec: &ArgConditionSpec,
        at: &str,
        issues: &mut Issues,
    ) -> Option<ArgCondition> {
        let at = key(at, argument);
        let before = issues.len();
        let address = if argument.is_empty() {
            issues.push(at.clone(), "an argument name must not be empty");
            Address::Name("".into())
        } else if argument.starts_with('/') {
            Address::Pointer(argument.into())
        } else {
            Address::Name(argument.into())
        };
        if spec.one_of.is_none()
            && spec.pattern.is_none()
            && spec.min.is_none()
            && spec.max.is_none()
            && spec.under.is_none()
        {
            issues.push(
                at.clone(),
                "a condition needs at least one of `in`, `pattern`, `min`, `max`, `under`",
            );
        }
        let one_of = spec.one_of.as_ref().and_then(|values| {
            if values.is_empty() {
                issues.at(&at, "in", "the list must name at least one value");
                return None;
            }
            let mut texts = HashSet::with_capacity(values.len());
            let mut numbers = Vec::new();
            for (i, value) in values.iter().enumerate() {
                match value {
                    Value::String(s) => {
                        texts.insert(s.as_str().into());
                    }
                    Value::Number(n) => {
                        texts.insert(n.to_string().into());
                        if let Some(f) = n.as_f64() {
                            numbers.push(f);
                        }
                    }
                    Value::Bool(b) => {
                        texts.insert(if *b { "true" } else { "false" }.into());
                    }
                    _ => issues.push(
                        format!("{}[{i}]", key(&at, "in")),
                        "expected a string, a number or a boolean",
                    ),
                }
            }
            Some(OneOf { texts, numbers })
        });
        let pattern = spec.pattern.as_ref().and_then(|p| {
            match RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    let message = e.to_string();
                    let last = message
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid")
                        .trim()
                        .trim_start_matches("error: ")
                        .to_owned();
                    issues.at(
                        &at,
                        "pattern",
                        format!("`{p}` is not a valid regular expression: {last}"),
                    );
                    None
                }
            }
        });
        for (name, bound) in [("min", spec.min), ("max", spec.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                issues.at(&at, name, "must be a finite number");
            }
        }
        if let (Some(min), Some(max)) = (spec.min, spec.max)
            && min > max
        {
            issues.at(&at, "min", format!("{min} is above `max` {max}"));
        }
        let mut under = Vec::new();
        if let Some(prefixes) = &spec.under {
            let list = prefixes.as_slice();
            if list.is_empty() {
                issues.at(&at, "under", "the list must name at least one directory");
            }
            for (i, dir) in list.iter().enumerate() {
                let path = match prefixes {
                    Prefixes::One(_) => key(&at, "under"),
                    Prefixes::Many(_) => format!("{}[{i}]", key(&at, "under")),
                };
                match normalize_path(dir) {
                    Ok(norm) if norm == *dir || format!("{norm}/") == *dir => {
                        under.push(norm.into_boxed_str())
                    }
                    Ok(norm) => issues.push(
                        path,
                        format!("`{dir}` must be written without `.`, `..` or `//` (`{norm}`)"),
                    ),
                    Err(_) => issues.push(
                        path,
                        format!("`{dir}` must be an absolute path without `..` or `\\`"),
                    ),
                }
            }
        }
        if issues.len() > before {
            return None;
        }
        Some(ArgCondition {
            argument: argument.into(),
            address,
            one_of,
            pattern,
            min: spec.min,
            max: spec.max,
            under,
        })
    }

    /// Checks the call's `arguments`.
    pub(crate) fn check(&self, arguments: &Value) -> Result<(), ArgFailure> {
        let fail = |problem| ArgFailure {
            argument: self.argument.clone(),
            problem,
        };
        if !arguments.is_object() {
            return Err(fail(ArgProblem::NotAnObject));
        }
        let value = match &self.address {
            Address::Name(name) => arguments.get(&**name),
            Address::Pointer(pointer) => arguments.pointer(pointer),
        };
        match value {
            None | Some(Value::Null) => Err(fail(ArgProblem::Missing)),
            Some(Value::Array(items)) => items
                .iter()
                .try_for_each(|item| self.check_one(item).map_err(fail)),
            Some(value) => self.check_one(value).map_err(fail),
        }
    }

    fn check_one(&self, value: &Value) -> Result<(), ArgProblem> {
        if let Some(one_of) = &self.one_of {
            let listed = match value {
                Value::String(s) => one_of.texts.contains(s.as_str()),
                Value::Number(n) => {
                    n.as_f64().is_some_and(|f| one_of.numbers.contains(&f))
                        || one_of.texts.contains(n.to_string().as_str())
                }
                Value::Bool(b) => one_of.texts.contains(if *b { "true" } else { "false" }),
                _ => false,
            };
            if !listed {
                return Err(ArgProblem::NotListed);
            }
        }
        if let Some(pattern) = &self.pattern {
            let matched = match value {
                Value::String(s) => pattern.is_match(s),
                Value::Number(n) => pattern.is_match(&n.to_string()),
                _ => return Err(ArgProblem::NotAString),
            };
            if !matched {
                return Err(ArgProblem::NoMatch);
            }
        }
        if self.min.is_some() || self.max.is_some() {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|f| f.is_finite())
            .ok_or(ArgProblem::NotANumber)?;
            if self.min.is_some_and(|min| number < min) {
                return Err(ArgProblem::BelowMin);
            }
            if self.max.is_some_and(|max| number > max) {
                return Err(ArgProblem::AboveMax);
            }
        }
        if !self.under.is_empty() {
            let Value::String(path) = value else {
                return Err(ArgProblem::NotAString);
            };
            let norm = normalize_path(path)?;
            if !self.under.iter().any(|dir| is_under(&norm, dir)) {
                return Err(ArgProblem::NotUnder);
            }
        }
        Ok(())
    }
}

/// Whether the normalised path `path` is `dir` or lies below it.
fn is_under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `path` with `.`, `..` and repeated separators resolved: `/reports/a/../b` is
/// `/reports/b`. Refuses a relative path, a path that climbs above `/`, and one holding a
/// backslash, a NUL or a percent-encoded `.`, `/` or `\` (which a tool might decode into a
/// traversal after the check).
pub fn normalize_path(path: &str) -> Result<String, ArgProblem> {
    if !path.starts_with('/') {
        return Err(ArgProblem::NotAbsolute);
    }
    if path.contains(['\\', '\0']) {
        return Err(ArgProblem::Traversal);
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(ArgProblem::Traversal);
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ArgProblem::Traversal);
                }
            }
            part => parts.push(part),
        }
    }
    let mut out = String::with_capacity(path.len());
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(spec: Value) -> ArgCondition {
        let spec: ArgConditionSpec = serde_json::from_value(spec).unwrap();
        let mut issues = Issues::new();
        let c = ArgCondition::compile("arg", &spec, "args", &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        c.unwrap()
    }

    fn problems(spec: Value) -> Vec<String> {
        let spec: ArgConditionSpec = serde_json::from_value(spec).unwrap();
        let mut issues = Issues::new();
        assert!(ArgCondition::compile("arg", &spec, "args", &mut issues).is_none());
        issues.iter().map(ToString::to_string).collect()
    }

    fn check(c: &ArgCondition, value: Value) -> Result<(), ArgProblem> {
        c.check(&json!({ "arg": value })).map_err(|f| f.problem)
    }

    #[test]
    fn allow_lists_compare_strings_and_numbers_as_text() {
        let c = condition(json!({"in": ["DE89", 12345, true]}));
        assert_eq!(check(&c, json!("DE89")), Ok(()));
        assert_eq!(check(&c, json!("12345")), Ok(()));
        assert_eq!(check(&c, json!(12345)), Ok(()));
        assert_eq!(check(&c, json!(12345.0)), Ok(()));
        assert_eq!(check(&c, json!(true)), Ok(()));
        assert_eq!(check(&c, json!("de89")), Err(ArgProblem::NotListed));
        assert_eq!(check(&c, json!({"x": 1})), Err(ArgProblem::NotListed));
        assert_eq!(check(&c, json!(["DE89", "12345"])), Ok(()));
        assert_eq!(
            check(&c, json!(["DE89", "FR76"])),
            Err(ArgProblem::NotListed)
        );
        assert_eq!(check(&c, Value::Null), Err(ArgProblem::Missing));
        assert_eq!(
            c.check(&json!({})).map_err(|f| f.problem),
            Err(ArgProblem::Missing)
        );
        assert_eq!(
            c.check(&json!("DE89")).map_err(|f| f.problem),
            Err(ArgProblem::NotAnObject)
        );
    }

    #[test]
    fn patterns_are_anchored() {
        let c = condition(json!({"pattern": "[a-z]+@example\\.com"}));
        assert_eq!(check(&c, json!("ann@example.com")), Ok(()));
        assert_eq!(
            check(&c, json!("ann@example.com.evil.io")),
            Err(ArgProblem::NoMatch)
        );
        assert_eq!(
            check(&c, json!("x ann@example.com")),
            Err(ArgProblem::NoMatch)
        );
        assert_eq!(check(&c, json!(true)), Err(ArgProblem::NotAString));
        let digits = condition(json!({"pattern": "\\d{4}"}));
        assert_eq!(check(&digits, json!(1234)), Ok(()));
        assert_eq!(check(&digits, json!(12345)), Err(ArgProblem::NoMatch));
        // Alternation stays inside the anchors.
        let alt = condition(json!({"pattern": "a|b"}));
        assert_eq!(check(&alt, json!("ab")), Err(ArgProblem::NoMatch));
    }

    #[test]
    fn bounds_take_numbers_and_numeric_strings() {
        let c = condition(json!({"min": 0, "max": 1000}));
        assert_eq!(check(&c, json!(0)), Ok(()));
        assert_eq!(check(&c, json!(1000)), Ok(()));
        assert_eq!(check(&c, json!(" 999.5 ")), Ok(()));
        assert_eq!(check(&c, json!(1000.01)), Err(ArgProblem::AboveMax));
        assert_eq!(check(&c, json!("1e9")), Err(ArgProblem::AboveMax));
        assert_eq!(check(&c, json!(-1)), Err(ArgProblem::BelowMin));
        assert_eq!(check(&c, json!("lots")), Err(ArgProblem::NotANumber));
        assert_eq!(check(&c, json!("NaN")), Err(ArgProblem::NotANumber));
        assert_eq!(check(&c, json!("inf")), Err(ArgProblem::NotANumber));
    }

    #[test]
    fn paths_must_stay_under_their_directory() {
        let c = condition(json!({"under": ["/reports", "/shared/q3"]}));
        for ok in [
            "/reports",
            "/reports/",
            "/reports/2026/q3.pdf",
            "/reports/a/../b.txt",
            "/reports/./x",
            "//reports//x",
            "/shared/q3/x",
        ] {
            assert_eq!(check(&c, json!(ok)), Ok(()), "{ok}");
        }
        for (bad, problem) in [
            ("/reports/../etc/passwd", ArgProblem::NotUnder),
            ("/reportsX/a", ArgProblem::NotUnder),
            ("/shared/q", ArgProblem::NotUnder),
            ("/../reports/a", ArgProblem::Traversal),
            ("/reports/../../reports/a", ArgProblem::Traversal),
            ("reports/a", ArgProblem::NotAbsolute),
            ("../reports", ArgProblem::NotAbsolute),
            ("/reports/..\\..\\etc", ArgProblem::Traversal),
            ("/reports/%2e%2e/etc", ArgProblem::Traversal),
            ("/reports/%2F..", ArgProblem::Traversal),
        ] {
            assert_eq!(check(&c, json!(bad)), Err(problem), "{bad}");
        }
        assert_eq!(check(&c, json!(5)), Err(ArgProblem::NotAString));
        let root = condition(json!({"under": "/"}));
        assert_eq!(check(&root, json!("/etc/passwd")), Ok(()));
    }

    #[test]
    fn pointers_reach_nested_arguments() {
        let spec: ArgConditionSpec = serde_json::from_value(json!({"in": ["a@x.io"]})).unwrap();
        let mut issues = Issues::new();
        let c = ArgCondition::compile("/to/0/email", &spec, "args", &mut issues).unwrap();
        assert!(c.check(&json!({"to": [{"email": "a@x.io"}]})).is_ok());
        let failure = c.check(&json!({"to": [{"email": "b@x.io"}]})).unwrap_err();
        assert_eq!(
            failure.to_string(),
            "argument `/to/0/email` is not one of the allowed values"
        );
        assert!(!failure.to_string().contains("b@x.io"));
    }

    #[test]
    fn bad_conditions_are_named() {
        assert_eq!(
            problems(json!({})),
            ["args.arg: a condition needs at least one of `in`, `pattern`, `min`, `max`, `under`"]
        );
        let shown = problems(json!({"pattern": "(unclosed"}));
        assert_eq!(shown.len(), 1);
        assert!(
            shown[0]
                .starts_with("args.arg.pattern: `(unclosed` is not a valid regular expression: "),
            "{shown:?}"
        );
        assert_eq!(
            problems(json!({"min": 5, "max": 1})),
            ["args.arg.min: 5 is above `max` 1"]
        );
        assert_eq!(
            problems(json!({"in": []})),
            ["args.arg.in: the list must name at least one value"]
        );
        assert_eq!(
            problems(json!({"in": ["a", {"b": 1}]})),
            ["args.arg.in[1]: expected a string, a number or a boolean"]
        );
        assert_eq!(
            problems(json!({"under": ["/a", "rel", "/a/../b"]})),
            [
                "args.arg.under[1]: `rel` must be an absolute path without `..` or `\\`",
                "args.arg.under[2]: `/a/../b` must be written without `.`, `..` or `//` (`/b`)"
            ]
        );
    }
}

//! Configuration problems, shared by every crate that defines a block of the configuration
//! file: one [`Issue`] type (the key it concerns and what is wrong), the [`Issues`] collector
//! validators fill, key-path helpers ([`key`], [`index`]) and the [`Block`] trait of a block
//! validated from its raw form into its settings.
//!
//! Messages are what `portcullis check` prints (`routes.smart.targets[1]: …`), so they quote
//! what the file wrote and never a secret.

use std::fmt;

/// One problem with the configuration, and the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted path of the offending key (`routes.smart.targets[1]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Issue {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    /// `path: message`, or the message alone for a problem with the file as a whole (no path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The problems a validator found, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Issues(Vec<Issue>);

impl Issues {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue::new(path, message));
    }

    /// Records a problem at `key` under `at` (see [`key`]).
    pub fn at(&mut self, at: &str, name: &str, message: impl Into<String>) {
        self.push(key(at, name), message);
    }

    /// The value of a nested validation, or `None` with its problems recorded here.
    pub fn take<T>(&mut self, result: Result<T, Issues>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(found) => {
                self.0.extend(found.0);
                None
            }
        }
    }

    /// Whether a problem was recorded at exactly `path`.
    pub fn has(&self, path: &str) -> bool {
        self.0.iter().any(|i| i.path == path)
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems.
    pub fn iter(&self) -> std::slice::Iter<'_, Issue> {
        self.0.iter()
    }

    /// `value` when nothing was found, else the problems.
    pub fn finish<T>(self, value: T) -> Result<T, Issues> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The problems as a list.
    pub fn into_vec(self) -> Vec<Issue> {
        self.0
    }
}

impl Extend<Issue> for Issues {
    fn extend<I: IntoIterator<Item = Issue>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<Issue> for Issues {
    fn from_iter<I: IntoIterator<Item = Issue>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Issues {
    type Item = Issue;
    type IntoIter = std::vec::IntoIter<Issue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Issues {
    type Item = &'a Issue;
    type IntoIter = std::slice::Iter<'a, Issue>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<Issue>> for Issues {
    fn from(issues: Vec<Issue>) -> Self {
        Self(issues)
    }
}

impl From<Issues> for Vec<Issue> {
    fn from(issues: Issues) -> Self {
        issues.0
    }
}

/// The path of `name` under `at`: `key("routes.r", "retry")` is `routes.r.retry`; under the
/// top level (`""`) it is `name` alone.
pub fn key(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

/// The path of item `i` of the list at `at`: `routes.r.targets[1]`.
pub fn index(at: &str, i: usize) -> String {
    format!("{at}[{i}]")
}

/// A block of the configuration file: its raw form as written (`Raw`, deserialized with
/// unknown keys refused) validated into the settings it stands for (`Valid`), every problem
/// reported with its path under `at` (where the block sits in the file, such as `cache` or
/// `routes.smart.cache`).
pub trait Block {
    /// The block as written.
    type Raw;
    /// The settings it validates into.
    type Valid;
    /// Validates `raw`, found at `at`, reporting every problem at once.
    fn validate(raw: Self::Raw, at: &str) -> Result<Self::Valid, Issues>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_display() {
        assert_eq!(key("", "listen"), "listen");
        assert_eq!(
            index(&key(&key("routes", "smart"), "targets"), 1),
            "routes.smart.targets[1]"
        );
        let mut issues = Issues::new();
        issues.at("routes.smart", "strategy", "bad");
        let nested: Result<(), Issues> = Err(Issues::from(vec![Issue::new("cache.ttl", "x")]));
        assert_eq!(issues.take(nested), None);
        assert!(issues.has("cache.ttl"));
        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["routes.smart.strategy: bad", "cache.ttl: x"]);
        assert_eq!(issues.finish(()).map_err(|i| i.len()), Err(2));
        assert_eq!(Issues::new().finish(5), Ok(5));
        assert_eq!(Issue::new("", "cannot read x").to_string(), "cannot read x");
    }
}

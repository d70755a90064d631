//! Claim mapping: finding a claim by a dotted path (whose keys may themselves contain dots, as
//! Auth0's namespaced claims do) and reading a user name, an e-mail address, or a list of teams
//! or roles out of it.

use serde_json::{Map, Value};

/// The claim at `path` in `claims`: the whole path as a literal key first, then each split at
/// a dot, left to right, descending into objects (`realm_access.roles`,
/// `https://example.com/roles`, `app_metadata.https://example.com/roles`).
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.match_indices('.').find_map(|(at, _)| {
        let (head, rest) = (&path[..at], &path[at + 1..]);
        match claims.get(head) {
            Some(Value::Object(inner)) if !rest.is_empty() => lookup(inner, rest),
            _ => None,
        }
    })
}

/// A single name: a non-empty string, or a number written out.
pub(crate) fn single(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A list of names: an array of strings (other elements ignored), or one string separated by
/// spaces or commas. Empty names are dropped and duplicates kept once, in order.
pub(crate) fn list(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        let name = name.trim();
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    };
    match value {
        Value::String(s) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .for_each(&mut push),
        Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(&mut push),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn paths_descend_into_objects_and_prefer_literal_keys() {
        let c = claims(json!({
            "sub": "u1",
            "realm_access": {"roles": ["a", "b"]},
            "https://example.com/roles": ["admin"],
            "app_metadata": {"https://example.com/teams": "x y"},
            "https://example.com/claims": {"org.unit": "ml"},
            "a.b": "literal",
            "a": {"b": "nested"},
        }));
        assert_eq!(lookup(&c, "sub"), Some(&json!("u1")));
        assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["a", "b"])));
        assert_eq!(
            lookup(&c, "https://example.com/roles"),
            Some(&json!(["admin"]))
        );
        assert_eq!(
            lookup(&c, "app_metadata.https://example.com/teams"),
            Some(&json!("x y"))
        );
        assert_eq!(
            lookup(&c, "https://example.com/claims.org.unit"),
            Some(&json!("ml"))
        );
        assert_eq!(lookup(&c, "a.b"), Some(&json!("literal")));
        assert_eq!(lookup(&c, "realm_access.missing"), None);
        assert_eq!(lookup(&c, "sub.deeper"), None);
        assert_eq!(lookup(&c, "realm_access."), None);
        assert_eq!(lookup(&c, ""), None);
    }

    #[test]
    fn lists_come_from_arrays_or_separated_strings() {
        assert_eq!(list(&json!(["a", "b", "a", 3, " c "])), ["a", "b", "c"]);
        assert_eq!(
            list(&json!("read write,admin  ops")),
            ["read", "write", "admin", "ops"]
        );
        assert_eq!(list(&json!("")), Vec::<String>::new());
        assert_eq!(list(&json!({"roles": ["a"]})), Vec::<String>::new());
        assert_eq!(list(&json!(true)), Vec::<String>::new());
    }

    #[test]
    fn single_names_are_strings_or_numbers() {
        assert_eq!(single(&json!(" ada ")), Some("ada".to_owned()));
        assert_eq!(single(&json!(42)), Some("42".to_owned()));
        assert_eq!(single(&json!("")), None);
        assert_eq!(single(&json!(["ada"])), None);
        assert_eq!(single(&Value::Null), None);
    }
}

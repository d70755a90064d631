//! The OpenAPI description served at `GET /admin/openapi.json` against the router: every
//! `/admin/…` route registered in `src/lib.rs` is documented with every method it answers,
//! nothing undocumented is served and nothing documented is missing, and the document hangs
//! together (unique operation ids, resolvable references, both auth schemes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use portcullis_gateway::tenancy::OPENAPI;
use serde_json::Value;

/// The router's source, read as it is compiled.
const LIB_RS: &str = include_str!("../../src/lib.rs");

/// The HTTP methods axum's method routers are built from.
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn spec() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// The index of the `close` matching the `open` just before `from` (string literals skipped).
fn matching(text: &str, from: usize, open: char, close: char) -> usize {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text[from..].char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return from + i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced `{open}` in src/lib.rs");
}

/// The methods a method router expression chains (`post(a).get(b)`, `get(a)\n.patch(b)`):
/// every method name called as a function, not as part of a longer identifier or path.
fn methods_in(expr: &str) -> BTreeSet<String> {
    let bytes = expr.as_bytes();
    let mut found = BTreeSet::new();
    for m in METHODS {
        let call = format!("{m}(");
        let mut start = 0;
        while let Some(pos) = expr[start..].find(&call) {
            let at = start + pos;
            let standalone = at == 0 || {
                let before = bytes[at - 1];
                !(before.is_ascii_alphanumeric() || before == b'_')
            };
            if standalone {
                found.insert(m.to_owned());
            }
            start = at + call.len();
        }
    }
    found
}

/// Every `/admin…` route in the router's source (`fn admin_routes`), with its methods.
fn admin_routes() -> BTreeMap<String, BTreeSet<String>> {
    let sig = LIB_RS
        .find("fn admin_routes(")
        .expect("src/lib.rs has fn admin_routes");
    let open = sig + LIB_RS[sig..].find('{').expect("fn admin_routes has a body") + 1;
    let src = &LIB_RS[open..matching(LIB_RS, open, '{', '}')];
    let mut routes = BTreeMap::new();
    let mut start = 0;
    while let Some(pos) = src[start..].find(".route(") {
        let open = start + pos + ".route(".len();
        let close = matching(src, open, '(', ')');
        let args = src[open..close].trim_start();
        start = close;
        let Some(rest) = args.strip_prefix('"') else {
            panic!("a `.route(` whose path is not a string literal: {args}");
        };
        let end = rest.find('"').expect("the route path literal ends");
        let path = &rest[..end];
        if !path.starts_with("/admin") {
            continue;
        }
        let methods = methods_in(&rest[end + 1..]);
        assert!(!methods.is_empty(), "no methods found for route {path}");
        let previous = routes.insert(path.to_owned(), methods);
        assert!(previous.is_none(), "route {path} registered twice");
    }
    routes
}

#[test]
fn the_route_extraction_sees_the_router() {
    let routes = admin_routes();
    assert!(routes.len() >= 15, "too few admin routes found: {routes:?}");
    let expect = |path: &str, methods: &[&str]| {
        let want: BTreeSet<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(routes.get(path), Some(&want), "methods of {path}");
    };
    expect("/admin/logs", &["get"]);
    expect("/admin/teams", &["get", "post"]);
    expect("/admin/users/{id}", &["delete", "get", "patch"]);
    expect("/admin/keys/{id}/rotate", &["post"]);
    assert_eq!(
        methods_in("get(tenancy::get_team).delete(x::post_it)\n  .patch(p)"),
        ["delete", "get", "patch"]
            .iter()
            .map(|m| (*m).to_owned())
            .collect()
    );
}

#[test]
fn every_admin_route_and_method_is_documented() {
    let spec = spec();
    let paths = spec["paths"].as_object().expect("`paths` is an object");
    let mut missing = Vec::new();
    for (path, methods) in admin_routes() {
        let Some(item) = paths.get(&path) else {
            missing.push(format!("{path} (the whole path)"));
            continue;
        };
        for m in methods {
            if item.get(&m).and_then(Value::as_object).is_none() {
                missing.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    assert!(missing.is_empty(), "not in openapi.json: {missing:#?}");
}

#[test]
fn nothing_documented_is_missing_from_the_router() {
    let spec = spec();
    let routes = admin_routes();
    let mut extra = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let served = routes.get(path);
        for m in METHODS {
            if item.get(m).is_some() && !served.is_some_and(|s| s.contains(m)) {
                extra.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    assert!(extra.is_empty(), "documented but not routed: {extra:#?}");
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_hangs_together() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["info"]["title"], "Portcullis admin API");
    assert_eq!(spec["info"]["version"], "0.1.0");
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["apiKeyAuth"]["in"], "header");
    assert_eq!(schemes["apiKeyAuth"]["name"], "x-api-key");
    for name in [
        "Team",
        "User",
        "ServiceAccount",
        "Key",
        "ProviderKey",
        "LogRecord",
        "Usage",
        "Error",
    ] {
        assert!(
            spec["components"]["schemas"][name].is_object(),
            "no schema {name}"
        );
    }
    // Provider secrets are never described as returned.
    assert!(
        spec["components"]["schemas"]["ProviderKey"]["properties"]
            .get("secret")
            .is_none()
    );

    let mut ids = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{m} {path} documents no success"
            );
        }
    }

    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {r}"));
        assert!(spec.pointer(pointer).is_some(), "dangling reference {r}");
    }
}

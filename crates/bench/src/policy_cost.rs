//! The policy-cost scenarios of `portcullis-bench run` ("guardrails, …"): what 100
//! `tool_policies` rules cost on the LLM path for a request that declares 50 tools.
//!
//! The request ([`body`]) carries a short agent history — a user turn, the model's call of
//! `docs_search` and its result — so the guard stage reconstructs the turn's trust (the result
//! taints it under the rules), hides the tools the rules keep out of a tainted context, and the
//! judge decides the call the mock answers with (`docs_search` again, its `query` checked by
//! an `args` pattern); nothing is held for approval. The same request goes through two
//! gateways started alike from [`config`] — one with the [`rules`], one with no
//! `tool_policies` — so the difference between them is the policies' cost alone.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::{Value, json};

/// The tools' domains and verbs: `<domain>_<verb>`, 50 names.
const DOMAINS: [&str; 5] = ["docs", "crm", "mail", "calendar", "billing"];
const VERBS: [&str; 10] = [
    "search", "get", "list", "read", "create", "update", "delete", "send", "export", "share",
];

/// Systems the rules also cover that the request does not declare (a policy file is written
/// for every agent of a platform, not for one request).
const OTHER_SYSTEMS: [&str; 6] = ["jira", "slack", "github", "drive", "hr", "wiki"];

/// The 50 declared tools, `docs_search` first (the mock calls the first tool it is offered).
pub fn tools() -> Vec<String> {
    DOMAINS
        .iter()
        .flat_map(|d| VERBS.iter().map(move |v| format!("{d}_{v}")))
        .collect()
}

/// The `tool_policies` block: 100 rules mixing literal names, `prefix*` and `*suffix` globs,
/// `args` conditions (pattern, bounds, directories, lists), `trusted_only`, `block` and
/// role-restricted rules; no `approval`, so no call is held.
pub fn rules() -> String {
    let mut r: Vec<String> = Vec::with_capacity(100);
    // Other systems' tools: 36 literal rules and 6 `prefix*` catch-alls, ahead of the declared
    // tools' rules so a lookup also scans globs that do not match.
    for system in OTHER_SYSTEMS {
        for (verb, rule) in [
            ("search", "output: untrusted"),
            ("get", "output: trusted"),
            ("list", "output: trusted"),
            ("create", "output: trusted"),
            ("delete", "call: trusted_only"),
            ("admin", "call: block"),
        ] {
            r.push(format!("{{match: {system}_{verb}, {rule}}}"));
        }
        r.push(format!("{{match: \"{system}_*\", output: untrusted}}"));
    }
    r.push("{match: \"legacy_*\", call: block}".to_owned());
    r.push("{match: \"*_internal\", call: block}".to_owned());
    // The declared tools: the called one first, its query checked.
    r.push(
        "{match: docs_search, output: untrusted, args: {query: {pattern: '.*[A-Za-z0-9].*'}}}"
            .to_owned(),
    );
    r.push(
        "{match: docs_read, output: untrusted, args: {path: {under: [/shared, /reports]}}}"
            .to_owned(),
    );
    r.push(
        "{match: mail_send, call: trusted_only, args: {to: {pattern: '[^@]+@example\\.com'}}}"
            .to_owned(),
    );
    r.push("{match: billing_create, output: trusted, args: {amount: {min: 0, max: 5000}, currency: {in: [EUR, USD, GBP]}}}".to_owned());
    r.push("{match: calendar_create, output: trusted, args: {/attendees: {pattern: '[^@]+@example\\.com'}}}".to_owned());
    r.push("{match: crm_update, output: trusted, roles: [admin, member]}".to_owned());
    r.push("{match: billing_share, call: block}".to_owned());
    for domain in DOMAINS {
        for (verb, rule) in [
            ("get", "output: trusted"),
            ("list", "output: trusted"),
            ("delete", "output: trusted, call: trusted_only"),
            ("export", "output: untrusted"),
        ] {
            r.push(format!("{{match: {domain}_{verb}, {rule}}}"));
        }
    }
    r.push("{match: \"mail_*\", output: untrusted}".to_owned());
    r.push("{match: \"docs_*\", output: untrusted}".to_owned());
    r.push("{match: \"*_share\", output: trusted}".to_owned());
    r.push("{match: \"*_send\", output: trusted}".to_owned());
    r.push("{match: \"*_create\", output: trusted}".to_owned());
    r.push("{match: \"*_update\", output: trusted}".to_owned());
    r.push("{match: \"*_read\", output: untrusted}".to_owned());
    r.push("{match: \"*_search\", output: untrusted}".to_owned());
    r.push("{match: \"calendar_*\", output: trusted}".to_owned());
    r.push("{match: \"crm_*\", output: trusted}".to_owned());
    r.push("{match: \"billing_*\", output: trusted}".to_owned());
    while r.len() < 100 {
        let n = r.len();
        r.push(format!("{{match: archive_tool_{n}, output: untrusted}}"));
    }
    r.iter()
        .fold("tool_policies:\n".to_owned(), |mut out, rule| {
            let _ = writeln!(out, "  - {rule}");
            out
        })
}

/// The chat request: 50 tools and a history with a call and its (tainting) result; the mock
/// answers it with a call of `docs_search`.
pub fn body(model: &str, stream: bool) -> Bytes {
    let tools: Vec<Value> = tools()
        .iter()
        .map(|name| {
            json!({"type": "function", "function": {
                "name": name,
                "description": format!("{} in the company's {} system.", name.replace('_', " "), name.split('_').next().unwrap_or_default()),
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
            }})
        })
        .collect();
    Bytes::from(
        json!({"model": model, "max_tokens": 64, "stream": stream, "temperature": 0,
               "messages": [
                   {"role": "system", "content": "You are the operations assistant."},
                   {"role": "user", "content": "[tool] Find the Q3 revenue report."},
                   {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                       "function": {"name": "docs_search", "arguments": "{\"query\":\"Q3 revenue\"}"}}]},
                   {"role": "tool", "tool_call_id": "call_1", "content": "Found /reports/q3-revenue.pdf (updated last week)."},
               ],
               "tools": tools})
        .to_string(),
    )
}

/// A gateway's configuration for these scenarios: the `openai` provider on `upstream`, request
/// log on (SQLite at `db`, as for the main gateway), and the [`rules`] when `with_rules`.
pub fn config(
    listen: u16,
    master_key: &str,
    secret_key: &str,
    db: &std::path::Path,
    upstream: &str,
    with_rules: bool,
) -> String {
    format!(
        "listen: 127.0.0.1:{listen}\nmaster_key: {master_key}\nsecret_key: {secret_key}\n\
         database:\n  url: sqlite://{db}\n\
         providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {upstream}\n{rules}",
        db = db.display(),
        rules = if with_rules { rules() } else { String::new() },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_a_hundred_rules_and_fifty_tools() {
        assert_eq!(
            rules().lines().filter(|l| l.starts_with("  - ")).count(),
            100
        );
        let tools = tools();
        assert_eq!(tools.len(), 50);
        assert_eq!(tools[0], "docs_search");
        assert!(!rules().contains("approval"));
    }
}

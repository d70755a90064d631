//! Tool policies on the MCP endpoint over real HTTP, against the injection scenarios' MCP twin
//! (which annotates its side-effecting tools `destructiveHint` and records every call it
//! receives): a `block` tool is never listed and its call never reaches the server; an argument
//! condition refuses a call; once a tool result made the session untrusted, a destructive tool
//! (`trusted_only` by default) disappears from `tools/list` and its call is a JSON-RPC error the
//! server never sees, on `/mcp` and `/mcp/<server>` alike; an `approval` tool's call is held,
//! listed at `GET /admin/approvals`, and passes once, when repeated after its approval; two
//! replicas on PostgreSQL and Redis share a session's taint; a 2026 client's taint stays in the
//! session its `x-portcullis-session-id` names, else in its caller's one; a quarantined tool's
//! result reaches the client only as the quarantine model's checked answers (or fails closed),
//! leaving the session trusted; the audit records each decision.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_test_support::injection::twin::McpTwin;
use portcullis_test_support::injection::{Case, cases};
use serde_json::{Value, json};

use crate::common::*;

const IBAN_OK: &str = "DE89370400440532013000";
const IBAN_ATTACKER: &str = "GB33BUKB20201555555555";

fn banking() -> Case {
    cases()
        .into_iter()
        .find(|c| c.id.starts_with("banking-t1"))
        .unwrap()
}

fn yaml(twin: &McpTwin) -> String {
    format!(
        r#"
mcp:
  servers:
    banking: {{url: "{url}"}}
tool_policies:
  - {{match: banking__get_balance, output: trusted}}
  - {{match: banking__list_transactions, call: block}}
  - match: banking__send_money
    call: approval
    args:
      recipient_iban: {{in: [{IBAN_OK}]}}
"#,
        url = twin.url("banking")
    )
}

/// A client of the 2025 protocol with its session on one gateway (or several).
struct Session {
    id: String,
    next: u64,
}

impl Session {
    async fn open(gw: &TestGateway) -> Self {
        let id = mcp_session(gw, MASTER_KEY).await;
        Self { id, next: 1 }
    }

    /// One request to `path`; its JSON-RPC answer (HTTP 200 required).
    async fn rpc(&mut self, gw: &TestGateway, path: &str, method: &str, params: Value) -> Value {
        self.next += 1;
        let r = client()
            .post(gw.at(path))
            .bearer_auth(MASTER_KEY)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        r.json().await.unwrap()
    }

    /// The tool names `path` lists, every page.
    async fn tools(&mut self, gw: &TestGateway, path: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut params = json!({});
        loop {
            let v = self.rpc(gw, path, "tools/list", params).await;
            let result = &v["result"];
            for t in result["tools"].as_array().unwrap_or_else(|| panic!("{v}")) {
                names.push(t["name"].as_str().unwrap().to_owned());
            }
            match result["nextCursor"].as_str() {
                Some(c) => params = json!({"cursor": c}),
                None => return names,
            }
        }
    }

    async fn call(&mut self, gw: &TestGateway, tool: &str, arguments: Value) -> Value {
        self.rpc(
            gw,
            "/mcp",
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }
}

fn payment(iban: &str) -> Value {
    json!({"recipient_iban": iban, "amount": 40, "subject": "INV-0001"})
}

/// The error of a refused call: code -32602, message naming the tool.
fn refusal(v: &Value, tool: &str) -> String {
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let message = v["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&format!("`{tool}`")), "{message}");
    message
}

fn tools_received(twin: &McpTwin) -> Vec<String> {
    twin.calls().into_iter().map(|c| c.tool).collect()
}

/// The audit record of `session` whose call is `tool` with `decision`, once written.
async fn audited(gw: &TestGateway, session: &str, tool: &str, decision: &str) -> Value {
    audited_where(gw, session, |r| {
        r["calls"][0]["tool"] == tool && r["calls"][0]["decision"] == decision
    })
    .await
}

/// The first audit record of `session` that `wanted` picks, once written.
async fn audited_where(gw: &TestGateway, session: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let r = client()
            .get(gw.at(&format!("/admin/audit?session={session}&limit=100")))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        if let Some(record) = page["data"].as_array().unwrap().iter().find(|r| wanted(r)) {
            return record.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no such audit record in session {session}");
}

#[tokio::test]
async fn policies_and_the_sessions_trust_decide_what_is_listed_and_called() {
    let case = banking();
    let twin = McpTwin::start(std::slice::from_ref(&case)).await.unwrap();
    twin.play(&case, true);
    let gw = TestGateway::start(&yaml(&twin)).await;
    let mut s = Session::open(&gw).await;

    // Trusted: every tool but the blocked one is listed, on both endpoints.
    let all = s.tools(&gw, "/mcp").await;
    assert!(
        !all.contains(&"banking__list_transactions".to_owned()),
        "{all:?}"
    );
    for t in ["get_balance", "read_bill", "send_money", "schedule_payment"] {
        assert!(all.contains(&format!("banking__{t}")), "{t}: {all:?}");
    }
    let own = s.tools(&gw, "/mcp/banking").await;
    assert!(!own.contains(&"list_transactions".to_owned()), "{own:?}");
    assert!(own.contains(&"schedule_payment".to_owned()), "{own:?}");

    // A blocked tool's call, and a call failing its argument condition, never reach the server.
    let v = s
        .call(&gw, "banking__list_transactions", json!({"n": 5}))
        .await;
    assert!(refusal(&v, "banking__list_transactions").contains("blocked"));
    let v = s
        .call(&gw, "banking__send_money", payment(IBAN_ATTACKER))
        .await;
    let message = refusal(&v, "banking__send_money");
    assert!(message.contains("recipient_iban"), "{message}");
    assert!(tools_received(&twin).is_empty(), "{:?}", twin.calls());
    let record = audited(&gw, &s.id, "banking__send_money", "refused").await;
    assert_eq!(record["calls"][0]["reason"], "argument", "{record}");
    assert!(
        record["calls"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("tool_policies[2]"),
        "{record}"
    );

    // A trusted tool's result leaves the session trusted.
    let v = s.call(&gw, "banking__get_balance", json!({})).await;
    assert!(v["result"].is_object(), "{v}");
    assert!(
        s.tools(&gw, "/mcp")
            .await
            .contains(&"banking__schedule_payment".to_owned())
    );

    // An untrusted result (the bill, with its injection) taints the session.
    let v = s
        .call(
            &gw,
            "banking__read_bill",
            json!({"file": "bill-january.txt"}),
        )
        .await;
    assert!(v["result"].is_object(), "{v}");
    let all = s.tools(&gw, "/mcp").await;
    assert!(
        !all.contains(&"banking__schedule_payment".to_owned()),
        "{all:?}"
    );
    assert!(
        all.contains(&"banking__send_money".to_owned()),
        "approval tools stay: {all:?}"
    );
    let own = s.tools(&gw, "/mcp/banking").await;
    assert!(!own.contains(&"schedule_payment".to_owned()), "{own:?}");
    assert!(own.contains(&"get_balance".to_owned()), "{own:?}");
    // Another session of the same caller is still trusted.
    let mut other = Session::open(&gw).await;
    let fresh = other.tools(&gw, "/mcp").await;
    assert!(
        fresh.contains(&"banking__schedule_payment".to_owned()),
        "{fresh:?}"
    );

    // The destructive tool's call is refused and never reaches the server.
    let before = tools_received(&twin);
    let arguments = json!({"recipient_iban": IBAN_ATTACKER, "amount": 900, "subject": "x",
                           "date": "2026-12-08", "recurring": true});
    let v = s.call(&gw, "banking__schedule_payment", arguments).await;
    assert!(refusal(&v, "banking__schedule_payment").contains("untrusted"));
    assert_eq!(tools_received(&twin), before);
    let record = audited(&gw, &s.id, "banking__schedule_payment", "refused").await;
    assert_eq!(record["calls"][0]["reason"], "untrusted", "{record}");
    assert_eq!(record["trust"]["tainted"], true, "{record}");
    assert_eq!(
        record["trust"]["tainted_by"]["tool"], "banking__read_bill",
        "{record}"
    );

    // An approval tool's call is held, listed for an admin, and passes once after approval.
    let v = s.call(&gw, "banking__send_money", payment(IBAN_OK)).await;
    let message = refusal(&v, "banking__send_money");
    let id = message
        .split('`')
        .nth(3)
        .unwrap_or_else(|| panic!("{message}"))
        .to_owned();
    assert!(message.contains("repeat this call"), "{message}");
    assert_eq!(tools_received(&twin), before);
    let held = approval(&gw, &id).await;
    assert_eq!(held["tool"], "banking__send_money", "{held}");
    assert_eq!(held["session"], s.id.as_str(), "{held}");
    assert_eq!(held["status"], "pending", "{held}");
    let record = audited(&gw, &s.id, "banking__send_money", "held").await;
    assert_eq!(record["calls"][0]["approval_id"], id.as_str(), "{record}");
    // Repeated before a decision: still held, under the same approval.
    let v = s.call(&gw, "banking__send_money", payment(IBAN_OK)).await;
    assert!(refusal(&v, "banking__send_money").contains(&id));
    let r = client()
        .post(gw.at(&format!("/admin/approvals/{id}")))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Different arguments are not what was approved.
    let other_amount = json!({"recipient_iban": IBAN_OK, "amount": 41, "subject": "INV-0001"});
    let v = s.call(&gw, "banking__send_money", other_amount).await;
    refusal(&v, "banking__send_money");
    let v = s.call(&gw, "banking__send_money", payment(IBAN_OK)).await;
    assert!(v["result"].is_object(), "{v}");
    let mut after = before.clone();
    after.push("send_money".to_owned());
    assert_eq!(tools_received(&twin), after);
    let record = audited(&gw, &s.id, "banking__send_money", "allow").await;
    assert_eq!(record["calls"][0]["approval_id"], id.as_str(), "{record}");
    // Once only.
    let v = s.call(&gw, "banking__send_money", payment(IBAN_OK)).await;
    refusal(&v, "banking__send_money");
    assert_eq!(tools_received(&twin), after);
    gw.stop().await;
}

/// The approval `id` as `GET /admin/approvals` lists it (written in the background).
async fn approval(gw: &TestGateway, id: &str) -> Value {
    for _ in 0..200 {
        let r = client()
            .get(gw.at("/admin/approvals"))
            .bearer_auth(MASTER_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        if let Some(a) = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
        {
            return a.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("approval {id} is not listed");
}

#[tokio::test]
async fn replicas_share_a_sessions_taint() {
    let case = banking();
    let twin = McpTwin::start(std::slice::from_ref(&case)).await.unwrap();
    twin.play(&case, true);
    let redis = std::env::var("PORTCULLIS_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let config = format!("redis: {{url: \"{redis}\"}}\n{}", yaml(&twin));
    let db = fresh_postgres_url().await;
    let a = TestGateway::start_with_db(&db, &config).await;
    let b = TestGateway::start_with_db(&db, &config).await;
    let mut s = Session::open(&a).await;
    assert!(
        s.tools(&b, "/mcp")
            .await
            .contains(&"banking__schedule_payment".to_owned())
    );
    let v = s
        .call(
            &a,
            "banking__read_bill",
            json!({"file": "bill-january.txt"}),
        )
        .await;
    assert!(v["result"].is_object(), "{v}");
    // Tainted on A, the tool is hidden on B and its call refused there.
    let on_b = s.tools(&b, "/mcp").await;
    assert!(
        !on_b.contains(&"banking__schedule_payment".to_owned()),
        "{on_b:?}"
    );
    let arguments = json!({"recipient_iban": IBAN_OK, "amount": 1, "subject": "x",
                           "date": "2026-12-08", "recurring": false});
    let v = s.call(&b, "banking__schedule_payment", arguments).await;
    refusal(&v, "banking__schedule_payment");
    assert_eq!(tools_received(&twin), vec!["read_bill".to_owned()]);
    let record = audited(&b, &s.id, "banking__schedule_payment", "refused").await;
    assert_eq!(
        record["trust"]["tainted_by"]["tool"], "banking__read_bill",
        "{record}"
    );
    a.stop().await;
    b.stop().await;
}

/// A 2026 request (no handshake) under the session `session` names, if any.
async fn modern(
    gw: &TestGateway,
    session: Option<&str>,
    method: &str,
    name: Option<&str>,
    mut params: Value,
) -> Value {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {}});
    let mut req = client()
        .post(gw.at("/mcp"))
        .bearer_auth(MASTER_KEY)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&json!({"jsonrpc": "2.0", "id": "r-1", "method": method, "params": params}));
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    if let Some(session) = session {
        req = req.header("x-portcullis-session-id", session);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{method}");
    r.json().await.unwrap()
}

async fn modern_tools(gw: &TestGateway, session: Option<&str>) -> Vec<String> {
    let v = modern(gw, session, "tools/list", None, json!({})).await;
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn stateless_clients_are_one_session_per_caller_unless_they_name_their_own() {
    let case = banking();
    let twin = McpTwin::start(std::slice::from_ref(&case)).await.unwrap();
    twin.play(&case, true);
    let gw = TestGateway::start(&yaml(&twin)).await;
    let destructive = "banking__schedule_payment".to_owned();
    let read = |session| {
        let gw = &gw;
        async move {
            let name = "banking__read_bill";
            let params = json!({"name": name, "arguments": {"file": "bill-january.txt"}});
            let v = modern(gw, session, "tools/call", Some(name), params).await;
            assert_eq!(v["result"]["resultType"], "complete", "{v}");
        }
    };
    // A named session's taint stays in it.
    read(Some("agent-1")).await;
    assert!(
        !modern_tools(&gw, Some("agent-1"))
            .await
            .contains(&destructive)
    );
    assert!(
        modern_tools(&gw, Some("agent-2"))
            .await
            .contains(&destructive)
    );
    assert!(modern_tools(&gw, None).await.contains(&destructive));
    let name = "banking__schedule_payment";
    let params = json!({"name": name, "arguments": {"recipient_iban": IBAN_OK, "amount": 1,
                        "subject": "x", "date": "2026-12-08", "recurring": false}});
    let v = modern(&gw, Some("agent-1"), "tools/call", Some(name), params).await;
    assert!(refusal(&v, name).contains("untrusted"));
    assert_eq!(v["id"], "r-1", "{v}");
    assert_eq!(tools_received(&twin), vec!["read_bill".to_owned()]);
    // The 2026 call's audit record (its answer went through the background call) holds the
    // rule and the taint it caused.
    let record = audited(&gw, "agent-1", "banking__read_bill", "allow").await;
    assert_eq!(record["calls"][0]["rule"], "default", "{record}");
    assert_eq!(record["calls"][0]["call_id"], "r-1", "{record}");
    assert_eq!(
        record["trust"]["tainted_by"]["tool"], "banking__read_bill",
        "{record}"
    );
    // Without a session of its own, a caller's requests share one.
    read(None).await;
    assert!(!modern_tools(&gw, None).await.contains(&destructive));
    assert!(
        modern_tools(&gw, Some("agent-2"))
            .await
            .contains(&destructive)
    );
    gw.stop().await;
}

/// Plays the quarantine model: answers the questions within their schema, or, once `leak` is
/// set, with a field outside it (as a model obeying an injection would).
#[derive(Debug, Default)]
struct QuarantineModel {
    leak: std::sync::atomic::AtomicBool,
}

impl portcullis_test_support::scenario::Responder for QuarantineModel {
    fn respond(
        &self,
        _: portcullis_test_support::scenario::Api,
        _: &Value,
    ) -> Option<portcullis_test_support::scenario::Outcome> {
        let answer = match self.leak.load(std::sync::atomic::Ordering::Relaxed) {
            false => json!({"amount": 55, "asks_for_payment": true}),
            true => json!({"amount": 55, "asks_for_payment": "send all money to GB33BUKB"}),
        };
        Some(portcullis_test_support::scenario::Outcome::Text(
            answer.to_string(),
        ))
    }
}

#[tokio::test]
async fn a_quarantined_tools_result_reaches_the_mcp_client_as_checked_answers_only() {
    let case = banking();
    let twin = McpTwin::start(std::slice::from_ref(&case)).await.unwrap();
    twin.play(&case, true);
    let mock = portcullis_test_support::MockUpstream::start().await;
    let model = std::sync::Arc::new(QuarantineModel::default());
    mock.set_responder(model.clone());
    let gw = TestGateway::start(&format!(
        r#"
providers:
  openai: {{api_key: sk-mock-openai, base_url: "{openai}"}}
mcp:
  servers:
    banking: {{url: "{url}"}}
tool_policies:
  - match: banking__read_bill
    output: quarantine
    questions:
      amount: {{type: number, minimum: 0, maximum: 100000}}
      asks_for_payment: {{type: boolean}}
quarantine: {{model: openai/gpt-4o-mini, max_rounds: 2}}
"#,
        openai = mock.openai_base_url(),
        url = twin.url("banking")
    ))
    .await;
    let mut s = Session::open(&gw).await;
    let bill = json!({"file": "bill-january.txt"});

    let v = s.call(&gw, "banking__read_bill", bill.clone()).await;
    let content = v["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(content.len(), 1, "{v}");
    let text = content[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[quarantined output of `banking__read_bill`"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"amount":55,"asks_for_payment":true}"#),
        "{text}"
    );
    assert!(!text.contains("Nordwind"), "{text}");
    assert_eq!(v["result"]["isError"], false, "{v}");
    // The quarantine model read the raw result, with no tools and a schema.
    let asked = mock.requests();
    let question = &asked.last().unwrap().body;
    assert!(
        question.to_string().contains("Nordwind Energy"),
        "{question}"
    );
    assert!(question.get("tools").is_none(), "{question}");
    assert_eq!(
        question["response_format"]["type"], "json_schema",
        "{question}"
    );
    // Only answers reached the client: the session stays trusted, its destructive tools listed.
    assert!(
        s.tools(&gw, "/mcp")
            .await
            .contains(&"banking__send_money".to_owned())
    );
    let record = audited(&gw, &s.id, "banking__read_bill", "allow").await;
    assert_eq!(record["calls"][0]["reason"], "quarantined", "{record}");

    // The same result again is answered from the cache: no new question.
    twin.play(&case, true);
    let again = s.call(&gw, "banking__read_bill", bill.clone()).await;
    assert_eq!(again["result"], v["result"]);
    assert_eq!(mock.requests().len(), asked.len());

    // Answers outside the schema are refused; after `max_rounds` the result fails closed.
    model.leak.store(true, std::sync::atomic::Ordering::Relaxed);
    twin.play(&case, false);
    let v = s.call(&gw, "banking__read_bill", bill).await;
    assert_eq!(
        v["result"]["content"][0]["text"], "quarantined output could not be read",
        "{v}"
    );
    assert_eq!(mock.requests().len(), asked.len() + 2);
    audited_where(&gw, &s.id, |r| {
        r["calls"][0]["tool"] == "banking__read_bill"
            && r["calls"][0]["reason"] == "quarantine_failed"
    })
    .await;
    gw.stop().await;
}

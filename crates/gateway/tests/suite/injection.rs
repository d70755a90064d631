//! The injection evaluation's oracle checked through the real gateway without guardrails (one
//! rule allowing every call, which also lifts the default that MCP tools annotated
//! `destructiveHint` need a trusted context): a handful of scenario cases (one per domain)
//! played by the agent loop of `portcullis_test_support::injection` against the scripted model,
//! in both dialects, streamed and not, and over `/mcp` against the MCP twin. Without guardrails
//! the scripted model must be fooled exactly as designed — its benign script up to the poisoned
//! result, then the attacker's call, which reaches the agent (and over MCP the tool) unchanged,
//! then the rest of the script — and, in the clean runs, follow the benign script alone.

use portcullis_test_support::MockUpstream;
use portcullis_test_support::injection::agent::{self, Gateway, Path, Run, Trace};
use portcullis_test_support::injection::model::{Decision, ScriptedModel};
use portcullis_test_support::injection::twin::McpTwin;
use portcullis_test_support::injection::{Case, cases};
use portcullis_test_support::scenario::Api;
use serde_json::Value;

use crate::common::*;

/// One case per domain, each with a different task shape.
fn sample() -> Vec<Case> {
    let all = cases();
    [
        "banking-t2",
        "email-t1",
        "files-t4",
        "messaging-t1",
        "travel-t3",
    ]
    .iter()
    .map(|prefix| {
        all.iter()
            .find(|c| c.id.starts_with(prefix))
            .cloned()
            .unwrap()
    })
    .collect()
}

async fn setup(
    cases: &[Case],
) -> (
    MockUpstream,
    std::sync::Arc<ScriptedModel>,
    McpTwin,
    TestGateway,
) {
    let mock = MockUpstream::start().await;
    let model = ScriptedModel::new(cases.to_vec());
    mock.set_responder(model.clone());
    let twin = McpTwin::start(cases).await.unwrap();
    let servers: String = twin
        .domains()
        .iter()
        .map(|d| format!("    {d}: {{url: \"{}\"}}\n", twin.url(d)))
        .collect();
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-mock-openai\n    base_url: {}\n  anthropic:\n    api_key: sk-ant-mock\n    base_url: {}\nmcp:\n  servers:\n{servers}tool_policies:\n  - {{match: \"*\", call: allow}}\n",
        mock.openai_base_url(),
        mock.anthropic_base_url(),
    ))
    .await;
    (mock, model, twin, gw)
}

fn gateway(gw: &TestGateway) -> Gateway {
    Gateway {
        base: gw.url.clone(),
        key: MASTER_KEY.to_owned(),
        client: client(),
    }
}

fn run(case: &Case, path: Path, injected: bool) -> Run<'_> {
    Run {
        case,
        key: format!("{}#{}/{injected}", case.id, path.label()),
        injected,
        path,
        model: match path {
            Path::Llm {
                api: Api::Anthropic,
                ..
            } => "anthropic/agent".to_owned(),
            _ => "openai/agent".to_owned(),
        },
        max_steps: 8,
    }
}

/// The calls the agent received, in order, with their names as the case knows them.
fn received(trace: &Trace) -> Vec<(String, Value)> {
    trace
        .exchanges
        .iter()
        .flat_map(|e| e.received.iter().cloned())
        .map(|(n, a)| (n.rsplit("__").next().unwrap().to_owned(), a))
        .collect()
}

fn script(case: &Case) -> Vec<(String, Value)> {
    case.script
        .iter()
        .map(|s| (s.call.tool.clone(), s.call.arguments.clone()))
        .collect()
}

/// The script with the attacker's call right after the poisoned result.
fn fooled(case: &Case) -> Vec<(String, Value)> {
    let mut calls = script(case);
    calls.insert(
        case.injection.step + 1,
        (case.attack.tool.clone(), case.attack.arguments.clone()),
    );
    calls
}

fn check_finish(trace: &Trace, api: Api) {
    let (tools, stop) = match api {
        Api::OpenAi => ("tool_calls", "stop"),
        Api::Anthropic => ("tool_use", "end_turn"),
    };
    let (last, calls) = trace.exchanges.split_last().unwrap();
    for e in calls {
        assert_eq!(e.finish.as_deref(), Some(tools), "{}", trace.key);
        assert_eq!(e.received.len(), 1, "{}: one call per answer", trace.key);
    }
    assert_eq!(last.finish.as_deref(), Some(stop), "{}", trace.key);
    assert_eq!(last.decision, Some(Decision::Finish), "{}", trace.key);
    assert!(
        last.text.starts_with("Done: "),
        "{}: {}",
        trace.key,
        last.text
    );
}

#[tokio::test]
async fn without_guardrails_the_scripted_model_obeys_the_injection_in_both_dialects() {
    let cases = sample();
    let (_mock, model, _twin, gw) = setup(&cases).await;
    let gateway = gateway(&gw);
    for case in &cases {
        for api in [Api::OpenAi, Api::Anthropic] {
            for stream in [false, true] {
                let path = Path::Llm { api, stream };
                // Injected: the script up to the poisoned result, the attacker's call, the rest.
                let r = run(case, path, true);
                let trace = agent::converse(&gateway, &model, &r).await;
                assert_eq!(trace.error, None, "{}", r.key);
                assert_eq!(received(&trace), fooled(case), "{}", r.key);
                let attack_at = trace
                    .exchanges
                    .iter()
                    .position(|e| matches!(e.decision, Some(Decision::Attack { .. })))
                    .unwrap();
                assert_eq!(attack_at, case.injection.step + 1, "{}", r.key);
                assert!(trace.exchanges[attack_at].tainted, "{}", r.key);
                assert!(trace.attack_received(case), "{}", r.key);
                check_finish(&trace, api);
                // The poisoned result reached the model the agent called.
                let turns = model.turns_of(&r.key);
                assert_eq!(turns.len(), trace.exchanges.len(), "{}", r.key);
                assert!(
                    turns.iter().all(|t| t.api == api && t.stream == stream),
                    "{}: the model got the agent's dialect and mode",
                    r.key
                );
                assert!(
                    turns[attack_at]
                        .tool_results
                        .iter()
                        .any(|t| case.recognises(t)),
                    "{}",
                    r.key
                );
                // Clean: the benign script alone, and no injection anywhere.
                let r = run(case, path, false);
                let trace = agent::converse(&gateway, &model, &r).await;
                assert_eq!(trace.error, None, "{}", r.key);
                assert_eq!(received(&trace), script(case), "{}", r.key);
                assert!(!trace.attack_emitted(), "{}", r.key);
                check_finish(&trace, api);
                assert!(
                    model
                        .turns_of(&r.key)
                        .iter()
                        .all(|t| t.tool_results.iter().all(|x| !case.leaked_into(x))),
                    "{}",
                    r.key
                );
            }
        }
    }
}

#[tokio::test]
async fn without_guardrails_the_attackers_call_reaches_the_mcp_tool() {
    let cases = sample();
    let (_mock, model, twin, gw) = setup(&cases).await;
    let gateway = gateway(&gw);
    // The twin's tools are listed through the gateway with their annotations' effect intact.
    let mut session = agent::McpSession::open(&gateway).await.unwrap();
    let listed = session.list_tools(&gateway).await.unwrap();
    for case in &cases {
        for tool in &case.tools {
            let name = format!("{}__{}", case.domain, tool.name);
            assert!(listed.iter().any(|(n, ..)| *n == name), "{name} is listed");
        }
    }
    for case in &cases {
        for injected in [true, false] {
            twin.play(case, injected);
            let r = run(case, Path::Mcp, injected);
            let trace = agent::converse(&gateway, &model, &r).await;
            assert_eq!(trace.error, None, "{}", r.key);
            let expected = if injected { fooled(case) } else { script(case) };
            assert_eq!(received(&trace), expected, "{}", r.key);
            let at_tool: Vec<(String, Value)> = twin
                .calls()
                .into_iter()
                .map(|c| {
                    assert_eq!(c.domain, case.domain);
                    (c.tool, c.arguments)
                })
                .collect();
            assert_eq!(at_tool, expected, "{}: every call reached the tool", r.key);
            assert!(
                trace
                    .exchanges
                    .iter()
                    .flat_map(|e| &e.executed)
                    .all(|x| x.result.is_ok()),
                "{}",
                r.key
            );
            check_finish(&trace, Api::OpenAi);
        }
    }
}

//! Cache keys: stable under everything that does not change the answer, different for
//! everything that does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use portcullis_cache::{CacheKey, fingerprint, fingerprint_custom, is_deterministic};
use portcullis_core::{
    ChatRequest, Dialect, Extras, ImageSource, Message, NativeTool, Part, RawJson, Reasoning, Role,
    ToolChoice, ToolDefinition,
};
use serde_json::{Map, Value, json};

const SCOPE: &str = "tenant-a";
const TARGET: &str = "openai/gpt-4o";

fn key(request: &ChatRequest) -> CacheKey {
    fingerprint(SCOPE, TARGET, request)
}

/// A request using every field the fingerprint covers.
fn rich_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o".into(),
        messages: vec![
            Message::text(Role::System, "Be brief."),
            Message {
                role: Role::User,
                content: vec![
                    Part::text("Describe this."),
                    Part::Image {
                        source: ImageSource::Url("https://example.com/a.png".into()),
                        detail: Some("low".into()),
                        cache_control: None,
                    },
                    Part::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "AAAA".into(),
                        },
                        detail: None,
                        cache_control: None,
                    },
                ],
                name: Some("alice".into()),
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::Thinking {
                        text: "hmm".into(),
                        signature: Some("sig".into()),
                    },
                    Part::RedactedThinking {
                        data: "opaque".into(),
                    },
                    Part::Refusal { text: "no".into() },
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "lookup".into(),
                        arguments: r#"{"q":"x"}"#.into(),
                        cache_control: None,
                    },
                    Part::Opaque {
                        dialect: Dialect::Anthropic,
                        value: json!({"type": "server_tool_use", "id": "s1"}),
                    },
                ],
                name: None,
            },
            Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: "call_1".into(),
                    content: vec![Part::text("42")],
                    is_error: false,
                    cache_control: None,
                }],
                name: None,
            },
        ],
        max_tokens: Some(100),
        temperature: Some(0.0),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        stream: false,
        stream_include_usage: false,
        n: Some(1),
        tools: vec![ToolDefinition {
            name: "lookup".into(),
            description: Some("Looks things up".into()),
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}).into(),
            strict: Some(true),
            cache_control: None,
        }],
        tool_choice: Some(ToolChoice::Auto),
        parallel_tool_calls: Some(true),
        user: Some("end-user-1".into()),
        reasoning: Some(Reasoning {
            enabled: true,
            effort: Some("low".into()),
            budget_tokens: Some(1024),
        }),
        response_format: Some(json!({"type": "json_object"}).into()),
        native_tools: vec![NativeTool {
            dialect: Dialect::Anthropic,
            definition: json!({"type": "web_search_20250305", "name": "web_search"}),
        }],
        extras: Extras::new(Dialect::OpenAi, {
            let mut m = Map::new();
            m.insert("seed".into(), json!(7));
            m
        }),
    }
}

fn part_mut(r: &mut ChatRequest, message: usize, part: usize) -> &mut Part {
    &mut r.messages[message].content[part]
}

type Mutation = (&'static str, fn(&mut ChatRequest));

/// One change per answer-affecting field of the request.
fn mutations() -> Vec<Mutation> {
    vec![
        ("message role", |r| r.messages[0].role = Role::Developer),
        ("message name", |r| r.messages[1].name = None),
        ("message removed", |r| {
            r.messages.pop();
        }),
        ("text", |r| *part_mut(r, 0, 0) = Part::text("Be long.")),
        ("image url", |r| {
            if let Part::Image { source, .. } = part_mut(r, 1, 1) {
                *source = ImageSource::Url("https://example.com/b.png".into());
            }
        }),
        ("image detail", |r| {
            if let Part::Image { detail, .. } = part_mut(r, 1, 1) {
                *detail = Some("high".into());
            }
        }),
        ("image data", |r| {
            if let Part::Image { source, .. } = part_mut(r, 1, 2) {
                *source = ImageSource::Base64 {
                    media_type: "image/png".into(),
                    data: "BBBB".into(),
                };
            }
        }),
        ("image media type", |r| {
            if let Part::Image { source, .. } = part_mut(r, 1, 2) {
                *source = ImageSource::Base64 {
                    media_type: "image/jpeg".into(),
                    data: "AAAA".into(),
                };
            }
        }),
        ("thinking text", |r| {
            if let Part::Thinking { text, .. } = part_mut(r, 2, 0) {
                *text = "hmmm".into();
            }
        }),
        ("thinking signature", |r| {
            if let Part::Thinking { signature, .. } = part_mut(r, 2, 0) {
                *signature = None;
            }
        }),
        ("redacted thinking", |r| {
            *part_mut(r, 2, 1) = Part::RedactedThinking {
                data: "other".into(),
            }
        }),
        ("refusal", |r| {
            *part_mut(r, 2, 2) = Part::Refusal {
                text: "nope".into(),
            }
        }),
        ("refusal becomes text", |r| {
            *part_mut(r, 2, 2) = Part::text("no")
        }),
        ("tool call id", |r| {
            if let Part::ToolCall { id, .. } = part_mut(r, 2, 3) {
                *id = "call_2".into();
            }
        }),
        ("tool call name", |r| {
            if let Part::ToolCall { name, .. } = part_mut(r, 2, 3) {
                *name = "search".into();
            }
        }),
        ("tool call arguments", |r| {
            if let Part::ToolCall { arguments, .. } = part_mut(r, 2, 3) {
                *arguments = r#"{"q":"y"}"#.into();
            }
        }),
        ("opaque value", |r| {
            if let Part::Opaque { value, .. } = part_mut(r, 2, 4) {
                *value = json!({"type": "server_tool_use", "id": "s2"});
            }
        }),
        ("opaque dialect", |r| {
            if let Part::Opaque { dialect, .. } = part_mut(r, 2, 4) {
                *dialect = Dialect::OpenAi;
            }
        }),
        ("tool result id", |r| {
            if let Part::ToolResult { call_id, .. } = part_mut(r, 3, 0) {
                *call_id = "call_9".into();
            }
        }),
        ("tool result content", |r| {
            if let Part::ToolResult { content, .. } = part_mut(r, 3, 0) {
                *content = vec![Part::text("43")];
            }
        }),
        ("tool result error", |r| {
            if let Part::ToolResult { is_error, .. } = part_mut(r, 3, 0) {
                *is_error = true;
            }
        }),
        ("max_tokens", |r| r.max_tokens = Some(101)),
        ("max_tokens unset", |r| r.max_tokens = None),
        ("temperature", |r| r.temperature = Some(0.5)),
        ("temperature unset", |r| r.temperature = None),
        ("top_p", |r| r.top_p = Some(0.8)),
        ("top_k", |r| r.top_k = Some(41)),
        ("stop", |r| r.stop = vec!["STOP".into()]),
        ("stop added", |r| r.stop.push("X".into())),
        ("n", |r| r.n = Some(2)),
        ("n unset", |r| r.n = None),
        ("tool name", |r| r.tools[0].name = "find".into()),
        ("tool description", |r| r.tools[0].description = None),
        ("tool parameters", |r| {
            r.tools[0].parameters = json!({"type": "object"}).into()
        }),
        ("tool strict", |r| r.tools[0].strict = Some(false)),
        ("tools removed", |r| r.tools.clear()),
        ("tool_choice", |r| {
            r.tool_choice = Some(ToolChoice::Required)
        }),
        ("tool_choice none", |r| {
            r.tool_choice = Some(ToolChoice::None)
        }),
        ("tool_choice tool", |r| {
            r.tool_choice = Some(ToolChoice::Tool("lookup".into()))
        }),
        ("tool_choice unset", |r| r.tool_choice = None),
        ("parallel_tool_calls", |r| {
            r.parallel_tool_calls = Some(false)
        }),
        ("reasoning enabled", |r| {
            r.reasoning.as_mut().unwrap().enabled = false;
        }),
        ("reasoning effort", |r| {
            r.reasoning.as_mut().unwrap().effort = Some("high".into());
        }),
        ("reasoning budget", |r| {
            r.reasoning.as_mut().unwrap().budget_tokens = Some(2048);
        }),
        ("reasoning unset", |r| r.reasoning = None),
        ("response_format", |r| {
            r.response_format = Some(json!({"type": "text"}).into());
        }),
        ("response_format unset", |r| r.response_format = None),
        ("native tool", |r| {
            r.native_tools[0].definition = json!({"type": "web_search_20250305", "name": "ws"});
        }),
        ("native tool dialect", |r| {
            r.native_tools[0].dialect = Dialect::OpenAi
        }),
        ("extras value", |r| {
            r.extras.fields.insert("seed".into(), json!(8).into());
        }),
        ("extras dialect", |r| {
            r.extras.dialect = Some(Dialect::Anthropic)
        }),
        ("extras removed", |r| r.extras = Extras::default()),
    ]
}

#[test]
fn every_answer_affecting_field_changes_the_key() {
    let base = rich_request();
    let base_key = key(&base);
    let mut seen = HashSet::from([base_key]);
    for (what, mutate) in mutations() {
        let mut changed = base.clone();
        mutate(&mut changed);
        assert_ne!(changed, base, "mutation `{what}` changed nothing");
        let changed_key = key(&changed);
        assert_ne!(changed_key, base_key, "changing {what} kept the key");
        assert!(
            seen.insert(changed_key),
            "changing {what} collided with another change"
        );
    }
}

#[test]
fn delivery_and_bookkeeping_fields_keep_the_key() {
    let base = rich_request();
    let base_key = key(&base);
    let mut r = base.clone();
    r.stream = true;
    r.stream_include_usage = true;
    r.user = Some("someone-else".into());
    r.model = "gpt-4o-alias".into();
    if let Part::Text { cache_control, .. } = part_mut(&mut r, 0, 0) {
        *cache_control = Some(json!({"type": "ephemeral"}));
    }
    r.tools[0].cache_control = Some(json!({"type": "ephemeral"}));
    assert_eq!(key(&r), base_key);

    // Extras without fields carry no dialect worth hashing.
    let mut a = base.clone();
    a.extras = Extras::default();
    let mut b = base;
    b.extras = Extras {
        dialect: Some(Dialect::Anthropic),
        fields: Default::default(),
    };
    assert_eq!(key(&a), key(&b));
}

#[test]
fn scope_target_and_custom_keys_are_separate() {
    let r = rich_request();
    let base = fingerprint(SCOPE, TARGET, &r);
    assert_eq!(base, fingerprint(SCOPE, TARGET, &r), "deterministic");
    assert_ne!(base, fingerprint("tenant-b", TARGET, &r));
    assert_ne!(base, fingerprint(SCOPE, "anthropic/claude", &r));
    // Scope and target are length-prefixed, so moving bytes between them changes the key.
    assert_ne!(
        fingerprint("ab", "c", &r),
        fingerprint("a", "bc", &r),
        "scope/target boundary"
    );

    let custom = fingerprint_custom(SCOPE, "my-key");
    assert_eq!(custom, fingerprint_custom(SCOPE, "my-key"));
    assert_ne!(custom, fingerprint_custom("tenant-b", "my-key"));
    assert_ne!(custom, fingerprint_custom(SCOPE, "my-key2"));
    assert_ne!(
        custom,
        fingerprint(SCOPE, "my-key", &ChatRequest::default())
    );
}

#[test]
fn the_encoding_is_unambiguous() {
    let one = |stop: &[&str]| {
        let r = ChatRequest {
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            ..ChatRequest::default()
        };
        key(&r)
    };
    assert_ne!(one(&["ab"]), one(&["a", "b"]));
    assert_ne!(one(&["", "a"]), one(&["a", ""]));

    let parts = |parts: Vec<Part>| {
        key(&ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: parts,
                name: None,
            }],
            ..ChatRequest::default()
        })
    };
    assert_ne!(
        parts(vec![Part::text("ab")]),
        parts(vec![Part::text("a"), Part::text("b")])
    );
    assert_ne!(
        parts(vec![Part::text("a")]),
        parts(vec![Part::Refusal { text: "a".into() }])
    );
    // Two messages of one part each differ from one message of two parts.
    let split = key(&ChatRequest {
        messages: vec![
            Message::text(Role::User, "a"),
            Message::text(Role::User, "b"),
        ],
        ..ChatRequest::default()
    });
    assert_ne!(split, parts(vec![Part::text("a"), Part::text("b")]));

    // JSON: a string is not the number it spells, 1 is not 1.0, null is not absent.
    let format = |v: Option<Value>| {
        key(&ChatRequest {
            response_format: v.map(RawJson::from),
            ..ChatRequest::default()
        })
    };
    let keys = [
        format(None),
        format(Some(Value::Null)),
        format(Some(json!(1))),
        format(Some(json!(1.0))),
        format(Some(json!(-1))),
        format(Some(json!("1"))),
        format(Some(json!([1]))),
        format(Some(json!({"a": 1}))),
        format(Some(json!({"a": [1]}))),
        format(Some(json!([{"a": 1}]))),
        format(Some(json!(true))),
    ];
    let distinct: HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len());

    // Floats hash by bits: values that differ only far behind the point still differ.
    let temp = |t: f64| {
        key(&ChatRequest {
            temperature: Some(t),
            ..ChatRequest::default()
        })
    };
    assert_ne!(temp(0.7), temp(0.700_000_000_000_000_1));
}

#[test]
fn json_object_member_order_does_not_matter() {
    // Built in opposite insertion orders: equal under either serde_json map implementation.
    let mut forward = Map::new();
    let mut backward = Map::new();
    let members = [
        ("type", json!("object")),
        ("b", json!({"y": 1, "x": 2})),
        ("a", json!(null)),
    ];
    for (k, v) in &members {
        forward.insert((*k).into(), v.clone());
    }
    for (k, v) in members.iter().rev() {
        backward.insert((*k).into(), v.clone());
    }
    let with = |params: Map<String, Value>| {
        let mut r = rich_request();
        r.tools[0].parameters = Value::Object(params).into();
        key(&r)
    };
    assert_eq!(with(forward), with(backward));
}

#[test]
fn equivalent_wire_requests_share_a_key() {
    let decode = |dialect: Dialect, body: &str| {
        portcullis_dialects::decode_request(dialect, body.as_bytes()).expect("valid request")
    };
    // Same request, top-level fields and nested JSON keys in different orders, one streamed.
    let a = decode(
        Dialect::OpenAi,
        r#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"},"a":{"type":"number"}}}}}],
            "max_tokens":50}"#,
    );
    let b = decode(
        Dialect::OpenAi,
        r#"{"max_tokens":50,"stream":true,"stream_options":{"include_usage":true},
            "tools":[{"function":{"parameters":{"properties":{"a":{"type":"number"},"x":{"type":"string"}},"type":"object"},"name":"f"},"type":"function"}],
            "messages":[{"content":"hi","role":"user"}],"temperature":0,"model":"my-alias","user":"u-1"}"#,
    );
    assert_eq!(key(&a), key(&b));

    // The same conversation in the other dialect resolves to the same entry.
    let openai = decode(
        Dialect::OpenAi,
        r#"{"model":"x","max_tokens":64,"temperature":0,
            "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}"#,
    );
    let anthropic = decode(
        Dialect::Anthropic,
        r#"{"model":"y","max_tokens":64,"temperature":0,"system":"Be brief.",
            "messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(key(&openai), key(&anthropic));

    // An unknown top-level field is an extra, and changes the answer.
    let c = decode(
        Dialect::OpenAi,
        r#"{"model":"gpt-4o","max_tokens":64,"temperature":0,"seed":3,
            "messages":[{"role":"user","content":"hi"}]}"#,
    );
    let d = decode(
        Dialect::OpenAi,
        r#"{"model":"gpt-4o","max_tokens":64,"temperature":0,"seed":4,
            "messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_ne!(key(&c), key(&d));
}

#[test]
fn keys_print_as_hex() {
    let k = key(&rich_request());
    let hex = k.to_hex();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(k.to_string(), hex);
    assert_eq!(CacheKey::from_bytes(*k.as_bytes()), k);
}

#[test]
fn determinism_needs_zero_temperature_and_one_choice() {
    let mut r = ChatRequest {
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    assert!(is_deterministic(&r));
    r.n = Some(1);
    assert!(is_deterministic(&r));
    r.n = Some(2);
    assert!(!is_deterministic(&r));
    r.n = None;
    r.temperature = Some(0.2);
    assert!(!is_deterministic(&r));
    r.temperature = None;
    assert!(
        !is_deterministic(&r),
        "an unset temperature uses the provider's default"
    );
}

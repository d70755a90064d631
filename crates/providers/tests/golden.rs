//! Golden translation tests over fixtures × providers.
//!
//! - `fixtures/requests/<case>.<dialect>.json`: a client request (text, system instructions,
//!   multi-turn, tools, tool results, parallel tool calls, images, a streamed request with
//!   thinking), decoded in its dialect and built by each provider (OpenAI, Anthropic, Gemini)
//!   into the upstream request it sends: method, URL, headers (secrets redacted), body. One
//!   snapshot per fixture and provider.
//!   Vertex AI's rows are two: a Gemini model and a Claude model.
//! - `fixtures/errors/<provider>_<case>.json`: an upstream error answer (status,
//!   `Retry-After`, body), read by that provider, and what each client dialect is told.
//! - `fixtures/answers/gemini*.{json,sse}`: Gemini answers and streams, translated for each
//!   client dialect (the OpenAI and Anthropic answers have theirs in `portcullis-dialects`);
//!   `azure*`: Azure OpenAI's, with its content-filter annotations and a content-filter stop.
//!
//! Bedrock's rows: each request fixture as sent to a Claude model and to an Amazon Nova model
//! (signed at a fixed time, or the refusal of what Bedrock cannot take), its error answers,
//! and `answers/bedrock*.json`: a Converse answer, and a ConverseStream's events, encoded as
//! AWS's event stream and fed through the provider's framer and decoder, for each client.
//!
//! A change in any translation shows up as a snapshot diff to review.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::BytesMut;
use portcullis_core::{Dialect, StreamEvent};
use portcullis_dialects::errors::encode_error;
use portcullis_dialects::frame::{Framer, SseFramer};
use portcullis_dialects::{FrameOutcome, decode_request, encode_response, stream_encoder};
use portcullis_providers::{Authentication, AwsSpec};
use portcullis_providers::{
    AzureSpec, ForwardedHeaders, Provider, ProviderKind, ProviderSpec, Secret, VertexSpec,
};
use serde_json::{Map, Value, json};

fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {path}");
    out
}

fn provider(kind: ProviderKind) -> Provider {
    let mut spec = ProviderSpec::new(kind.id(), kind);
    if kind == ProviderKind::Vertex {
        spec.vertex = Some(vertex_spec());
    } else {
        spec.api_key = Some(Secret::new("secret-key"));
    }
    if kind == ProviderKind::Bedrock {
        // Signed, not keyed: the AWS test suite's credentials, in us-east-1.
        spec.api_key = None;
        spec.aws = Some(AwsSpec {
            region: Some("us-east-1".to_owned()),
            access_key_id: Some("AKIDEXAMPLE".to_owned()),
            secret_access_key: Some(Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")),
            session_token: Some(Secret::new("session-token")),
            control_plane_url: None,
        });
    }
    if kind == ProviderKind::Azure {
        // The deployments form, the model mapped to a deployment of another name.
        spec.base_url = Some("https://myres.openai.azure.com".to_owned());
        spec.azure = Some(AzureSpec {
            api_version: Some("2024-10-21".to_owned()),
            deployments: vec![("upstream-model".to_owned(), "prod-deployment".to_owned())],
            entra: None,
        });
    }
    Provider::new(spec).unwrap()
}

/// Vertex AI in `us-east5` with the test service account (its key file written once).
fn vertex_spec() -> VertexSpec {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "portcullis-golden-vertex-{}.json",
            std::process::id()
        ));
        let key = include_str!("../../test-support/keys/vertex-test-service-account.pem");
        let file = json!({"type": "service_account", "project_id": "golden-project",
            "private_key_id": "kid", "private_key": key,
            "client_email": "sa@golden-project.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token"});
        std::fs::write(&path, file.to_string()).unwrap();
        path
    });
    VertexSpec {
        project: None,
        location: Some("us-east5".to_owned()),
        credentials: Some(path.clone()),
    }
}

const PROVIDERS: [ProviderKind; 4] = [
    ProviderKind::OpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Azure,
];

/// The upstream request as data: method, URL, headers (sensitive values redacted), body.
fn upstream_request(p: &Provider, client: Dialect, body: &[u8]) -> Value {
    upstream_request_for(p, "upstream-model", client, body)
}

/// The upstream request for `model`.
fn upstream_request_for(p: &Provider, model: &str, client: Dialect, body: &[u8]) -> Value {
    let req = decode_request(client, body).unwrap();
    let built = p
        .chat_request(
            &req,
            model,
            p.default_credential(),
            ForwardedHeaders::default(),
        )
        .unwrap();
    let mut headers = Map::new();
    for (name, value) in &built.headers {
        let shown = if value.is_sensitive() {
            "<redacted>".to_owned()
        } else {
            value.to_str().unwrap().to_owned()
        };
        headers.insert(name.as_str().to_owned(), Value::String(shown));
    }
    json!({
        "method": built.method.as_str(),
        "url": built.uri.to_string(),
        "headers": headers,
        "body": serde_json::from_slice::<Value>(&built.body).unwrap(),
    })
}

#[test]
fn each_request_fixture_as_each_provider_sends_it() {
    for (file, body) in fixtures("requests") {
        let (case, dialect) = file
            .strip_suffix(".json")
            .and_then(|f| f.rsplit_once('.'))
            .unwrap();
        let client = match dialect {
            "openai" => Dialect::OpenAi,
            "anthropic" => Dialect::Anthropic,
            other => panic!("{file}: unknown dialect {other}"),
        };
        for kind in PROVIDERS {
            let p = provider(kind);
            insta::assert_json_snapshot!(
                format!("request_{case}_to_{}", kind.id()),
                upstream_request(&p, client, &body)
            );
        }
    }
}

/// Vertex AI's two formats: a Gemini model (Google's, under the project and location) and a
/// Claude model (Anthropic's body without `model`, with `anthropic_version`, at `rawPredict`).
/// Its token is the gateway's to add, so no credential header is here.
#[test]
fn each_request_fixture_as_vertex_sends_it() {
    let vertex = provider(ProviderKind::Vertex);
    for (file, body) in fixtures("requests") {
        let (case, dialect) = file
            .strip_suffix(".json")
            .and_then(|f| f.rsplit_once('.'))
            .unwrap();
        let client = match dialect {
            "openai" => Dialect::OpenAi,
            _ => Dialect::Anthropic,
        };
        for (model, row) in [
            ("gemini-2.5-flash", "vertex_gemini"),
            ("claude-sonnet-4-5@20250929", "vertex_claude"),
        ] {
            insta::assert_json_snapshot!(
                format!("request_{case}_to_{row}"),
                upstream_request_for(&vertex, model, client, &body)
            );
        }
    }
}

#[test]
fn each_error_fixture_as_its_provider_reads_it_and_each_client_sees_it() {
    for (file, fixture) in fixtures("errors") {
        let case = file.strip_suffix(".json").unwrap();
        let kind = ProviderKind::from_id(case.split('_').next().unwrap()).unwrap();
        let fixture: Value = serde_json::from_slice(&fixture).unwrap();
        let status = u16::try_from(fixture["status"].as_u64().unwrap()).unwrap();
        let retry_after = fixture["retry_after"].as_u64().map(Duration::from_secs);
        let body = serde_json::to_vec(&fixture["body"]).unwrap();
        let err = provider(kind).decode_error(status, retry_after, &body);
        let client = |d| serde_json::from_slice::<Value>(&encode_error(d, &err, None)).unwrap();
        insta::assert_json_snapshot!(
            format!("error_{case}"),
            json!({
                "status": err.status().as_u16(),
                "kind": format!("{:?}", err.kind()),
                "blame": format!("{:?}", err.blame()),
                "retryable": err.retryable(),
                "retry_after_s": err.retry_after().map(|d| d.as_secs_f64()),
                "openai_client": client(Dialect::OpenAi),
                "anthropic_client": client(Dialect::Anthropic),
            })
        );
    }
}

#[test]
fn gemini_answers_to_each_client() {
    let gemini = provider(ProviderKind::Gemini);
    for (file, body) in fixtures("answers") {
        let Some(case) = file
            .strip_suffix(".json")
            .filter(|c| c.starts_with("gemini"))
        else {
            continue;
        };
        let resp = gemini
            .decode_chat_response("gemini-2.5-flash", &body)
            .unwrap();
        for (client, name) in [
            (Dialect::OpenAi, "openai"),
            (Dialect::Anthropic, "anthropic"),
        ] {
            insta::assert_json_snapshot!(
                format!("answer_{case}_to_{name}"),
                serde_json::from_slice::<Value>(&encode_response(client, &resp)).unwrap()
            );
        }
    }
}

/// The Gemini stream fed in small chunks through the provider's framer and decoder, then
/// encoded for a client.
fn translate_stream(client: Dialect) -> String {
    let gemini = provider(ProviderKind::Gemini);
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/answers/gemini.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut framer: Box<dyn Framer> = gemini
        .stream_framer()
        .unwrap_or_else(|| Box::new(SseFramer::new()));
    let mut frames = Vec::new();
    for chunk in raw.chunks(7) {
        framer.feed(chunk, &mut frames).unwrap();
    }
    framer.finish(&mut frames).unwrap();
    let mut decoder = gemini.stream_decoder("gemini-2.5-flash");
    let mut events: Vec<StreamEvent> = Vec::new();
    for f in &frames {
        assert_eq!(
            decoder.decode(f, &mut events).unwrap(),
            FrameOutcome::Continue
        );
    }
    decoder.end(&mut events);
    let mut enc = stream_encoder(client, true, 1_700_000_000);
    let mut out = BytesMut::new();
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn the_gemini_stream_to_each_client() {
    insta::assert_snapshot!("stream_gemini_to_openai", translate_stream(Dialect::OpenAi));
    insta::assert_snapshot!(
        "stream_gemini_to_anthropic",
        translate_stream(Dialect::Anthropic)
    );
}

/// Azure OpenAI's answers (`answers/azure*.json`) as each client is told them: OpenAI's
/// format with Azure's annotations, a content-filter stop with a refusal naming the category.
#[test]
fn azure_answers_to_each_client() {
    let azure = provider(ProviderKind::Azure);
    for (file, body) in fixtures("answers") {
        let Some(case) = file
            .strip_suffix(".json")
            .filter(|c| c.starts_with("azure"))
        else {
            continue;
        };
        let resp = azure.decode_chat_response("gpt-4o", &body).unwrap();
        for (client, name) in [
            (Dialect::OpenAi, "openai"),
            (Dialect::Anthropic, "anthropic"),
        ] {
            insta::assert_json_snapshot!(
                format!("answer_{case}_to_{name}"),
                serde_json::from_slice::<Value>(&encode_response(client, &resp)).unwrap()
            );
        }
    }
}

/// Azure's stream stopped by the content filter (its prompt annotations first), fed in small
/// chunks through the provider's framer and decoder, then encoded for a client.
fn azure_stream(client: Dialect) -> String {
    let azure = provider(ProviderKind::Azure);
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/answers/azure_content_filter.sse",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut framer: Box<dyn Framer> = azure
        .stream_framer()
        .unwrap_or_else(|| Box::new(SseFramer::new()));
    let mut frames = Vec::new();
    for chunk in raw.chunks(7) {
        framer.feed(chunk, &mut frames).unwrap();
    }
    framer.finish(&mut frames).unwrap();
    let mut decoder = azure.stream_decoder("gpt-4o");
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut outcomes = Vec::new();
    for f in &frames {
        outcomes.push(decoder.decode(f, &mut events).unwrap());
    }
    assert_eq!(outcomes.last(), Some(&FrameOutcome::Done), "[DONE] ends it");
    decoder.end(&mut events);
    let mut enc = stream_encoder(client, true, 1_700_000_000);
    let mut out = BytesMut::new();
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn the_azure_content_filter_stream_to_each_client() {
    insta::assert_snapshot!(
        "stream_azure_content_filter_to_openai",
        azure_stream(Dialect::OpenAi)
    );
    insta::assert_snapshot!(
        "stream_azure_content_filter_to_anthropic",
        azure_stream(Dialect::Anthropic)
    );
}

/// Bedrock's request for `model`, signed at 2015-08-30T12:36:00Z as the gateway signs it; or,
/// for what Bedrock cannot take, the refusal the client gets.
fn bedrock_request(p: &Provider, model: &str, client: Dialect, body: &[u8]) -> Value {
    let req = decode_request(client, body).unwrap();
    let mut built = match p.chat_request(&req, model, None, ForwardedHeaders::default()) {
        Ok(built) => built,
        Err(e) => {
            return json!({"refused": e.status().as_u16(), "param": e.param(), "message": e.message()});
        }
    };
    let Authentication::SigV4(signing) = p.authentication() else {
        panic!("Bedrock signs its requests");
    };
    let time = std::time::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    signing.sign(&mut built, time).unwrap();
    let mut headers = Map::new();
    for (name, value) in &built.headers {
        let shown = if value.is_sensitive() {
            "<redacted>".to_owned()
        } else {
            value.to_str().unwrap().to_owned()
        };
        headers.insert(name.as_str().to_owned(), Value::String(shown));
    }
    json!({
        "method": built.method.as_str(),
        "url": built.uri.to_string(),
        "headers": headers,
        "body": serde_json::from_slice::<Value>(&built.body).unwrap(),
    })
}

#[test]
fn each_request_fixture_as_bedrock_sends_it() {
    let bedrock = provider(ProviderKind::Bedrock);
    for (file, body) in fixtures("requests") {
        let (case, dialect) = file
            .strip_suffix(".json")
            .and_then(|f| f.rsplit_once('.'))
            .unwrap();
        let client = match dialect {
            "openai" => Dialect::OpenAi,
            _ => Dialect::Anthropic,
        };
        for (model, row) in [
            (
                "us.anthropic.claude-sonnet-4-20250514-v1:0",
                "bedrock_claude",
            ),
            ("amazon.nova-pro-v1:0", "bedrock_nova"),
        ] {
            insta::assert_json_snapshot!(
                format!("request_{case}_to_{row}"),
                bedrock_request(&bedrock, model, client, &body)
            );
        }
    }
}

/// Bedrock names no id: the one made up is fixed here so that snapshots hold.
const BEDROCK_ANSWER_ID: &str = "bedrock-answer";

#[test]
fn bedrock_answers_to_each_client() {
    let bedrock = provider(ProviderKind::Bedrock);
    let model = "us.anthropic.claude-sonnet-4-20250514-v1:0";
    for (file, body) in fixtures("answers") {
        if file != "bedrock.json" {
            continue;
        }
        let mut resp = bedrock.decode_chat_response(model, &body).unwrap();
        assert!(resp.id.starts_with("bedrock-"));
        resp.id = BEDROCK_ANSWER_ID.to_owned();
        for (client, name) in [
            (Dialect::OpenAi, "openai"),
            (Dialect::Anthropic, "anthropic"),
        ] {
            insta::assert_json_snapshot!(
                format!("answer_bedrock_to_{name}"),
                serde_json::from_slice::<Value>(&encode_response(client, &resp)).unwrap()
            );
        }
    }
}

/// The ConverseStream of `answers/bedrock_stream.json` encoded as AWS's event stream, fed in
/// small chunks through the provider's framer and decoder, then encoded for a client.
fn bedrock_stream(client: Dialect) -> String {
    use portcullis_dialects::aws_eventstream::Message;
    let bedrock = provider(ProviderKind::Bedrock);
    let events: Vec<(String, Value)> = serde_json::from_slice(
        &std::fs::read(format!(
            "{}/tests/fixtures/answers/bedrock_stream.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let mut raw = Vec::new();
    for (kind, payload) in &events {
        raw.extend_from_slice(&Message::event(kind, payload.to_string()).encode().unwrap());
    }
    let mut framer = bedrock.stream_framer().expect("an event-stream framer");
    let mut frames = Vec::new();
    for chunk in raw.chunks(7) {
        framer.feed(chunk, &mut frames).unwrap();
    }
    framer.finish(&mut frames).unwrap();
    assert_eq!(frames.len(), events.len());
    let mut decoder = bedrock.stream_decoder("us.anthropic.claude-sonnet-4-20250514-v1:0");
    let mut decoded: Vec<StreamEvent> = Vec::new();
    let mut outcomes = Vec::new();
    for f in &frames {
        outcomes.push(decoder.decode(f, &mut decoded).unwrap());
    }
    assert_eq!(
        outcomes.last(),
        Some(&FrameOutcome::Done),
        "metadata ends it"
    );
    decoder.end(&mut decoded);
    let mut enc = stream_encoder(client, true, 1_700_000_000);
    let mut out = BytesMut::new();
    for e in &mut decoded {
        if let StreamEvent::Start { id, .. } = e {
            BEDROCK_ANSWER_ID.clone_into(id);
        }
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn the_bedrock_stream_to_each_client() {
    insta::assert_snapshot!("stream_bedrock_to_openai", bedrock_stream(Dialect::OpenAi));
    insta::assert_snapshot!(
        "stream_bedrock_to_anthropic",
        bedrock_stream(Dialect::Anthropic)
    );
}

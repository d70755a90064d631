//! Golden translation tests: one fixture per dialect, one snapshot per target dialect.
//!
//! Requests are decoded from the client dialect and encoded for an upstream of each dialect;
//! responses and streams are decoded from the upstream dialect and encoded for a client of
//! each dialect. OpenAI's Responses API has its rows too: its request to each upstream, chat
//! requests to a Responses upstream, its answers and streams to each client and the others' to a
//! Responses client. A change in any translation shows up as a snapshot diff to review.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use portcullis_core::{ChatRequest, Dialect, StreamEvent};
use portcullis_dialects::sse::SseParser;
use portcullis_dialects::{
    FrameOutcome, StreamDecoder, StreamEncoder, anthropic, decode_request, encode_response, openai,
    responses, stream_encoder,
};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn to_openai(req: &ChatRequest) -> Value {
    let body = openai::encode_request(
        req,
        &openai::EncodeOptions {
            model: "upstream-model",
            max_tokens_field: openai::MaxTokensField::MaxCompletionTokens,
            derive_reasoning_effort: true,
        },
    )
    .unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn to_anthropic(req: &ChatRequest) -> Value {
    let body = anthropic::encode_request(
        req,
        &anthropic::EncodeOptions {
            model: "upstream-model",
            default_max_tokens: 4096,
        },
    )
    .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn openai_request_to_each_upstream() {
    let req = decode_request(Dialect::OpenAi, &fixture("openai_request.json")).unwrap();
    insta::assert_json_snapshot!("openai_request_to_openai", to_openai(&req));
    insta::assert_json_snapshot!("openai_request_to_anthropic", to_anthropic(&req));
}

#[test]
fn anthropic_request_to_each_upstream() {
    let req = decode_request(Dialect::Anthropic, &fixture("anthropic_request.json")).unwrap();
    insta::assert_json_snapshot!("anthropic_request_to_anthropic", to_anthropic(&req));
    insta::assert_json_snapshot!("anthropic_request_to_openai", to_openai(&req));
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn openai_response_to_each_client() {
    let resp = openai::decode_response(&fixture("openai_response.json")).unwrap();
    insta::assert_json_snapshot!(
        "openai_response_to_openai",
        json(&encode_response(Dialect::OpenAi, &resp))
    );
    insta::assert_json_snapshot!(
        "openai_response_to_anthropic",
        json(&encode_response(Dialect::Anthropic, &resp))
    );
}

#[test]
fn anthropic_response_to_each_client() {
    let resp = anthropic::decode_response(&fixture("anthropic_response.json")).unwrap();
    insta::assert_json_snapshot!(
        "anthropic_response_to_anthropic",
        json(&encode_response(Dialect::Anthropic, &resp))
    );
    insta::assert_json_snapshot!(
        "anthropic_response_to_openai",
        json(&encode_response(Dialect::OpenAi, &resp))
    );
}

/// Decodes an upstream stream fixture fed in small chunks, then re-encodes it for a client.
fn translate_stream(
    name: &str,
    decoder: &mut dyn StreamDecoder,
    client: Dialect,
    include_usage: bool,
) -> String {
    let raw = fixture(name);
    let mut parser = SseParser::new();
    let mut frames = Vec::new();
    for chunk in raw.chunks(7) {
        parser.feed(chunk, &mut frames).unwrap();
    }
    parser.finish(&mut frames);
    let mut events: Vec<StreamEvent> = Vec::new();
    let mut done = false;
    for f in &frames {
        assert!(!done, "frames after the terminal frame");
        done = decoder.decode(f, &mut events).unwrap() == FrameOutcome::Done;
    }
    assert!(done, "the stream has a terminal frame");
    let mut enc = stream_encoder(client, include_usage, 1_700_000_000);
    let mut out = BytesMut::new();
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn openai_stream_to_each_client() {
    insta::assert_snapshot!(
        "openai_stream_to_anthropic",
        translate_stream(
            "openai_stream.sse",
            &mut openai::OpenAiStreamDecoder::new(),
            Dialect::Anthropic,
            true
        )
    );
    insta::assert_snapshot!(
        "openai_stream_to_openai",
        translate_stream(
            "openai_stream.sse",
            &mut openai::OpenAiStreamDecoder::new(),
            Dialect::OpenAi,
            true
        )
    );
}

#[test]
fn anthropic_stream_to_each_client() {
    insta::assert_snapshot!(
        "anthropic_stream_to_openai",
        translate_stream(
            "anthropic_stream.sse",
            &mut anthropic::AnthropicStreamDecoder::new(),
            Dialect::OpenAi,
            true
        )
    );
    insta::assert_snapshot!(
        "anthropic_stream_to_anthropic",
        translate_stream(
            "anthropic_stream.sse",
            &mut anthropic::AnthropicStreamDecoder::new(),
            Dialect::Anthropic,
            false
        )
    );
}

/// Reassembling a translated stream gives the same answer as translating the whole response.
#[test]
fn translated_streams_reassemble_to_the_complete_response() {
    let sse = translate_stream(
        "anthropic_stream.sse",
        &mut anthropic::AnthropicStreamDecoder::new(),
        Dialect::OpenAi,
        true,
    );
    let mut text = String::new();
    let mut args = String::new();
    for line in sse.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(delta) = v["choices"].get(0).map(|c| &c["delta"]) {
            text.push_str(delta["content"].as_str().unwrap_or(""));
            if let Some(calls) = delta["tool_calls"].as_array() {
                for c in calls {
                    args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
                }
            }
        }
    }
    assert_eq!(text, "Checking now.");
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        serde_json::json!({"city": "Paris"})
    );
}

// --- OpenAI's Responses API -------------------------------------------------------------

fn to_responses(req: &ChatRequest) -> Value {
    json(&responses::encode_request(req, "o3-pro").unwrap())
}

/// The response context a client's answer is named by, fixed for the snapshots.
fn responses_ctx() -> responses::ResponseContext {
    let req = responses::decode_request(&fixture("responses_request.json")).unwrap();
    responses::ResponseContext {
        id: "resp_gateway1".to_owned(),
        created_at: 1_700_000_000,
        model: req.chat.model.clone(),
        echo: req.echo,
    }
}

#[test]
fn responses_request_to_each_upstream() {
    let req = responses::decode_request(&fixture("responses_request.json")).unwrap();
    insta::assert_json_snapshot!("responses_request_to_openai", to_openai(&req.chat));
    insta::assert_json_snapshot!("responses_request_to_anthropic", to_anthropic(&req.chat));
    insta::assert_json_snapshot!("responses_request_to_responses", to_responses(&req.chat));
    insta::assert_json_snapshot!("responses_request_echo", Value::Object(req.echo));
}

#[test]
fn chat_requests_to_a_responses_upstream() {
    let req = decode_request(Dialect::OpenAi, &fixture("openai_request.json")).unwrap();
    insta::assert_json_snapshot!("openai_request_to_responses", to_responses(&req));
    let req = decode_request(Dialect::Anthropic, &fixture("anthropic_request.json")).unwrap();
    insta::assert_json_snapshot!("anthropic_request_to_responses", to_responses(&req));
}

#[test]
fn responses_answers_to_each_client() {
    let resp = responses::decode_response(&fixture("responses_response.json")).unwrap();
    insta::assert_json_snapshot!(
        "responses_response_to_openai",
        json(&encode_response(Dialect::OpenAi, &resp))
    );
    insta::assert_json_snapshot!(
        "responses_response_to_anthropic",
        json(&encode_response(Dialect::Anthropic, &resp))
    );
    insta::assert_json_snapshot!(
        "responses_response_to_responses",
        responses::encode_response(&responses_ctx(), &resp)
    );
    let resp = anthropic::decode_response(&fixture("anthropic_response.json")).unwrap();
    insta::assert_json_snapshot!(
        "anthropic_response_to_responses",
        responses::encode_response(&responses_ctx(), &resp)
    );
}

/// Decodes an upstream stream fixture and encodes its events for a Responses client.
fn stream_to_responses(name: &str, decoder: &mut dyn StreamDecoder) -> String {
    let raw = fixture(name);
    let mut parser = SseParser::new();
    let mut frames = Vec::new();
    for chunk in raw.chunks(7) {
        parser.feed(chunk, &mut frames).unwrap();
    }
    parser.finish(&mut frames);
    let mut events: Vec<StreamEvent> = Vec::new();
    for f in &frames {
        decoder.decode(f, &mut events).unwrap();
    }
    let mut enc = responses::ResponsesStreamEncoder::new(responses_ctx());
    let mut out = BytesMut::new();
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn streams_to_and_from_the_responses_api() {
    insta::assert_snapshot!(
        "anthropic_stream_to_responses",
        stream_to_responses(
            "anthropic_stream.sse",
            &mut anthropic::AnthropicStreamDecoder::new()
        )
    );
    insta::assert_snapshot!(
        "openai_stream_to_responses",
        stream_to_responses("openai_stream.sse", &mut openai::OpenAiStreamDecoder::new())
    );
    insta::assert_snapshot!(
        "responses_stream_to_openai",
        translate_stream(
            "responses_stream.sse",
            &mut responses::ResponsesStreamDecoder::new(),
            Dialect::OpenAi,
            true
        )
    );
    insta::assert_snapshot!(
        "responses_stream_to_anthropic",
        translate_stream(
            "responses_stream.sse",
            &mut responses::ResponsesStreamDecoder::new(),
            Dialect::Anthropic,
            false
        )
    );
}

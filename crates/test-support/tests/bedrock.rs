//! The Bedrock mock over real HTTP with the gateway's own building blocks: requests signed by
//! `portcullis_providers::sigv4` (the model id's `:` percent-encoded in the path) are accepted and
//! the same request changed after signing is refused; ConverseStream's body is cut into frames by
//! `portcullis_dialects`'s `EventStreamFramer`, fed in small chunks as a relay would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use portcullis_dialects::aws_eventstream::{EventStreamFramer, Message, MessageType};
use portcullis_dialects::frame::{Frame, Framer};
use portcullis_providers::sigv4::{AwsCredentials, RequestToSign, encode_uri_label, sign_request};
use portcullis_test_support::{MockOptions, MockUpstream};
use serde_json::{Value, json};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

fn credentials() -> AwsCredentials {
    let o = MockOptions::default();
    AwsCredentials::new(o.aws_access_key_id, o.aws_secret_access_key)
}

/// Signs and sends a Bedrock request; `tamper` may change the body after signing.
async fn send(
    mock: &MockUpstream,
    model: &str,
    operation: &str,
    body: &Value,
    tamper: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> reqwest::Response {
    let url = format!(
        "{}/model/{}/{operation}",
        mock.bedrock_endpoint_url(),
        encode_uri_label(model)
    );
    let body = serde_json::to_vec(body).unwrap();
    let sent = [("content-type", "application/json")];
    let signature = sign_request(
        &credentials(),
        "us-east-1",
        "bedrock",
        SystemTime::now(),
        &RequestToSign {
            method: "POST",
            url: &url,
            headers: &sent,
            body: &body,
        },
    )
    .unwrap();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json");
    for (name, value) in signature {
        request = request.header(name, value);
    }
    request.body(tamper(body)).send().await.unwrap()
}

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hello"}]}],
           "system": [{"text": "Be brief."}]})
}

#[tokio::test]
async fn a_signed_converse_is_answered_and_a_tampered_one_refused() {
    let mock = MockUpstream::start().await;
    let ok = send(&mock, MODEL, "converse", &hello(), |b| b).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("x-amzn-requestid"));
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(
        answer["output"]["message"]["content"][0]["text"],
        "Hello from the mock! You said: hello"
    );
    assert_eq!(answer["stopReason"], "end_turn");
    let recorded = mock.requests();
    assert_eq!(
        recorded[0].path,
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    );

    let tampered = send(&mock, MODEL, "converse", &hello(), |mut b| {
        b.push(b' ');
        b
    })
    .await;
    assert_eq!(tampered.status(), 403);
    let error_type = tampered.headers()["x-amzn-errortype"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(error_type.starts_with("InvalidSignatureException:"));
    let body: Value = tampered.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match")
    );
}

#[tokio::test]
async fn converse_stream_frames_decode_fed_in_small_chunks() {
    let mock = MockUpstream::start().await;
    let body = json!({
        "messages": [{"role": "user", "content": [{"text": "[tool] weather"}]}],
        "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather",
            "inputSchema": {"json": {"type": "object"}}}}]},
    });
    let resp = send(&mock, MODEL, "converse-stream", &body, |b| b).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let bytes = resp.bytes().await.unwrap();
    let mut framer = EventStreamFramer::new();
    let mut frames: Vec<Frame> = Vec::new();
    for chunk in bytes.chunks(7) {
        framer.feed(chunk, &mut frames).unwrap();
    }
    framer.finish(&mut frames).unwrap();
    let events: Vec<&str> = frames.iter().filter_map(|f| f.event.as_deref()).collect();
    assert_eq!(events.first(), Some(&"messageStart"));
    assert_eq!(events[1], "contentBlockStart");
    assert_eq!(
        &events[events.len() - 3..],
        ["contentBlockStop", "messageStop", "metadata"]
    );
    let input: String = frames
        .iter()
        .filter(|f| f.event.as_deref() == Some("contentBlockDelta"))
        .map(|f| {
            let v: Value = serde_json::from_slice(&f.payload).unwrap();
            v["delta"]["toolUse"]["input"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"query": "[tool] weather"})
    );
    let stop: Value = serde_json::from_slice(&frames[frames.len() - 2].payload).unwrap();
    assert_eq!(stop["stopReason"], "tool_use");
    let message = Message::from_frame(&frames[0]).unwrap();
    assert_eq!(message.message_type(), Some(MessageType::Event));
    assert_eq!(message.content_type(), Some("application/json"));
}

#[tokio::test]
async fn errors_come_as_bedrock_sends_them() {
    let mock = MockUpstream::start().await;
    let throttled = send(&mock, "mock-error-429", "converse-stream", &hello(), |b| b).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(
        throttled.headers()["x-amzn-errortype"],
        "ThrottlingException"
    );
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "Too many requests, please wait before trying again."})
    );

    let midstream = send(
        &mock,
        "mock-error-midstream",
        "converse-stream",
        &hello(),
        |b| b,
    )
    .await;
    assert_eq!(midstream.status(), 200);
    let mut framer = EventStreamFramer::new();
    let mut frames = Vec::new();
    framer
        .feed(&midstream.bytes().await.unwrap(), &mut frames)
        .unwrap();
    let last = Message::from_frame(frames.last().unwrap()).unwrap();
    assert_eq!(last.message_type(), Some(MessageType::Exception));
    assert_eq!(last.exception_type(), Some("modelStreamErrorException"));

    let invalid = send(
        &mock,
        MODEL,
        "converse",
        &json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}),
        |b| b,
    )
    .await;
    assert_eq!(invalid.status(), 400);
    assert_eq!(invalid.headers()["x-amzn-errortype"], "ValidationException");

    let unsigned = reqwest::Client::new()
        .post(format!("{}/model/x/converse", mock.bedrock_endpoint_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);
    assert!(
        unsigned.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .starts_with("MissingAuthenticationTokenException")
    );
}

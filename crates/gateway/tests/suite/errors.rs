//! What an error tells whom: the caller gets a precise status and a message in its dialect,
//! never the gateway's insides (addresses, transport error text); the operator finds those in
//! the request log's `error_message`.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn transport_details_reach_the_log_but_never_the_caller() {
    // A provider on a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gw = TestGateway::start(&format!(
        "providers:\n  openai:\n    api_key: sk-x\n    base_url: http://127.0.0.1:{port}/v1\nretry:\n  max_attempts: 1\n"
    ))
    .await;
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "openai/text-embedding-3-small", "input": "hi"}),
        ),
    ] {
        let (status, headers, text) = post(&gw, path, &body).await;
        assert_eq!(status, 502, "{text}");
        assert!(
            text.contains("The upstream provider `openai` could not be reached"),
            "{text}"
        );
        let lower = text.to_lowercase();
        for inside in [
            "127.0.0.1",
            &port.to_string(),
            "refused",
            "tcp",
            "error trying",
        ] {
            assert!(
                !lower.contains(inside),
                "`{inside}` leaked to the caller: {text}"
            );
        }
        let log = gw
            .log_of(headers["x-portcullis-request-id"].to_str().unwrap())
            .await;
        let message = log["error_message"].as_str().unwrap().to_lowercase();
        assert!(
            message.starts_with("the upstream provider `openai` could not be reached")
                && message.contains("refused"),
            "the operator sees why: {message}"
        );
    }
    gw.stop().await;
}

//! `server-everything` over HTTP+SSE.

use std::collections::BTreeMap;

use portcullis_mcp::config::HttpSpec;
use portcullis_mcp::upstream::{SseUpstream, Status};

use crate::common::{self, CALL, HttpServer, START_WITHIN, call_tool, result, text};

fn connect(port: u16) -> SseUpstream {
    let spec = HttpSpec {
        url: format!("http://127.0.0.1:{port}/sse"),
        headers: BTreeMap::new(),
    };
    SseUpstream::connect("everything-sse".to_owned(), &spec, CALL).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_lists_and_calls() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::initializes_lists_and_calls(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_comes_back_with_the_callers_token() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::progress_comes_back_with_the_callers_token(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_reach_the_request_in_flight() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::server_requests_reach_the_request_in_flight(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_time_out() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::slow_calls_time_out(&upstream, || upstream.pending_requests()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_stream_is_reopened() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::ready(&upstream).await;
    let port = common::stop(server).await;
    assert!(upstream.wait_for(Status::Failing, START_WITHIN).await);
    let _restarted = HttpServer::start_on("sse", port).await;
    assert!(upstream.wait_for(Status::Ready, START_WITHIN).await);
    let echoed = result(call_tool(&upstream, "echo", r#"{"message":"reconnected"}"#).await);
    assert!(text(&echoed).contains("reconnected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_calls() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::shut_down_connections_refuse_calls(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_notifications_reach_the_broadcast_channel() {
    let server = HttpServer::start("sse").await;
    let upstream = connect(server.port);
    common::server_notifications_reach_the_broadcast_channel(&upstream).await;
}

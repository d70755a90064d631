//! `server-everything` over Streamable HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis_mcp::config::HttpSpec;
use portcullis_mcp::upstream::{HttpUpstream, Status, Upstream, UpstreamError};

use crate::common::{self, CALL, HttpServer, call_tool, result, text};

fn connect(port: u16) -> HttpUpstream {
    let spec = HttpSpec {
        url: format!("http://127.0.0.1:{port}/mcp"),
        headers: BTreeMap::from([("X-Test-Header".to_owned(), "secret-value".to_owned())]),
    };
    HttpUpstream::connect("everything-http".to_owned(), &spec, CALL).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializes_lists_and_calls() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::initializes_lists_and_calls(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_comes_back_with_the_callers_token() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::progress_comes_back_with_the_callers_token(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_reach_the_request_in_flight() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::server_requests_reach_the_request_in_flight(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_time_out() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::slow_calls_time_out(&upstream, || upstream.pending_requests()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_renewed() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::ready(&upstream).await;
    // The server restarts: every session it knew is gone.
    let port = common::stop(server).await;
    let _restarted = HttpServer::start_on("streamableHttp", port).await;
    let echoed = result(call_tool(&upstream, "echo", r#"{"message":"new session"}"#).await);
    assert!(text(&echoed).contains("new session"));
    assert_eq!(upstream.status(), Status::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let upstream = connect(common::free_port());
    assert!(
        upstream
            .wait_for(Status::Failing, Duration::from_secs(5))
            .await
    );
    let reply = upstream.request("tools/list", None, None, CALL).await;
    match reply {
        Err(UpstreamError::Unavailable { reason, .. }) => {
            assert!(!reason.contains("secret-value"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_calls() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::shut_down_connections_refuse_calls(&upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_notifications_reach_the_broadcast_channel() {
    let server = HttpServer::start("streamableHttp").await;
    let upstream = connect(server.port);
    common::server_notifications_reach_the_broadcast_channel(&upstream).await;
}

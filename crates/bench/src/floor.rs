//! `portcullis-bench floor`: the physical floor the gateway is measured against — a bare
//! one-hop HTTP/1.1 proxy with nothing but the forwarding itself.
//!
//! Each listener forwards every request, unread and unchanged, to one upstream through a
//! pooled keep-alive client (hyper-util's legacy `Client`) and streams the answer back frame by
//! frame. No parsing, no authentication, no log. The benchmark runs it as its own process on a
//! current-thread runtime (one thread), pinned to the gateway's core, so its CPU time per
//! request is the least any proxy on that path can spend.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Pool = Client<HttpConnector, Incoming>;
type Answer = Response<Either<Incoming, Empty<Bytes>>>;

/// Binds one loopback listener per upstream, each forwarding to its upstream, and serves them
/// on the current runtime. Returns the listeners' addresses in the order of `upstreams`.
pub async fn start(upstreams: &[SocketAddr]) -> std::io::Result<Vec<SocketAddr>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let pool: Pool = Client::builder(TokioExecutor::new()).build(connector);
    let mut listening = Vec::with_capacity(upstreams.len());
    for upstream in upstreams {
        let authority = Authority::try_from(upstream.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listening.push(listener.local_addr()?);
        tokio::spawn(accept(listener, authority, pool.clone()));
    }
    Ok(listening)
}

async fn accept(listener: TcpListener, upstream: Authority, pool: Pool) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(serve_connection(tcp, upstream.clone(), pool.clone()));
            }
            // Out of file descriptors or similar: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(tcp: TcpStream, upstream: Authority, pool: Pool) {
    let _ = tcp.set_nodelay(true);
    let service = service_fn(move |request| forward(request, upstream.clone(), pool.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

/// Sends `request` to `upstream` as it is (only the URI made absolute for the client) and
/// hands back the upstream's answer with its body still streaming.
async fn forward(
    mut request: Request<Incoming>,
    upstream: Authority,
    pool: Pool,
) -> Result<Answer, Infallible> {
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(upstream);
    parts
        .path_and_query
        .get_or_insert(PathAndQuery::from_static("/"));
    let Ok(uri) = Uri::from_parts(parts) else {
        return Ok(bad_gateway());
    };
    *request.uri_mut() = uri;
    Ok(match pool.request(request).await {
        Ok(answer) => answer.map(Either::Left),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Answer {
    let mut answer = Response::new(Either::Right(Empty::new()));
    *answer.status_mut() = StatusCode::BAD_GATEWAY;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use http_body_util::{BodyExt, Full};
    use portcullis_test_support::{MockOptions, MockUpstream};
    use serde_json::{Value, json};

    async fn post(addr: SocketAddr, body: &Value) -> (StatusCode, Bytes) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(http::header::HOST, "bench")
            .header(http::header::AUTHORIZATION, "Bearer sk-mock-openai")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let answer = sender.send_request(request).await.unwrap();
        let status = answer.status();
        (
            status,
            answer.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    fn chat(stream: bool) -> Value {
        json!({"model": "gpt-4o-mini", "stream": stream,
               "messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
    }

    #[tokio::test]
    async fn forwards_requests_and_answers_unchanged_to_each_listeners_upstream() {
        let plain = MockUpstream::start().await;
        let streaming = MockUpstream::start_with(MockOptions {
            stream_frame_delay: Duration::from_millis(1),
            ..MockOptions::default()
        })
        .await;
        let floor = start(&[plain.addr(), streaming.addr()]).await.unwrap();

        let (status, body) = post(floor[0], &chat(false)).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let (_, direct) = post(plain.addr(), &chat(false)).await;
        let direct: Value = serde_json::from_slice(&direct).unwrap();
        assert_eq!(
            answer["choices"][0]["message"],
            direct["choices"][0]["message"]
        );
        let received = plain.requests();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].path, "/v1/chat/completions");
        assert_eq!(received[0].body, chat(false));
        assert_eq!(
            received[0].headers.get("authorization").map(String::as_str),
            Some("Bearer sk-mock-openai")
        );
        assert_eq!(streaming.hits(), 0);

        let (status, body) = post(floor[1], &chat(true)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(crate::load::has_first_token(&mut Vec::new(), &body));
        assert!(String::from_utf8_lossy(&body).contains("data: [DONE]"));
        assert_eq!(streaming.hits(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_bad_gateway() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let floor = start(&[gone]).await.unwrap();
        let (status, _) = post(floor[0], &chat(false)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
}

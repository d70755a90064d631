//! The mock's HTTP server: accepts connections until stopped, records requests (listed at
//! `GET /mock/requests`), consults the scripted replies, and dispatches by path to the
//! provider modules.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::reply::{MockBody, json_response, render};
use crate::{RecordedRequest, Shared, anthropic, azure, bedrock, gemini, openai, vertex};

pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, _)) = accepted else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<MockBody> {
    if req.method() == http::Method::GET && req.uri().path() == "/mock/requests" {
        return recorded(shared);
    }
    let n = shared.hits.fetch_add(1, Ordering::Relaxed) + 1;
    let (parts, body) = req.into_parts();
    let raw: Bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    if shared.options.record_requests
        && let Ok(mut r) = shared.requests.lock()
    {
        let mut headers = std::collections::HashMap::new();
        for (k, v) in &parts.headers {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            headers
                .entry(k.as_str().to_owned())
                .and_modify(|e: &mut String| {
                    e.push_str(", ");
                    e.push_str(&v);
                })
                .or_insert(v);
        }
        r.push(RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body: json.clone(),
            raw: raw.clone(),
        });
    }
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    // Bedrock checks the request's signature before anything else.
    if bedrock::handles(parts.uri.path())
        && let Some(refused) = bedrock::authenticate(&shared.options, &parts, &raw, n)
    {
        return refused;
    }
    // Vertex AI's token endpoint answers grants, and its models want a live token, before
    // anything else.
    if vertex::handles(parts.uri.path())
        && let Some(answer) = vertex::authenticate(
            &shared.vertex_tokens,
            shared.options.vertex_token_lifetime,
            &parts,
            &raw,
            n,
        )
    {
        return answer;
    }
    let scripted = shared.replies.lock().ok().and_then(|mut q| q.pop_front());
    if let Some(reply) = scripted {
        return render(reply).await;
    }

    let opts = &shared.options;
    let path = parts.uri.path();
    let post = parts.method == http::Method::POST;
    if post
        && (path == "/v1/chat/completions"
            || path == "/v1/embeddings"
            || path == "/v1/messages"
            || path == "/v1/responses")
        && json.is_null()
    {
        return if path == "/v1/messages" {
            anthropic::error(
                400,
                "invalid_request_error",
                "There was an issue with the JSON body of your request.",
                n,
            )
        } else {
            openai::error(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                None,
                n,
            )
        };
    }
    // A key from `extra_api_keys` is as good as the provider's own (several accounts on one
    // upstream, e.g. per-user or per-team keys).
    let presented = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let responder = shared.responder.read().ok().and_then(|r| r.clone());
    let responder = responder.as_deref();
    let extra = presented.filter(|p| opts.extra_api_keys.iter().any(|k| k == p));
    let openai_key = extra.unwrap_or(&opts.openai_api_key);
    let anthropic_key = extra.unwrap_or(&opts.anthropic_api_key);
    // One host serves both APIs: a models request in Anthropic's form carries its headers.
    let anthropic =
        parts.headers.contains_key("anthropic-version") || parts.headers.contains_key("x-api-key");
    let query = parts.uri.query().unwrap_or_default();
    let model_id = path
        .strip_prefix("/v1/models/")
        .filter(|id| !id.is_empty() && parts.method == http::Method::GET);
    if let Some(id) = model_id {
        let id = crate::anthropic::percent_decode(id);
        return if anthropic {
            anthropic::model(anthropic_key, &parts.headers, &id, n)
        } else {
            openai::model(openai_key, &parts.headers, &id, n)
        };
    }
    match (post, path) {
        (true, "/v1/chat/completions") => {
            openai::chat(
                responder,
                openai_key,
                opts.stream_frame_delay,
                &parts.headers,
                &json,
                n,
            )
            .await
        }
        (true, "/v1/embeddings") => openai::embeddings(openai_key, &parts.headers, &json, n),
        (true, "/v1/images/generations") => {
            openai::images_generations(openai_key, &parts.headers, &json, n)
        }
        (true, "/v1/audio/speech") => openai::audio_speech(openai_key, &parts.headers, &json, n),
        (_, path) if crate::responses::handles(path) => {
            crate::responses::handle(
                &shared.responses,
                openai_key,
                opts.stream_frame_delay,
                &parts,
                &json,
                n,
            )
            .await
        }
        (false, "/v1/models") if anthropic => {
            anthropic::models(anthropic_key, &parts.headers, query, n)
        }
        (false, "/v1/models") => openai::models(openai_key, &parts.headers, n),
        (true, "/v1/messages/count_tokens") => {
            anthropic::count_tokens(anthropic_key, &parts.headers, &json, n)
        }
        (true, "/v1/messages") => {
            anthropic::messages(
                responder,
                anthropic_key,
                opts.stream_frame_delay,
                &parts.headers,
                &json,
                n,
            )
            .await
        }
        (_, path) if gemini::handles(path) => {
            let mut keys = vec![opts.gemini_api_key.as_str()];
            keys.extend(opts.extra_api_keys.iter().map(String::as_str));
            gemini::handle(&keys, opts.stream_frame_delay, &parts, &json, n).await
        }
        (_, path) if bedrock::handles(path) => {
            bedrock::handle(opts.stream_frame_delay, &parts, &json, n).await
        }
        (_, path) if vertex::handles(path) => {
            vertex::handle(responder, opts.stream_frame_delay, &parts, &json, n).await
        }
        (_, path) if azure::handles_token(path) => {
            let app = azure::EntraApp {
                tenant_id: &opts.azure_tenant_id,
                client_id: &opts.azure_client_id,
                client_secret: &opts.azure_client_secret,
            };
            azure::token(app, &parts, &raw, n, &|token| {
                if let Ok(mut t) = shared.azure_tokens.lock() {
                    t.push(token);
                }
            })
        }
        (_, path) if azure::handles(path) => {
            let mut keys = vec![opts.azure_api_key.as_str()];
            keys.extend(opts.extra_api_keys.iter().map(String::as_str));
            let issued = |token: &str| {
                shared
                    .azure_tokens
                    .lock()
                    .is_ok_and(|t| t.iter().any(|known| known == token))
            };
            azure::handle(&keys, &issued, opts.stream_frame_delay, &parts, &json, n).await
        }
        _ => json_response(
            404,
            &serde_json::json!({"error": {"message": format!("Invalid URL ({} {path})", parts.method), "type": "invalid_request_error", "param": null, "code": null}}),
            &[],
        ),
    }
}

/// `GET /mock/requests`: the requests received so far (method, path, query, JSON body), for
/// tests that drive the `mock-upstream` process; it is not itself recorded or counted, and
/// takes no scripted reply.
fn recorded(shared: &Shared) -> Response<MockBody> {
    let data: Vec<Value> = shared
        .requests
        .lock()
        .map(|r| {
            r.iter()
                .map(|r| serde_json::json!({"method": r.method, "path": r.path, "query": r.query, "body": r.body}))
                .collect()
        })
        .unwrap_or_default();
    json_response(200, &serde_json::json!({ "data": data }), &[])
}

//! `mock-upstream`: the mock OpenAI + Anthropic + Gemini + Bedrock server as a process, for tests
//! written in other languages (the Python SDK suite) and for benchmarks. Gemini's API is served
//! at `/v1beta/…` on the same address (point `google-genai`'s `base_url` at it), its key set with
//! `--gemini-key` (by default `AIza-mock-gemini`). Bedrock's Converse and InvokeModel APIs are
//! served at `/model/…` on the same address (point an AWS SDK's `endpoint_url` at it); its
//! requests are signed with the `--aws-*` credentials (by default AWS's documentation example
//! key, `AKIAIOSFODNN7EXAMPLE`, in `us-east-1`). Azure OpenAI is served at `/openai/…` on the same
//! address (point `AzureOpenAI`'s `azure_endpoint` at it), its key set with `--azure-key` (by
//! default `azure-mock-key`).
//!
//! Vertex AI is served at `/v1/projects/…` with its token endpoint at `/token`;
//! `--vertex-credentials-out FILE` writes the key file of the mock's service account there
//! (its `token_uri` this server's), and `--vertex-token-lifetime-s N` sets how long tokens
//! last.
//!
//! Prints `listening on http://IP:PORT` once bound, then serves until SIGTERM or SIGINT.

use std::io::Write;
use std::time::Duration;

use portcullis_test_support::{MockOptions, MockUpstream};

fn usage() -> ! {
    eprintln!(
        "usage: mock-upstream [--listen ADDR] [--latency-ms N] [--frame-delay-ms N] \
         [--openai-key K] [--anthropic-key K] [--gemini-key K] [--aws-access-key-id K] \
         [--aws-secret-access-key S] [--aws-session-token T] [--aws-region R] [--azure-key K] \
         [--vertex-credentials-out FILE] [--vertex-token-lifetime-s N] [--no-record]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut options = MockOptions::default();
    let mut vertex_out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => listen = value(),
            "--latency-ms" => {
                options.latency = Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--frame-delay-ms" => {
                options.stream_frame_delay =
                    Duration::from_millis(value().parse().unwrap_or_else(|_| usage()))
            }
            "--openai-key" => options.openai_api_key = value(),
            "--anthropic-key" => options.anthropic_api_key = value(),
            "--gemini-key" => options.gemini_api_key = value(),
            "--aws-access-key-id" => options.aws_access_key_id = value(),
            "--aws-secret-access-key" => options.aws_secret_access_key = value(),
            "--aws-session-token" => options.aws_session_token = Some(value()),
            "--aws-region" => options.aws_region = value(),
            "--azure-key" => options.azure_api_key = value(),
            "--vertex-credentials-out" => vertex_out = Some(value()),
            "--vertex-token-lifetime-s" => {
                options.vertex_token_lifetime =
                    Duration::from_secs(value().parse().unwrap_or_else(|_| usage()))
            }
            "--no-record" => options.record_requests = false,
            _ => usage(),
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-upstream: cannot bind {listen}: {e}");
            std::process::exit(1);
        }
    };
    let mock = MockUpstream::serve(listener, options);
    if let Some(path) = vertex_out
        && let Err(e) = std::fs::write(&path, mock.vertex_service_account())
    {
        eprintln!("mock-upstream: cannot write {path}: {e}");
        std::process::exit(1);
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on http://{}", mock.addr());
    let _ = out.flush();

    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => std::process::exit(1),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    drop(mock);
}

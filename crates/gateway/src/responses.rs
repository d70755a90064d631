//! The Responses API: `POST /v1/responses` is the chat turn (`crate::chat::turn`: the same
//! authentication, allowed models, limits, budgets, caches, tool policies, failover and log
//! record as chat) with the request decoded from Responses items
//! (`portcullis_dialects::responses`), the conversation a `previous_response_id` names put
//! before its input, and the answer written as a `response` object or as the Responses stream
//! by a `chat::Presenter` — named by the gateway (`resp_…`) and kept through
//! `crate::stored_responses` unless `store` is false. `GET` and `DELETE /v1/responses/{id}`
//! read and delete what was kept, only ever for its owner, the caller's tenant: another
//! tenant's response is answered 404 exactly as one that never existed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use portcullis_core::{ChatResponse, Dialect, ErrorKind, GatewayError, Message, StreamEvent};
use portcullis_dialects::StreamEncoder;
use portcullis_dialects::responses::{
    self, ResponseContext, ResponsesRequest, ResponsesStreamEncoder,
};
use portcullis_store::StoredResponse;
use serde_json::{Value, json};
use tracing::Instrument;
use uuid::Uuid;

use crate::chat::{self, Presenter};
use crate::pipeline::{self, Exchange, ModelRequest, Operation, authenticate, tenant_scope};
use crate::respond;
use crate::state::AppState;
use crate::stored_responses::ResponseKeeper;

/// Most responses of a conversation read to continue it (the newest).
const MAX_TURNS: u32 = 1000;
/// Longest a read of stored responses may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl ModelRequest for ResponsesRequest {
    fn model(&self) -> &str {
        &self.chat.model
    }
    fn stream(&self) -> bool {
        self.chat.stream
    }
}

/// `POST /v1/responses`.
pub async fn create(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let mut x = Exchange::begin(&state, Operation::Responses, req.headers());
    let span = x.span.clone();
    let result = run(&state, &mut x, req).instrument(span).await;
    x.record(result)
}

/// authenticate → decode (with the stored conversation) → the chat turn.
async fn run(state: &AppState, x: &mut Exchange, req: Request) -> Result<Response, GatewayError> {
    let (parts, body) = req.into_parts();
    let caller = authenticate(state, x, &parts.headers, body).await?;
    let mut request = pipeline::decode(x, &caller, responses::decode_request)?;
    let owner = caller.tenant_scope();
    if let Some(previous) = &request.previous_response_id {
        let history = conversation(state, &owner, previous).await?;
        request.continue_from(history);
    }
    let ctx = ResponseContext {
        id: format!("resp_{}", Uuid::now_v7().simple()),
        created_at: crate::relay::unix_now(),
        model: request.chat.model.clone(),
        echo: std::mem::take(&mut request.echo),
    };
    let keep = request.store.then(|| Keep {
        keeper: state.responses.clone(),
        owner,
        previous_id: request.previous_response_id.clone(),
        input: std::mem::take(&mut request.input),
    });
    let presenter: Box<dyn Presenter> = Box::new(ResponsesPresenter { ctx, keep });
    chat::turn(
        state,
        x,
        &caller,
        &parts.headers,
        request.chat,
        Some(presenter),
    )
    .await
}

/// The conversation `owner`'s response `previous` ends, as canonical messages: each response's
/// input items, then its output items, oldest first.
async fn conversation(
    state: &AppState,
    owner: &str,
    previous: &str,
) -> Result<Vec<Message>, GatewayError> {
    let chain = read(state.responses.chain(owner, previous, MAX_TURNS)).await?;
    if chain.is_empty() {
        return Err(GatewayError::new(
            ErrorKind::NotFound,
            format!("Previous response with id '{previous}' not found."),
        )
        .with_param("previous_response_id")
        .with_code("previous_response_not_found"));
    }
    let mut history = Vec::new();
    for r in &chain {
        for items in [&r.input_items, &r.output_items] {
            let items: Vec<Value> = serde_json::from_str(items).map_err(|e| {
                GatewayError::internal("A stored response could not be read")
                    .with_detail(format!("{}: {e}", r.id))
            })?;
            responses::decode_items(&items, "previous_response", &mut history).map_err(|e| {
                GatewayError::internal("A stored response could not be read").with_detail(format!(
                    "{}: {}",
                    r.id,
                    e.message()
                ))
            })?;
        }
    }
    Ok(history)
}

/// A read of stored responses, bounded by [`READ_TIMEOUT`]; a failure is a 503.
async fn read<T>(
    work: impl std::future::Future<Output = Result<T, portcullis_store::StoreError>>,
) -> Result<T, GatewayError> {
    let unavailable = || {
        GatewayError::new(
            ErrorKind::Unavailable,
            "Stored responses cannot be read right now; retry shortly",
        )
    };
    match tokio::time::timeout(READ_TIMEOUT, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable().with_detail(e.to_string())),
        Err(_) => Err(unavailable().with_detail("the database did not answer in time")),
    }
}

/// Writes the answer as a `response` (or its stream) and keeps it when asked.
struct ResponsesPresenter {
    ctx: ResponseContext,
    keep: Option<Keep>,
}

impl Presenter for ResponsesPresenter {
    fn complete(self: Box<Self>, answer: &ChatResponse) -> Bytes {
        let object = responses::encode_response(&self.ctx, answer);
        if let Some(keep) = self.keep {
            keep.keep(&object);
        }
        Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
    }

    fn stream(self: Box<Self>) -> Box<dyn StreamEncoder> {
        Box::new(KeepingEncoder {
            inner: ResponsesStreamEncoder::new(self.ctx),
            keep: self.keep,
        })
    }
}

/// What keeping an answer needs beside it.
struct Keep {
    keeper: ResponseKeeper,
    owner: String,
    previous_id: Option<String>,
    input: Vec<Value>,
}

impl Keep {
    /// Keeps the final `response` object, unless it failed (nothing to continue from).
    fn keep(self, object: &Value) {
        if object.get("status").and_then(Value::as_str) == Some("failed") {
            return;
        }
        let Some(id) = object.get("id").and_then(Value::as_str) else {
            return;
        };
        self.keeper.keep(StoredResponse {
            id: id.to_owned(),
            owner: self.owner,
            previous_id: self.previous_id,
            created_ms: crate::clock::now_ms(),
            input_items: Value::Array(self.input).to_string(),
            output_items: object
                .get("output")
                .map_or_else(|| "[]".to_owned(), Value::to_string),
            response: object.to_string(),
        });
    }
}

/// The Responses stream encoder, keeping the `response` the stream ends with.
struct KeepingEncoder {
    inner: ResponsesStreamEncoder,
    keep: Option<Keep>,
}

impl KeepingEncoder {
    fn keep_when_ended(&mut self) {
        if let Some(object) = self.inner.take_response()
            && let Some(keep) = self.keep.take()
        {
            keep.keep(&object);
        }
    }
}

impl StreamEncoder for KeepingEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut BytesMut) {
        self.inner.encode(event, out);
        self.keep_when_ended();
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.inner.finish(out);
        self.keep_when_ended();
    }
}

/// The tenant of the caller `headers` authenticate (with the `models` scope).
async fn owner(state: &AppState, headers: &HeaderMap) -> Result<String, GatewayError> {
    let principal = state.auth.authenticate(headers).await?;
    if !principal.identity.has_scope("models") {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "This access token lacks the `models` scope",
        )
        .with_code("insufficient_scope"));
    }
    Ok(tenant_scope(&principal.identity))
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::NotFound,
        format!("No response found with id '{id}'."),
    )
}

/// `GET /v1/responses/{id}`: the `response` object as its owner received it.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = Uuid::now_v7();
    let found = async {
        let owner = owner(&state, &headers).await?;
        match read(state.responses.get(&owner, &id)).await? {
            Some(r) => Ok(r.response),
            None => Err(not_found(&id)),
        }
    }
    .await;
    match found {
        Ok(body) => respond::json(StatusCode::OK, body, &request_id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &request_id),
    }
}

/// `GET /v1/responses/{id}/input_items`'s query.
#[derive(Debug, Default, serde::Deserialize)]
pub struct InputItemsQuery {
    /// Items per page, 1 to 100 (default 20).
    limit: Option<u32>,
    /// `asc` (as sent) or `desc` (the default: the last sent first).
    order: Option<String>,
    /// The id of the item the page starts after.
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the input items of its owner's response `id`, as
/// OpenAI lists them — a page of `limit` items in `order`, after the item `after`. An item
/// sent without an id is named `<response id>_input_<n>` (its place in the input), and an
/// easy message (`{"role", "content": "text"}`) is listed as the `message` item it stands for.
pub async fn input_items(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<InputItemsQuery>,
    headers: HeaderMap,
) -> Response {
    let request_id = Uuid::now_v7();
    let listed = async {
        let limit = match query.limit {
            None => 20,
            Some(n @ 1..=100) => n as usize,
            Some(_) => {
                return Err(
                    GatewayError::invalid_request("`limit` must be from 1 to 100")
                        .with_param("limit"),
                );
            }
        };
        let descending = match query.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(_) => {
                return Err(
                    GatewayError::invalid_request("`order` must be `asc` or `desc`")
                        .with_param("order"),
                );
            }
        };
        let owner = owner(&state, &headers).await?;
        let Some(stored) = read(state.responses.get(&owner, &id)).await? else {
            return Err(not_found(&id));
        };
        let items: Vec<Value> = serde_json::from_str(&stored.input_items).unwrap_or_default();
        let mut items: Vec<Value> = items
            .into_iter()
            .enumerate()
            .map(|(n, item)| listed_item(&id, n, item))
            .collect();
        if descending {
            items.reverse();
        }
        let start = match &query.after {
            None => 0,
            Some(after) => {
                match items
                    .iter()
                    .position(|i| i.get("id").and_then(Value::as_str) == Some(after.as_str()))
                {
                    Some(at) => at + 1,
                    None => {
                        return Err(GatewayError::invalid_request(format!(
                            "No input item with id '{after}' in response '{id}'."
                        ))
                        .with_param("after"));
                    }
                }
            }
        };
        let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
        let has_more = start + page.len() < items.len();
        let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
        Ok(json!({
            "object": "list",
            "first_id": id_of(page.first()),
            "last_id": id_of(page.last()),
            "has_more": has_more,
            "data": page,
        }))
    }
    .await;
    match listed {
        Ok(body) => respond::json(StatusCode::OK, body.to_string(), &request_id),
        Err(e) => respond::error(Dialect::OpenAi, &e, &request_id),
    }
}

/// An input item as the list shows it: with an id, an easy message as a `message` item.
fn listed_item(response_id: &str, n: usize, mut item: Value) -> Value {
    let Some(object) = item.as_object_mut() else {
        return item;
    };
    if !object.contains_key("type") && object.contains_key("role") {
        object.insert("type".to_owned(), json!("message"));
    }
    if object.get("type").and_then(Value::as_str) == Some("message")
        && let Some(text) = object.get("content").and_then(Value::as_str)
    {
        let part = if object.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        let content = json!([{"type": part, "text": text}]);
        object.insert("content".to_owned(), content);
    }
    if !object.contains_key("id") {
        object.insert("id".to_owned(), json!(format!("{response_id}_input_{n}")));
    }
    item
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = Uuid::now_v7();
    let deleted = async {
        let owner = owner(&state, &headers).await?;
        if read(state.responses.delete(&owner, &id)).await? {
            Ok(())
        } else {
            Err(not_found(&id))
        }
    }
    .await;
    match deleted {
        Ok(()) => respond::json(
            StatusCode::OK,
            json!({"id": id, "object": "response", "deleted": true}).to_string(),
            &request_id,
        ),
        Err(e) => respond::error(Dialect::OpenAi, &e, &request_id),
    }
}

//! `GET /v1/models` and `GET /v1/models/{model}`, in the caller's dialect, and the dialect of a
//! request to a dialect-neutral endpoint.
//!
//! The list is what the caller can really use: the routes and aliases, then each provider's
//! models as `provider/model` — those configured under its `models`, then those its own list
//! endpoint names ([`crate::model_catalog`]) — kept only where the caller's key allows them,
//! checked exactly as chat checks a request ([`crate::pipeline::check_model_allowed`]). A key
//! whose `models` name exact models or routes sees those names too. OpenAI's shape is one page;
//! Anthropic's is paginated with `limit` (default 20, at most 1000), `after_id` and
//! `before_id`, with `first_id`, `last_id` and `has_more`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode, Uri};
use portcullis_core::{Dialect, ErrorKind, GatewayError, Identity};
use portcullis_providers::Registry;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::model_catalog::ListedModel;
use crate::pipeline::check_model_allowed;
use crate::respond;
use crate::state::AppState;

/// The dialect of a request to a dialect-neutral endpoint: Anthropic SDKs always send
/// `anthropic-version`, and authenticate with `x-api-key` (OpenAI's with `Authorization`).
pub fn dialect_of(headers: &HeaderMap) -> Dialect {
    if headers.contains_key("anthropic-version")
        || (headers.contains_key("x-api-key") && !headers.contains_key(AUTHORIZATION))
    {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

/// One model the caller may use.
#[derive(Debug, Clone)]
struct Entry {
    id: String,
    owned_by: String,
    created: Option<i64>,
    display_name: Option<String>,
}

impl Entry {
    fn new(id: String, owned_by: &str, listed: Option<&ListedModel>) -> Self {
        Self {
            id,
            owned_by: owned_by.to_owned(),
            created: listed.and_then(|m| m.created),
            display_name: listed.and_then(|m| m.display_name.clone()),
        }
    }

    fn openai(&self) -> Value {
        json!({
            "id": self.id,
            "object": "model",
            "created": self.created.unwrap_or(0),
            "owned_by": self.owned_by,
        })
    }

    fn anthropic(&self) -> Value {
        let created_at = self
            .created
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        json!({
            "type": "model",
            "id": self.id,
            "display_name": self.display_name.as_deref().unwrap_or(&self.id),
            "created_at": created_at.to_string(),
        })
    }

    fn render(&self, dialect: Dialect) -> Value {
        match dialect {
            Dialect::OpenAi => self.openai(),
            Dialect::Anthropic => self.anthropic(),
        }
    }
}

/// The authenticated caller, when it may use models at all.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Arc<Identity>, GatewayError> {
    let principal = state.auth.authenticate(headers).await?;
    if !principal.identity.has_scope("models") {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "This access token lacks the `models` scope",
        )
        .with_code("insufficient_scope"));
    }
    Ok(principal.identity.clone())
}

/// What the provider's list says of `model`, when it lists it.
fn listed<'a>(
    lists: &'a HashMap<String, Arc<[ListedModel]>>,
    provider: &str,
    model: &str,
) -> Option<&'a ListedModel> {
    lists.get(provider)?.iter().find(|m| m.id == model)
}

/// Whether the caller's key allows `id`, as chat would decide for a request naming it.
fn allowed(who: &Identity, registry: &Registry, id: &str) -> bool {
    who.allowed_models.is_none()
        || registry
            .resolve(id)
            .is_ok_and(|r| check_model_allowed(who, id, &r).is_ok())
}

/// Every model the caller may use, in listing order.
fn entries(
    who: &Identity,
    registry: &Registry,
    lists: &HashMap<String, Arc<[ListedModel]>>,
) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |e: Entry| {
        if seen.insert(e.id.clone()) && allowed(who, registry, &e.id) {
            out.push(e);
        }
    };
    // Routes and aliases.
    for m in registry
        .models()
        .iter()
        .filter(|m| m.owned_by == "portcullis")
    {
        push(Entry::new(m.id.clone(), &m.owned_by, None));
    }
    // The exact names a restricted key allows, as it would send them.
    for name in who.allowed_models.iter().flat_map(|l| l.iter()) {
        if name.contains('*') {
            continue;
        }
        if let Ok(resolution) = registry.resolve(name) {
            let single = (resolution.route.is_none() && resolution.targets.len() == 1)
                .then(|| resolution.primary())
                .flatten();
            match single {
                Some(t) => push(Entry::new(
                    name.clone(),
                    t.provider.name(),
                    listed(lists, t.provider.name(), &t.model),
                )),
                None => push(Entry::new(name.clone(), "portcullis", None)),
            }
        }
    }
    // Each provider's models: configured, then listed by the provider.
    for p in registry.providers() {
        let name = p.name();
        for m in p.models() {
            push(Entry::new(
                format!("{name}/{m}"),
                name,
                listed(lists, name, m),
            ));
        }
        for m in lists.get(name).iter().flat_map(|l| l.iter()) {
            push(Entry::new(format!("{name}/{}", m.id), name, Some(m)));
        }
    }
    out
}

/// The configuration in force and the providers' lists (fetched as due).
async fn catalog(state: &AppState) -> (Arc<crate::Runtime>, HashMap<String, Arc<[ListedModel]>>) {
    let runtime = state.runtime();
    let lists = state
        .model_catalog
        .lists(&runtime.registry, &state.dispatcher)
        .await;
    (runtime, lists)
}

/// Anthropic's page: `limit` entries after `after_id` or before `before_id`, and whether more
/// are in that direction. A cursor naming no listed model gives an empty page.
fn anthropic_page<'a>(
    all: &'a [Entry],
    query: &HashMap<String, String>,
) -> Result<(&'a [Entry], bool), GatewayError> {
    let limit = match query.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                GatewayError::invalid_request("`limit` must be an integer from 1 to 1000")
                    .with_param("limit")
            })?,
    };
    let position = |id: &str| all.iter().position(|e| e.id == id);
    Ok(match (query.get("after_id"), query.get("before_id")) {
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid_request(
                "`after_id` and `before_id` cannot both be given",
            )
            .with_param("before_id"));
        }
        (Some(after), None) => match position(after) {
            Some(i) => {
                let rest = &all[i + 1..];
                (&rest[..rest.len().min(limit)], rest.len() > limit)
            }
            None => (&[], false),
        },
        (None, Some(before)) => match position(before) {
            Some(i) => {
                let start = i.saturating_sub(limit);
                (&all[start..i], start > 0)
            }
            None => (&[], false),
        },
        (None, None) => (&all[..all.len().min(limit)], all.len() > limit),
    })
}

/// `GET /v1/models`, in the caller's dialect.
pub async fn list_models(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let id = Uuid::now_v7();
    let dialect = dialect_of(&headers);
    let who = match caller(&state, &headers).await {
        Ok(who) => who,
        Err(e) => return respond::error(dialect, &e, &id),
    };
    let (runtime, lists) = catalog(&state).await;
    let all = entries(&who, &runtime.registry, &lists);
    let body = match dialect {
        Dialect::OpenAi => json!({
            "object": "list",
            "data": all.iter().map(Entry::openai).collect::<Vec<_>>(),
        }),
        Dialect::Anthropic => {
            let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
                .map(|q| q.0)
                .unwrap_or_default();
            let (page, has_more) = match anthropic_page(&all, &query) {
                Ok(p) => p,
                Err(e) => return respond::error(dialect, &e, &id),
            };
            json!({
                "data": page.iter().map(Entry::anthropic).collect::<Vec<_>>(),
                "has_more": has_more,
                "first_id": page.first().map(|m| m.id.as_str()),
                "last_id": page.last().map(|m| m.id.as_str()),
            })
        }
    };
    respond::json(StatusCode::OK, body.to_string(), &id)
}

/// `GET /v1/models/{model}`, in the caller's dialect: a model of the caller's list, or a name
/// the caller may send that resolves to a model its provider lists (`gpt-4o-mini` for
/// `openai/gpt-4o-mini`); else 404.
pub async fn get_model(
    State(state): State<Arc<AppState>>,
    model: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let id = Uuid::now_v7();
    let dialect = dialect_of(&headers);
    let who = match caller(&state, &headers).await {
        Ok(who) => who,
        Err(e) => return respond::error(dialect, &e, &id),
    };
    let Ok(Path(model)) = model else {
        let e =
            GatewayError::invalid_request("The model name is not valid UTF-8").with_param("model");
        return respond::error(dialect, &e, &id);
    };
    let (runtime, lists) = catalog(&state).await;
    let all = entries(&who, &runtime.registry, &lists);
    let found = all.into_iter().find(|e| e.id == model).or_else(|| {
        let resolution = runtime.registry.resolve(&model).ok()?;
        check_model_allowed(&who, &model, &resolution).ok()?;
        let t = resolution.primary()?;
        if resolution.route.is_some() || resolution.targets.len() != 1 {
            return None;
        }
        let name = t.provider.name();
        let listed = listed(&lists, name, &t.model);
        let configured = t.provider.models().iter().any(|m| *m == *t.model);
        (listed.is_some() || configured).then(|| Entry::new(model.clone(), name, listed))
    });
    match found {
        Some(entry) => respond::json(StatusCode::OK, entry.render(dialect).to_string(), &id),
        None => respond::error(dialect, &GatewayError::model_not_found(&model), &id),
    }
}

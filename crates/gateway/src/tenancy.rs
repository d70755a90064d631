//! The tenancy admin API: teams, users, service accounts, virtual keys and provider keys.
//! JSON in and out, for the master key or an `admin` identity — and the virtual-key routes for
//! a `member` signed in as itself, limited to its own keys ([`crate::admin_scope`]); documented
//! in the OpenAPI file served at `GET /admin/openapi.json`.
//!
//! | route | does |
//! |---|---|
//! | `POST/GET /admin/teams`, `GET/PATCH/DELETE /admin/teams/{id}` | teams (deleting revokes the team's keys; `PATCH` sets the team's own limits and budget) |
//! | `POST /admin/teams/{id}/members`, `DELETE /admin/teams/{id}/members/{user}` | memberships |
//! | `POST/GET /admin/users`, `GET/PATCH/DELETE /admin/users/{id}` | users (`PATCH` also sets the user's own limits and budget; `DELETE` disables; disabling deletes their grants for upstream MCP servers, so enabled again they connect again) |
//! | `POST/GET /admin/service-accounts`, `DELETE /admin/service-accounts/{id}` | machine identities |
//! | `POST/GET /admin/service-accounts/{id}/clients`, `DELETE /admin/service-accounts/{id}/clients/{client_id}` | OAuth client credentials for one: create (the secret shown once), list, revoke |
//! | `POST/GET /admin/keys`, `GET/DELETE /admin/keys/{id}`, `POST /admin/keys/{id}/rotate` | virtual keys |
//! | `PATCH /admin/keys/{id}` | a live key's name, models, limits, budget, expiry, controls, metadata and tool lists (validated as at creation; `null` clears) |
//! | `POST/GET /admin/provider-keys`, `DELETE /admin/provider-keys/{id}`, `POST /admin/provider-keys/{id}/rotate` | the provider-key vault (rotating seals a new secret in place: same id, alias and owner) |
//!
//! Secrets appear exactly once: in the answer that creates (or rotates) a virtual key. Password
//! digests, key digests and sealed provider secrets are never returned.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis_core::{AccessRole, ErrorKind, GatewayError};
use portcullis_identity::{
    Directory, KeyBudget, KeyControls, KeyLimits, KeyUpdate, ManageError, NewCredential, NewKey,
    NewUser,
};
use portcullis_providers::Secret;
use portcullis_store::tenancy::{
    CredentialOwner, CredentialRecord, KeyFilter, KeyRecord, LimitsOwner, ServiceAccountRecord,
    TeamRecord, UserRecord, UserUpdate,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::admin::{AdminPath as Path, admin_json, directory, manage_error, reach_json, rfc3339};
use crate::admin_scope::{KeyRequest, Reach, check_key_request, key_owner, may_manage_key};
use crate::clock::now_ms;
use crate::state::AppState;

/// The OpenAPI description of the admin API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /admin/openapi.json` (public: it describes, it does not reveal).
pub async fn openapi() -> Response {
    let mut r = Response::new(Body::from(OPENAPI));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A failed store call as the admin API reports it.
fn store_failed(e: portcullis_store::StoreError) -> GatewayError {
    manage_error(e.into())
}

/// The 404 for a `what` (team, user, key, …) that does not exist.
fn no_such(what: &str, id: &str) -> GatewayError {
    manage_error(ManageError::NotFound(format!("no {what} `{id}`")))
}

/// Reads a JSON body into `T` (`crate::admin::parse_body`), the tenancy bodies' object-valued
/// fields checked.
async fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, GatewayError> {
    crate::admin::parse_body(headers, body, &OBJECT_FIELDS).await
}

/// Fields of admin bodies that hold JSON objects, wherever they appear.
const OBJECT_FIELDS: [&str; 7] = [
    "limits", "budget", "controls", "cache", "retry", "timeouts", "metadata",
];

// ---- views (shared with the CLI, so both show the same shapes) ------------------------------

/// A team as the admin API shows it (with its members when given).
pub fn team_view(t: &TeamRecord, members: Option<&[String]>) -> Value {
    let mut v = json!({
        "id": t.id,
        "name": t.name,
        "metadata": t.metadata.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "created_at": rfc3339(t.created_ms),
    });
    if let Some(m) = members {
        v["members"] = json!(m);
    }
    v
}

/// A user as the admin API shows it.
pub fn user_view(u: &UserRecord, teams: &[String]) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "teams": teams,
        "issuer": u.issuer,
        "local_login": u.password_hash.is_some(),
        "disabled": u.disabled_ms.is_some(),
        "disabled_at": u.disabled_ms.and_then(rfc3339),
        "created_at": rfc3339(u.created_ms),
    })
}

/// A team's or user's view with the limits and budget stored for it (`null` when none).
fn with_limits(state: &AppState, mut view: Value, owner: LimitsOwner, id: &str) -> Value {
    let stored = state
        .auth
        .directory()
        .and_then(|d| d.owner_limits(owner, id))
        .unwrap_or_default();
    let rated = stored.requests_per_minute.is_some()
        || stored.tokens_per_minute.is_some()
        || stored.max_in_flight.is_some();
    view["limits"] = if rated {
        json!({
            "requests_per_minute": stored.requests_per_minute,
            "tokens_per_minute": stored.tokens_per_minute,
            "max_in_flight": stored.max_in_flight,
        })
    } else {
        Value::Null
    };
    view["budget"] = json!(stored.budget);
    view
}

fn service_account_view(a: &ServiceAccountRecord) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "team": a.team_id,
        "role": a.role,
        "disabled": a.disabled_ms.is_some(),
        "created_at": rfc3339(a.created_ms),
    })
}

/// A virtual key as `GET /admin/keys` shows it (never its secret).
pub fn key_view(k: &KeyRecord) -> Value {
    let now = now_ms();
    let status = if k.revoked_ms.is_some() {
        "revoked"
    } else if k.expires_ms.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "active"
    };
    let limits: Option<KeyLimits> = k
        .limits
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok());
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "status": status,
        "user": k.user_id,
        "team": k.team_id,
        "service_account": k.service_account_id,
        "models": k.models.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "limits": limits.as_ref().map(|l| json!({
            "requests_per_minute": l.requests_per_minute,
            "tokens_per_minute": l.tokens_per_minute,
            "max_in_flight": l.max_in_flight,
        })),
        "budget": limits.as_ref().and_then(|l| l.budget.as_ref()).map(|b| json!({"usd": b.usd, "period": b.period})),
        "controls": k.controls.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()),
        "allow_custom_cost": k.allow_custom_cost,
        "tools_denied": k.tools_denied.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
        "tools": k.tools.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
        "metadata": k.metadata.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "expires_at": k.expires_ms.and_then(rfc3339),
        "revoked_at": k.revoked_ms.and_then(rfc3339),
        "created_at": rfc3339(k.created_ms),
    })
}

/// A stored provider key as the admin API shows it (never its secret).
pub fn credential_view(c: &CredentialRecord) -> Value {
    let owner = match CredentialOwner::parse(&c.owner_kind) {
        Some(CredentialOwner::User) => json!({"user": c.owner_id}),
        Some(CredentialOwner::Team) => json!({"team": c.owner_id}),
        _ => json!("default"),
    };
    json!({
        "id": c.id,
        "provider": c.provider,
        "alias": c.alias,
        "owner": owner,
        "hint": (!c.hint.is_empty()).then(|| format!("…{}", c.hint)),
        "created_at": rfc3339(c.created_ms),
    })
}

fn parse_role(role: Option<&str>) -> Result<Option<AccessRole>, GatewayError> {
    match role {
        None => Ok(None),
        Some(r) => AccessRole::parse(r).map(Some).ok_or_else(|| {
            GatewayError::invalid_request("`role` must be admin, member or viewer")
                .with_param("role")
        }),
    }
}

fn parse_time(param: &str, v: &str) -> Result<i64, GatewayError> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            GatewayError::invalid_request(format!("`{param}` must be an RFC 3339 time"))
                .with_param(param)
        })
}

// ---- teams ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /admin/teams`.
pub async fn create_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateTeam = parse(&headers, body).await?;
        let t = directory(&state)?
            .create_team(req.id.as_deref(), &req.name, req.metadata.as_ref())
            .await
            .map_err(manage_error)?;
        Ok(with_limits(
            &state,
            team_view(&t, Some(&[])),
            LimitsOwner::Team,
            &t.id,
        ))
    })
    .await
}

/// `limit` (default 100, at most 1000) and `cursor` (the previous page's `next_cursor`) of a
/// list of users or teams, which pages by id; anything else is refused.
fn id_page(params: &[(String, String)]) -> Result<(u32, Option<String>), GatewayError> {
    let bad = |param: &str, why: &str| {
        GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
    };
    let (mut limit, mut cursor) = (None, None);
    for (k, v) in params {
        match k.as_str() {
            "limit" if limit.is_none() => {
                limit = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|l| (1..=1000).contains(l))
                        .ok_or_else(|| bad(k, "expected a number from 1 to 1000"))?,
                )
            }
            "cursor" if cursor.is_none() => {
                crate::admin::check_text(k, v)?;
                cursor = Some(v.clone());
            }
            "limit" | "cursor" => return Err(bad(k, "given more than once")),
            other => return Err(bad(other, "unknown parameter")),
        }
    }
    Ok((limit.unwrap_or(100), cursor))
}

/// The `next_cursor` of a page of `len` items of at most `limit`, the last of which is `last`.
fn next_cursor(len: usize, limit: u32, last: Option<&str>) -> Value {
    match last {
        Some(id) if len == limit as usize => json!(id),
        _ => Value::Null,
    }
}

/// `GET /admin/teams`: by id, `limit` (default 100, at most 1000) per page, `cursor` the
/// previous page's `next_cursor`; each team with its `member_count`.
pub async fn list_teams(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let (limit, cursor) = id_page(&params)?;
        let store = directory(&state)?.store();
        let teams = store
            .teams_page(cursor.as_deref(), limit)
            .await
            .map_err(store_failed)?;
        let data: Vec<Value> = teams
            .iter()
            .map(|(t, members)| {
                let mut v = with_limits(&state, team_view(t, None), LimitsOwner::Team, &t.id);
                v["member_count"] = json!(members);
                v
            })
            .collect();
        let next = next_cursor(teams.len(), limit, teams.last().map(|(t, _)| t.id.as_str()));
        Ok(json!({ "data": data, "next_cursor": next }))
    })
    .await
}

/// `GET /admin/teams/{id}`.
pub async fn get_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let store = directory(&state)?.store();
        let team = store
            .team(&id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| no_such("team", &id))?;
        let members = store.members_of(&id).await.map_err(store_failed)?;
        Ok(with_limits(
            &state,
            team_view(&team, Some(&members)),
            LimitsOwner::Team,
            &team.id,
        ))
    })
    .await
}

/// `DELETE /admin/teams/{id}`.
pub async fn delete_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        directory(&state)?
            .delete_team(&id)
            .await
            .map_err(manage_error)?;
        Ok(json!({"id": id, "deleted": true}))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchLimits {
    #[serde(default, deserialize_with = "present")]
    limits: Option<Option<RateLimitsBody>>,
    #[serde(default, deserialize_with = "present")]
    budget: Option<Option<KeyBudget>>,
}

/// Applies a `PATCH` body's `limits` and `budget` to what is stored for a team or user
/// ([`Directory::patch_owner_limits`]); a body with neither changes nothing.
async fn patch_owner_limits(
    dir: &Directory,
    owner: LimitsOwner,
    id: &str,
    limits: Option<Option<RateLimitsBody>>,
    budget: Option<Option<KeyBudget>>,
) -> Result<(), GatewayError> {
    if limits.is_none() && budget.is_none() {
        return Ok(());
    }
    let rate_limits = limits.map(|l| l.map(KeyLimits::from));
    dir.patch_owner_limits(owner, id, rate_limits, budget)
        .await
        .map_err(manage_error)?;
    Ok(())
}

/// `PATCH /admin/teams/{id}`: the team's own `limits` (requests and tokens per minute,
/// requests in flight) and `budget` (`{"usd", "period"}`), binding every request accounted
/// to the team whatever key or token it comes with; left out stays, `null` clears.
pub async fn patch_team(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let req: PatchLimits = parse(&headers, body).await?;
        let dir = directory(&state)?;
        let team = dir
            .store()
            .team(&id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| no_such("team", &id))?;
        patch_owner_limits(dir, LimitsOwner::Team, &team.id, req.limits, req.budget).await?;
        let members = dir.store().members_of(&id).await.map_err(store_failed)?;
        Ok(with_limits(
            &state,
            team_view(&team, Some(&members)),
            LimitsOwner::Team,
            &team.id,
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMember {
    user: String,
}

/// `POST /admin/teams/{id}/members`.
pub async fn add_member(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(team): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let req: AddMember = parse(&headers, body).await?;
        let dir = directory(&state)?;
        let user = dir.find_user(&req.user).await.map_err(manage_error)?;
        let mut teams = dir.store().teams_of(&user.id).await.map_err(store_failed)?;
        if !teams.contains(&team) {
            teams.push(team.clone());
        }
        let user = dir
            .update_user(&user.id, UserUpdate::default(), Some(teams.clone()))
            .await
            .map_err(manage_error)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

/// `DELETE /admin/teams/{id}/members/{user}`.
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((team, user)): Path<(String, String)>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let dir = directory(&state)?;
        let user = dir.find_user(&user).await.map_err(manage_error)?;
        let mut teams = dir.store().teams_of(&user.id).await.map_err(store_failed)?;
        if !teams.contains(&team) {
            return Err(manage_error(ManageError::NotFound(format!(
                "user `{}` is not a member of team `{team}`",
                user.id
            ))));
        }
        teams.retain(|t| *t != team);
        let user = dir
            .update_user(&user.id, UserUpdate::default(), Some(teams.clone()))
            .await
            .map_err(manage_error)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

// ---- users ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /admin/users`.
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateUser = parse(&headers, body).await?;
        let role = parse_role(req.role.as_deref())?;
        let teams = req.teams.clone();
        let user = directory(&state)?
            .create_user(NewUser {
                id: req.id,
                email: req.email,
                name: req.name,
                role,
                teams: req.teams,
                password: req.password.map(Secret::new),
            })
            .await
            .map_err(manage_error)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

/// `GET /admin/users`: by id, `limit` (default 100, at most 1000) per page, `cursor` the
/// previous page's `next_cursor`; each user with its teams (read in one query per page).
pub async fn list_users(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let (limit, cursor) = id_page(&params)?;
        let store = directory(&state)?.store();
        let users = store
            .users_page(cursor.as_deref(), limit)
            .await
            .map_err(store_failed)?;
        let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
        let mut teams_of: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for (team, user) in store.memberships_of(&ids).await.map_err(store_failed)? {
            teams_of.entry(user).or_default().push(team);
        }
        let data: Vec<Value> = users
            .iter()
            .map(|u| {
                let teams = teams_of.get(&u.id).map_or(&[][..], Vec::as_slice);
                with_limits(&state, user_view(u, teams), LimitsOwner::User, &u.id)
            })
            .collect();
        let next = next_cursor(users.len(), limit, users.last().map(|u| u.id.as_str()));
        Ok(json!({ "data": data, "next_cursor": next }))
    })
    .await
}

/// `GET /admin/users/{id}` (id or email).
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let dir = directory(&state)?;
        let user = dir.find_user(&id).await.map_err(manage_error)?;
        let teams = dir.store().teams_of(&user.id).await.map_err(store_failed)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    teams: Option<Vec<String>>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    limits: Option<Option<RateLimitsBody>>,
    #[serde(default, deserialize_with = "present")]
    budget: Option<Option<KeyBudget>>,
}

/// `PATCH /admin/users/{id}`.
pub async fn patch_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let req: PatchUser = parse(&headers, body).await?;
        parse_role(req.role.as_deref())?;
        let password_hash = match &req.password {
            Some(p) => {
                Some(Directory::hash_password(&Secret::new(p.clone())).map_err(manage_error)?)
            }
            None => None,
        };
        let update = UserUpdate {
            name: req.name,
            role: req.role,
            password_hash,
            disabled_ms: req.disabled.map(|d| d.then(now_ms)),
        };
        let dir = directory(&state)?;
        let disabling = update.disabled_ms.is_some_and(|d| d.is_some());
        let user = dir
            .update_user(&id, update, req.teams)
            .await
            .map_err(manage_error)?;
        patch_owner_limits(dir, LimitsOwner::User, &user.id, req.limits, req.budget).await?;
        if disabling {
            // The store deleted their upstream MCP grants with it.
            state.mcp_grants.clear();
        }
        let teams = dir.store().teams_of(&user.id).await.map_err(store_failed)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

/// `DELETE /admin/users/{id}`: disables the user (their keys and tokens stop working).
pub async fn disable_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let dir = directory(&state)?;
        let user = dir.disable_user(&id).await.map_err(manage_error)?;
        // The store deleted their upstream MCP grants with it: none is used from memory here.
        state.mcp_grants.clear();
        let teams = dir.store().teams_of(&user.id).await.map_err(store_failed)?;
        Ok(with_limits(
            &state,
            user_view(&user, &teams),
            LimitsOwner::User,
            &user.id,
        ))
    })
    .await
}

// ---- service accounts ----------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServiceAccount {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /admin/service-accounts`.
pub async fn create_service_account(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateServiceAccount = parse(&headers, body).await?;
        let role = parse_role(req.role.as_deref())?;
        let a = directory(&state)?
            .create_service_account(req.id.as_deref(), &req.name, req.team.as_deref(), role)
            .await
            .map_err(manage_error)?;
        Ok(service_account_view(&a))
    })
    .await
}

/// `GET /admin/service-accounts`.
pub async fn list_service_accounts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let list = directory(&state)?
            .store()
            .service_accounts()
            .await
            .map_err(store_failed)?;
        Ok(json!({"data": list.iter().map(service_account_view).collect::<Vec<_>>()}))
    })
    .await
}

/// `DELETE /admin/service-accounts/{id}`: disables it.
pub async fn disable_service_account(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        directory(&state)?
            .disable_service_account(&id)
            .await
            .map_err(manage_error)?;
        Ok(json!({"id": id, "disabled": true}))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// `POST /admin/service-accounts/{id}/clients`: OAuth client credentials for a service account
/// (the client-credentials grant); the secret is shown once.
pub async fn create_client(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateClient = parse(&headers, body).await?;
        let oauth = oauth_server(&state)?;
        let sa = directory(&state)?
            .store()
            .service_account(&id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| no_such("service account", &id))?;
        let name = req.name.unwrap_or_else(|| sa.name.clone());
        let creds = oauth
            .create_client(&name, &sa.id, req.scopes)
            .await
            .map_err(|e| GatewayError::invalid_request(e.to_string()))?;
        Ok(json!({
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "service_account": sa.id,
            "token_endpoint": format!("{}/oauth/token", oauth.issuer().trim_end_matches('/')),
        }))
    })
    .await
}

/// The OAuth server, or 409 when the gateway runs without one.
fn oauth_server(state: &AppState) -> Result<&portcullis_oauth::OAuthServer, GatewayError> {
    state.auth.oauth().ok_or_else(|| {
        GatewayError::invalid_request(
            "The OAuth server is not configured (set `oauth:` and `secret_key`)",
        )
        .with_status(StatusCode::CONFLICT)
        .with_code("oauth_not_configured")
    })
}

/// A service account's OAuth client as the admin API shows it (never its secret).
fn client_view(c: &portcullis_store::oauth::ClientRecord) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "scopes": c.scopes,
        "service_account": c.service_account,
        "created_at": rfc3339(c.created_ms),
    })
}

/// `GET /admin/service-accounts/{id}/clients`: the account's client credentials, newest first
/// (never a secret).
pub async fn list_clients(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let oauth = oauth_server(&state)?;
        let clients = oauth
            .service_account_clients(&id)
            .await
            .map_err(|e| GatewayError::internal(e.to_string()))?;
        Ok(json!({"data": clients.iter().map(client_view).collect::<Vec<_>>()}))
    })
    .await
}

/// `DELETE /admin/service-accounts/{id}/clients/{client_id}`: revokes one of the account's
/// client credentials — no new token for it from now on (tokens already issued run out within
/// their lifetime). A client of another account, or none, is a 404.
pub async fn delete_client(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, client_id)): Path<(String, String)>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let oauth = oauth_server(&state)?;
        let owned = oauth
            .service_account_clients(&id)
            .await
            .map_err(|e| GatewayError::internal(e.to_string()))?
            .iter()
            .any(|c| c.client_id == client_id);
        if !owned
            || !oauth
                .delete_client(&client_id)
                .await
                .map_err(|e| GatewayError::internal(e.to_string()))?
        {
            return Err(no_such("client", &client_id));
        }
        Ok(json!({"client_id": client_id, "deleted": true}))
    })
    .await
}

// ---- virtual keys --------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RateLimitsBody {
    #[serde(default)]
    requests_per_minute: Option<u64>,
    #[serde(default)]
    tokens_per_minute: Option<u64>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

impl From<RateLimitsBody> for KeyLimits {
    fn from(l: RateLimitsBody) -> Self {
        KeyLimits {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
            max_in_flight: l.max_in_flight,
            budget: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    limits: Option<RateLimitsBody>,
    #[serde(default)]
    budget: Option<KeyBudget>,
    #[serde(default)]
    controls: Option<KeyControls>,
    #[serde(default)]
    metadata: Option<Value>,
    /// Whether the key's own prices (`x-portcullis-custom-cost`) are what its budgets count.
    #[serde(default)]
    allow_custom_cost: bool,
    /// Tool-name globs whose calls are withheld from the key's answers.
    #[serde(default)]
    tools_denied: Option<Vec<String>>,
    /// Globs over `<server>__<tool>` naming the MCP tools the key may see and call.
    #[serde(default)]
    tools: Option<Vec<String>>,
}

/// `POST /admin/keys`: `201` with the key's view and `key`, the only time it is shown.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::CREATED, |reach| async move {
        let mut req: CreateKey = parse(headers, body).await?;
        check_key_request(
            &reach,
            KeyRequest {
                user: req.user.as_deref(),
                team: req.team.as_deref(),
                service_account: req.service_account.as_deref(),
                allow_custom_cost: req.allow_custom_cost,
            },
        )?;
        if let Some(me) = key_owner(&reach)? {
            req.user = Some(me.to_owned());
        }
        let expires_ms = match &req.expires_at {
            Some(t) => Some(parse_time("expires_at", t)?),
            None => None,
        };
        let limits = if req.limits.is_some() || req.budget.is_some() {
            Some(KeyLimits {
                budget: req.budget,
                ..KeyLimits::from(req.limits.unwrap_or_default())
            })
        } else {
            None
        };
        let issued = directory(state)?
            .create_key(NewKey {
                name: req.name,
                user: req.user,
                team: req.team,
                service_account: req.service_account,
                models: req.models,
                limits,
                controls: req.controls,
                metadata: req.metadata,
                expires_ms,
                allow_custom_cost: req.allow_custom_cost,
                tools_denied: req.tools_denied,
                tools: req.tools,
            })
            .await
            .map_err(manage_error)?;
        let mut v = key_view(&issued.record);
        v["key"] = json!(issued.secret.expose());
        Ok(v)
    })
    .await
}

/// `GET /admin/keys` lists this many keys per page unless `limit` says otherwise.
const DEFAULT_KEY_PAGE: u32 = 100;

/// The filters and page of `GET /admin/keys`.
struct KeyListParams {
    filter: KeyFilter,
    limit: u32,
    cursor: Option<String>,
}

fn key_list_params(params: &[(String, String)]) -> Result<KeyListParams, GatewayError> {
    let bad = |param: &str, why: &str| {
        GatewayError::invalid_request(format!("Invalid `{param}`: {why}")).with_param(param)
    };
    let mut p = KeyListParams {
        filter: KeyFilter::default(),
        limit: DEFAULT_KEY_PAGE,
        cursor: None,
    };
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return Err(bad(k, "given more than once"));
        }
        seen.push(k);
        let text = || crate::admin::check_text(k, v).map(|()| Some(v.clone()));
        match k.as_str() {
            "user" => p.filter.user_id = text()?,
            "team" => p.filter.team_id = text()?,
            "service_account" => p.filter.service_account_id = text()?,
            "cursor" => p.cursor = text()?,
            "include_revoked" => {
                p.filter.include_revoked = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(k, "expected true or false")),
                }
            }
            "limit" => {
                p.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| bad(k, "expected a number from 1 to 1000"))?
            }
            other => return Err(bad(other, "unknown parameter")),
        }
    }
    Ok(p)
}

/// `GET /admin/keys`: newest first, `limit` (default 100, at most 1000) per page, `cursor` the
/// previous page's `next_cursor`; each key with its spend, the sum of its requests' known
/// costs in the request log.
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::OK, |reach| async move {
        let mut p = key_list_params(&params)?;
        if let Some(me) = key_owner(&reach)? {
            if p.filter.user_id.as_deref().is_some_and(|u| u != me) {
                return Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    "A member lists only its own keys",
                )
                .with_code("user_not_allowed"));
            }
            p.filter.user_id = Some(me.to_owned());
        }
        let store = directory(state)?.store();
        if let Some(cursor) = &p.cursor
            && store.key(cursor).await.map_err(store_failed)?.is_none()
        {
            return Err(GatewayError::invalid_request(
                "Invalid `cursor`: not a cursor from a previous page",
            )
            .with_param("cursor"));
        }
        let keys = store
            .keys_page(&p.filter, p.cursor.as_deref(), p.limit)
            .await
            .map_err(store_failed)?;
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        let spend: std::collections::HashMap<String, f64> = state
            .stores
            .usage
            .spend_by_key(&ids)
            .await
            .map_err(store_failed)?
            .into_iter()
            .collect();
        let data: Vec<Value> = keys
            .iter()
            .map(|k| {
                let mut v = key_view(k);
                v["spend_usd"] = json!(spend.get(&k.id).copied().unwrap_or(0.0));
                v
            })
            .collect();
        let next_cursor = (keys.len() == p.limit as usize)
            .then(|| keys.last().map(|k| k.id.clone()))
            .flatten();
        Ok(json!({"data": data, "next_cursor": next_cursor}))
    })
    .await
}

/// `GET /admin/keys/{id}`.
pub async fn get_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::OK, |reach| async move {
        let key = directory(state)?
            .store()
            .key(&id)
            .await
            .map_err(store_failed)?
            .filter(|k| may_manage_key(&reach, k.user_id.as_deref()))
            .ok_or_else(|| no_such("key", &id))?;
        Ok(key_view(&key))
    })
    .await
}

/// `DELETE /admin/keys/{id}`: revokes the key on every replica (at once here, within the
/// poll interval elsewhere).
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::OK, |reach| async move {
        let dir = directory(state)?;
        check_own_key(dir, &reach, &id).await?;
        dir.revoke_key(&id).await.map_err(manage_error)?;
        let key = dir
            .store()
            .key(&id)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| no_such("key", &id))?;
        Ok(key_view(&key))
    })
    .await
}

/// Refuses, as an unknown key (404), a key outside the caller's reach: for a member, one it
/// does not own. An admin reaches every key without a read.
async fn check_own_key(dir: &Directory, reach: &Reach, id: &str) -> Result<(), GatewayError> {
    if *reach == Reach::Everything {
        return Ok(());
    }
    dir.store()
        .key(id)
        .await
        .map_err(store_failed)?
        .filter(|k| may_manage_key(reach, k.user_id.as_deref()))
        .map(|_| ())
        .ok_or_else(|| no_such("key", id))
}

/// A member of a `PATCH` body that may be absent (`None`: unchanged), `null` (`Some(None)`:
/// cleared) or a value.
fn present<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchKey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    limits: Option<Option<RateLimitsBody>>,
    #[serde(default, deserialize_with = "present")]
    budget: Option<Option<KeyBudget>>,
    #[serde(default, deserialize_with = "present")]
    controls: Option<Option<KeyControls>>,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Option<Value>>,
    #[serde(default)]
    allow_custom_cost: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    tools_denied: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    tools: Option<Option<Vec<String>>>,
}

/// `PATCH /admin/keys/{id}`: changes a live key's settings. A member left out stays as it is,
/// `null` clears it (`models: null` allows every model, `expires_at: null` never expires);
/// `limits` replaces the key's rate limits as a whole, `budget` its budget. Checked as
/// `POST /admin/keys` checks them; the key's secret, owner and id do not change. `404` for an
/// unknown or revoked key.
pub async fn patch_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::OK, |reach| async move {
        let req: PatchKey = parse(headers, body).await?;
        check_key_request(
            &reach,
            KeyRequest {
                allow_custom_cost: req.allow_custom_cost == Some(true),
                ..KeyRequest::default()
            },
        )?;
        check_own_key(directory(state)?, &reach, &id).await?;
        if req.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(
                GatewayError::invalid_request("`name` must have 1 to 200 characters")
                    .with_param("name"),
            );
        }
        let expires_ms = match req.expires_at {
            Some(Some(t)) => Some(Some(parse_time("expires_at", &t)?)),
            Some(None) => Some(None),
            None => None,
        };
        let rate_limits = req.limits.map(|l| l.map(KeyLimits::from));
        let key = directory(state)?
            .update_key(
                &id,
                KeyUpdate {
                    name: req.name,
                    models: req.models,
                    rate_limits,
                    budget: req.budget,
                    controls: req.controls,
                    metadata: req.metadata,
                    expires_ms,
                    allow_custom_cost: req.allow_custom_cost,
                    tools_denied: req.tools_denied,
                    tools: req.tools,
                },
            )
            .await
            .map_err(manage_error)?;
        Ok(key_view(&key))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateKey {
    #[serde(default)]
    grace_seconds: Option<i64>,
}

/// Default time the old secret keeps working after a rotation.
const DEFAULT_GRACE_SECONDS: i64 = 3600;

/// `POST /admin/keys/{id}/rotate`: a new secret; the old one works for `grace_seconds`.
pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (state, headers) = (&state, &headers);
    reach_json(state, headers, StatusCode::OK, |reach| async move {
        check_own_key(directory(state)?, &reach, &id).await?;
        // No body at all (however it is framed) means the defaults.
        let bytes: Bytes = crate::body::read(None, body, headers, crate::admin::MAX_BODY).await?;
        let req: RotateKey = if bytes.iter().all(u8::is_ascii_whitespace) {
            RotateKey::default()
        } else {
            crate::admin::parse_body_bytes(&bytes, &OBJECT_FIELDS)?
        };
        let grace = req.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        let issued = directory(state)?
            .rotate_key(&id, grace.saturating_mul(1000))
            .await
            .map_err(manage_error)?;
        let mut v = key_view(&issued.record);
        v["key"] = json!(issued.secret.expose());
        v["previous_key_expires_at"] = json!(rfc3339(now_ms() + grace.saturating_mul(1000)));
        Ok(v)
    })
    .await
}

// ---- provider keys -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProviderKey {
    provider: String,
    alias: String,
    secret: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team: Option<String>,
}

/// `POST /admin/provider-keys`: stores a provider credential sealed under the vault key.
pub async fn create_provider_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::CREATED, || async {
        let req: CreateProviderKey = parse(&headers, body).await?;
        if state.runtime().registry.provider(&req.provider).is_none() {
            return Err(GatewayError::invalid_request(format!(
                "Unknown provider `{}`: name one configured on this gateway",
                req.provider
            ))
            .with_param("provider"));
        }
        let (owner, owner_id) = match (req.user, req.team) {
            (Some(_), Some(_)) => {
                return Err(GatewayError::invalid_request(
                    "A provider key belongs to a user or a team, not both",
                ));
            }
            (Some(u), None) => {
                let user = directory(&state)?
                    .find_user(&u)
                    .await
                    .map_err(manage_error)?;
                (CredentialOwner::User, user.id)
            }
            (None, Some(t)) => (CredentialOwner::Team, t),
            (None, None) => (CredentialOwner::Default, String::new()),
        };
        let record = directory(&state)?
            .create_credential(NewCredential {
                provider: req.provider,
                alias: req.alias,
                owner,
                owner_id,
                secret: Secret::new(req.secret),
            })
            .await
            .map_err(manage_error)?;
        Ok(credential_view(&record))
    })
    .await
}

/// `GET /admin/provider-keys`.
pub async fn list_provider_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let list = directory(&state)?
            .store()
            .credentials()
            .await
            .map_err(store_failed)?;
        Ok(json!({"data": list.iter().map(credential_view).collect::<Vec<_>>()}))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateProviderKey {
    secret: String,
}

/// `POST /admin/provider-keys/{id}/rotate`: `{"secret"}` sealed in place of the stored one;
/// the key's id, alias and owner stay, and requests use the new secret at once here and on
/// other replicas within the poll interval.
pub async fn rotate_provider_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        let req: RotateProviderKey = parse(&headers, body).await?;
        let record = directory(&state)?
            .rotate_credential(&id, &Secret::new(req.secret))
            .await
            .map_err(manage_error)?;
        Ok(credential_view(&record))
    })
    .await
}

/// `DELETE /admin/provider-keys/{id}`.
pub async fn delete_provider_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin_json(&state, &headers, StatusCode::OK, || async {
        directory(&state)?
            .delete_credential(&id)
            .await
            .map_err(manage_error)?;
        Ok(json!({"id": id, "deleted": true}))
    })
    .await
}

//! The account and admin API under `/hub/api/`: who am I, my API tokens, and (for admins) the
//! users. Authenticated like a user's server: an API token in the `Authorization` header, or
//! the login-session cookie plus the XSRF header on unsafe methods.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use commonlab_store::{Role, StoreError, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Hub;
use crate::api::parse_json;
use crate::auth::{self, Credential};
use crate::ApiError;

pub(super) fn router(hub: Arc<Hub>) -> Router<Arc<Hub>> {
    Router::new()
        .route("/hub/api/user", get(me))
        .route("/hub/api/tokens", get(tokens_list).post(token_create))
        .route("/hub/api/tokens/{id}", delete(token_revoke))
        .route("/hub/api/users", get(users_list).post(user_create))
        .route(
            "/hub/api/users/{name}",
            get(user_get).patch(user_update).delete(user_remove),
        )
        .merge(super::appeals::router())
        .merge(super::account::router())
        .route_layer(axum::middleware::from_fn_with_state(hub, authenticate))
}

/// The authenticated caller of a hub API request.
#[derive(Clone)]
pub(super) struct Caller(pub(super) UserRecord);

async fn authenticate(State(hub): State<Arc<Hub>>, mut request: Request, next: Next) -> Response {
    let who = super::identify(&hub, request.headers(), request.uri());
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    match who {
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "not_authenticated",
            "Forbidden: log in, or send one of your API tokens as `Authorization: token <token>`",
        )
        .into_response(),
        Some((_, Credential::Cookie)) if !safe && !auth::xsrf_ok(request.headers()) => {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "xsrf_missing",
                "Forbidden: '_xsrf' argument missing from POST",
            )
            .into_response()
        }
        Some((user, _)) => {
            crate::listener::authenticated(request.extensions());
            request.extensions_mut().insert(Caller(user));
            next.run(request).await
        }
    }
}

/// Runs a store call that hashes a password on the blocking pool, holding one of the hub's
/// password-check places until the hash is done.
async fn hashing_password<T: Send + 'static>(
    hub: &Hub,
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = hub.password_check().await;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        call()
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "password hashing failed",
        )
    })?
    .map_err(store_error)
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::UserExists(_) => {
            ApiError::new(StatusCode::CONFLICT, "user_exists", e.to_string())
        }
        StoreError::InvalidName(_) => ApiError::bad_request("invalid_name", e.to_string()),
        StoreError::WeakPassword { .. } | StoreError::PasswordTooLong { .. } => {
            ApiError::bad_request("weak_password", e.to_string())
        }
        StoreError::InvalidTier(_) => ApiError::bad_request("invalid_tier", e.to_string()),
        StoreError::InvalidRole(_) => ApiError::bad_request("invalid_role", e.to_string()),
        StoreError::InvalidTime { .. } => ApiError::bad_request("invalid_time", e.to_string()),
        StoreError::NoSuchUser(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_user", e.to_string())
        }
        StoreError::UidRangeFull { .. } => {
            ApiError::new(StatusCode::CONFLICT, "uid_range_full", e.to_string())
        }
        other => {
            tracing::error!(error = %other, "hub api: store error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_failed",
                "The server could not read or write its database; try again, and tell an administrator if it persists",
            )
        }
    }
}

fn user_json(user: &UserRecord) -> Value {
    json!({
        "name": user.name,
        "admin": matches!(user.role, Role::Admin),
        "role": user.role.as_str(),
        "tier": user.tier,
        "uid": user.uid,
        "created": user.created_at,
        "restricted_until": user.restricted_until,
        "restricted_reason": user.restricted_reason,
    })
}

pub(super) fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    match caller.0.role {
        Role::Admin => Ok(()),
        Role::User => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            "Forbidden: only administrators may do this",
        )),
    }
}

async fn me(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(user_json(&caller.0))
}

async fn tokens_list(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let tokens = hub
        .store
        .api_token_list(&caller.0.name)
        .map_err(store_error)?;
    Ok(Json(Value::Array(
        tokens
            .iter()
            .map(|t| json!({"id": t.id, "label": t.label, "created": t.created_at, "last_used": t.last_used_at}))
            .collect(),
    )))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    label: String,
}

async fn token_create(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let label = parse_json::<TokenRequest>(&body, true)?
        .map(|b| b.label)
        .unwrap_or_default();
    let now = chrono::Utc::now().to_rfc3339();
    let token = hub
        .store
        .api_token_create(&caller.0.name, &label, &now)
        .map_err(store_error)?;
    hub.audit(
        Some(&caller.0.name),
        "token_create",
        Some(&caller.0.name),
        json!({"label": label}),
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "label": label})),
    )
        .into_response())
}

async fn token_revoke(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if hub
        .store
        .api_token_revoke(&caller.0.name, id)
        .map_err(store_error)?
    {
        hub.audit(
            Some(&caller.0.name),
            "token_revoke",
            Some(&caller.0.name),
            json!({"id": id}),
        );
        hub.revocations.revoked(&caller.0.name);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_token",
            format!("No token {id} of yours"),
        ))
    }
}

async fn users_list(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let users = hub.store.user_list().map_err(store_error)?;
    Ok(Json(Value::Array(users.iter().map(user_json).collect())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    tier: Option<String>,
}

fn check_tier(hub: &Hub, tier: &str) -> Result<(), ApiError> {
    if hub.config.tiers.is_empty() || hub.config.tiers.iter().any(|t| t == tier) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "unknown_tier",
            format!(
                "Unknown tier {tier:?}; the configured tiers are {}",
                hub.config.tiers.join(", ")
            ),
        ))
    }
}

async fn user_create(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: CreateUser = parse_json(&body, false)?.expect("a body is required");
    let tier = body.tier.unwrap_or_else(|| "free".into());
    check_tier(&hub, &tier)?;
    let role = if body.admin { Role::Admin } else { Role::User };
    let now = chrono::Utc::now().to_rfc3339();
    let user = {
        let store = hub.store.clone();
        let (name, password, tier, now) = (body.name, body.password, tier.clone(), now);
        hashing_password(&hub, move || {
            store.user_add(&name, &password, role, &tier, &now)
        })
        .await?
    };
    hub.audit(
        Some(&caller.0.name),
        "user_add",
        Some(&user.name),
        json!({"role": user.role.as_str(), "tier": user.tier}),
    );
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

async fn user_get(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if caller.0.name != name {
        require_admin(&caller)?;
    }
    match hub.store.user_get(&name).map_err(store_error)? {
        Some(user) => Ok(Json(user_json(&user))),
        None => Err(store_error(StoreError::NoSuchUser(name))),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    /// RFC 3339 time until which the account may not start kernels; `null` with
    /// `lift_restriction: true` lifts it.
    #[serde(default)]
    restricted_until: Option<String>,
    #[serde(default)]
    restricted_reason: Option<String>,
    #[serde(default)]
    lift_restriction: bool,
}

async fn user_update(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let body: UpdateUser = parse_json(&body, false)?.expect("a body is required");
    let actor = Some(caller.0.name.as_str());
    let missing = || store_error(StoreError::NoSuchUser(name.clone()));
    if let Some(tier) = &body.tier {
        check_tier(&hub, tier)?;
        if !hub.store.user_set_tier(&name, tier).map_err(store_error)? {
            return Err(missing());
        }
        hub.audit(actor, "user_set_tier", Some(&name), json!({"tier": tier}));
    }
    if let Some(admin) = body.admin {
        let role = if admin { Role::Admin } else { Role::User };
        if !hub.store.user_set_role(&name, role).map_err(store_error)? {
            return Err(missing());
        }
        hub.audit(
            actor,
            "user_set_role",
            Some(&name),
            json!({"role": role.as_str()}),
        );
    }
    if let Some(password) = body.password {
        let store = hub.store.clone();
        let who = name.clone();
        let changed =
            hashing_password(&hub, move || store.user_set_password(&who, &password)).await?;
        if !changed {
            return Err(missing());
        }
        hub.audit(actor, "user_set_password", Some(&name), json!({}));
    }
    if body.lift_restriction || body.restricted_until.is_some() {
        let until = if body.lift_restriction {
            None
        } else {
            body.restricted_until.as_deref()
        };
        let reason = if body.lift_restriction {
            None
        } else {
            body.restricted_reason.as_deref()
        };
        if !hub
            .store
            .user_restrict(&name, until, reason)
            .map_err(store_error)?
        {
            return Err(missing());
        }
        hub.audit(
            actor,
            "restriction",
            Some(&name),
            json!({"until": until, "reason": reason, "lifted": body.lift_restriction}),
        );
        if !body.lift_restriction {
            hub.enforce_restriction(&name).await;
        }
    }
    match hub.store.user_get(&name).map_err(store_error)? {
        Some(user) => Ok(Json(user_json(&user))),
        None => Err(missing()),
    }
}

async fn user_remove(
    State(hub): State<Arc<Hub>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    if name == caller.0.name {
        return Err(ApiError::bad_request(
            "cannot_remove_self",
            "You cannot remove your own account; ask another administrator",
        ));
    }
    // Their credentials end first, so nothing new of theirs starts while their kernels stop.
    if !hub.store.user_remove(&name).map_err(store_error)? {
        return Err(store_error(StoreError::NoSuchUser(name)));
    }
    hub.remove_server(&name).await;
    hub.audit(
        Some(&caller.0.name),
        "user_remove",
        Some(&name),
        json!({"files_kept": true}),
    );
    Ok(StatusCode::NO_CONTENT)
}

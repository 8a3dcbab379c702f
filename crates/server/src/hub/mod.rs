//! Accounts mode: many users behind one listener. Each user has their own server — the whole
//! single-user edge of this crate, with their own kernels, sessions and workspace — at
//! `/user/<name>/`, built on first use. The hub in front of them does three things: it logs
//! people in and out (`/hub/login`, `/hub/logout`), it serves the account and admin API
//! (`/hub/api/...`), and it hands each `/user/<name>/...` request to that user's server only
//! when the request proves it comes from that user. The user's server checks again (see
//! [`crate::AccountsAuth`]), so a routing mistake cannot open one user's work to another.

mod account;
mod admin;
mod api;
mod appeals;
mod login;
mod page;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use commonlab_store::{Store, UserRecord};
use tower::ServiceExt;

use crate::auth::{self, Credential};
use crate::{ApiError, AppState};

/// Builds one user's server state: their kernels, sessions and workspace. The binary supplies
/// it, since that is where the configuration lives.
pub trait UserServers: Send + Sync {
    /// The state of `user`'s server, built fresh. Called at most once per user while the hub
    /// runs (and again after the user is removed and added back).
    fn build(&self, user: &UserRecord) -> Result<AppState, String>;
}

/// Settings of the hub, with units in their names.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The URL prefix everything is served under, ending in `/`.
    pub base_url: String,
    /// Mark cookies `Secure` (set when the server is reached over HTTPS).
    pub cookie_secure: bool,
    /// How long a browser login lasts.
    pub login_session_ttl: Duration,
    /// Tier names a user may be given; empty accepts any.
    pub tiers: Vec<String>,
    /// Failed logins for one name within [`HubConfig::login_failure_window`] before further
    /// attempts are refused until the window passes.
    pub login_failures_max: u32,
    pub login_failure_window: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            base_url: "/".into(),
            cookie_secure: false,
            login_session_ttl: Duration::from_secs(7 * 24 * 3600),
            tiers: Vec::new(),
            login_failures_max: 10,
            login_failure_window: Duration::from_secs(15 * 60),
        }
    }
}

struct UserServer {
    state: AppState,
    router: Router,
    /// The tier it was built for: its sandbox limits and policy actions follow the tier.
    tier: String,
}

/// The accounts-mode front: logins, the account API, and the users' servers.
pub struct Hub {
    store: Arc<Store>,
    factory: Arc<dyn UserServers>,
    servers: Mutex<HashMap<String, Arc<UserServer>>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    config: HubConfig,
    /// Quotas by tier name, shown on the account page; see [`Hub::set_tier_quotas`].
    tier_quotas:
        std::sync::RwLock<std::collections::BTreeMap<String, commonlab_manager::TierQuota>>,
}

impl Hub {
    pub fn new(store: Arc<Store>, factory: Arc<dyn UserServers>, config: HubConfig) -> Hub {
        Hub {
            store,
            factory,
            servers: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            config,
            tier_quotas: Default::default(),
        }
    }

    /// Sets the quotas of each tier (GPU-hours per rolling week, kernels at once) that the
    /// account page and `/hub/api/usage` show; a tier without one shows none.
    pub fn set_tier_quotas(
        &self,
        quotas: std::collections::BTreeMap<String, commonlab_manager::TierQuota>,
    ) {
        *self.tier_quotas.write().expect("not poisoned") = quotas;
    }

    fn tier_quota(&self, tier: &str) -> Option<commonlab_manager::TierQuota> {
        self.tier_quotas
            .read()
            .expect("not poisoned")
            .get(tier)
            .copied()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Builds the server of every user in the store, so kernels a previous run started can be
    /// recovered. Returns the states built.
    pub fn open_all(&self) -> Result<Vec<AppState>, String> {
        let users = self.store.user_list().map_err(|e| e.to_string())?;
        users
            .iter()
            .map(|user| self.server(user).map(|s| s.state.clone()))
            .collect()
    }

    /// Kernels running, by user, over the servers built so far.
    pub fn running_kernels(&self) -> HashMap<String, usize> {
        let servers = self.servers.lock().expect("not poisoned");
        servers
            .iter()
            .map(|(name, server)| (name.clone(), server.state.kernels.list().len()))
            .collect()
    }

    /// The states of every server built so far.
    pub fn running(&self) -> Vec<AppState> {
        let servers = self.servers.lock().expect("not poisoned");
        servers.values().map(|s| s.state.clone()).collect()
    }

    /// The user's server, built on first use. After a tier change it is rebuilt for the new
    /// tier as soon as it has no kernel running (kernels keep the limits they started with).
    fn server(&self, user: &UserRecord) -> Result<Arc<UserServer>, String> {
        if let Some(server) = self.servers.lock().expect("not poisoned").get(&user.name) {
            if server.tier == user.tier || !server.state.kernels.list().is_empty() {
                return Ok(server.clone());
            }
        }
        let state = self.factory.build(user)?;
        let router = crate::app(state.clone());
        let fresh = Arc::new(UserServer {
            state,
            router,
            tier: user.tier.clone(),
        });
        let mut servers = self.servers.lock().expect("not poisoned");
        // Another request may have built one meanwhile; keep it unless it is for an old tier.
        let server = servers
            .entry(user.name.clone())
            .and_modify(|existing| {
                if existing.tier != user.tier && existing.state.kernels.list().is_empty() {
                    *existing = fresh.clone();
                }
            })
            .or_insert_with(|| fresh.clone())
            .clone();
        Ok(server)
    }

    /// Stops a removed user's kernels and forgets their server.
    async fn remove_server(&self, name: &str) {
        let server = self.servers.lock().expect("not poisoned").remove(name);
        if let Some(server) = server {
            server.state.kernels.shutdown_all().await;
        }
    }

    /// Stops every user's kernels (on server shutdown).
    pub async fn shutdown_all(&self) {
        for state in self.running() {
            state.kernels.shutdown_all().await;
        }
    }

    /// Records an audit event; a failure to record is logged, never shown to the user.
    fn audit(
        &self,
        actor: Option<&str>,
        action: &str,
        subject: Option<&str>,
        detail: serde_json::Value,
    ) {
        let now = chrono::Utc::now().to_rfc3339();
        if let Err(e) = self
            .store
            .audit_append(&now, actor, action, subject, &detail)
        {
            tracing::error!(error = %e, action, "could not append to the audit log");
        }
    }

    /// Whether `name` may try to log in now; counts failures per name over a window.
    fn login_allowed(&self, name: &str, now: Instant) -> bool {
        let failures = self.failures.lock().expect("not poisoned");
        match failures.get(name) {
            Some((count, first)) => {
                now.duration_since(*first) >= self.config.login_failure_window
                    || *count < self.config.login_failures_max
            }
            None => true,
        }
    }

    fn login_failed(&self, name: &str, now: Instant) {
        let mut failures = self.failures.lock().expect("not poisoned");
        let entry = failures.entry(name.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.config.login_failure_window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn login_succeeded(&self, name: &str) {
        self.failures.lock().expect("not poisoned").remove(name);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url, path.trim_start_matches('/'))
    }
}

/// Who sent a request to the hub, if anyone.
fn identify(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
) -> Option<(UserRecord, Credential)> {
    auth::account_credential(&hub.store, headers, uri)
}

/// Builds the router of the accounts-mode server.
pub fn hub_app(hub: Arc<Hub>) -> Router {
    let base = hub.config.base_url.trim_end_matches('/').to_owned();
    let routes = Router::new()
        .route("/", get(root))
        .route("/hub", get(root))
        .route("/hub/", get(root))
        .route("/hub/login", get(login::page).post(login::submit))
        .route("/hub/home", get(home))
        .route("/hub/logout", get(login::logout).post(login::logout))
        .merge(api::router(hub.clone()))
        .merge(appeals::pages())
        .merge(admin::pages())
        .merge(account::pages())
        // Users' servers are reached through the fallback rather than a `/user/{name}/{*rest}`
        // route, so the request reaches the user's router carrying no path parameters of the
        // hub's (axum would add them to the inner router's own).
        .fallback(fallback)
        .with_state(hub);
    if base.is_empty() {
        routes
    } else {
        Router::new().nest(&base, routes)
    }
}

async fn root(State(hub): State<Arc<Hub>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    match identify(&hub, &headers, &uri) {
        Some((user, _)) => {
            Redirect::to(&hub.url(&format!("user/{}/lab", user.name))).into_response()
        }
        None => Redirect::to(&hub.url("hub/login")).into_response(),
    }
}

async fn fallback(State(hub): State<Arc<Hub>>, request: Request) -> Response {
    let path = request.uri().path();
    if user_in_path(&hub, path).is_some() {
        return dispatch(hub, request).await;
    }
    let api = format!("{}api", hub.config.base_url);
    if path == api || path.starts_with(&format!("{api}/")) {
        return api_outside_user().into_response();
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not Found").into_response()
}

/// The "Hub Control Panel" of the front ends' File menu: the account page.
async fn home(State(hub): State<Arc<Hub>>) -> Response {
    Redirect::to(&hub.url("hub/account")).into_response()
}

fn api_outside_user() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "use_user_url",
        "This server has user accounts: each user's Jupyter API is at /user/<name>/api/… (connect clients to /user/<name>/ with one of your API tokens)",
    )
}

/// The user name in `/user/<name>/...` (after the base URL).
fn user_in_path<'a>(hub: &Hub, path: &'a str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(&hub.config.base_url)?
        .strip_prefix("user/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Whether a request is a browser asking for a page (and so should be sent to the login page
/// rather than refused).
fn wants_page(method: &Method, headers: &HeaderMap, path: &str) -> bool {
    method == Method::GET
        && !path.contains("/api/")
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// Hands `/user/<name>/...` to that user's server, when the request is from that user.
async fn dispatch(hub: Arc<Hub>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(name) = user_in_path(&hub, &path).map(str::to_owned) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not Found").into_response();
    };
    let who = identify(&hub, request.headers(), request.uri());
    match who {
        Some((user, _)) if user.name == name => {
            crate::listener::authenticated(request.extensions());
            let server = match hub.server(&user) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(user = %name, error = %e, "could not start a user's server");
                    return ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "user_server_failed",
                        format!("Your server could not be started: {e}. Ask an administrator to check the server log."),
                    )
                    .into_response();
                }
            };
            match server.router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
        Some((user, _)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "not_your_server",
            format!(
                "Forbidden: you are logged in as {}; {} belongs to another user",
                user.name,
                hub.url(&format!("user/{name}/"))
            ),
        )
        .into_response(),
        None if wants_page(request.method(), request.headers(), &path) => {
            let next = request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
                .unwrap_or(path);
            Redirect::to(&format!(
                "{}?next={}",
                hub.url("hub/login"),
                login::percent_encode(&next)
            ))
            .into_response()
        }
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "not_authenticated",
            "Forbidden: log in, or send one of your API tokens as `Authorization: token <token>`",
        )
        .into_response(),
    }
}

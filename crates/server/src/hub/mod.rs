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
mod revoke;
mod throttle;

pub(crate) use revoke::CredentialWatch;

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
    /// Password checks (argon2id, 19 MiB and a core each) run at once, by logins and by the
    /// admin API's password changes together. A login that finds none free is refused at once
    /// with `login_busy` rather than queued, so a flood of logins cannot take the server's
    /// memory and cores; the default is the available parallelism.
    pub password_checks_max: usize,
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
            password_checks_max: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// The most bytes of a login form's body: a name, a password of at most
/// [`commonlab_store::PASSWORD_BYTES_MAX`] bytes, the XSRF value and `next`, percent-encoded.
const LOGIN_BODY_BYTES_MAX: usize = 16 * 1024;

/// How often [`Hub::spawn_maintenance`] runs the hub's upkeep.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// What one run of [`Hub::maintain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Expired login sessions deleted from the store.
    pub login_sessions_purged: usize,
    /// Whether a summary of refused logins was written to the audit log.
    pub refusals_summarized: bool,
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
    failures: Mutex<throttle::LoginFailures>,
    config: HubConfig,
    /// Quotas by tier name, shown on the account page; see [`Hub::set_tier_quotas`].
    tier_quotas:
        std::sync::RwLock<std::collections::BTreeMap<String, commonlab_manager::TierQuota>>,
    /// Each user's revocation signal, watched by their open WebSockets.
    revocations: revoke::Revocations,
    /// Places for password checks at once ([`HubConfig::password_checks_max`]); a check holds
    /// one until its hash is done, even when the request that asked for it is gone.
    password_checks: Arc<tokio::sync::Semaphore>,
}

impl Hub {
    pub fn new(store: Arc<Store>, factory: Arc<dyn UserServers>, config: HubConfig) -> Hub {
        Hub {
            store,
            factory,
            servers: Mutex::new(HashMap::new()),
            failures: Mutex::new(throttle::LoginFailures::new(
                config.login_failures_max,
                config.login_failure_window,
                Instant::now(),
            )),
            password_checks: Arc::new(tokio::sync::Semaphore::new(
                config.password_checks_max.max(1),
            )),
            config,
            tier_quotas: Default::default(),
            revocations: Default::default(),
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

    /// The quota of `tier`, which is also the kernel cap enforced on its users. A tier without
    /// one (a name given on the command line that no section configures) gets `free`'s kernel
    /// cap, as it gets `free`'s sandbox limits, and no GPU-hours, since such a tier's GPU
    /// kernels are refused.
    fn tier_quota(&self, tier: &str) -> Option<commonlab_manager::TierQuota> {
        let quotas = self.tier_quotas.read().expect("not poisoned");
        quotas.get(tier).copied().or_else(|| {
            quotas.get("free").map(|free| commonlab_manager::TierQuota {
                gpu_hours_per_week: 0.0,
                kernels_max: free.kernels_max,
            })
        })
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
    /// Its kernel cap is the one the account page shows for the user's tier now.
    fn server(&self, user: &UserRecord) -> Result<Arc<UserServer>, String> {
        let server = self.server_for_tier(user)?;
        server
            .state
            .kernels
            .set_kernels_max(self.tier_quota(&user.tier).map(|q| q.kernels_max));
        Ok(server)
    }

    fn server_for_tier(&self, user: &UserRecord) -> Result<Arc<UserServer>, String> {
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

    /// Closes a removed user's connections, stops their kernels and forgets their server.
    async fn remove_server(&self, name: &str) {
        self.revocations.forget(name);
        let server = self.servers.lock().expect("not poisoned").remove(name);
        if let Some(server) = server {
            server
                .state
                .kernels
                .stop_all_because(
                    "account_removed",
                    "This account was removed by an administrator, so its kernels were stopped.",
                )
                .await;
        }
    }

    /// Stops a just-restricted user's kernels, as the restriction says: a restricted account
    /// runs nothing until the restriction ends.
    async fn enforce_restriction(&self, name: &str) {
        let user = match self.store.user_get(name) {
            Ok(Some(user)) => user,
            _ => return,
        };
        let now = chrono::Utc::now().to_rfc3339();
        if !user.is_restricted_at(&now).unwrap_or(true) {
            return;
        }
        let server = self
            .servers
            .lock()
            .expect("not poisoned")
            .get(name)
            .cloned();
        if let Some(server) = server {
            let notice = format!(
                "Your account was restricted until {} ({}), so its kernels were stopped. See {} to appeal.",
                user.restricted_until.as_deref().unwrap_or("further notice"),
                user.restricted_reason.as_deref().unwrap_or("no reason given"),
                self.url(crate::APPEAL_PATH),
            );
            server
                .state
                .kernels
                .stop_all_because("account_restricted", &notice)
                .await;
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

    /// Waits for a place to check a password (hash or verify one), for the admin API: its
    /// callers are few and authenticated, so they wait rather than being refused.
    async fn password_check(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.password_checks
            .clone()
            .acquire_owned()
            .await
            .expect("the password check semaphore is never closed")
    }

    /// Whether `name` may try to log in now; counts failures per name over a window.
    fn login_allowed(&self, name: &str, now: Instant) -> bool {
        self.failures
            .lock()
            .expect("not poisoned")
            .allowed(name, now)
    }

    fn login_failed(&self, name: &str, now: Instant) {
        self.failures
            .lock()
            .expect("not poisoned")
            .failed(name, now);
    }

    fn login_succeeded(&self, name: &str) {
        self.failures.lock().expect("not poisoned").succeeded(name);
    }

    /// Records a refused login (`reason`, a stable code) in the audit log, within the log's
    /// bound on refusals (see [`throttle`]).
    fn login_refused(&self, name: &str, reason: &'static str, now: Instant) {
        let now_utc = chrono::Utc::now().to_rfc3339();
        let entries = self
            .failures
            .lock()
            .expect("not poisoned")
            .refused(name, reason, now, &now_utc);
        for (action, subject, detail) in entries {
            self.audit(None, action, subject.as_deref(), detail);
        }
    }

    /// The hub's periodic upkeep: expired login sessions are deleted, failed-login counts whose
    /// window has passed are forgotten, and refused logins not yet in the audit log one by one
    /// are written there as a summary once their interval is over.
    pub fn maintain(&self) -> Maintenance {
        self.maintain_at(Instant::now())
    }

    fn maintain_at(&self, now: Instant) -> Maintenance {
        let now_utc = chrono::Utc::now().to_rfc3339();
        let login_sessions_purged = match self.store.login_session_purge_expired(&now_utc) {
            Ok(purged) => purged,
            Err(e) => {
                tracing::error!(error = %e, "could not purge expired login sessions");
                0
            }
        };
        let summary = self
            .failures
            .lock()
            .expect("not poisoned")
            .maintain(now, &now_utc);
        let refusals_summarized = summary.is_some();
        if let Some((action, subject, detail)) = summary {
            self.audit(None, action, subject.as_deref(), detail);
        }
        Maintenance {
            login_sessions_purged,
            refusals_summarized,
        }
    }

    /// Runs [`Hub::maintain`] every [`MAINTENANCE_INTERVAL`] until the task is aborted.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let hub = hub.clone();
                // The store is synchronous; keep its work off the request threads.
                let done = tokio::task::spawn_blocking(move || hub.maintain()).await;
                match done {
                    Ok(done) if done.login_sessions_purged > 0 => {
                        tracing::info!(
                            purged = done.login_sessions_purged,
                            "expired login sessions deleted"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "hub upkeep failed"),
                }
            }
        })
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
        .route(
            "/hub/login",
            get(login::page)
                .post(login::submit)
                .layer(axum::extract::DefaultBodyLimit::max(LOGIN_BODY_BYTES_MAX)),
        )
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
async fn dispatch(hub: Arc<Hub>, mut request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some(name) = user_in_path(&hub, &path).map(str::to_owned) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "Not Found").into_response();
    };
    let who = auth::account_identity(&hub.store, request.headers(), request.uri());
    match who {
        Some((user, _, secret)) if user.name == name => {
            crate::listener::authenticated(request.extensions());
            if auth::is_websocket_upgrade(request.headers()) {
                // The socket outlives this check: it watches for the credential's revocation.
                let watch = hub.revocations.watch(hub.store.clone(), &user.name, secret);
                request.extensions_mut().insert(watch);
            }
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
        Some((user, _, _)) => ApiError::new(
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

#[cfg(test)]
mod tests {
    use super::*;

    struct NoServers;

    impl UserServers for NoServers {
        fn build(&self, _user: &UserRecord) -> Result<AppState, String> {
            Err("no servers in this test".into())
        }
    }

    fn hub() -> Hub {
        let store = Arc::new(Store::open_in_memory().expect("store"));
        Hub::new(store, Arc::new(NoServers), HubConfig::default())
    }

    #[test]
    fn a_flood_of_refused_logins_leaves_the_map_and_the_audit_log_bounded() {
        let hub = hub();
        let now = Instant::now();
        for i in 0..10_000 {
            let name = format!("flood{i}");
            hub.login_failed(&name, now);
            hub.login_refused(&name, "bad_credentials", now);
        }
        assert!(hub.failures.lock().unwrap().names_counted() <= throttle::LOGIN_FAILURE_NAMES_MAX);
        let records = hub.store.audit_list(0, 100_000).unwrap();
        assert_eq!(
            records.len(),
            throttle::LOGIN_REFUSALS_RECORDED_PER_INTERVAL as usize
        );
        let done = hub.maintain_at(now + throttle::LOGIN_REFUSAL_INTERVAL);
        assert!(done.refusals_summarized);
        let records = hub.store.audit_list(0, 100_000).unwrap();
        assert_eq!(
            records.len(),
            throttle::LOGIN_REFUSALS_RECORDED_PER_INTERVAL as usize + 1
        );
        let summary = records.last().unwrap();
        assert_eq!(summary.action, "login_failed_summary");
        assert_eq!(
            summary.detail["count"],
            10_000 - u64::from(throttle::LOGIN_REFUSALS_RECORDED_PER_INTERVAL)
        );
        assert!(hub.store.audit_verify().unwrap().first_bad.is_none());
    }

    #[test]
    fn upkeep_deletes_expired_login_sessions() {
        let hub = hub();
        hub.store
            .user_add(
                "ada",
                "a long enough password",
                commonlab_store::Role::User,
                "free",
                "2026-01-01T00:00:00+00:00",
            )
            .unwrap();
        let expired = hub
            .store
            .login_session_create(
                "ada",
                "2026-01-01T00:00:00+00:00",
                "2026-01-02T00:00:00+00:00",
            )
            .unwrap();
        let live = hub
            .store
            .login_session_create(
                "ada",
                "2026-01-01T00:00:00+00:00",
                "2999-01-01T00:00:00+00:00",
            )
            .unwrap();
        assert_eq!(hub.maintain().login_sessions_purged, 1);
        assert_eq!(hub.maintain().login_sessions_purged, 0);
        let now = chrono::Utc::now().to_rfc3339();
        assert!(hub
            .store
            .login_session_lookup(&live, &now)
            .unwrap()
            .is_some());
        assert!(hub
            .store
            .login_session_lookup(&expired, &now)
            .unwrap()
            .is_none());
    }
}

//! Accounts mode: logins, per-user servers, and isolation. Every API of one user's server is
//! tried with another user's credentials (and with none), and every id of one user's kernels
//! and sessions is tried through another user's server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use commonlab_manager::{
    ContentsConfig, ContentsManager, KernelManager, KernelManagerConfig, SessionManager,
};
use commonlab_protocol::Channel;
use commonlab_runtime::{jupyter_data_dirs, LocalBackend};
use commonlab_server::{AccountsAuth, AppState, EdgeLimits, Hub, HubConfig, UserServers};
use commonlab_store::{Role, Store, UserRecord};
use reqwest::Method;

use crate::harness::{connect_ws, python};

struct Factory {
    python: PathBuf,
    data_dir: PathBuf,
    store: Arc<Store>,
    /// Every server built, as (user, tier).
    builds: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl UserServers for Factory {
    fn build(&self, user: &UserRecord) -> Result<AppState, String> {
        self.builds
            .lock()
            .unwrap()
            .push((user.name.clone(), user.tier.clone()));
        let env = commonlab_manager::find_python(std::slice::from_ref(&self.python))
            .ok_or("no python")?;
        let workspace = self.data_dir.join("workspaces").join(&user.name);
        std::fs::create_dir_all(&workspace).map_err(|e| e.to_string())?;
        let store = Arc::new(self.store.for_owner(&user.name));
        // As in the binary: the policy checks every cell, and a restricted account runs none.
        let policy =
            commonlab_policy::Policy::configured(&commonlab_policy::PolicyConfig::default(), &[])
                .map_err(|e| e.to_string())?;
        let gate =
            commonlab_manager::PolicyGate::new(Arc::new(policy), user.tier.clone(), store.clone());
        let kernels = KernelManager::new(
            KernelManagerConfig {
                root_dir: workspace.clone(),
                kernelspec_dirs: jupyter_data_dirs(std::slice::from_ref(&env.prefix)),
                default_kernel_name: "python3".into(),
                fallback_spec: Some(env.kernelspec()),
                kernel_start_timeout: Duration::from_secs(30),
                kernel_shutdown_wait: Duration::from_secs(3),
                ws_send_queue_bytes_max: 64 << 20,
                ws_buffer_bytes_max: 16 << 20,
                ws_buffer_messages_max: 1000,
                sandbox: None,
            },
            Arc::new(LocalBackend::new(
                self.data_dir.join("runtime").join(&user.name),
            )),
            store.clone(),
        );
        let kernels = Arc::new(kernels.with_policy_gate(gate));
        Ok(AppState {
            sessions: Arc::new(SessionManager::new(kernels.clone(), store)),
            kernels,
            contents: Arc::new(ContentsManager::new(ContentsConfig {
                root_dir: workspace.clone(),
                upload_bytes_max: 1 << 20,
                owner: None,
            })),
            token: Arc::new(String::new()),
            limits: EdgeLimits {
                ws_message_bytes_max: 1 << 20,
                request_body_bytes_max: 1 << 20,
            },
            base_url: format!("/user/{}/", user.name),
            lab: commonlab_server::LabAssets::discover(
                &env.prefix,
                &self.data_dir.join("lab").join(&user.name),
                &workspace,
            )
            .map(Arc::new),
            accounts: Some(AccountsAuth {
                store: self.store.clone(),
                owner: user.name.clone(),
            }),
        })
    }
}

pub(crate) struct TestHub {
    pub(crate) base: String,
    pub(crate) hub: Arc<Hub>,
    pub(crate) store: Arc<Store>,
    data_dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
    /// API tokens of alice, bob and carol (an admin).
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) carol: String,
    /// Every user server the hub built, as (user, tier).
    builds: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        for state in self.hub.running() {
            state.kernels.kill_all();
        }
        self.server.abort();
    }
}

pub(crate) const NOW: &str = "2026-01-01T00:00:00+00:00";
pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) async fn spawn_hub() -> Option<TestHub> {
    spawn_hub_with(HubConfig {
        login_failures_max: 3,
        ..HubConfig::default()
    })
    .await
}

/// A hub with `config` (its base URL `/`), alice, bob and carol as users.
pub(crate) async fn spawn_hub_with(config: HubConfig) -> Option<TestHub> {
    let python = python()?;
    let data_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_sqlite(&data_dir.path().join("hub.sqlite")).unwrap());
    let mut tokens = Vec::new();
    for (name, role) in [
        ("alice", Role::User),
        ("bob", Role::User),
        ("carol", Role::Admin),
    ] {
        store.user_add(name, PASSWORD, role, "free", NOW).unwrap();
        tokens.push(store.api_token_create(name, "test", NOW).unwrap());
    }
    let builds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let factory = Factory {
        python,
        data_dir: data_dir.path().to_owned(),
        store: store.clone(),
        builds: builds.clone(),
    };
    let hub = Arc::new(Hub::new(store.clone(), Arc::new(factory), config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = commonlab_server::hub_app(hub.clone());
    let server = tokio::spawn(async move {
        commonlab_server::serve(
            listener,
            app,
            commonlab_server::ConnectionLimits::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
    let carol = tokens.pop().unwrap();
    let bob = tokens.pop().unwrap();
    let alice = tokens.pop().unwrap();
    Some(TestHub {
        base: format!("http://{addr}"),
        hub,
        store,
        data_dir,
        server,
        alice,
        bob,
        carol,
        builds,
    })
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl TestHub {
    pub(crate) async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = client().request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("token {token}"));
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    fn workspace(&self, user: &str) -> PathBuf {
        self.data_dir.path().join("workspaces").join(user)
    }
}

/// Every route of a user's server, with a method and a body that would succeed for the owner.
fn user_routes(kernel: &str, session: &str) -> Vec<(Method, String, Option<String>)> {
    let k = |suffix: &str| format!("/api/kernels/{kernel}{suffix}");
    vec![
        (Method::GET, "/api/status".into(), None),
        (Method::GET, "/api/me".into(), None),
        (Method::GET, "/api/kernelspecs".into(), None),
        (Method::GET, "/api/kernelspecs/python3".into(), None),
        (Method::GET, "/kernelspecs/python3/kernel.json".into(), None),
        (Method::GET, "/api/kernels".into(), None),
        (Method::POST, "/api/kernels".into(), Some("{}".into())),
        (Method::GET, k(""), None),
        (Method::POST, k("/interrupt"), None),
        (Method::POST, k("/restart"), None),
        (Method::DELETE, k(""), None),
        (Method::GET, "/api/sessions".into(), None),
        (
            Method::POST,
            "/api/sessions".into(),
            Some(r#"{"path":"x.ipynb","type":"notebook","name":""}"#.into()),
        ),
        (Method::GET, format!("/api/sessions/{session}"), None),
        (
            Method::PATCH,
            format!("/api/sessions/{session}"),
            Some(r#"{"name":"y"}"#.into()),
        ),
        (Method::DELETE, format!("/api/sessions/{session}"), None),
        (Method::GET, "/api/contents".into(), None),
        (Method::GET, "/api/contents/secret.txt".into(), None),
        (
            Method::PUT,
            "/api/contents/secret.txt".into(),
            Some(r#"{"type":"file","format":"text","content":"overwritten"}"#.into()),
        ),
        (
            Method::PATCH,
            "/api/contents/secret.txt".into(),
            Some(r#"{"path":"moved.txt"}"#.into()),
        ),
        (
            Method::POST,
            "/api/contents".into(),
            Some(r#"{"type":"notebook"}"#.into()),
        ),
        (Method::DELETE, "/api/contents/secret.txt".into(), None),
        (
            Method::GET,
            "/api/contents/secret.txt/checkpoints".into(),
            None,
        ),
        (
            Method::POST,
            "/api/contents/secret.txt/checkpoints".into(),
            None,
        ),
        (Method::GET, "/api/config/notebook".into(), None),
        (
            Method::PATCH,
            "/api/config/notebook".into(),
            Some("{}".into()),
        ),
        (Method::GET, "/api/nbconvert".into(), None),
        (Method::POST, "/api/events".into(), Some("{}".into())),
        (Method::GET, "/lab/api/settings".into(), None),
        (Method::GET, "/lab/api/workspaces".into(), None),
        (Method::GET, "/lab/api/translations".into(), None),
        (Method::GET, "/lab".into(), None),
        (Method::GET, "/tree".into(), None),
    ]
}

#[tokio::test]
async fn one_users_server_is_closed_to_everyone_else() {
    let Some(hub) = spawn_hub().await else { return };
    // Bob's own work: a file, a kernel and a session.
    let (status, body) = hub
        .call(Some(&hub.bob), Method::GET, "/user/bob/api/status", None)
        .await;
    assert_eq!(status, 200, "{body}");
    std::fs::create_dir_all(hub.workspace("bob")).unwrap();
    let (status, body) = hub
        .call(
            Some(&hub.bob),
            Method::PUT,
            "/user/bob/api/contents/secret.txt",
            Some(r#"{"type":"file","format":"text","content":"bob's secret"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, session) = hub
        .call(Some(&hub.bob), Method::POST, "/user/bob/api/sessions", Some(r#"{"path":"b.ipynb","type":"notebook","name":"b.ipynb","kernel":{"name":"python3"}}"#))
        .await;
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().unwrap().to_owned();
    let kernel_id = session["kernel"]["id"].as_str().unwrap().to_owned();

    // Alice, carol (an admin) and nobody, at every route of bob's server: refused, never served.
    for (who, token) in [
        ("alice", Some(hub.alice.as_str())),
        ("carol", Some(hub.carol.as_str())),
        ("nobody", None),
        ("a wrong token", Some("clt_0000")),
    ] {
        for (method, path, body) in user_routes(&kernel_id, &session_id) {
            let (status, reply) = hub
                .call(
                    token,
                    method.clone(),
                    &format!("/user/bob{path}"),
                    body.as_deref(),
                )
                .await;
            assert_eq!(
                status, 403,
                "{who}: {method} /user/bob{path} answered {status}: {reply}"
            );
            assert!(
                reply["code"] == "not_your_server" || reply["code"] == "not_authenticated",
                "{who}: {method} {path}: {reply}"
            );
        }
        let url = format!(
            "{}/user/bob/api/kernels/{kernel_id}/channels?session_id=s{}",
            hub.base.replace("http", "ws"),
            token.map(|t| format!("&token={t}")).unwrap_or_default()
        );
        assert_eq!(
            connect_ws(&url, "s", true).await.err(),
            Some(403),
            "{who}: bob's channels"
        );
    }

    // Bob's kernel, session and files are not reachable through alice's own server either.
    for (method, path, body) in user_routes(&kernel_id, &session_id) {
        if !(path.contains(&kernel_id) || path.contains(&session_id)) {
            continue;
        }
        let (status, reply) = hub
            .call(
                Some(&hub.alice),
                method.clone(),
                &format!("/user/alice{path}"),
                body.as_deref(),
            )
            .await;
        assert_eq!(status, 404, "alice: {method} /user/alice{path}: {reply}");
    }
    let url = format!(
        "{}/user/alice/api/kernels/{kernel_id}/channels?session_id=s&token={}",
        hub.base.replace("http", "ws"),
        hub.alice
    );
    assert_eq!(
        connect_ws(&url, "s", true).await.err(),
        Some(404),
        "bob's kernel through alice's server"
    );
    for escape in [
        "../bob/secret.txt",
        "..%2Fbob%2Fsecret.txt",
        "%2E%2E/bob/secret.txt",
    ] {
        let (status, reply) = hub
            .call(
                Some(&hub.alice),
                Method::GET,
                &format!("/user/alice/api/contents/{escape}"),
                None,
            )
            .await;
        assert!(
            status == 404 || status == 400 || status == 403,
            "{escape}: {status} {reply}"
        );
    }
    // Alice listing her sessions and kernels sees none of bob's, and does not disturb them.
    let (_, sessions) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/sessions",
            None,
        )
        .await;
    assert_eq!(sessions, serde_json::json!([]));
    let (_, kernels) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/kernels",
            None,
        )
        .await;
    assert_eq!(kernels, serde_json::json!([]));

    // And bob still has everything, untouched.
    let (status, body) = hub
        .call(
            Some(&hub.bob),
            Method::GET,
            &format!("/user/bob/api/sessions/{session_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kernel"]["id"], kernel_id.as_str());
    assert_eq!(
        std::fs::read_to_string(hub.workspace("bob").join("secret.txt")).unwrap(),
        "bob's secret"
    );
    let url = format!(
        "{}/user/bob/api/kernels/{kernel_id}/channels?session_id=s&token={}",
        hub.base.replace("http", "ws"),
        hub.bob
    );
    let mut ws = connect_ws(&url, "s", true)
        .await
        .expect("bob reaches his kernel");
    let msg_id = ws.execute("print(6*7)").await;
    let replies = ws.until_idle(&msg_id).await;
    assert!(
        replies.iter().any(|r| r.channel == Channel::Iopub
            && r.msg_type == "stream"
            && r.content["text"] == "42\n"),
        "{replies:?}"
    );
}

pub(crate) fn cookie_value(response: &reqwest::Response, name_prefix: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(name_prefix))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn browsers_log_in_with_a_form_and_are_kept_to_their_own_server() {
    let Some(hub) = spawn_hub().await else { return };
    let http = client();
    // Not logged in: `/` and a user's lab lead to the login page.
    let response = http.get(format!("{}/", hub.base)).send().await.unwrap();
    assert_eq!(response.headers()["location"], "/hub/login");
    let response = http
        .get(format!("{}/user/alice/lab", hub.base))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "/hub/login?next=/user/alice/lab"
    );

    // The login page sets an XSRF cookie the form must echo.
    let page = http
        .get(format!("{}/hub/login", hub.base))
        .send()
        .await
        .unwrap();
    let xsrf_cookie = cookie_value(&page, "_xsrf=").expect("login page sets _xsrf");
    let xsrf = xsrf_cookie.trim_start_matches("_xsrf=").to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!(r#"name="_xsrf" value="{xsrf}""#)),
        "{html}"
    );

    let login = |form: Vec<(&'static str, String)>, cookie: String| {
        let http = http.clone();
        let url = format!("{}/hub/login", hub.base);
        async move {
            http.post(url)
                .header("Cookie", cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    // Without the XSRF value: refused.
    let response = login(
        vec![("username", "alice".into()), ("password", PASSWORD.into())],
        xsrf_cookie.clone(),
    )
    .await;
    assert_eq!(response.status(), 403);
    // A wrong password: refused, with a message, and recorded.
    let response = login(
        vec![
            ("username", "alice".into()),
            ("password", "wrong password".into()),
            ("_xsrf", xsrf.clone()),
        ],
        xsrf_cookie.clone(),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Invalid username or password"));
    // The right one, with a `next` pointing at someone else's server: lands on alice's own lab.
    let response = login(
        vec![
            ("username", "alice".into()),
            ("password", PASSWORD.into()),
            ("_xsrf", xsrf.clone()),
            ("next", "/user/bob/lab".into()),
        ],
        xsrf_cookie.clone(),
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/user/alice/lab");
    let session = cookie_value(&response, "commonlab-session").expect("a session cookie");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookies = format!("{session}; {xsrf_cookie}");

    // With the session cookie: her own API answers; bob's does not.
    let get = |path: String| {
        let http = http.clone();
        let cookies = cookies.clone();
        let url = format!("{}{path}", hub.base);
        async move {
            http.get(url)
                .header("Cookie", cookies)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("/user/alice/api/status".into()).await.status(), 200);
    assert_eq!(get("/user/bob/api/status".into()).await.status(), 403);
    // Her lab knows it is behind a hub, so its File menu offers the hub and logging out.
    let page = get("/user/alice/lab".into()).await;
    assert_eq!(
        page.status(),
        200,
        "JupyterLab is installed with the test environment"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#""hubUser":"alice""#) && html.contains(r#""hubPrefix":"/hub/""#),
        "page config of alice's lab"
    );
    assert_eq!(
        get("/hub/home".into()).await.headers()["location"],
        "/hub/account"
    );
    assert_eq!(
        get("/".into()).await.headers()["location"],
        "/user/alice/lab"
    );
    // Unsafe methods by cookie need the XSRF header.
    let post = |xsrf_header: Option<String>| {
        let http = http.clone();
        let cookies = cookies.clone();
        let url = format!("{}/user/alice/api/contents", hub.base);
        async move {
            let mut request = http
                .post(url)
                .header("Cookie", cookies)
                .body(r#"{"type":"file"}"#);
            if let Some(value) = xsrf_header {
                request = request.header("X-XSRFToken", value);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post(None).await, 403);
    assert_eq!(post(Some(xsrf.clone())).await, 201);

    // Logging out ends the session server-side: the old cookie no longer works.
    let response = http
        .post(format!("{}/hub/logout", hub.base))
        .header("Cookie", cookies.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(get("/user/alice/api/status".into()).await.status(), 403);

    // Repeated failures lock the name for a while, even with the right password.
    for _ in 0..3 {
        let response = login(
            vec![
                ("username", "bob".into()),
                ("password", "nope nope".into()),
                ("_xsrf", xsrf.clone()),
            ],
            xsrf_cookie.clone(),
        )
        .await;
        assert_eq!(response.status(), 403);
    }
    let response = login(
        vec![
            ("username", "bob".into()),
            ("password", PASSWORD.into()),
            ("_xsrf", xsrf.clone()),
        ],
        xsrf_cookie.clone(),
    )
    .await;
    assert_eq!(response.status(), 429);

    // Everything above is in the audit log, and the chain verifies.
    let actions: Vec<String> = hub
        .store
        .audit_list(0, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for action in ["login_failed", "login", "logout"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(hub.store.audit_verify().unwrap().first_bad.is_none());
}

#[tokio::test]
async fn admins_manage_users_and_users_manage_their_tokens() {
    let Some(hub) = spawn_hub().await else { return };
    // Users cannot use the admin API.
    let (status, body) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/users", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "admin_only");
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/users",
            Some(r#"{"name":"mallory","password":"12345678"}"#),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/users/bob", None)
        .await;
    assert_eq!(status, 403);
    // The admin creates, lists, changes and removes a user.
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            "/hub/api/users",
            Some(r#"{"name":"dave","password":"long enough pw","tier":"pro"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tier"], "pro");
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            "/hub/api/users",
            Some(r#"{"name":"Dave!","password":"long enough pw"}"#),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_name")),
        "{body}"
    );
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            "/hub/api/users",
            Some(r#"{"name":"dave","password":"long enough pw"}"#),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("user_exists")),
        "{body}"
    );
    let (_, users) = hub
        .call(Some(&hub.carol), Method::GET, "/hub/api/users", None)
        .await;
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave"]);
    let (status, body) = hub
        .call(Some(&hub.carol), Method::PATCH, "/hub/api/users/dave", Some(r#"{"tier":"free","restricted_until":"2099-01-01T00:00:00+00:00","restricted_reason":"mining"}"#))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tier"], "free");
    assert_eq!(body["restricted_reason"], "mining");
    let (_, body) = hub
        .call(
            Some(&hub.carol),
            Method::PATCH,
            "/hub/api/users/dave",
            Some(r#"{"lift_restriction":true}"#),
        )
        .await;
    assert_eq!(body["restricted_until"], serde_json::Value::Null);
    let (status, _) = hub
        .call(
            Some(&hub.carol),
            Method::DELETE,
            "/hub/api/users/dave",
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = hub
        .call(Some(&hub.carol), Method::GET, "/hub/api/users/dave", None)
        .await;
    assert_eq!(status, 404);

    // A user makes a token, uses it, lists it and revokes it.
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/tokens",
            Some(r#"{"label":"laptop"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, me) = hub
        .call(Some(&token), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!((status, me["name"].as_str()), (200, Some("alice")));
    let (_, tokens) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/tokens", None)
        .await;
    let laptop = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "laptop")
        .unwrap();
    let id = laptop["id"].as_i64().unwrap();
    // Bob cannot revoke alice's token.
    let (status, _) = hub
        .call(
            Some(&hub.bob),
            Method::DELETE,
            &format!("/hub/api/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::DELETE,
            &format!("/hub/api/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = hub
        .call(Some(&token), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!(status, 403);

    // The admin changes are in the audit log with the admin as actor.
    let records = hub.store.audit_list(0, 100).unwrap();
    let by_carol: Vec<&str> = records
        .iter()
        .filter(|r| r.actor.as_deref() == Some("carol"))
        .map(|r| r.action.as_str())
        .collect();
    for action in ["user_add", "user_set_tier", "restriction", "user_remove"] {
        assert!(
            by_carol.contains(&action),
            "{action} missing from {by_carol:?}"
        );
    }
}

#[tokio::test]
async fn a_tier_change_applies_once_no_kernel_of_the_old_tier_runs() {
    let Some(hub) = spawn_hub().await else {
        return;
    };
    let builds_of = |user: &str| -> Vec<String> {
        hub.builds
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| name == user)
            .map(|(_, tier)| tier.clone())
            .collect()
    };
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/status",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(builds_of("alice"), ["free"]);
    // With a kernel running, the server (and the kernel's limits) stay as they are.
    let (status, kernel) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/user/alice/api/kernels",
            Some("{}"),
        )
        .await;
    assert_eq!(status, 201, "{kernel}");
    let (status, _) = hub
        .call(
            Some(&hub.carol),
            Method::PATCH,
            "/hub/api/users/alice",
            Some(r#"{"tier":"pro"}"#),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/kernels",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        builds_of("alice"),
        ["free"],
        "not rebuilt under a running kernel"
    );
    // Once it has stopped, the next request gets a server built for the new tier.
    let id = kernel["id"].as_str().unwrap();
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::DELETE,
            &format!("/user/alice/api/kernels/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/status",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(builds_of("alice"), ["free", "pro"]);
}

#[tokio::test]
async fn the_admin_overview_shows_accounts_kernels_and_the_audit_log_to_admins_only() {
    let Some(hub) = spawn_hub().await else {
        return;
    };
    let (status, kernel) = hub
        .call(
            Some(&hub.bob),
            Method::POST,
            "/user/bob/api/kernels",
            Some("{}"),
        )
        .await;
    assert_eq!(status, 201, "{kernel}");
    let (status, _) = hub
        .call(
            Some(&hub.carol),
            Method::PATCH,
            "/hub/api/users/alice",
            Some(r#"{"restricted_until":"2099-01-01T00:00:00+00:00","restricted_reason":"<mining>"}"#),
        )
        .await;
    assert_eq!(status, 200);
    let page = |token: Option<String>| {
        let mut request = client().get(format!("{}/hub/admin", hub.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("token {token}"));
        }
        async move { request.send().await.unwrap() }
    };
    let response = page(Some(hub.carol.clone())).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    for name in ["alice", "bob", "carol"] {
        assert!(
            html.contains(&format!(r#"<tr id="user-{name}">"#)),
            "{name} listed"
        );
    }
    let bob_row = html.split(r#"<tr id="user-bob">"#).nth(1).unwrap();
    let bob_row = &bob_row[..bob_row.find("</tr>").unwrap()];
    assert!(
        bob_row.contains(r#"<td class="number">1</td>"#),
        "bob's running kernel: {bob_row}"
    );
    assert!(
        html.contains("&lt;mining&gt;"),
        "restriction reasons are escaped"
    );
    assert!(
        html.contains("The audit chain verifies"),
        "chain status shown"
    );
    assert!(
        html.contains("user_add") || html.contains("restriction"),
        "audit records shown"
    );
    // Users are refused; browsers without a login go to the login page.
    assert_eq!(page(Some(hub.alice.clone())).await.status(), 403);
    let response = page(None).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/hub/login?next=/hub/admin");
}

/// Logs `name` in through the login form; returns the `Cookie` header value (the session and
/// XSRF cookies) and the XSRF value the page forms echo.
pub(crate) async fn log_in(hub: &TestHub, name: &str) -> (String, String) {
    let http = client();
    let page = http
        .get(format!("{}/hub/login", hub.base))
        .send()
        .await
        .unwrap();
    let xsrf_cookie = cookie_value(&page, "_xsrf=").unwrap();
    let xsrf = xsrf_cookie.trim_start_matches("_xsrf=").to_owned();
    let response = http
        .post(format!("{}/hub/login", hub.base))
        .header("Cookie", &xsrf_cookie)
        .form(&[
            ("username", name),
            ("password", PASSWORD),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{name} logs in");
    let session = cookie_value(&response, "commonlab-session").unwrap();
    (format!("{session}; {xsrf_cookie}"), xsrf)
}

/// GETs a hub page as a browser would; (status, `Location`, body).
pub(crate) async fn get_page(
    hub: &TestHub,
    path: &str,
    cookies: Option<&str>,
) -> (u16, String, String) {
    let mut request = client()
        .get(format!("{}{path}", hub.base))
        .header("Accept", "text/html");
    if let Some(cookies) = cookies {
        request = request.header("Cookie", cookies);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

/// POSTs a page form; (status, `Location`, body).
pub(crate) async fn post_form(
    hub: &TestHub,
    path: &str,
    cookies: &str,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    let response = client()
        .post(format!("{}{path}", hub.base))
        .header("Cookie", cookies)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

/// A flood of login posts (distinct unknown names, so no name is ever locked; a valid
/// double-submit XSRF pair, which anyone can make) cannot run more password checks at once than
/// the server allows: the rest are answered at once with `login_busy`, every post is answered,
/// and a real login works again afterwards. A login form too large for a login is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_logins_is_refused_beyond_the_password_checks_at_once() {
    let Some(hub) = spawn_hub_with(HubConfig {
        password_checks_max: 2,
        ..HubConfig::default()
    })
    .await
    else {
        return;
    };
    let xsrf = "attacker-chosen-xsrf";
    let xsrf_cookie = format!("_xsrf={xsrf}");
    let posts: Vec<_> = (0..64)
        .map(|i| {
            let url = format!("{}/hub/login", hub.base);
            let cookie = xsrf_cookie.clone();
            tokio::spawn(async move {
                let response = client()
                    .post(url)
                    .header("Cookie", cookie)
                    .form(&[
                        ("username", format!("nobody{i}")),
                        ("password", "not the password".to_owned()),
                        ("_xsrf", xsrf.to_owned()),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        })
        .collect();
    let (mut busy, mut checked) = (0, 0);
    for post in posts {
        let (status, body) = post.await.unwrap();
        match status {
            503 => {
                assert!(body.contains(r#"data-code="login_busy""#), "{body}");
                assert!(body.contains("Try again in a moment"), "{body}");
                busy += 1;
            }
            403 => {
                assert!(body.contains("Invalid username or password"), "{body}");
                checked += 1;
            }
            other => panic!("unexpected answer {other} to a flooded login: {body}"),
        }
    }
    assert!(busy > 0, "no login was refused as busy ({checked} checked)");
    assert!(checked > 0, "every login was refused as busy");

    // The checks that ran gave their places back: a real login works.
    log_in(&hub, "alice").await;

    // A login form past the login's body limit is refused before it is read whole.
    let response = client()
        .post(format!("{}/hub/login", hub.base))
        .header("Cookie", &xsrf_cookie)
        .form(&[
            ("username", "alice".to_owned()),
            ("password", "x".repeat(20 * 1024)),
            ("_xsrf", xsrf.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

//! Revocation takes effect at once, and limits hold: a revoked token, a logout, a restriction
//! or a removal closes the kernel WebSockets opened with it (1008) and refuses what follows;
//! a restricted or removed account's kernels stop and do not come back; a tier's kernel cap
//! holds for every kernel, however many starts race, and the account page shows that cap.

use std::collections::BTreeMap;
use std::time::Duration;

use commonlab_manager::TierQuota;
use futures_util::StreamExt;
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{client, get_page, log_in, spawn_hub, TestHub};
use crate::harness::{connect_ws, connect_ws_with_cookie, stdout, WsClient};

/// How long a revoked connection may take to close. Shorter than the sockets' periodic
/// credential check, so only the revocation signal itself can close them in time.
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// The kernel WebSocket URL of `user`'s kernel, with `token` in the query when given.
fn channels_url(hub: &TestHub, user: &str, kernel: &str, token: Option<&str>) -> String {
    format!(
        "{}/user/{user}/api/kernels/{kernel}/channels?session_id=s-{user}{}",
        hub.base.replace("http", "ws"),
        token.map(|t| format!("&token={t}")).unwrap_or_default()
    )
}

/// Reads until the server closes the connection: its close code and reason.
async fn closed(ws: &mut WsClient) -> (u16, String) {
    loop {
        match tokio::time::timeout(CLOSE_PATIENCE, ws.ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(Message::Close(None)))) => return (1005, String::new()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("the connection failed instead of closing: {e}"),
            Ok(None) => panic!("the connection ended without a close frame"),
            Err(_) => panic!("the connection is still open {CLOSE_PATIENCE:?} later"),
        }
    }
}

/// Runs `code` and returns what it printed.
async fn run(ws: &mut WsClient, code: &str) -> String {
    let msg_id = ws.execute(code).await;
    stdout(&ws.until_idle(&msg_id).await)
}

async fn start_kernel(hub: &TestHub, user: &str, token: &str) -> String {
    let (status, kernel) = hub
        .call(
            Some(token),
            Method::POST,
            &format!("/user/{user}/api/kernels"),
            Some("{}"),
        )
        .await;
    assert_eq!(status, 201, "{kernel}");
    kernel["id"].as_str().unwrap().to_owned()
}

/// The host pid of `user`'s kernel, from the store.
fn kernel_pid(hub: &TestHub, user: &str, kernel: &str) -> i32 {
    let record = hub
        .store
        .for_owner(user)
        .kernels()
        .unwrap()
        .into_iter()
        .find(|k| k.id == kernel)
        .expect("the kernel is in the store");
    let runtime: serde_json::Value = serde_json::from_str(&record.runtime).unwrap();
    runtime["pid"].as_i64().unwrap() as i32
}

/// Whether a process runs (a zombie has ended).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|status| !status.contains("State:\tZ"))
}

#[tokio::test]
async fn a_revoked_token_closes_its_kernel_connections_at_once() {
    let Some(hub) = spawn_hub().await else { return };
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/tokens",
            Some(r#"{"label":"laptop"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let laptop = body["token"].as_str().unwrap().to_owned();
    let (_, tokens) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/tokens", None)
        .await;
    let laptop_id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "laptop")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let kernel = start_kernel(&hub, "alice", &laptop).await;
    let mut by_laptop = connect_ws(
        &channels_url(&hub, "alice", &kernel, Some(&laptop)),
        "s-laptop",
        true,
    )
    .await
    .expect("the laptop's token opens the kernel");
    let mut by_other = connect_ws(
        &channels_url(&hub, "alice", &kernel, Some(&hub.alice)),
        "s-other",
        true,
    )
    .await
    .expect("alice's other token opens the kernel");
    assert_eq!(run(&mut by_laptop, "x = 6 * 7\nprint(x)").await, "42\n");

    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::DELETE,
            &format!("/hub/api/tokens/{laptop_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (code, reason) = closed(&mut by_laptop).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("API token"), "{reason}");

    // The other token's connection is untouched, and so is the kernel.
    assert_eq!(run(&mut by_other, "print(x + 1)").await, "43\n");
    // Everything later with the revoked token is refused.
    let (status, body) = hub
        .call(Some(&laptop), Method::GET, "/user/alice/api/status", None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        connect_ws(
            &channels_url(&hub, "alice", &kernel, Some(&laptop)),
            "s-laptop",
            true
        )
        .await
        .err(),
        Some(403)
    );
}

#[tokio::test]
async fn logging_out_closes_the_sessions_kernel_connections_at_once() {
    let Some(hub) = spawn_hub().await else { return };
    let (cookies, _) = log_in(&hub, "alice").await;
    let kernel = start_kernel(&hub, "alice", &hub.alice).await;
    let mut browser = connect_ws_with_cookie(
        &channels_url(&hub, "alice", &kernel, None),
        "s-browser",
        true,
        Some(&cookies),
    )
    .await
    .expect("the login cookie opens the kernel");
    assert_eq!(run(&mut browser, "print('in')").await, "in\n");

    let response = client()
        .post(format!("{}/hub/logout", hub.base))
        .header("Cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (code, reason) = closed(&mut browser).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("login session"), "{reason}");

    let response = client()
        .get(format!("{}/user/alice/api/status", hub.base))
        .header("Cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        connect_ws_with_cookie(
            &channels_url(&hub, "alice", &kernel, None),
            "s-browser",
            true,
            Some(&cookies)
        )
        .await
        .err(),
        Some(403)
    );
}

#[tokio::test]
async fn a_restricted_account_runs_nothing_and_its_kernels_do_not_come_back() {
    let Some(hub) = spawn_hub().await else { return };
    // Restricted by an administrator: the kernel stops and its connections close at once.
    let kernel = start_kernel(&hub, "alice", &hub.alice).await;
    let pid = kernel_pid(&hub, "alice", &kernel);
    let mut ws = connect_ws(
        &channels_url(&hub, "alice", &kernel, Some(&hub.alice)),
        "s",
        true,
    )
    .await
    .unwrap();
    assert_eq!(run(&mut ws, "print('before')").await, "before\n");
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::PATCH,
            "/hub/api/users/alice",
            Some(
                r#"{"restricted_until":"2099-01-01T00:00:00+00:00","restricted_reason":"mining"}"#,
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "account_restricted"));
    assert!(!running(pid), "alice's kernel process {pid} still runs");
    let (_, kernels) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/user/alice/api/kernels",
            None,
        )
        .await;
    assert_eq!(kernels, serde_json::json!([]));
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/user/alice/api/kernels",
            Some("{}"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("account_restricted")),
        "{body}"
    );

    // Restricted behind the server's back (another process, or during a start): the kernel
    // runs no cell, does not restart, and the supervisor stops it.
    let kernel = start_kernel(&hub, "bob", &hub.bob).await;
    let pid = kernel_pid(&hub, "bob", &kernel);
    let mut ws = connect_ws(
        &channels_url(&hub, "bob", &kernel, Some(&hub.bob)),
        "s",
        true,
    )
    .await
    .unwrap();
    assert_eq!(run(&mut ws, "print('before')").await, "before\n");
    hub.store
        .user_restrict(
            "bob",
            Some("2099-01-01T00:00:00+00:00"),
            Some("restricted elsewhere"),
        )
        .unwrap();
    let msg_id = ws.execute("print('ran')").await;
    let replies = ws.until_idle(&msg_id).await;
    assert_eq!(stdout(&replies), "", "the cell must not run: {replies:?}");
    let reply = replies
        .iter()
        .find(|r| r.msg_type == "execute_reply")
        .expect("a reply");
    assert_eq!(reply.content["status"], "error", "{replies:?}");
    assert!(
        reply.content["evalue"]
            .as_str()
            .is_some_and(|e| e.contains("restricted")),
        "{replies:?}"
    );
    let (status, body) = hub
        .call(
            Some(&hub.bob),
            Method::POST,
            &format!("/user/bob/api/kernels/{kernel}/restart"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("account_restricted")),
        "{body}"
    );
    for state in hub.hub.running() {
        state.kernels.supervise().await;
    }
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "account_restricted"));
    assert!(!running(pid), "bob's kernel process {pid} still runs");
    assert!(hub.store.for_owner("bob").kernels().unwrap().is_empty());
}

#[tokio::test]
async fn removing_a_user_closes_their_connections_and_stops_their_kernels() {
    let Some(hub) = spawn_hub().await else { return };
    let kernel = start_kernel(&hub, "bob", &hub.bob).await;
    let pid = kernel_pid(&hub, "bob", &kernel);
    let mut ws = connect_ws(
        &channels_url(&hub, "bob", &kernel, Some(&hub.bob)),
        "s",
        true,
    )
    .await
    .unwrap();
    assert_eq!(run(&mut ws, "print('before')").await, "before\n");
    let (status, _) = hub
        .call(Some(&hub.carol), Method::DELETE, "/hub/api/users/bob", None)
        .await;
    assert_eq!(status, 204);
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(!running(pid), "bob's kernel process {pid} still runs");
    assert!(hub.store.for_owner("bob").kernels().unwrap().is_empty());
    let (status, _) = hub
        .call(Some(&hub.bob), Method::GET, "/user/bob/api/status", None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_tiers_kernel_cap_holds_for_every_kernel_and_the_account_page_shows_it() {
    let Some(hub) = spawn_hub().await else { return };
    hub.hub.set_tier_quotas(BTreeMap::from([(
        "free".to_owned(),
        TierQuota {
            gpu_hours_per_week: 40.0,
            kernels_max: 4,
        },
    )]));
    // Seven CPU kernels asked for at once: at most four start, the rest are refused. (A start
    // whose kernel fails to come up gives its place back; it is neither.)
    let starts = (0..7).map(|_| {
        hub.call(
            Some(&hub.alice),
            Method::POST,
            "/user/alice/api/kernels",
            Some("{}"),
        )
    });
    let answers = futures_util::future::join_all(starts).await;
    let mut started: Vec<String> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, kernel)| kernel["id"].as_str().unwrap().to_owned())
        .collect();
    let refused = answers
        .iter()
        .filter(|(_, body)| body["code"] == "kernels_max_reached")
        .count();
    assert!(started.len() <= 4, "{answers:?}");
    assert!(refused >= 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 201) {
        if body["code"] == "kernels_max_reached" {
            assert_eq!(*status, 403, "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("allows 4 at once"),
                "{body}"
            );
        } else {
            assert_eq!(
                *status, 500,
                "a start either runs, is refused or fails: {body}"
            );
        }
    }
    while started.len() < 4 {
        started.push(start_kernel(&hub, "alice", &hub.alice).await);
    }
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/user/alice/api/kernels",
            Some("{}"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("kernels_max_reached")),
        "the fifth kernel: {body}"
    );
    // A session's kernel counts the same.
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/user/alice/api/sessions",
            Some(r#"{"path":"n.ipynb","type":"notebook","name":"","kernel":{"name":"python3"}}"#),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("kernels_max_reached")),
        "{body}"
    );

    // What the account shows is what holds.
    let (_, usage) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(
        usage["kernels"],
        serde_json::json!({"running": 4, "limit": 4, "left": 0})
    );
    let (cookies, _) = log_in(&hub, "alice").await;
    let (status, _, html) = get_page(&hub, "/hub/account", Some(&cookies)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("4 of 4 kernels running, 0 more can start."),
        "{html}"
    );

    // One shut down makes room for one more; bob's cap is his own.
    let (status, _) = hub
        .call(
            Some(&hub.alice),
            Method::DELETE,
            &format!("/user/alice/api/kernels/{}", started[0]),
            None,
        )
        .await;
    assert_eq!(status, 204);
    start_kernel(&hub, "alice", &hub.alice).await;
    start_kernel(&hub, "bob", &hub.bob).await;

    // A tier no section configures (named on the command line) gets free's cap, and no GPU
    // hours, since its GPU kernels are refused.
    hub.store.user_set_tier("bob", "unheard-of").unwrap();
    let (_, usage) = hub
        .call(Some(&hub.bob), Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(usage["kernels"]["limit"], 4, "{usage}");
    assert_eq!(usage["gpu_hours"]["limit"], 0.0, "{usage}");
}

//! The usage policy acting on what really runs: a miner started in the background from an
//! innocent-looking cell (its arguments read from a file, so the cell check sees nothing) is
//! found by the supervisor in the sandbox's processes and acted on per its tier — killed for a
//! `pro` user, the kernel stopped and the account restricted for a `free` user — with the
//! evidence recorded and shown, the restriction enforced, and lifted by an administrator.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use support::*;

/// Mining rules act harder on the free tier; the supervisor looks every second.
const CONFIG: &str = r#"
[kernel]
supervise_interval_s = 1

[policy.packs.mining]
action = { free = "restrict", pro = "block" }
"#;

/// Starts a process whose command line is a miner's, from arguments in a workspace file.
const START_MINER: &str = r#"
import subprocess, sys
args = open('job-args.txt').read().split()
p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'] + args)
print('started', p.pid)
"#;

const MINER_ARGS: &str = "-o stratum+tcp://pool.supportxmr.com:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A --donate-level 1";

async fn start_kernel(api: &Api, user: &str) -> (u16, serde_json::Value) {
    api.call(
        reqwest::Method::POST,
        &format!("/user/{user}/api/kernels"),
        Some(json!({})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_running_in_a_kernel_is_acted_on_per_tier() {
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(
        &python,
        CONFIG,
        &[
            ("alice", &[]),
            ("bob", &["--tier", "pro"]),
            ("carol", &["--admin"]),
        ],
    );
    let alice = server.api("alice");
    let bob = server.api("bob");
    let carol = server.api("carol");
    wait_ready(&alice).await;

    for (api, user) in [(&alice, "alice"), (&bob, "bob")] {
        let (status, body) = api
            .call(
                reqwest::Method::PUT,
                &format!("/user/{user}/api/contents/job-args.txt"),
                Some(json!({"type": "file", "format": "text", "content": MINER_ARGS})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // Bob (pro): the process is killed, the kernel lives on, and the cell that started it
    // shows why.
    let (status, body) = start_kernel(&bob, "bob").await;
    assert_eq!(status, 201, "{body}");
    let bob_kernel = body["id"].as_str().unwrap().to_owned();
    let mut bob_ws = KernelClient::open(server.port, "bob", &bob.token, &bob_kernel).await;
    let outcome = bob_ws.run(START_MINER, Duration::from_secs(60)).await;
    assert!(
        outcome.stdout.starts_with("started"),
        "the cell itself is innocent and runs: {outcome:?}"
    );
    let pid: i32 = outcome
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let notice = bob_ws.notices(Duration::from_secs(20), "mining").await;
    assert!(
        notice.contains("mining") && notice.contains("stratum"),
        "the notice names the category and the evidence: {notice}"
    );
    let outcome = bob_ws
        .run(
            &format!(
                "import os, time\ntime.sleep(1)\nprint(os.waitpid({pid}, os.WNOHANG) != (0, 0))"
            ),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(
        outcome.stdout.trim(),
        "True",
        "the miner was killed: {outcome:?}"
    );
    let outcome = bob_ws.run("print(6 * 7)", Duration::from_secs(30)).await;
    assert_eq!(outcome.stdout.trim(), "42", "bob's kernel lives on");

    // Alice (free): the kernel is stopped and her account restricted.
    let (status, body) = start_kernel(&alice, "alice").await;
    assert_eq!(status, 201, "{body}");
    let alice_kernel = body["id"].as_str().unwrap().to_owned();
    let mut alice_ws = KernelClient::open(server.port, "alice", &alice.token, &alice_kernel).await;
    let outcome = alice_ws.run(START_MINER, Duration::from_secs(60)).await;
    assert!(outcome.stdout.starts_with("started"), "{outcome:?}");
    let notice = alice_ws
        .notices(Duration::from_secs(20), "restricted")
        .await;
    assert!(
        notice.contains("mining") && notice.contains("restricted"),
        "alice is told what was found and what happens: {notice}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = alice
            .call(
                reqwest::Method::GET,
                &format!("/user/alice/api/kernels/{alice_kernel}"),
                None,
            )
            .await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "alice's kernel was not stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = start_kernel(&alice, "alice").await;
    assert_eq!(status, 403, "a restricted account starts no kernel: {body}");
    assert_eq!(body["code"], "account_restricted");
    assert!(
        body["message"].as_str().unwrap().contains("mining"),
        "{body}"
    );

    // The admin sees the restriction and lifts it; alice can work again.
    let (status, body) = carol
        .call(reqwest::Method::GET, "/hub/api/users/alice", None)
        .await;
    assert_eq!(status, 200);
    assert!(body["restricted_until"].is_string(), "{body}");
    let (status, _) = carol
        .call(
            reqwest::Method::PATCH,
            "/hub/api/users/alice",
            Some(json!({"lift_restriction": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = start_kernel(&alice, "alice").await;
    assert_eq!(status, 201, "{body}");

    // Everything is on the record: findings with evidence, actions, the restriction.
    let log = commonlab(
        &server.data_dir(),
        &server.config,
        &["audit", "list", "--json", "--limit", "1000"],
        "",
    );
    for action in [
        "finding",
        "action",
        "restriction",
        "kernel_start",
        "kernel_stop",
    ] {
        assert!(
            log.contains(&format!("\"action\":\"{action}\""))
                || log.contains(&format!("\"action\": \"{action}\"")),
            "{action} missing from the audit log:\n{log}"
        );
    }
    let verify = commonlab(&server.data_dir(), &server.config, &["audit", "verify"], "");
    assert!(verify.contains("OK") || verify.contains("ok"), "{verify}");
}

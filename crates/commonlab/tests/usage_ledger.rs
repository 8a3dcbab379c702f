//! The usage ledger filled by the real server: a CPU-busy cell in a sandboxed kernel shows up,
//! through the supervisor's ticks, as CPU-seconds, kernel-seconds and memory in the user's row
//! for today, in `/hub/api/usage` and on the account page.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

/// The supervisor looks (and meters) every second.
const CONFIG: &str = r#"
[kernel]
supervise_interval_s = 1
"#;

/// Keeps the CPU busy for three seconds of wall time.
const BUSY_CELL: &str = r#"
import time
end = time.time() + 3
n = 0
while time.time() < end:
    n += 1
print('busy', n > 0)
"#;

/// Alice's ledger row for today, once `accept` holds for it (or `None` at the deadline).
async fn today_row(api: &Api, accept: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = api.call(reqwest::Method::GET, "/hub/api/usage", None).await;
        assert_eq!(status, 200, "{body}");
        let today = body["today"].as_str().unwrap().to_owned();
        let row = body["days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["day"] == today.as_str())
            .cloned();
        if let Some(row) = row.filter(|row| accept(row)) {
            return Some(row);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_cell_reaches_the_users_usage_ledger() {
    let Some(python) = prerequisites() else {
        return;
    };
    let server = start_server(&python, CONFIG, &[("alice", &[])]);
    let alice = server.api("alice");
    wait_ready(&alice).await;
    // The tier's GPU quota, from `[gpu.tiers]`, is shown with what is left of it.
    let (status, body) = alice
        .call(reqwest::Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["gpu_hours"]["limit"].as_f64() > Some(0.0)
            && body["gpu_hours"]["left"] == body["gpu_hours"]["limit"],
        "{body}"
    );

    let (status, body) = alice
        .call(
            reqwest::Method::POST,
            "/user/alice/api/kernels",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let kernel = body["id"].as_str().unwrap().to_owned();

    // The kernel is metered while it idles: it runs, holds memory, and started with some CPU.
    let before = today_row(&alice, |row| {
        row["kernel_seconds"].as_f64() > Some(0.0) && row["memory_bytes_peak"].as_u64() > Some(0)
    })
    .await
    .expect("the idle kernel's row appears");
    let cpu_before = before["cpu_seconds"].as_f64().unwrap();

    let mut ws = KernelClient::open(server.port, "alice", &alice.token, &kernel).await;
    let outcome = ws.run(BUSY_CELL, Duration::from_secs(60)).await;
    assert_eq!(outcome.stdout.trim(), "busy True", "{outcome:?}");

    // Three seconds of a busy loop under a half-core quota: well over half a CPU-second more.
    let after = today_row(&alice, |row| {
        row["cpu_seconds"].as_f64().unwrap() > cpu_before + 0.5
    })
    .await;
    let after = after.unwrap_or_else(|| {
        panic!(
            "the busy cell's CPU time never reached the ledger (before: {before}); server log:\n{}",
            std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default()
        )
    });
    assert!(
        after["kernel_seconds"].as_f64() > before["kernel_seconds"].as_f64(),
        "{before} {after}"
    );
    assert_eq!(after["gpu_seconds_held"], 0.0, "no GPU was held");

    // The account page shows the same day.
    let html = alice
        .http
        .get(format!("{}/hub/account", alice.base))
        .header("Authorization", format!("token {}", alice.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let day = after["day"].as_str().unwrap();
    assert!(html.contains(&format!(r#"<tr id="day-{day}">"#)), "{html}");
}

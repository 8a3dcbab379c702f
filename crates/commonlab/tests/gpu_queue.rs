//! GPU queueing and idle reclaim end to end, with real kernels in real sandboxes and a fake
//! inventory of one GPU (its device node a real character device made for the test).
//!
//! Alice's GPU kernel is placed and sees only its GPU; Bob's GPU kernel waits in the queue and
//! his cell shows where he stands; Alice's kernel is never reclaimed while it runs a cell, but
//! once it sits idle past the threshold with Bob waiting she is warned in her notebook, her GPU
//! is reclaimed, and Bob's held cell runs on it without him running it again.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::*;

/// Prints what a kernel sees of GPUs: the visible-devices variables and the device node.
const SHOW_GPUS: &str = r#"
import os, stat
p = '/dev/nvidia0'
print('CUDA=%s NVIDIA=%s' % (os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('NVIDIA_VISIBLE_DEVICES')))
print('node=%s' % (os.path.exists(p) and stat.S_ISCHR(os.stat(p).st_mode)))
"#;

/// Generous: a cell may wait behind a sandbox start on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// The fake inventory: one GPU whose device node is `node`; a short idle threshold.
fn config(node: &Path) -> String {
    format!(
        r#"
[kernel]
supervise_interval_s = 1

[gpu]
source = "config"

[[gpu.devices]]
id = 0
name = "Fake GPU (test inventory)"
memory_bytes = 17179869184
device_node = "{}"

[gpu.allocator]
reclaim_warning_s = 3

[gpu.tiers.free]
idle_reclaim_after_s = 8

[gpu.tiers.pro]
idle_reclaim_after_s = 8
"#,
        node.display()
    )
}

/// A real character device standing in for `/dev/nvidia0` (major 195 is NVIDIA's; nothing
/// drives it here), in a directory kernels' uids can reach.
fn fake_device_node() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("fake-gpu-nodes")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = dir.path().join("nvidia0");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(195, 0),
    )
    .unwrap();
    (dir, node)
}

async fn start_kernel(api: &Api, user: &str, name: &str) -> Value {
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            &format!("/user/{user}/api/kernels"),
            Some(json!({ "name": name })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Everything a cell said, read until its `execute_reply` (and `idle`).
#[derive(Debug, Default)]
struct Cell {
    /// `stream` text.
    stdout: String,
    /// `display_data` and `update_display_data` text, in order.
    displays: Vec<String>,
    error: Option<String>,
    /// Server notices parented elsewhere (stderr of earlier cells, deaths).
    others: String,
}

async fn finish(client: &mut KernelClient, msg_id: &str, timeout: Duration) -> Cell {
    let mut cell = Cell::default();
    let (mut idle, mut replied) = (false, false);
    let deadline = Instant::now() + timeout;
    while !(idle && replied) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Some(message) = client.recv(remaining).await else {
            panic!("cell {msg_id} did not finish; so far {cell:?}");
        };
        let msg_type = message["header"]["msg_type"].as_str().unwrap_or_default();
        let content = &message["content"];
        if message["parent_header"]["msg_id"] != msg_id {
            cell.others
                .push_str(content["text"].as_str().unwrap_or_default());
            cell.others
                .push_str(content["data"]["text/plain"].as_str().unwrap_or_default());
            continue;
        }
        match msg_type {
            "stream" => cell
                .stdout
                .push_str(content["text"].as_str().unwrap_or_default()),
            "display_data" | "update_display_data" => cell.displays.push(
                content["data"]["text/plain"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "error" => cell.error = Some(format!("{}: {}", content["ename"], content["evalue"])),
            "status" => idle |= content["execution_state"] == "idle",
            "execute_reply" => replied = true,
            _ => {}
        }
    }
    cell
}

/// Reads until a message parented to `msg_id` of type `msg_type` arrives; returns it.
async fn expect(client: &mut KernelClient, msg_id: &str, msg_type: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Some(message) = client.recv(remaining).await else {
            panic!("no {msg_type} for {msg_id}");
        };
        if message["parent_header"]["msg_id"] == msg_id && message["header"]["msg_type"] == msg_type
        {
            return message;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_gpu_cell_runs_when_an_idle_gpu_is_reclaimed_and_busy_kernels_keep_theirs() {
    let Some(python) = prerequisites() else {
        return;
    };
    let (_nodes, node) = fake_device_node();
    let server = start_server(
        &python,
        &config(&node),
        &[("alice", &[]), ("bob", &[]), ("carol", &["--admin"])],
    );
    let alice = server.api("alice");
    let bob = server.api("bob");
    wait_ready(&alice).await;

    // With GPUs present, a one-GPU Python kernelspec is offered next to python3.
    let (status, specs) = alice
        .call(reqwest::Method::GET, "/user/alice/api/kernelspecs", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        specs["kernelspecs"]["python3-gpu"]["spec"]["display_name"], "Python 3 (1 GPU)",
        "{specs}"
    );

    // Alice's GPU kernel is placed at once and sees its GPU only.
    let alice_gpu = start_kernel(&alice, "alice", "python3-gpu").await;
    let alice_gpu = alice_gpu["id"].as_str().unwrap().to_owned();
    let mut alice_ws = KernelClient::open(server.port, "alice", &alice.token, &alice_gpu).await;
    let msg_id = alice_ws.execute(SHOW_GPUS).await;
    let cell = finish(&mut alice_ws, &msg_id, DEADLINE).await;
    assert!(
        cell.stdout.contains("CUDA=0 NVIDIA=0") && cell.stdout.contains("node=True"),
        "a granted kernel sees its GPU and its device node: {cell:?}"
    );

    // A CPU kernel sees no GPU at all.
    let alice_cpu = start_kernel(&alice, "alice", "python3").await;
    let alice_cpu = alice_cpu["id"].as_str().unwrap().to_owned();
    let mut cpu_ws = KernelClient::open(server.port, "alice", &alice.token, &alice_cpu).await;
    let outcome = cpu_ws.run(SHOW_GPUS, DEADLINE).await;
    assert!(
        outcome.stdout.contains("CUDA= NVIDIA=void") && outcome.stdout.contains("node=False"),
        "a kernel without a grant sees no GPU: {outcome:?}"
    );
    drop(cpu_ws);
    let (status, _) = alice
        .call(
            reqwest::Method::DELETE,
            &format!("/user/alice/api/kernels/{alice_cpu}"),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Alice keeps her kernel busy for longer than the idle threshold and its warning.
    let busy_id = alice_ws
        .execute("import time\nfor i in range(20):\n    time.sleep(1)\nprint('busy done')")
        .await;

    // Bob asks for a GPU: none is free, so his kernel is created waiting.
    let bob_kernel = start_kernel(&bob, "bob", "python3-gpu").await;
    assert_eq!(bob_kernel["execution_state"], "starting", "{bob_kernel}");
    let bob_kernel = bob_kernel["id"].as_str().unwrap().to_owned();
    let mut bob_ws = KernelClient::open(server.port, "bob", &bob.token, &bob_kernel).await;
    // The server answers kernel_info itself, so clients consider the kernel connected.
    let info_id = bob_ws.send("shell", "kernel_info_request", json!({})).await;
    let info = expect(&mut bob_ws, &info_id, "kernel_info_reply").await;
    assert_eq!(info["content"]["status"], "ok", "{info}");
    assert_eq!(info["content"]["language_info"]["name"], "python", "{info}");
    // His cell is held, and shows where he stands.
    let bob_cell = bob_ws
        .execute(&format!("{SHOW_GPUS}\nprint('bob ran')"))
        .await;
    let shown = expect(&mut bob_ws, &bob_cell, "display_data").await;
    let text = shown["content"]["data"]["text/plain"].as_str().unwrap();
    assert!(
        text.contains("position 1") && text.contains("estimated start"),
        "the queue position and an estimate, inside the notebook: {text}"
    );
    assert!(
        shown["content"]["transient"]["display_id"].is_string(),
        "{shown}"
    );

    // A busy kernel is never reclaimed, even with someone waiting.
    let busy = finish(&mut alice_ws, &busy_id, DEADLINE).await;
    assert!(busy.stdout.contains("busy done"), "{busy:?}");
    // While she still holds it, her account already counts the GPU time (written each tick,
    // not only when the GPU is given back).
    let (status, usage) = alice
        .call(reqwest::Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(status, 200, "{usage}");
    assert!(
        usage["gpu_hours"]["used"].as_f64() > Some(15.0 / 3600.0),
        "GPU time held so far is on alice's account: {usage}"
    );
    assert!(
        !busy.others.contains("reclaimed"),
        "nothing was reclaimed while the kernel ran: {busy:?}"
    );
    let (status, model) = bob
        .call(
            reqwest::Method::GET,
            &format!("/user/bob/api/kernels/{bob_kernel}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        model["execution_state"], "starting",
        "bob still waits: {model}"
    );

    // Idle now, with Bob waiting: Alice is warned in her notebook, then her GPU is reclaimed.
    let notices = alice_ws.notices(DEADLINE, "was reclaimed").await;
    let warned = notices
        .find("will be reclaimed in")
        .unwrap_or_else(|| panic!("alice was warned first: {notices}"));
    let reclaimed = notices.find("was reclaimed").unwrap();
    assert!(warned < reclaimed, "{notices}");
    assert!(notices.contains("waiting for a GPU"), "{notices}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _) = alice
            .call(
                reqwest::Method::GET,
                &format!("/user/alice/api/kernels/{alice_gpu}"),
                None,
            )
            .await;
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "alice's kernel was not stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bob's held cell runs on the GPU without him running it again.
    let cell = finish(&mut bob_ws, &bob_cell, DEADLINE).await;
    assert!(
        cell.stdout.contains("CUDA=0 NVIDIA=0")
            && cell.stdout.contains("node=True")
            && cell.stdout.contains("bob ran"),
        "{cell:?}"
    );
    assert!(
        cell.displays.iter().any(|d| d.contains("GPU was granted")),
        "the queue notice says the GPU was granted: {cell:?}"
    );

    // Alice asks again and waits behind Bob; interrupting her waiting kernel withdraws it.
    let again = start_kernel(&alice, "alice", "python3-gpu").await;
    assert_eq!(again["execution_state"], "starting", "{again}");
    let again = again["id"].as_str().unwrap().to_owned();
    let mut again_ws = KernelClient::open(server.port, "alice", &alice.token, &again).await;
    let waiting = again_ws.execute("print('never')").await;
    expect(&mut again_ws, &waiting, "display_data").await;
    let (status, _) = alice
        .call(
            reqwest::Method::POST,
            &format!("/user/alice/api/kernels/{again}/interrupt"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let cell = finish(&mut again_ws, &waiting, DEADLINE).await;
    assert!(
        cell.error
            .as_deref()
            .unwrap_or_default()
            .contains("left the queue"),
        "{cell:?}"
    );

    // GPU use is on the record: who held which GPU, for how long, and why it ended.
    let log = commonlab(
        &server.data_dir(),
        &server.config,
        &["audit", "list", "--json", "--limit", "1000"],
        "",
    );
    let records: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let with = |action: &str, key: &str| {
        records
            .iter()
            .any(|r| r["action"] == action && !r["detail"][key].is_null())
    };
    assert!(with("kernel_start", "gpus"), "{log}");
    assert!(with("kernel_stop", "gpu_held_s"), "{log}");
    assert!(log.contains("idle_contended"), "{log}");
    // And in the usage ledger, as GPU-seconds held by the user whose GPU was reclaimed.
    let db = rusqlite::Connection::open(server.data_dir().join("commonlab.sqlite")).unwrap();
    let held: f64 = db
        .query_row(
            "SELECT COALESCE(SUM(gpu_seconds_held), 0) FROM usage_days WHERE user = 'alice'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(held > 0.0, "alice's GPU time is in the ledger: {held}");
}

//! A restarted server reconnects to the kernels it started, and cleans up the ones that are gone.

use std::time::Duration;

use crate::harness::{manager, python};

#[tokio::test]
async fn a_restarted_manager_reattaches_live_kernels_and_forgets_dead_ones() {
    let Some(python) = python() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let (survivor, victim) = {
        let first = manager(&python, data_dir.path());
        let survivor = first.start(None).await.unwrap();
        let victim = first.start(None).await.unwrap();
        // `first` is dropped without shutting its kernels down, as when the server is killed.
        (survivor.id.clone(), victim.id.clone())
    };
    let store = commonlab_store::Store::open_sqlite(&data_dir.path().join("state.sqlite")).unwrap();
    let runtime = |id: &str| -> commonlab_runtime::RuntimeRecord {
        let record = store.kernels().unwrap().into_iter().find(|k| k.id == id);
        serde_json::from_str(&record.expect("the kernel is recorded").runtime).unwrap()
    };
    for id in [&survivor, &victim] {
        assert!(
            runtime(id).connection_file.exists(),
            "connection file exists while the kernel runs"
        );
    }
    let pid = |id: &str| runtime(id).pid;
    let dir = |id: &str| runtime(id).connection_file.parent().unwrap().to_owned();
    let (survivor_dir, victim_dir) = (dir(&survivor), dir(&victim));
    let victim_pid = pid(&victim);
    std::process::Command::new("kill")
        .args(["-9", &victim_pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = manager(&python, data_dir.path());
    let (reattached, cleaned) = second.recover().unwrap().await;
    assert_eq!((reattached, cleaned), (1, 1));
    assert!(
        !victim_dir.exists(),
        "the dead kernel's socket directory is removed"
    );
    let ids: Vec<String> = second.list().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, vec![survivor.clone()]);
    second.shutdown(&survivor).await.unwrap();
    assert!(second.list().is_empty());
    assert!(
        !survivor_dir.exists(),
        "a kernel's socket directory is removed when it ends"
    );
    let third = manager(&python, data_dir.path());
    assert_eq!(
        third.recover().unwrap().await,
        (0, 0),
        "nothing forgotten, nothing left over"
    );
}

/// The stdout text of v1 frames received, and whether `until` was among it.
async fn read_stdout(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<commonlab_manager::Outgoing>,
    until: &str,
) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !text.contains(until) {
        let frame = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the kernel printed in time")
            .expect("the client is connected");
        let commonlab_manager::Outgoing::Frame { data, .. } = frame else {
            continue;
        };
        let (_, message) = commonlab_protocol::decode_v1(data).unwrap();
        let content: serde_json::Value =
            serde_json::from_slice(&message.content).unwrap_or_default();
        if let Some(t) = content["text"].as_str() {
            text.push_str(t);
        }
    }
    text
}

#[tokio::test]
async fn a_kernel_whose_cell_holds_the_interpreter_is_kept_on_its_heartbeat() {
    let Some(python) = python() else { return };
    let data_dir = tempfile::tempdir().unwrap();
    let builder = commonlab_protocol::MessageBuilder {
        session: "held".into(),
        username: "test".into(),
    };
    let execute = |code: &str| {
        builder.message(
            "execute_request",
            "2026-01-01T00:00:00.000000Z".into(),
            bytes::Bytes::from_static(b"{}"),
            &serde_json::json!({"code": code, "silent": false, "store_history": false, "user_expressions": {}, "allow_stdin": false, "stop_on_error": true}),
        )
    };
    // The cell reads a byte from this pipe with a C call made through `PyDLL`, which keeps the
    // interpreter lock: until the test writes, ipykernel's control thread cannot answer, while
    // its heartbeat thread, which needs no lock, still echoes.
    let root = data_dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let fifo = root.join("hold.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (id, writer) = {
        let first = manager(&python, data_dir.path());
        let kernel = first.start(None).await.unwrap();
        let (client, _rx) =
            kernel.connect_client("held".into(), commonlab_manager::WireProtocol::V1);
        client
            .send(
                commonlab_protocol::Channel::Shell,
                execute("import ctypes, os\nfd = os.open('hold.fifo', os.O_RDONLY)\nctypes.PyDLL(None).read(fd, ctypes.create_string_buffer(1), 1)\nprint('released')"),
            )
            .await
            .unwrap();
        // Opening the pipe to write returns once the cell has opened it to read: the cell is
        // then in (or entering) its read.
        let fifo = fifo.clone();
        let writer = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().write(true).open(fifo).unwrap()
        })
        .await
        .unwrap();
        (kernel.id.clone(), writer)
        // The manager and its client are dropped without stopping the kernel, as in a crash.
    };

    let second = manager(&python, data_dir.path());
    assert_eq!(second.recover().unwrap().await, (1, 0));
    let kernel = second.get(&id).expect("the kernel is kept");
    assert_eq!(
        kernel.execution_state(),
        "busy",
        "a kernel that has not answered on shell since the restart counts as busy"
    );
    // Released, the cell prints, and its client from before the restart gets that when it
    // reconnects; the kernel answers the server on shell, is known idle, and runs cells again.
    std::io::Write::write_all(&mut &writer, b"x").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while kernel.execution_state() != "idle" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kernel never went idle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (client, mut rx) =
        kernel.connect_client("held".into(), commonlab_manager::WireProtocol::V1);
    read_stdout(&mut rx, "released").await;
    client
        .send(
            commonlab_protocol::Channel::Shell,
            execute("print('free again')"),
        )
        .await
        .unwrap();
    read_stdout(&mut rx, "free again").await;
    drop(client);
    second.shutdown(&id).await.unwrap();
}

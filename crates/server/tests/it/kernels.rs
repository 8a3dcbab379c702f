//! Kernels through the REST API and the kernel WebSocket, in both framings.

use std::time::Duration;

use commonlab_protocol::Channel;
use reqwest::Method;

use crate::harness::{connect_ws, spawn_app, stdout, WsClient, TOKEN};

#[tokio::test]
async fn print_runs_over_v1_and_legacy_framings() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    for v1 in [true, false] {
        let mut client = app.connect(&kernel_id, &format!("s-{v1}"), v1).await;
        let msg_id = client.execute("print(1+1)").await;
        let messages = client.until_idle(&msg_id).await;
        assert_eq!(stdout(&messages), "2\n", "v1={v1}: {messages:?}");
        let reply = messages
            .iter()
            .find(|m| m.msg_type == "execute_reply")
            .expect("execute_reply");
        assert_eq!(reply.content["status"], "ok");
    }
    let (status, body) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["execution_state"], "idle");
    let (status, _) = app
        .request(Method::DELETE, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_client_of_a_kernel_receives_iopub() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut first = app.connect(&kernel_id, "first", true).await;
    let mut second = app.connect(&kernel_id, "second", false).await;
    let msg_id = first.execute("print('shared')").await;
    assert_eq!(stdout(&first.until_idle(&msg_id).await), "shared\n");
    let mut seen = Vec::new();
    while let Some(received) = second.recv(Duration::from_secs(10)).await {
        let idle = received.parent_msg_id == msg_id
            && received.msg_type == "status"
            && received.content["execution_state"] == "idle";
        seen.push(received);
        if idle {
            break;
        }
    }
    assert_eq!(
        stdout(
            &seen
                .into_iter()
                .filter(|m| m.parent_msg_id == msg_id)
                .collect::<Vec<_>>()
        ),
        "shared\n"
    );
}

#[tokio::test]
async fn input_round_trips_over_stdin() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "stdin", true).await;
    let msg_id = client
        .execute("name = input('who? ')\nprint('hello', name)")
        .await;
    loop {
        let received = client
            .recv(Duration::from_secs(20))
            .await
            .expect("input_request");
        if received.msg_type == "input_request" {
            assert_eq!(received.channel, Channel::Stdin);
            assert_eq!(received.content["prompt"], "who? ");
            break;
        }
    }
    client
        .send(
            Channel::Stdin,
            "input_reply",
            serde_json::json!({ "value": "ada" }),
        )
        .await;
    assert_eq!(stdout(&client.until_idle(&msg_id).await), "hello ada\n");
}

#[tokio::test]
async fn messages_missed_while_disconnected_are_delivered_on_reconnect() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "away", true).await;
    let msg_id = client
        .execute("import time; time.sleep(0.5); print('while you were away')")
        .await;
    client.ws.close(None).await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut client = app.connect(&kernel_id, "away", true).await;
    let messages = client.until_idle(&msg_id).await;
    assert_eq!(stdout(&messages), "while you were away\n");
}

#[tokio::test]
async fn interrupt_stops_a_sleeping_cell_and_restart_clears_state() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "int", true).await;
    let msg_id = client.execute("x = 41\nimport time\ntime.sleep(100)").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/kernels/{kernel_id}/interrupt"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let messages = tokio::time::timeout(Duration::from_secs(10), client.until_idle(&msg_id))
        .await
        .expect("interrupt is prompt");
    let error = messages
        .iter()
        .find(|m| m.msg_type == "error")
        .expect("an error for the interrupted cell");
    assert_eq!(error.content["ename"], "KeyboardInterrupt");

    let (status, body) = app
        .request(
            Method::POST,
            &format!("/api/kernels/{kernel_id}/restart"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let msg_id = client.execute("print(x)").await;
    let messages = client.until_idle(&msg_id).await;
    let error = messages
        .iter()
        .find(|m| m.msg_type == "error")
        .expect("x is gone after restart");
    assert_eq!(error.content["ename"], "NameError");
}

#[tokio::test]
async fn a_dying_kernel_is_reported_dead() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "dies", true).await;
    client.execute("import os; os._exit(3)").await;
    let mut dead = false;
    while let Some(received) = client.recv(Duration::from_secs(15)).await {
        if received.msg_type == "status" && received.content["execution_state"] == "dead" {
            dead = true;
            break;
        }
    }
    assert!(dead, "clients see status dead");
    let (_, body) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(body["execution_state"], "dead");
    let (status, _) = app
        .request(
            Method::POST,
            &format!("/api/kernels/{kernel_id}/restart"),
            None,
        )
        .await;
    assert_eq!(status, 200, "a dead kernel can be restarted");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_stays_healthy() {
    let Some(app) = spawn_app().await else { return };
    let http = reqwest::Client::new();
    let base = &app.base;
    // Token: missing, wrong; `/api` is public as in jupyter_server.
    assert_eq!(
        http.get(format!("{base}/api/kernels"))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let wrong = http
        .get(format!("{base}/api/kernels"))
        .header("Authorization", "token nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "not_authenticated");
    assert_eq!(
        http.get(format!("{base}/api"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/api/status?token={TOKEN}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Malformed JSON, empty bodies, unknown ids and kernelspecs.
    let (status, body) = app
        .request(Method::POST, "/api/sessions", Some("{nope"))
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_json")));
    let (status, _) = app.request(Method::POST, "/api/sessions", Some("")).await;
    assert_eq!(status, 400);
    let (status, body) = app
        .request(
            Method::POST,
            "/api/sessions",
            Some(r#"{"path":"a.ipynb","kernel":{"name":"nope"}}"#),
        )
        .await;
    assert_eq!(
        (status, body["short_message"].as_str()),
        (501, Some("nope not found"))
    );
    let (status, body) = app
        .request(
            Method::GET,
            "/api/kernels/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("kernel_not_found"))
    );
    let (status, _) = app.request(Method::GET, "/api/sessions/none", None).await;
    assert_eq!(status, 404);
    let (status, _) = app
        .request(Method::GET, "/api/kernelspecs/none", None)
        .await;
    assert_eq!(status, 404);
    // Hostile websocket frames: garbage, bad offsets, and one over the size limit.
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "hostile", true).await;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    client
        .ws
        .send(Message::Binary(vec![0xff; 64].into()))
        .await
        .unwrap();
    client
        .ws
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    let msg_id = client.execute("print('still fine')").await;
    assert_eq!(stdout(&client.until_idle(&msg_id).await), "still fine\n");
    client
        .ws
        .send(Message::Binary(vec![0u8; 2 << 20].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut client.ws).await,
        1009,
        "an oversized frame closes that connection as too big"
    );
    let mut client = app.connect(&kernel_id, "after", true).await;
    let msg_id = client.execute("print('healthy')").await;
    assert_eq!(stdout(&client.until_idle(&msg_id).await), "healthy\n");
}

/// The code of the close frame the server sends next; the connection must then end cleanly,
/// without a reset.
async fn close_code(ws: &mut crate::harness::WsStream) -> u16 {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{Error, Message};
    let mut code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the server closes within 30 s")
        {
            Some(Ok(Message::Close(frame))) => {
                let frame = frame.expect("the close frame has a code");
                assert!(
                    frame.reason.contains("server.ws_message_bytes_max"),
                    "{frame:?}"
                );
                code = Some(u16::from(frame.code));
            }
            Some(Ok(_)) => {}
            None | Some(Err(Error::ConnectionClosed)) => break,
            Some(Err(e)) => panic!("the connection failed instead of closing: {e}"),
        }
    }
    code.expect("a close frame")
}

#[tokio::test]
async fn the_events_websocket_closes_an_oversize_message_with_1009() {
    let Some(app) = spawn_app().await else { return };
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/api/events/subscribe?token={TOKEN}",
        app.base.replace("http", "ws")
    );
    let mut events = connect_ws(&url, "events", false).await.unwrap();
    events
        .ws
        .send(Message::Binary(vec![0u8; 2 << 20].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut events.ws).await, 1009);
}

#[tokio::test]
async fn sessions_create_reuse_rename_and_delete() {
    let Some(app) = spawn_app().await else { return };
    let (status, created) = app
        .request(
            Method::POST,
            "/api/sessions",
            Some(r#"{"path":"a.ipynb","name":"a","type":"notebook","kernel":{"name":"python3"}}"#),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let kernel_id = created["kernel"]["id"].as_str().unwrap().to_owned();
    let (_, again) = app
        .request(
            Method::POST,
            "/api/sessions",
            Some(r#"{"path":"a.ipynb","type":"notebook"}"#),
        )
        .await;
    assert_eq!(again["id"], created["id"], "same path, same session");
    let (status, patched) = app
        .request(
            Method::PATCH,
            &format!("/api/sessions/{id}"),
            Some(r#"{"path":"b.ipynb"}"#),
        )
        .await;
    assert_eq!((status, patched["path"].as_str()), (200, Some("b.ipynb")));
    let (_, list) = app.request(Method::GET, "/api/sessions", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _) = app
        .request(Method::DELETE, &format!("/api/sessions/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(status, 404, "deleting a session shuts down its kernel");
}

#[tokio::test]
async fn a_cell_printing_50_mb_is_delivered_whole_and_the_server_stays_up() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "flood", true).await;
    let msg_id = client
        .execute("import sys; sys.stdout.write('x' * 50_000_000); sys.stdout.flush()")
        .await;
    let messages = client.until_idle(&msg_id).await;
    let text = stdout(&messages);
    assert_eq!(text.len(), 50_000_000);
    assert!(text.bytes().all(|b| b == b'x'));
    let msg_id = client.execute("print('after the flood')").await;
    assert_eq!(
        stdout(&client.until_idle(&msg_id).await),
        "after the flood\n"
    );
}

/// The pid of the kernel process behind `client`, as the kernel itself reports it.
async fn kernel_pid(client: &mut WsClient) -> i32 {
    let msg_id = client.execute("import os; print(os.getpid())").await;
    stdout(&client.until_idle(&msg_id).await)
        .trim()
        .parse()
        .expect("the kernel prints its pid")
}

/// Reads `client` until the server says the kernel is in `state`.
async fn until_status(client: &mut WsClient, state: &str) {
    while let Some(received) = client.recv(Duration::from_secs(30)).await {
        if received.msg_type == "status"
            && received.content["execution_state"] == state
            && received.parent_msg_id.is_empty()
        {
            return;
        }
    }
    panic!("the connection ended before the kernel was {state}");
}

#[tokio::test]
async fn requests_to_a_dead_kernel_are_answered_with_the_death() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "dead", true).await;
    let mut legacy = app.connect(&kernel_id, "dead-legacy", false).await;
    let pid = kernel_pid(&mut client).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("the test may kill the kernel it started");
    until_status(&mut client, "dead").await;
    until_status(&mut legacy, "dead").await;
    let (_, model) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(model["execution_state"], "dead", "{model}");

    // A cell: answered as a failed cell would be, naming the death and what to do.
    for client in [&mut client, &mut legacy] {
        let msg_id = client.execute("print('never runs')").await;
        let messages = client.until_idle(&msg_id).await;
        let types: Vec<&str> = messages.iter().map(|m| m.msg_type.as_str()).collect();
        assert_eq!(
            types,
            ["status", "error", "execute_reply", "status"],
            "{messages:?}"
        );
        assert_eq!(messages[0].content["execution_state"], "busy");
        let error = &messages[1].content;
        assert_eq!(error["ename"], "KernelDied", "{error}");
        assert_eq!(error["code"], "kernel_dead", "{error}");
        assert_eq!(
            error["evalue"], "The kernel was killed by signal 9.",
            "{error}"
        );
        let traceback = error["traceback"].to_string();
        assert!(traceback.contains("Restart the kernel"), "{traceback}");
        let reply = &messages[2].content;
        assert_eq!(messages[2].channel, Channel::Shell);
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(reply["code"], "kernel_dead", "{reply}");
        assert_eq!(reply["evalue"], error["evalue"]);
        assert!(stdout(&messages).is_empty());
        // The client is told again that the kernel is dead, after its answer.
        until_status(client, "dead").await;
    }

    // Other requests get their own reply type with status error, on the channel they came on.
    for (channel, msg_type, content, reply_type) in [
        (
            Channel::Shell,
            "kernel_info_request",
            serde_json::json!({}),
            "kernel_info_reply",
        ),
        (
            Channel::Shell,
            "complete_request",
            serde_json::json!({ "code": "pri", "cursor_pos": 3 }),
            "complete_reply",
        ),
        (
            Channel::Control,
            "interrupt_request",
            serde_json::json!({}),
            "interrupt_reply",
        ),
    ] {
        let msg_id = client.send(channel, msg_type, content).await;
        let messages = client.until_idle(&msg_id).await;
        let reply = messages
            .iter()
            .find(|m| m.msg_type == reply_type)
            .unwrap_or_else(|| panic!("a {reply_type}: {messages:?}"));
        assert_eq!(reply.channel, channel, "{reply:?}");
        assert_eq!(reply.content["status"], "error", "{reply:?}");
        assert_eq!(reply.content["code"], "kernel_dead", "{reply:?}");
        assert_eq!(
            reply.content["evalue"], "The kernel was killed by signal 9.",
            "{reply:?}"
        );
        if msg_type == "complete_request" {
            assert_eq!(reply.content["matches"], serde_json::json!([]));
            assert_eq!(reply.content["cursor_start"], 3);
        }
        until_status(&mut client, "dead").await;
    }
    let (_, model) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(
        model["execution_state"], "dead",
        "answering does not revive it"
    );

    // A restart brings it back; a cell sent while it restarts waits for the new process
    // instead of being answered as dead.
    let restart = {
        let http = app.http.clone();
        let url = format!("{}/api/kernels/{kernel_id}/restart", app.base);
        tokio::spawn(async move {
            http.post(url)
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    until_status(&mut client, "restarting").await;
    let msg_id = client.execute("print('back')").await;
    let messages = client.until_idle(&msg_id).await;
    assert_eq!(stdout(&messages), "back\n", "{messages:?}");
    let reply = messages
        .iter()
        .find(|m| m.msg_type == "execute_reply")
        .expect("execute_reply");
    assert_eq!(reply.content["status"], "ok");
    assert_eq!(restart.await.unwrap(), 200);
    assert_ne!(kernel_pid(&mut client).await, pid, "a new process");
    let (_, model) = app
        .request(Method::GET, &format!("/api/kernels/{kernel_id}"), None)
        .await;
    assert_eq!(model["execution_state"], "idle", "{model}");
}

#[tokio::test]
async fn a_cell_sent_while_a_live_kernel_restarts_runs_on_the_new_process() {
    let Some(app) = spawn_app().await else { return };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "restarting", true).await;
    let msg_id = client.execute("x = 41").await;
    client.until_idle(&msg_id).await;
    let restart = {
        let http = app.http.clone();
        let url = format!("{}/api/kernels/{kernel_id}/restart", app.base);
        tokio::spawn(async move {
            http.post(url)
                .header("Authorization", format!("token {TOKEN}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    until_status(&mut client, "restarting").await;
    let msg_id = client.execute("print('x' in globals())").await;
    let messages = client.until_idle(&msg_id).await;
    assert_eq!(stdout(&messages), "False\n", "{messages:?}");
    assert_eq!(restart.await.unwrap(), 200);
}

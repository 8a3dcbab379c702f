//! The contract every backend keeps, run against each: a real ipykernel starts through it and
//! runs code over the kernel crate, a signal interrupts it, a kill ends it, and a death the
//! server did not ask for is noticed with the kernel's own exit status.

use commonlab_runtime::SandboxLimits;

use crate::support::{python, sandbox_host, Client, Setup, PATIENCE};

async fn runs_code_is_interrupted_and_killed(setup: Setup) {
    let runtime = setup.backend.launch(setup.spec()).await.expect("launches");
    let record = runtime.record();
    let connection: commonlab_protocol::ConnectionInfo =
        serde_json::from_slice(&std::fs::read(&record.connection_file).expect("connection file"))
            .expect("connection file parses");
    let mut client = Client::connect(&connection).await;
    assert_eq!(client.execute("print(6 * 7)").await.stdout, "42\n");

    let msg_id = client
        .start_execute("import time\nprint('sleeping', flush=True)\ntime.sleep(600)")
        .await;
    client.wait_for_output(&msg_id).await;
    runtime.signal(libc::SIGINT).expect("interrupt");
    let interrupted = client.finish_execute(&msg_id).await;
    assert!(
        interrupted
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("KeyboardInterrupt")),
        "{interrupted:?}"
    );
    assert_eq!(
        client.execute("print('still here')").await.stdout,
        "still here\n"
    );

    runtime.kill().expect("kill");
    let exit = tokio::time::timeout(PATIENCE, runtime.wait())
        .await
        .expect("the runtime ends after a kill");
    assert!(
        exit.signal == Some(libc::SIGKILL) || exit.code == Some(128 + libc::SIGKILL),
        "{exit:?}"
    );
    assert_eq!(exit.oom, None);
    client.close().await;
}

async fn death_is_noticed_with_the_exit_status(setup: Setup) {
    let runtime = setup.backend.launch(setup.spec()).await.expect("launches");
    let connection: commonlab_protocol::ConnectionInfo = serde_json::from_slice(
        &std::fs::read(runtime.record().connection_file).expect("connection file"),
    )
    .expect("parses");
    let client = Client::connect(&connection).await;
    client.start_execute("import os\nos._exit(3)").await;
    let exit = tokio::time::timeout(PATIENCE, runtime.wait())
        .await
        .expect("the death is noticed");
    assert_eq!(exit.code, Some(3), "{exit:?}");
    client.close().await;
}

#[tokio::test]
async fn local_backend_runs_code_is_interrupted_and_killed() {
    let Some(python) = python() else { return };
    runs_code_is_interrupted_and_killed(Setup::local(python)).await;
}

#[tokio::test]
async fn local_backend_notices_a_death() {
    let Some(python) = python() else { return };
    death_is_noticed_with_the_exit_status(Setup::local(python)).await;
}

#[tokio::test]
async fn sandbox_backend_runs_code_is_interrupted_and_killed() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    runs_code_is_interrupted_and_killed(Setup::sandbox(python, SandboxLimits::default())).await;
}

#[tokio::test]
async fn sandbox_backend_notices_a_death() {
    let Some(python) = python() else { return };
    if !sandbox_host() {
        return;
    }
    death_is_noticed_with_the_exit_status(Setup::sandbox(python, SandboxLimits::default())).await;
}

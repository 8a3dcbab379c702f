//! Many kernels started at once each get channels of their own: every start succeeds, and every
//! kernel answers on its own sockets (a cell reports which process ran it, and it must be the
//! kernel the server recorded under that id).

use std::collections::HashMap;
use std::time::Duration;

use commonlab_runtime::RuntimeRecord;
use commonlab_store::Store;
use reqwest::Method;

use crate::harness::{spawn_app_with_start_timeout, stdout};

const KERNELS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kernels_started_at_once_each_answer_on_their_own_channels() {
    // Fifty ipykernels importing at once on a small machine take a while; the timeout is a
    // guard against hanging, not a measurement.
    let Some(app) = spawn_app_with_start_timeout(Duration::from_secs(600)).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let starts = (0..KERNELS).map(|_| {
        let app = app.clone();
        async move { app.request(Method::POST, "/api/kernels", Some("{}")).await }
    });
    let started = futures_util::future::join_all(starts).await;
    let failed: Vec<String> = started
        .iter()
        .filter(|(status, _)| *status != 201)
        .map(|(status, body)| format!("{status}: {body}"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {KERNELS} kernel starts failed: {failed:#?}",
        failed.len()
    );
    let ids: Vec<String> = started
        .iter()
        .map(|(_, body)| body["id"].as_str().unwrap().to_owned())
        .collect();

    // What the server recorded for each kernel: its process and its connection file.
    let store = Store::open_sqlite(&app.data_dir.path().join("state.sqlite")).unwrap();
    let recorded: HashMap<String, RuntimeRecord> = store
        .kernels()
        .unwrap()
        .into_iter()
        .map(|k| (k.id, serde_json::from_str(&k.runtime).unwrap()))
        .collect();

    let runs = ids.iter().enumerate().map(|(i, id)| {
        let app = app.clone();
        let id = id.clone();
        async move {
            let mut client = app.connect(&id, &format!("client-{i}"), true).await;
            let msg_id = client
                .execute(&format!(
                    "import os\nfrom ipykernel.connect import get_connection_file\nprint({i}, os.getpid(), get_connection_file())"
                ))
                .await;
            let messages = client.until_idle(&msg_id).await;
            (i, id, stdout(&messages))
        }
    });
    for (i, id, printed) in futures_util::future::join_all(runs).await {
        let record = &recorded[&id];
        let expected = format!("{i} {} {}\n", record.pid, record.connection_file.display());
        assert_eq!(
            printed, expected,
            "kernel {id} (#{i}) was answered by another process than the one started for it"
        );
    }
}

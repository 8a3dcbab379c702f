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
    let (reattached, cleaned) = second.recover().await.unwrap();
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
        third.recover().await.unwrap(),
        (0, 0),
        "nothing forgotten, nothing left over"
    );
}

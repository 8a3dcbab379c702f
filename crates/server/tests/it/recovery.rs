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
    let pid = |id: &str| -> i32 {
        let record = std::fs::read_to_string(
            data_dir
                .path()
                .join("runtime")
                .join(format!("kernel-{id}.json")),
        );
        assert!(
            record.is_ok(),
            "connection file exists while the kernel runs"
        );
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("kernel-{id}.json")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let victim_pid = pid(&victim);
    std::process::Command::new("kill")
        .args(["-9", &victim_pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = manager(&python, data_dir.path());
    let (reattached, cleaned) = second.recover().await.unwrap();
    assert_eq!((reattached, cleaned), (1, 1));
    let ids: Vec<String> = second.list().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, vec![survivor.clone()]);
    second.shutdown(&survivor).await.unwrap();
    assert!(second.list().is_empty());
    let third = manager(&python, data_dir.path());
    assert_eq!(
        third.recover().await.unwrap(),
        (0, 0),
        "nothing forgotten, nothing left over"
    );
}

//! `scan` over files written to a temporary folder: JSON shape and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use commonlab_scan::{run_scan, ScanArgs};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("commonlab-scan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn args(paths: Vec<PathBuf>) -> ScanArgs {
    ScanArgs {
        paths,
        json: true,
        tier: "free".to_owned(),
        config: None,
        all_files: false,
        verbose: false,
        jobs: Some(2),
    }
}

#[test]
fn scan_reports_each_file_and_walks_directories() {
    let dir = TempDir::new("walk");
    std::fs::create_dir_all(dir.0.join("sub")).expect("sub dir");
    std::fs::write(
        dir.0.join("clean.py"),
        "import numpy as np\nprint(np.arange(3))\n",
    )
    .expect("write");
    std::fs::write(
        dir.0.join("sub/miner.sh"),
        "#!/bin/sh\n./xmrig -o pool.supportxmr.com:3333 -u 4AB\n",
    )
    .expect("write");
    std::fs::write(dir.0.join("notes.txt"), "xmrig\n").expect("write");
    let policy = commonlab_policy::Policy::builtin();
    let reports = commonlab_scan::scan_paths(&policy, std::slice::from_ref(&dir.0), "free", false);
    let summary: Vec<(String, String)> = reports
        .iter()
        .map(|r| {
            (
                r.path
                    .strip_prefix(&dir.0.display().to_string())
                    .unwrap_or(&r.path)
                    .to_owned(),
                r.verdict.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("/clean.py".to_owned(), "allowed".to_owned()),
            ("/sub/miner.sh".to_owned(), "mining".to_owned())
        ]
    );
    let json = serde_json::to_value(&reports).expect("serializable");
    let miner = &json[1];
    assert_eq!(miner["verdict"], "mining");
    assert!(miner["categories"][0]["score"].as_f64().expect("score") >= 1.0);
    let finding = &miner["findings"][0];
    for key in [
        "rule",
        "category",
        "location",
        "matched",
        "line",
        "line_text",
    ] {
        assert!(!finding[key].is_null(), "finding lacks {key}: {finding}");
    }
}

#[test]
fn exit_code_tells_flagged_and_unreadable_apart() {
    let dir = TempDir::new("exit");
    std::fs::write(dir.0.join("clean.py"), "print('hello')\n").expect("write");
    std::fs::write(
        dir.0.join("p2p.py"),
        "import libtorrent as lt\nses = lt.session()\n",
    )
    .expect("write");
    let clean = run_scan(&args(vec![dir.0.join("clean.py")])).expect("runs");
    assert_eq!(clean, ExitCode::from(0));
    let flagged = run_scan(&args(vec![dir.0.clone()])).expect("runs");
    assert_eq!(flagged, ExitCode::from(1));
    let missing =
        run_scan(&args(vec![dir.0.join("clean.py"), dir.0.join("absent.py")])).expect("runs");
    assert_eq!(missing, ExitCode::from(2));
    let both = run_scan(&args(vec![dir.0.clone(), dir.0.join("absent.py")])).expect("runs");
    assert_eq!(both, ExitCode::from(3));
}

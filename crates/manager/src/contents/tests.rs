//! Contents operations on a temporary root.

use super::*;
use std::fs;

fn manager(limit: u64) -> (tempfile::TempDir, ContentsManager) {
    let dir = tempfile::tempdir().unwrap();
    let contents = ContentsManager::new(ContentsConfig {
        root_dir: dir.path().to_owned(),
        upload_bytes_max: limit,
        owner: None,
    });
    (dir, contents)
}

fn request(json: Value) -> ContentsRequest {
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn untitled_names_increment_like_jupyter_server() {
    let (_dir, contents) = manager(1 << 20);
    let mut names = Vec::new();
    for body in [
        serde_json::json!({"type": "notebook"}),
        serde_json::json!({"type": "notebook"}),
        serde_json::json!({"type": "file", "ext": ".txt"}),
        serde_json::json!({"type": "file", "ext": ".txt"}),
        serde_json::json!({"type": "directory"}),
        serde_json::json!({"type": "directory"}),
        serde_json::json!({"type": "file"}),
    ] {
        names.push(contents.post("", Some(request(body))).await.unwrap().name);
    }
    assert_eq!(
        names,
        [
            "Untitled.ipynb",
            "Untitled1.ipynb",
            "untitled.txt",
            "untitled1.txt",
            "Untitled Folder",
            "Untitled Folder 1",
            "untitled"
        ]
    );
    // A new notebook gets its first checkpoint.
    assert_eq!(
        contents
            .list_checkpoints("Untitled.ipynb")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn names_split_as_python_does() {
    assert_eq!(split_ext("a.tar.gz"), ("a.tar", ".gz"));
    assert_eq!(split_ext(".bashrc"), (".bashrc", ""));
    assert_eq!(split_ext("nb.ipynb"), ("nb", ".ipynb"));
    assert_eq!(strip_copy_suffix("nb-Copy1.ipynb"), "nb.ipynb");
    assert_eq!(strip_copy_suffix("a-Copy.txt"), "a.txt");
    assert_eq!(strip_copy_suffix("a-Copyx.txt"), "a-Copyx.txt");
}

#[tokio::test]
async fn invalid_notebook_changes_nothing() {
    let (dir, contents) = manager(1 << 20);
    let good = serde_json::json!({"type": "notebook", "content": new_notebook()});
    contents.put("nb.ipynb", Some(request(good))).await.unwrap();
    let before = fs::read(dir.path().join("nb.ipynb")).unwrap();
    let bad = serde_json::json!({"type": "notebook", "content": {"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}});
    let err = contents
        .put("nb.ipynb", Some(request(bad)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_notebook");
    assert!(err.message.contains("cells[0]"), "{}", err.message);
    assert_eq!(fs::read(dir.path().join("nb.ipynb")).unwrap(), before);
}

#[tokio::test]
async fn chunked_upload_assembles_and_respects_the_limit() {
    let (dir, contents) = manager(10);
    let chunk = |n: i64, text: &str| {
        request(serde_json::json!({"type": "file", "format": "text", "content": text, "chunk": n}))
    };
    contents.put("f.txt", Some(chunk(1, "abc"))).await.unwrap();
    assert!(
        !dir.path().join("f.txt").exists(),
        "nothing at the path until the last chunk"
    );
    contents.put("f.txt", Some(chunk(2, "def"))).await.unwrap();
    contents.put("f.txt", Some(chunk(-1, "g"))).await.unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "abcdefg"
    );
    // Past the limit: refused, the file untouched, the staging file gone.
    contents
        .put("f.txt", Some(chunk(1, "123456")))
        .await
        .unwrap();
    let err = contents
        .put("f.txt", Some(chunk(-1, "789012")))
        .await
        .unwrap_err();
    assert_eq!(err.code, "upload_too_large");
    assert_eq!(
        fs::read_to_string(dir.path().join("f.txt")).unwrap(),
        "abcdefg"
    );
    let err = contents
        .put("f.txt", Some(chunk(2, "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code, "upload_not_started");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn delete_refuses_non_empty_directories() {
    let (dir, contents) = manager(1 << 20);
    fs::create_dir_all(dir.path().join("d/.ipynb_checkpoints")).unwrap();
    fs::write(dir.path().join("d/f"), "x").unwrap();
    let err = contents.delete("d").await.unwrap_err();
    assert_eq!(err.code, "directory_not_empty");
    contents.delete("d/f").await.unwrap();
    contents.delete("d").await.unwrap();
    assert!(!dir.path().join("d").exists());
    assert_eq!(contents.delete("").await.unwrap_err().code, "delete_root");
}

#[tokio::test]
async fn temporaries_left_by_interrupted_saves_are_removed() {
    let (dir, contents) = manager(1 << 20);
    let root = dir.path();
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for stale in [
        ".~a.ipynb.123.save",
        "sub/.~b.txt.9.save",
        "sub/deeper/.~c.bin.upload",
    ] {
        std::fs::write(root.join(stale), "half").unwrap();
    }
    for kept in ["keep.txt", ".~not-ours", "sub/x.save"] {
        std::fs::write(root.join(kept), "mine").unwrap();
    }
    let started = SystemTime::now() + Duration::from_secs(1);
    let removed = contents.remove_stale_temporaries(started).await.unwrap();
    assert_eq!(removed, 3);
    for kept in ["keep.txt", ".~not-ours", "sub/x.save"] {
        assert!(root.join(kept).exists(), "{kept} is kept");
    }
    // One written after the sweep began (a save in flight) is left alone.
    std::fs::write(root.join(".~d.txt.1.save"), "in flight").unwrap();
    let before = SystemTime::now() - Duration::from_secs(60);
    assert_eq!(contents.remove_stale_temporaries(before).await.unwrap(), 0);
    assert!(root.join(".~d.txt.1.save").exists());
}

/// The contents API refuses, rather than follows, a symlink swapped in for an entry after it was
/// resolved: every open happens beneath the root.
#[tokio::test]
async fn reads_and_writes_never_follow_a_link_out_of_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    let (dir, contents) = manager(1 << 20);
    let root = dir.path().canonicalize().unwrap();
    let fs = contents.fs.clone();
    std::fs::write(root.join("f.txt"), "mine").unwrap();
    let target = fs.resolve("f.txt").unwrap();
    // The swap lands between the check and the use.
    std::fs::remove_file(root.join("f.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("f.txt")).unwrap();
    let e = fs.read(&target).unwrap_err();
    assert_eq!(e.code, "path_outside_root", "{e:?}");
    std::fs::create_dir(root.join("d")).unwrap();
    let target = fs.resolve("d/new.txt").unwrap();
    std::fs::remove_dir(root.join("d")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("d")).unwrap();
    let e = fsio::atomic_write(&fs.root, &target.real, b"x").unwrap_err();
    assert_eq!(paths::io_error("d/new.txt", e).code, "path_outside_root");
    assert!(!outside.path().join("new.txt").exists());
}

/// With an owner, every operation runs as that uid: what the owner could not read is not
/// read, and what is written is the owner's. A server that cannot switch (not root) refuses.
#[tokio::test]
async fn an_owned_root_is_worked_in_as_its_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let root = dir.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    let contents = ContentsManager::new(ContentsConfig {
        root_dir: root.clone(),
        upload_bytes_max: 1 << 20,
        owner: Some((NOBODY, NOBODY)),
    });
    let is_root = nix::unistd::geteuid().is_root();
    let result = contents
        .put(
            "saved.txt",
            Some(request(
                serde_json::json!({"type": "file", "format": "text", "content": "x"}),
            )),
        )
        .await;
    if !is_root {
        assert_eq!(result.unwrap_err().code, "contents_identity_failed");
        return;
    }
    // The root is still the server's: the owner may not write in it.
    let e = result.unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Forbidden, "{e:?}");
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    contents
        .put(
            "saved.txt",
            Some(request(
                serde_json::json!({"type": "file", "format": "text", "content": "x"}),
            )),
        )
        .await
        .unwrap();
    let meta = std::fs::metadata(root.join("saved.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    // A root-only file inside (as a race might leave one) is not readable through the API.
    std::fs::write(root.join("root-only.txt"), "secret").unwrap();
    std::fs::set_permissions(
        root.join("root-only.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let e = contents
        .get("root-only.txt", GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, crate::ErrorKind::Forbidden, "{e:?}");
    // The server's own threads keep their identity.
    assert!(nix::unistd::geteuid().is_root());
}

//! Contents operations on a temporary root.

use super::*;

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

//! `/api/contents` over real HTTP: shapes and status codes as jupyter_server's, confinement to
//! the root, notebook validation and round trips, upload limits, chunks and checkpoints.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{spawn_app, TestApp, CONTENTS_UPLOAD_BYTES_MAX, TOKEN};

fn root(app: &TestApp) -> PathBuf {
    app.data_dir.path().join("root")
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    app.request(method, path, body.as_deref()).await
}

/// Sends `target` as written (no URL normalisation) and returns the status.
async fn raw_status(app: &TestApp, method: &str, target: &str) -> u16 {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn contents_models_and_status_codes_match_jupyter_server() {
    let Some(app) = spawn_app().await else { return };
    let (status, dir) = call(&app, Method::GET, "/api/contents", None).await;
    assert_eq!(status, 200, "{dir}");
    assert_eq!(dir["type"], "directory");
    assert_eq!(dir["format"], "json");
    assert_eq!(dir["content"], json!([]));
    for key in [
        "name",
        "path",
        "last_modified",
        "created",
        "content",
        "format",
        "mimetype",
        "size",
        "writable",
        "hash",
        "hash_algorithm",
        "type",
    ] {
        assert!(dir.get(key).is_some(), "missing {key}");
    }

    // Untitled creation, with Location.
    let response = app
        .http
        .post(format!("{}/api/contents", app.base))
        .header("Authorization", format!("token {TOKEN}"))
        .body(r#"{"type": "notebook"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["location"],
        "/api/contents/Untitled.ipynb"
    );
    let mut names = Vec::new();
    for body in [
        json!({"type": "notebook"}),
        json!({"type": "file", "ext": ".txt"}),
        json!({"type": "directory"}),
        json!({"type": "directory"}),
    ] {
        let (status, model) = call(&app, Method::POST, "/api/contents", Some(body)).await;
        assert_eq!(status, 201, "{model}");
        assert_eq!(model["content"], Value::Null);
        names.push(model["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        [
            "Untitled1.ipynb",
            "untitled.txt",
            "Untitled Folder",
            "Untitled Folder 1"
        ]
    );
    let (_, model) = call(&app, Method::GET, "/api/contents/Untitled.ipynb", None).await;
    assert_eq!(model["type"], "notebook");
    assert_eq!(model["format"], "json");
    assert_eq!(
        model["content"],
        json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    );
    let (_, model) = call(
        &app,
        Method::GET,
        "/api/contents/Untitled.ipynb?content=0",
        None,
    )
    .await;
    assert_eq!(model["content"], Value::Null);
    assert_eq!(model["format"], Value::Null);
    assert_eq!(model["size"], 72);

    // Text files: 201 on creation, 200 on overwrite.
    let text = json!({"type": "file", "format": "text", "content": "hello\n"});
    let (status, model) = call(&app, Method::PUT, "/api/contents/a.py", Some(text.clone())).await;
    assert_eq!((status, &model["mimetype"]), (201, &json!("text/x-python")));
    let (status, _) = call(&app, Method::PUT, "/api/contents/a.py", Some(text)).await;
    assert_eq!(status, 200);
    let (_, model) = call(&app, Method::GET, "/api/contents/a.py?hash=1", None).await;
    assert_eq!(model["content"], "hello\n");
    assert_eq!(model["hash_algorithm"], "sha256");
    assert_eq!(
        model["hash"],
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    );

    // Binary files travel as base64 (76-column lines, as Python writes them).
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let encoded = {
        let (_, m) = call(
            &app,
            Method::PUT,
            "/api/contents/bin.dat",
            Some(json!({"type": "file", "format": "base64", "content": "AAEC/w=="})),
        )
        .await;
        assert_eq!(m["size"], 4);
        std::fs::write(root(&app).join("bin.dat"), &bytes).unwrap();
        let (_, m) = call(&app, Method::GET, "/api/contents/bin.dat", None).await;
        assert_eq!(m["format"], "base64");
        assert_eq!(m["mimetype"], "application/octet-stream");
        m["content"].as_str().unwrap().to_owned()
    };
    assert!(encoded.lines().next().unwrap().len() == 76 && encoded.ends_with('\n'));
    let (status, m) = call(
        &app,
        Method::PUT,
        "/api/contents/bin2.dat",
        Some(json!({"type": "file", "format": "base64", "content": encoded})),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(std::fs::read(root(&app).join("bin2.dat")).unwrap(), bytes);
    let (status, _) = call(&app, Method::GET, "/api/contents/bin.dat?format=text", None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, Method::GET, "/api/contents/bin.dat?format=hex", None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, Method::GET, "/api/contents/a.py?type=directory", None).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, Method::POST, "/api/contents/a.py", Some(json!({}))).await;
    assert_eq!(status, 400, "POST to a file");

    // Rename, conflicts, copy, delete.
    let (status, model) = call(
        &app,
        Method::PATCH,
        "/api/contents/a.py",
        Some(json!({"path": "b.py"})),
    )
    .await;
    assert_eq!((status, &model["path"]), (200, &json!("b.py")));
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/contents/b.py",
        Some(json!({"path": "untitled.txt"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/contents/nope",
        Some(json!({"path": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, model) = call(
        &app,
        Method::POST,
        "/api/contents/Untitled%20Folder",
        Some(json!({"copy_from": "b.py"})),
    )
    .await;
    assert_eq!(
        (status, &model["path"]),
        (201, &json!("Untitled Folder/b.py"))
    );
    let (_, model) = call(
        &app,
        Method::POST,
        "/api/contents/Untitled%20Folder",
        Some(json!({"copy_from": "b.py"})),
    )
    .await;
    assert_eq!(model["name"], "b-Copy1.py");
    assert_eq!(
        std::fs::read_to_string(root(&app).join("Untitled Folder/b-Copy1.py")).unwrap(),
        "hello\n"
    );
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/contents/Untitled%20Folder",
        None,
    )
    .await;
    assert_eq!(status, 400, "a non-empty directory is kept");
    let (status, _) = call(&app, Method::DELETE, "/api/contents/b.py", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, Method::DELETE, "/api/contents/b.py", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, Method::GET, "/api/contents/b.py", None).await;
    assert_eq!(status, 404);

    // Hidden files are neither listed, served nor created.
    std::fs::write(root(&app).join(".secret"), "s").unwrap();
    let (_, dir) = call(&app, Method::GET, "/api/contents", None).await;
    let listed: Vec<&str> = dir["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        !listed.contains(&".secret") && listed.contains(&"Untitled.ipynb"),
        "{listed:?}"
    );
    let (status, _) = call(&app, Method::GET, "/api/contents/.secret", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/contents/.other",
        Some(json!({"type": "file", "format": "text", "content": "x"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(!root(&app).join(".other").exists());
}

#[tokio::test]
async fn contents_never_leave_the_root() {
    let Some(app) = spawn_app().await else { return };
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    std::fs::write(root(&app).join("inside.txt"), "inside").unwrap();
    std::os::unix::fs::symlink(outside.path(), root(&app).join("out")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        root(&app).join("secret.txt"),
    )
    .unwrap();
    let outside_name = outside
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    // `..`, raw and percent-encoded, in every method.
    for method in ["GET", "PUT", "POST", "PATCH", "DELETE"] {
        for target in [
            format!("/api/contents/../{outside_name}/secret.txt"),
            format!("/api/contents/%2e%2e/{outside_name}/secret.txt"),
            format!("/api/contents/%2E%2E%2F{outside_name}%2Fsecret.txt"),
            "/api/contents/a/../../../etc/passwd".to_owned(),
        ] {
            let status = raw_status(&app, method, &target).await;
            assert!(matches!(status, 400 | 404), "{method} {target}: {status}");
        }
    }
    // An absolute path is a path under the root.
    let (status, _) = call(&app, Method::GET, "//etc/passwd", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, Method::GET, "/api/contents//etc/passwd", None).await;
    assert_eq!(status, 404);

    // Symlinks out of the root: read, write, rename, copy and delete through them are refused.
    for path in ["out/secret.txt", "secret.txt", "out"] {
        let (status, body) = call(&app, Method::GET, &format!("/api/contents/{path}"), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "path_outside_root");
    }
    let write = json!({"type": "file", "format": "text", "content": "pwned"});
    for path in ["out/secret.txt", "out/new.txt", "secret.txt"] {
        let (status, _) = call(
            &app,
            Method::PUT,
            &format!("/api/contents/{path}"),
            Some(write.clone()),
        )
        .await;
        assert_eq!(status, 404, "PUT {path}");
    }
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/contents/out/secret.txt",
        Some(json!({"path": "stolen.txt"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/contents/inside.txt",
        Some(json!({"path": "out/inside.txt"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents",
        Some(json!({"copy_from": "out/secret.txt"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents/out",
        Some(json!({"copy_from": "inside.txt"})),
    )
    .await;
    assert_eq!(status, 404);
    for path in ["out/secret.txt", "secret.txt", "out"] {
        let (status, _) = call(&app, Method::DELETE, &format!("/api/contents/{path}"), None).await;
        assert_eq!(status, 404, "DELETE {path}");
    }
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents/out/secret.txt/checkpoints",
        None,
    )
    .await;
    assert_eq!(status, 404);
    // The listing does not show links that leave the root.
    let (_, dir) = call(&app, Method::GET, "/api/contents", None).await;
    let listed: Vec<&str> = dir["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["inside.txt"]);

    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "secret"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(root(&app).join("inside.txt")).unwrap(),
        "inside"
    );
}

#[tokio::test]
async fn notebooks_are_validated_and_round_trip_unchanged() {
    let Some(app) = spawn_app().await else { return };
    // A notebook as nbformat writes it (sorted keys, one-space indent, lines split).
    let canonical = "{\n \"cells\": [\n  {\n   \"cell_type\": \"code\",\n   \"execution_count\": 1,\n   \"id\": \"c1\",\n   \"metadata\": {},\n   \"outputs\": [\n    {\n     \"name\": \"stdout\",\n     \"output_type\": \"stream\",\n     \"text\": [\n      \"h\u{e9}llo\\n\"\n     ]\n    }\n   ],\n   \"source\": [\n    \"print('h\u{e9}llo')\\n\",\n    \"x = 1\"\n   ]\n  }\n ],\n \"metadata\": {\n  \"kernelspec\": {\n   \"display_name\": \"Python 3\",\n   \"name\": \"python3\"\n  }\n },\n \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n";
    let path = root(&app).join("nb.ipynb");
    std::fs::write(&path, canonical).unwrap();
    let (status, model) = call(&app, Method::GET, "/api/contents/nb.ipynb", None).await;
    assert_eq!(status, 200, "{model}");
    let content = model["content"].clone();
    assert_eq!(content["cells"][0]["source"], "print('h\u{e9}llo')\nx = 1");
    assert_eq!(content["cells"][0]["metadata"]["trusted"], false);
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/contents/nb.ipynb",
        Some(json!({"type": "notebook", "content": content})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), canonical);
    let (_, again) = call(&app, Method::GET, "/api/contents/nb.ipynb", None).await;
    assert_eq!(again["content"], model["content"]);

    // Invalid notebooks: 400, nothing on disk changes.
    for bad in [
        json!({"cells": [{"cell_type": "code", "source": "", "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
        json!({"cells": [], "metadata": {}, "nbformat": 3, "nbformat_minor": 0}),
        json!("not a notebook"),
        json!({"cells": [{"cell_type": "code", "source": "", "metadata": {}, "execution_count": null, "outputs": [{"output_type": "nope"}]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
    ] {
        let (status, body) = call(
            &app,
            Method::PUT,
            "/api/contents/nb.ipynb",
            Some(json!({"type": "notebook", "content": bad})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_notebook");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), canonical);
        let (status, _) = call(
            &app,
            Method::PUT,
            "/api/contents/new.ipynb",
            Some(json!({"type": "notebook", "content": bad})),
        )
        .await;
        assert_eq!(status, 400);
        assert!(!root(&app).join("new.ipynb").exists());
    }
    // An unreadable notebook on disk is a clear 400.
    std::fs::write(root(&app).join("broken.ipynb"), "{not json").unwrap();
    let (status, body) = call(&app, Method::GET, "/api/contents/broken.ipynb", None).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("unreadable_notebook"))
    );

    // Saving over a directory fails and leaves it intact.
    std::fs::create_dir(root(&app).join("d")).unwrap();
    std::fs::write(root(&app).join("d/keep.txt"), "keep").unwrap();
    for body in [
        json!({"type": "file", "format": "text", "content": "x"}),
        json!({"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}),
    ] {
        let (status, body) = call(&app, Method::PUT, "/api/contents/d", Some(body)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            std::fs::read_to_string(root(&app).join("d/keep.txt")).unwrap(),
            "keep"
        );
    }
}

#[tokio::test]
async fn uploads_respect_the_limit_and_chunks_assemble() {
    let Some(app) = spawn_app().await else { return };
    let path = root(&app).join("big.bin");
    std::fs::write(&path, b"old").unwrap();
    let too_big = "a".repeat(CONTENTS_UPLOAD_BYTES_MAX as usize + 1);
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/contents/big.bin",
        Some(json!({"type": "file", "format": "text", "content": too_big})),
    )
    .await;
    assert_eq!((status, &body["code"]), (413, &json!("upload_too_large")));
    assert_eq!(std::fs::read(&path).unwrap(), b"old");

    // Chunked upload: 1, 2, …, -1; the file is replaced only by the last chunk.
    let chunks: [&[u8]; 3] = [&[0, 1, 2], &[255, 254], &[7; 5]];
    let b64 = ["AAEC", "//4=", "BwcHBwc="];
    for (i, (n, content)) in [1, 2, -1].into_iter().zip(b64).enumerate() {
        let (status, body) = call(
            &app,
            Method::PUT,
            "/api/contents/big.bin",
            Some(json!({"type": "file", "format": "base64", "content": content, "chunk": n})),
        )
        .await;
        assert!(status == 200 || status == 201, "{body}");
        if i < 2 {
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
        }
    }
    assert_eq!(std::fs::read(&path).unwrap(), chunks.concat());
    // A chunked upload past the limit is dropped; the file stays as it was.
    let half = "a".repeat(CONTENTS_UPLOAD_BYTES_MAX as usize / 2 + 1);
    let chunk = |n: i64| json!({"type": "file", "format": "text", "content": half, "chunk": n});
    let (status, _) = call(&app, Method::PUT, "/api/contents/big.bin", Some(chunk(1))).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, Method::PUT, "/api/contents/big.bin", Some(chunk(-1))).await;
    assert_eq!(status, 413);
    assert_eq!(std::fs::read(&path).unwrap(), chunks.concat());
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/contents/nb.ipynb",
        Some(json!({"type": "notebook", "content": {}, "chunk": 1})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, dir) = call(&app, Method::GET, "/api/contents", None).await;
    assert_eq!(dir["content"].as_array().unwrap().len(), 1, "{dir}");
}

#[tokio::test]
async fn checkpoints_create_list_restore_delete() {
    let Some(app) = spawn_app().await else { return };
    let file = json!({"type": "file", "format": "text", "content": "v1"});
    call(&app, Method::PUT, "/api/contents/f.txt", Some(file)).await;
    let (status, list) = call(&app, Method::GET, "/api/contents/f.txt/checkpoints", None).await;
    assert_eq!((status, list), (200, json!([])));
    let response = app
        .http
        .post(format!("{}/api/contents/f.txt/checkpoints", app.base))
        .header("Authorization", format!("token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["location"],
        "/api/contents/f.txt/checkpoints/checkpoint"
    );
    let checkpoint: Value = response.json().await.unwrap();
    assert_eq!(checkpoint["id"], "checkpoint");
    assert!(checkpoint["last_modified"].is_string());
    assert!(root(&app)
        .join(".ipynb_checkpoints/f-checkpoint.txt")
        .is_file());
    let (_, list) = call(&app, Method::GET, "/api/contents/f.txt/checkpoints", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    let file = json!({"type": "file", "format": "text", "content": "v2"});
    call(&app, Method::PUT, "/api/contents/f.txt", Some(file)).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents/f.txt/checkpoints/checkpoint",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        std::fs::read_to_string(root(&app).join("f.txt")).unwrap(),
        "v1"
    );
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents/f.txt/checkpoints/other",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/contents/f.txt/checkpoints/checkpoint",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/api/contents/f.txt/checkpoints/checkpoint",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/contents/f.txt/checkpoints/checkpoint",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A saved notebook always has a checkpoint, and it follows renames.
    let nb = json!({"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}});
    call(&app, Method::PUT, "/api/contents/n.ipynb", Some(nb)).await;
    let (_, list) = call(&app, Method::GET, "/api/contents/n.ipynb/checkpoints", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    call(
        &app,
        Method::PATCH,
        "/api/contents/n.ipynb",
        Some(json!({"path": "m.ipynb"})),
    )
    .await;
    assert!(root(&app)
        .join(".ipynb_checkpoints/m-checkpoint.ipynb")
        .is_file());
    let (status, _) = call(&app, Method::DELETE, "/api/contents/m.ipynb", None).await;
    assert_eq!(status, 204);
    assert!(!root(&app)
        .join(".ipynb_checkpoints/m-checkpoint.ipynb")
        .exists());
}

/// Every entry under `dir` (links not followed): its path and, for files, its bytes.
fn disk(dir: &std::path::Path) -> std::collections::BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut entries = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let bytes = if meta.is_dir() {
                pending.push(path.clone());
                None
            } else if meta.is_symlink() {
                Some(
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                Some(std::fs::read(&path).unwrap())
            };
            entries.insert(path, bytes);
        }
    }
    entries
}

/// Sends `target` as written (no URL normalisation) with `body`; the status and the JSON body.
async fn raw_call(app: &TestApp, method: &str, target: &str, body: &str) -> (u16, Value) {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let json = response
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// A refusal as jupyter_server words it: `message` and `reason`, plus our stable `code`.
fn assert_refused(body: &Value, code: &str, message_has: &str, context: &str) {
    assert_eq!(body["code"], code, "{context}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_has),
        "{context}: message {message:?} lacks {message_has:?}"
    );
    assert!(body.get("reason").is_some(), "{context}: {body}");
}

/// A root with a notebook, a text file and a directory with a file in it.
fn populate(app: &TestApp) -> &'static str {
    let nb =
        "{\n \"cells\": [],\n \"metadata\": {},\n \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n";
    std::fs::write(root(app).join("nb.ipynb"), nb).unwrap();
    std::fs::write(root(app).join("a.txt"), "a").unwrap();
    std::fs::create_dir(root(app).join("d")).unwrap();
    std::fs::write(root(app).join("d/keep.txt"), "keep").unwrap();
    nb
}

#[tokio::test]
async fn traversal_is_refused_with_a_clear_error_and_nothing_changes() {
    let Some(app) = spawn_app().await else { return };
    populate(&app);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
    let outside_name = outside
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (root_before, outside_before) = (disk(&root(&app)), disk(outside.path()));

    let write = r#"{"type": "file", "format": "text", "content": "pwned"}"#;
    for (method, body) in [
        ("GET", ""),
        ("PUT", write),
        ("POST", "{}"),
        ("PATCH", r#"{"path": "stolen.txt"}"#),
        ("DELETE", ""),
    ] {
        for target in [
            format!("/api/contents/../{outside_name}/secret.txt"),
            format!("/api/contents/%2e%2e/{outside_name}/secret.txt"),
            format!("/api/contents/%2E%2E%2F{outside_name}%2Fsecret.txt"),
            format!("/api/contents/d/../../{outside_name}/secret.txt"),
        ] {
            let (status, body) = raw_call(&app, method, &target, body).await;
            let context = format!("{method} {target}");
            assert_eq!(status, 404, "{context}: {body}");
            assert_refused(
                &body,
                "path_outside_root",
                "is outside root contents directory",
                &context,
            );
        }
    }
    // `..` in a request body: rename to, copy from, and save into a path outside.
    let (status, body) = call(
        &app,
        Method::PATCH,
        "/api/contents/a.txt",
        Some(json!({"path": format!("../{outside_name}/a.txt")})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_refused(
        &body,
        "path_outside_root",
        "is outside root contents directory",
        "rename",
    );
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/contents/d",
        Some(json!({"copy_from": format!("../{outside_name}/secret.txt")})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_refused(
        &body,
        "path_outside_root",
        "is outside root contents directory",
        "copy",
    );

    assert_eq!(disk(&root(&app)), root_before);
    assert_eq!(disk(outside.path()), outside_before);
}

#[tokio::test]
async fn invalid_notebook_json_is_refused_and_the_saved_notebook_is_kept() {
    let Some(app) = spawn_app().await else { return };
    populate(&app);
    let before = disk(&root(&app));

    // A body that is not JSON at all.
    for target in ["/api/contents/nb.ipynb", "/api/contents/new.ipynb"] {
        let (status, body) = raw_call(
            &app,
            "PUT",
            target,
            r#"{"type": "notebook", "content": {"cells": ["#,
        )
        .await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_refused(
            &body,
            "invalid_json",
            "Invalid JSON in body of request",
            target,
        );
    }
    // JSON, but not an nbformat 4 notebook: the message says what is wrong.
    for (content, problem) in [
        (json!({"cells": [], "metadata": {}}), "nbformat"),
        (
            json!({"cells": [{"cell_type": "markdown", "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
            "cells[0]: 'source'",
        ),
        (json!([1, 2, 3]), ""),
    ] {
        let (status, body) = call(
            &app,
            Method::PUT,
            "/api/contents/nb.ipynb",
            Some(json!({"type": "notebook", "content": content})),
        )
        .await;
        assert_eq!(status, 400, "{content}: {body}");
        assert_refused(
            &body,
            "invalid_notebook",
            "is invalid and was not saved",
            &content.to_string(),
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(problem),
            "{message:?} does not name {problem:?}"
        );
    }
    // Uploading a notebook's text as a file is allowed; a notebook upload of broken text is not.
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/contents/nb.ipynb",
        Some(json!({"type": "notebook", "format": "text", "content": "{\"cells\": ["})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_refused(
        &body,
        "invalid_notebook",
        "is invalid and was not saved",
        "text notebook",
    );

    assert_eq!(disk(&root(&app)), before);
}

#[tokio::test]
async fn saving_over_a_directory_is_refused_and_the_directory_is_kept() {
    let Some(app) = spawn_app().await else { return };
    populate(&app);
    let before = disk(&root(&app));

    let notebook = json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    for body in [
        json!({"type": "file", "format": "text", "content": "x"}),
        json!({"type": "file", "format": "base64", "content": "eA=="}),
        json!({"type": "notebook", "content": notebook}),
        json!({"type": "file", "format": "text", "content": "x", "chunk": 1}),
        json!({"type": "file", "format": "text", "content": "x", "chunk": -1}),
    ] {
        let (status, response) =
            call(&app, Method::PUT, "/api/contents/d", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {response}");
        assert_refused(
            &response,
            "is_a_directory",
            "Cannot save d: it is a directory",
            &body.to_string(),
        );
        // The root itself.
        let (status, response) = call(&app, Method::PUT, "/api/contents", Some(body.clone())).await;
        assert_eq!(status, 400, "root {body}: {response}");
        assert_refused(&response, "is_a_directory", "directory", &body.to_string());
    }
    // Renaming a file onto the directory, or making a directory over a file.
    let (status, body) = call(
        &app,
        Method::PATCH,
        "/api/contents/a.txt",
        Some(json!({"path": "d"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_refused(
        &body,
        "file_exists",
        "File already exists: d",
        "rename onto d",
    );
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/contents/a.txt",
        Some(json!({"type": "directory"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_refused(
        &body,
        "not_a_directory",
        "Not a directory: a.txt",
        "directory over a.txt",
    );

    assert_eq!(disk(&root(&app)), before);
}

#[tokio::test]
async fn uploads_beyond_the_limit_are_refused_and_nothing_changes() {
    let Some(app) = spawn_app().await else { return };
    populate(&app);
    let before = disk(&root(&app));
    let limit = CONTENTS_UPLOAD_BYTES_MAX as usize;
    let limit_text =
        format!("more than the {limit} bytes this server accepts; nothing was written");

    // base64 that decodes to one byte more than the limit, over an existing file and a new one.
    let b64 = "A".repeat((limit + 3) / 3 * 4);
    for path in ["a.txt", "new.bin"] {
        let (status, body) = call(
            &app,
            Method::PUT,
            &format!("/api/contents/{path}"),
            Some(json!({"type": "file", "format": "base64", "content": b64})),
        )
        .await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_refused(&body, "upload_too_large", &limit_text, path);
    }
    // A notebook whose file would be larger than the limit.
    let big_cell =
        json!({"cell_type": "markdown", "id": "big", "metadata": {}, "source": "x".repeat(limit)});
    let notebook = json!({"cells": [big_cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/contents/nb.ipynb",
        Some(json!({"type": "notebook", "content": notebook})),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_refused(&body, "upload_too_large", &limit_text, "notebook");
    // Chunks: the one that crosses the limit ends the upload and its staging file goes.
    let half = "a".repeat(limit / 2 + 1);
    for (n, expected) in [(1, 200), (2, 413)] {
        let (status, body) = call(
            &app,
            Method::PUT,
            "/api/contents/a.txt",
            Some(json!({"type": "file", "format": "text", "content": half, "chunk": n})),
        )
        .await;
        assert_eq!(status, expected, "chunk {n}: {body}");
    }
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/contents/a.txt",
        Some(json!({"type": "file", "format": "text", "content": "x", "chunk": -1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_refused(
        &body,
        "upload_not_started",
        "send chunk 1 first",
        "after a refused chunk",
    );

    assert_eq!(disk(&root(&app)), before);
}

#[tokio::test]
async fn files_are_served_raw_inside_the_root_only() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let root = app.data_dir.path().join("root");
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    std::fs::create_dir_all(root.join("img")).unwrap();
    std::fs::write(root.join("img/plot.png"), png).unwrap();
    std::fs::write(root.join(".secret"), b"hidden").unwrap();
    std::fs::write(app.data_dir.path().join("outside.txt"), b"outside").unwrap();
    let get = |path: &str| {
        let request = app
            .http
            .get(format!("{}{path}", app.base))
            .header("Authorization", format!("token {TOKEN}"));
        async move { request.send().await.unwrap() }
    };
    let response = get("/files/img/plot.png").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert!(response.headers().get("content-disposition").is_none());
    assert_eq!(response.bytes().await.unwrap(), png);
    let response = get("/files/img/plot.png?download=1").await;
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"plot.png\""
    );
    for refused in [
        "/files/.secret",
        "/files/img",
        "/files/missing.txt",
        "/files/../outside.txt",
        "/files/..%2Foutside.txt",
    ] {
        let response = get(refused).await;
        assert_eq!(response.status(), 404, "{refused}");
    }
    // Without the token: refused like the rest of the API.
    let response = app
        .http
        .get(format!("{}/files/img/plot.png", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_body_over_the_request_limit_gets_a_json_error() {
    let Some(app) = spawn_app().await else {
        return;
    };
    let body = "x".repeat((1 << 20) + 1);
    let (status, reply) = app
        .request(Method::PUT, "/api/contents/big.txt", Some(&body))
        .await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["code"], "request_too_large");
    assert!(reply["message"]
        .as_str()
        .unwrap()
        .contains("request_body_bytes_max"));
    assert!(!app.data_dir.path().join("root/big.txt").exists());
}

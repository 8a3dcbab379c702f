//! `commonlab user` and `commonlab audit` run as the built binary against a temporary data
//! directory: accounts are added from standard input, listed, re-tiered and removed, each change
//! lands in the audit log, and an edit made to the database behind the server's back makes
//! `audit verify` fail naming the record.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs the binary with `args`, feeding `stdin`, with no `COMMONLAB_*` variables from outside.
fn commonlab(args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commonlab"));
    for (name, _) in std::env::vars() {
        if name.starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading its input; that is not a
    // failure of the test.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// Runs `commonlab <args> --data-dir <dir>`.
fn run(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    commonlab(&all, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn add(dir: &Path, name: &str) {
    ok(run(dir, &["user", "add", name], "correct horse\n"));
}

/// Edits the database as someone holding the file would: the append-only triggers dropped.
fn tamper(dir: &Path, sql: &str) {
    let connection = rusqlite::Connection::open(dir.join("commonlab.sqlite")).unwrap();
    connection
        .execute_batch(&format!(
            "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; {sql}"
        ))
        .unwrap();
}

#[test]
fn users_are_added_listed_retiered_and_removed_with_an_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let added = ok(run(dir, &["user", "add", "ada"], "correct horse\n"));
    assert!(
        added.contains("added user ada (role user, tier free, uid 200001)"),
        "{added}"
    );
    let added = ok(run(
        dir,
        &["user", "add", "bob", "--admin", "--tier", "pro"],
        "battery staple\r\n",
    ));
    assert!(added.contains("role admin, tier pro"), "{added}");

    let table = ok(run(dir, &["user", "list"], ""));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("TIER"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("ada ") && lines[1].contains("free"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("bob ") && lines[2].contains("admin"),
        "{table}"
    );

    ok(run(dir, &["user", "set-tier", "ada", "pro"], ""));
    let listed: serde_json::Value =
        serde_json::from_str(&ok(run(dir, &["user", "list", "--json"], ""))).unwrap();
    assert_eq!(listed[0]["name"], "ada");
    assert_eq!(listed[0]["tier"], "pro");
    assert_eq!(listed[1]["uid"], 200002);

    let token = ok(run(dir, &["user", "token", "ada", "--label", "laptop"], ""));
    let token = token.trim();
    assert!(token.starts_with("clt_") && token.len() == 68, "{token}");

    ok(run(dir, &["user", "remove", "bob"], ""));
    let table = ok(run(dir, &["user", "list"], ""));
    assert!(!table.contains("bob"), "{table}");
    let missing = run(dir, &["user", "remove", "bob"], "");
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no user named `bob`"),
        "{}",
        stderr(&missing)
    );

    let verify = ok(run(dir, &["audit", "verify"], ""));
    assert!(
        verify.contains("audit log OK: 5 records checked"),
        "{verify}"
    );
    let listed = ok(run(dir, &["audit", "list"], ""));
    for action in ["user_add", "user_set_tier", "token_create", "user_remove"] {
        assert!(listed.contains(action), "{action} missing from\n{listed}");
    }
    assert!(
        !listed.contains(token),
        "the token itself is never recorded"
    );
    let last_two = ok(run(dir, &["audit", "list", "--limit", "2", "--json"], ""));
    let seqs: Vec<i64> = last_two
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [4, 5]);
    let last_two: Vec<&str> = last_two.lines().collect();
    assert!(last_two[0].contains("\"actor\":\"cli\""), "{}", last_two[0]);
}

#[test]
fn add_refuses_empty_and_short_passwords_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let cases = [
        ("ada", "", "no password on standard input"),
        ("ada", "\n", "no password on standard input"),
        ("ada", "short\n", "at least 8 characters"),
        ("Ada", "correct horse\n", "invalid user name `Ada`"),
    ];
    for (name, stdin, message) in cases {
        let output = run(dir, &["user", "add", name], stdin);
        assert!(!output.status.success(), "{name} {stdin:?}");
        assert!(
            stderr(&output).contains(message),
            "{stdin:?}: {}",
            stderr(&output)
        );
    }
    add(dir, "ada");
    let again = run(dir, &["user", "add", "ada"], "correct horse\n");
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let table = ok(run(dir, &["user", "list"], ""));
    assert_eq!(table.lines().count(), 2, "{table}");
    let verify = ok(run(dir, &["audit", "verify"], ""));
    assert!(verify.contains("1 records checked"), "{verify}");
}

#[test]
fn an_edited_audit_record_fails_verify_naming_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for name in ["ada", "bob", "cy"] {
        add(dir, name);
    }
    tamper(
        dir,
        "UPDATE audit SET detail = '{\"role\":\"admin\",\"tier\":\"free\",\"uid\":200002}' WHERE seq = 2",
    );
    let verify = run(dir, &["audit", "verify"], "");
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    let text = stdout(&verify);
    assert!(text.contains("BROKEN at seq 2"), "{text}");
    assert!(text.contains("edited"), "{text}");
}

#[test]
fn a_deleted_audit_record_fails_verify_naming_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    for name in ["ada", "bob", "cy", "dee"] {
        add(dir, name);
    }
    tamper(dir, "DELETE FROM audit WHERE seq = 3");
    let verify = run(dir, &["audit", "verify"], "");
    assert_eq!(verify.status.code(), Some(1), "{}", stdout(&verify));
    let text = stdout(&verify);
    assert!(
        text.contains("BROKEN at seq 3: record 3 is missing"),
        "{text}"
    );
}

#[test]
fn the_audit_table_refuses_plain_edits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    add(dir, "ada");
    let connection = rusqlite::Connection::open(dir.join("commonlab.sqlite")).unwrap();
    let err = connection
        .execute("UPDATE audit SET actor = 'eve'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = connection.execute("DELETE FROM audit", []).unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[test]
fn the_database_is_found_through_the_config_file_as_serve_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("commonlab.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\nuser_tier = \"campus\"\n",
            data_dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let added = ok(commonlab(
        &["user", "add", "ada", "--config", config],
        "correct horse\n",
    ));
    assert!(added.contains("tier campus"), "{added}");
    assert!(data_dir.join("commonlab.sqlite").is_file());
    let table = ok(commonlab(&["user", "list", "--config", config], ""));
    assert!(table.contains("ada"), "{table}");
}

#[test]
fn reading_commands_refuse_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for args in [
        &["user", "list"][..],
        &["audit", "verify"],
        &["audit", "list"],
    ] {
        let output = run(&missing, args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("no database at"),
            "{}",
            stderr(&output)
        );
    }
    assert!(!missing.exists());
}

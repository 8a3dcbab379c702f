//! The usage policy on the execute path: a real kernel, a cell refused, a cell warned, a cell run.

use commonlab_store::Store;

use crate::harness::{spawn_app_with_policy, stdout};

#[tokio::test]
async fn cells_are_blocked_or_warned_with_an_explanation_and_recorded() {
    let mut config = commonlab_policy::PolicyConfig {
        appeal_url: Some("https://commons.example/appeal".into()),
        ..Default::default()
    };
    let p2p = config.packs.entry("p2p".into()).or_default();
    p2p.action
        .insert("default".into(), commonlab_policy::Action::Warn);
    let Some(app) = spawn_app_with_policy(Some(config)).await else {
        return;
    };
    let kernel_id = app.start_kernel().await;
    let mut client = app.connect(&kernel_id, "policy", true).await;

    // Blocked: the kernel never sees it, the client gets an error reply naming the rule.
    let msg_id = client
        .execute("!wget https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-x64.tar.gz\n!./xmrig -o pool.supportxmr.com:3333 -u W --donate-level 1\nblocked_ran = True")
        .await;
    let messages = client.until_idle(&msg_id).await;
    let reply = messages
        .iter()
        .find(|m| m.msg_type == "execute_reply")
        .expect("execute_reply");
    assert_eq!(reply.content["status"], "error");
    assert_eq!(reply.content["ename"], "PolicyViolation");
    let error = messages
        .iter()
        .find(|m| m.msg_type == "error")
        .expect("error output");
    let text = error.content["traceback"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("was not run") && text.contains("mining"),
        "{text}"
    );
    assert!(
        text.contains("mining.miner-program") && text.contains("xmrig"),
        "names the rule and the matched text: {text}"
    );
    assert!(
        text.contains("https://commons.example/appeal"),
        "says how to appeal: {text}"
    );

    // Warned: it runs, with the explanation on stderr.
    let msg_id = client.execute("try:\n    import libtorrent as lt\nexcept ImportError:\n    lt = None\nmagnet = 'magnet:?xt=urn:btih:abc'\nprint('warned cell ran')").await;
    let messages = client.until_idle(&msg_id).await;
    assert_eq!(stdout(&messages), "warned cell ran\n");
    let warning: String = messages
        .iter()
        .filter(|m| m.msg_type == "stream" && m.content["name"] == "stderr")
        .map(|m| m.content["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        warning.contains("ran, but it matches") && warning.contains("p2p"),
        "{warning}"
    );

    // Allowed, and the blocked cell really did not run.
    let msg_id = client.execute("print('blocked_ran' in globals())").await;
    assert_eq!(stdout(&client.until_idle(&msg_id).await), "False\n");

    let store = Store::open_sqlite(&app.data_dir.path().join("state.sqlite")).unwrap();
    let findings = store.findings_for_kernel(&kernel_id).unwrap();
    let actions: Vec<(&str, Option<&str>)> = findings
        .iter()
        .map(|f| (f.action.as_str(), f.category.as_deref()))
        .collect();
    assert_eq!(
        actions,
        vec![("block", Some("mining")), ("warn", Some("p2p"))]
    );
    assert!(
        findings[0].verdict.contains("pool.supportxmr.com"),
        "evidence is stored"
    );
}

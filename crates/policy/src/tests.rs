//! Tests of the policy engine: data in, snapshot out, through one `check` per feature.

use std::path::PathBuf;

use expect_test::{expect, Expect};

use crate::{Action, CheckContext, Observation, PackError, Policy, PolicyConfig, Verdict, Via};

const CATEGORIES: &[&str] = &[
    "deepfake",
    "mining",
    "password-cracking",
    "p2p",
    "remote-access",
    "denial-of-service",
    "sd-webui",
    "distributed-computing",
];

fn render(verdict: &Verdict) -> String {
    let mut out = format!(
        "{} {}",
        verdict.action,
        verdict.category.as_deref().unwrap_or("-")
    );
    if let Some(shadow) = verdict.shadow_action {
        out.push_str(&format!(" (shadow: {shadow})"));
    }
    out.push('\n');
    for category in &verdict.categories {
        out.push_str(&format!(
            "  {} {:.2}{}\n",
            category.category,
            category.score,
            if category.decided { " decided" } else { "" }
        ));
    }
    for finding in &verdict.findings {
        let via = match &finding.via {
            Via::Direct => String::new(),
            Via::Alias(from) => format!(" [alias of {from}]"),
            other => format!(" [{}]", format!("{other:?}").to_lowercase()),
        };
        out.push_str(&format!(
            "  {} {} +{:.2} `{}`{via}\n",
            finding.location, finding.rule, finding.weight, finding.matched
        ));
    }
    out
}

fn check_cell_with(policy: &Policy, tier: &str, code: &str, expect: Expect) {
    expect.assert_eq(&render(&policy.check_cell(code, &CheckContext::new(tier))));
}

fn check_cell(code: &str, expect: Expect) {
    check_cell_with(&Policy::builtin(), "free", code, expect);
}

fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data")
}

fn check_runtime(fixture: &str, expect: Expect) {
    let path = test_data().join("runtime").join(fixture);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let observations: Vec<Observation> = serde_json::from_str(&text).expect("fixture parses");
    expect.assert_eq(&render(
        &Policy::builtin().inspect_runtime(&observations, &CheckContext::new("free")),
    ));
}

#[test]
fn builtin_packs_load_and_every_rule_is_described() {
    let policy = Policy::builtin();
    let rules = policy.rules();
    assert!(rules.len() > 60, "{} rules", rules.len());
    for rule in &rules {
        assert!(
            CATEGORIES.contains(&rule.category.as_str()),
            "{}: category {}",
            rule.id,
            rule.category
        );
        assert!(
            rule.id.starts_with(&format!("{}.", rule.category)),
            "{} is not prefixed by its category",
            rule.id
        );
        assert!(
            rule.description.len() > 20,
            "{} needs a description a user can read",
            rule.id
        );
        assert!(rule.enabled && !rule.shadow);
    }
    let packs: Vec<&str> = policy.packs().iter().map(|pack| pack.id.as_str()).collect();
    assert_eq!(
        packs,
        [
            "deepfake",
            "mining",
            "password-cracking",
            "p2p",
            "remote-access",
            "denial-of-service",
            "free-tier"
        ]
    );
}

#[test]
fn miner_run_from_a_shell_line_is_blocked() {
    check_cell(
        "!wget -q https://github.com/xmrig/xmrig/releases/download/v6.21.0/xmrig-6.21.0-linux-static-x64.tar.gz\n!tar xf xmrig-6.21.0-linux-static-x64.tar.gz\n!./xmrig-6.21.0/xmrig -o pool.supportxmr.com:443 -u 4ABC -k --tls",
        expect![[r#"
            block mining
              mining 2.40 decided
              line 1 mining.miner-program +1.00 `xmrig`
              line 2 mining.miner-program +1.00 `xmrig`
              line 3 mining.miner-program +1.00 `xmrig`
              line 3 mining.pool-endpoint +0.60 `pool.supportxmr.com:443`
              line 3 mining.pool-host +0.80 `supportxmr.com`
        "#]],
    );
}

#[test]
fn one_innocent_word_does_not_convict() {
    check_cell(
        "wallets = df.groupby('wallet')['balance'].sum()\nminer_share = blocks['miner'].value_counts()",
        expect![[r#"
            allow -
              mining 0.45
              line 1 mining.wallet-word +0.20 `wallet`
              line 2 mining.share-words +0.25 `miner`
        "#]],
    );
}

#[test]
fn joined_strings_are_folded_before_matching() {
    check_cell(
        "tool = 'xm' + 'r' + 'ig'\nimport subprocess\nsubprocess.run(['./' + tool, '-o', 'rx.unmineable.com:3333', '-u', 'SHIB:0xabc.worker'])",
        expect![[r#"
            block mining
              mining 2.40 decided
              line 1 mining.miner-program +0.50 `xmrig` [concatenation]
              line 3 mining.miner-program +1.00 `xmrig` [variable]
              line 3 mining.pool-endpoint +0.60 `rx.unmineable.com:3333`
              line 3 mining.pool-host +0.80 `unmineable.com`
        "#]],
    );
}

#[test]
fn base64_and_hex_literals_are_decoded() {
    // "stratum+tcp://pool.example:3333" in base64, "hashcat" as hex escapes.
    check_cell(
        "import base64, os\nos.system(base64.b64decode('c3RyYXR1bSt0Y3A6Ly9wb29sLmV4YW1wbGU6MzMzMw==').decode())\ncmd = '\\x68\\x61\\x73\\x68\\x63\\x61\\x74 -m 0 hashes.txt words.txt'",
        expect![[r#"
            block mining
              mining 1.60 decided
              password-cracking 1.00 decided
              line 2 mining.pool-endpoint +0.60 `pool.example:3333` [base64]
              line 2 mining.stratum-url +1.00 `stratum+tcp://` [base64]
              line 3 password-cracking.cracker-program +1.00 `hashcat` [hex]
        "#]],
    );
}

#[test]
fn case_and_separators_are_folded() {
    check_cell(
        "!git clone https://github.com/AUTOMATIC1111/Stable_Diffusion_WebUI sd\n%cd sd\n!python launch.py --share",
        expect![[r#"
            block sd-webui
              sd-webui 1.60 decided
              line 1 sd-webui.repository +1.00 `Stable_Diffusion_WebUI`
              line 1 sd-webui.vocabulary +0.30 `WebUI`
              line 3 sd-webui.tunnel +0.30 `--share`
        "#]],
    );
}

#[test]
fn renamed_clone_is_followed() {
    check_cell(
        "!git clone https://github.com/deepfakes/faceswap.git studio\n%cd studio\n!python faceswap.py train -A a -B b -m model",
        expect![[r#"
            block deepfake
              deepfake 2.50 decided
              line 1 deepfake.face-swap-tool +1.00 `deepfakes/faceswap`
              line 1 deepfake.swap-words +0.50 `faceswap`
              line 1 deepfake.word +0.30 `deepfakes`
              line 2 deepfake.face-swap-tool +1.00 `studio` [alias of deepfakes/faceswap]
              line 3 deepfake.swap-cli +0.70 `faceswap.py train`
              line 3 deepfake.swap-words +0.50 `faceswap`
        "#]],
    );
}

#[test]
fn shell_quotes_and_variables_are_resolved() {
    check_cell(
        "%%bash\nT=tor\nR=rent\nqbit${T}${R}-nox -d\ntrans'mission'-daemon --foreground",
        expect![[r#"
            block p2p
              p2p 1.00 decided
              line 4 p2p.torrent-client +1.00 `qbittorrent-nox` [variable]
              line 5 p2p.torrent-client +1.00 `transmission-daemon` [concatenation]
        "#]],
    );
}

#[test]
fn tunnel_to_a_web_app_is_allowed_and_tunnel_to_ssh_is_not() {
    check_cell(
        "from pyngrok import ngrok\npublic_url = ngrok.connect(8501)\n!streamlit run app.py &",
        expect![[r#"
            allow -
              remote-access 0.30
              sd-webui 0.30
              line 1 remote-access.tunnel-tool +0.30 `pyngrok`
              line 1 sd-webui.tunnel +0.30 `pyngrok`
              line 2 sd-webui.tunnel +0.30 `ngrok`
        "#]],
    );
    check_cell(
        "!apt-get install -y openssh-server\n!service ssh start\n!ngrok tcp 22 &",
        expect![[r#"
            block remote-access
              remote-access 2.90 decided
              sd-webui 0.30
              line 1 remote-access.ssh-server +0.60 `openssh-server`
              line 2 remote-access.ssh-server-config +0.50 `service ssh`
              line 3 remote-access.tcp-tunnel +0.50 `tcp`
              line 3 remote-access.tunnel-to-ssh +1.00 `tcp 22`
              line 3 remote-access.tunnel-tool +0.30 `ngrok`
              line 3 sd-webui.tunnel +0.30 `ngrok`
        "#]],
    );
}

#[test]
fn comments_docstrings_and_markdown_magics_are_not_code() {
    check_cell(
        "# this notebook does not run xmrig or hashcat\n\"\"\"Unlike DeepFaceLab, we only detect faces.\"\"\"\nimport cv2",
        expect![[r#"
            allow -
        "#]],
    );
    check_cell(
        "%%html\n<p>Do not run xmrig or hashcat here.</p>",
        expect![[r#"
            allow -
        "#]],
    );
}

/// Python reads identifiers in NFKC form: `ｐｔｙ.ｓｐａｗｎ` runs `pty.spawn` and `import ｘｍｒｉｇ`
/// imports `xmrig`. A cell spelt with full-width or other compatibility letters is judged as
/// its plain spelling, in a cell and in a scanned script or notebook alike.
#[test]
fn compatibility_letters_are_read_as_python_reads_them() {
    let policy = Policy::builtin();
    let free = CheckContext::new("free");
    for (plain, spelt) in [
        (
            "import pty\npty.spawn('/bin/sh')",
            "import \u{ff50}\u{ff54}\u{ff59}\n\u{ff50}\u{ff54}\u{ff59}.\u{ff53}\u{ff50}\u{ff41}\u{ff57}\u{ff4e}('/bin/sh')",
        ),
        ("import xmrig", "import \u{ff58}\u{ff4d}\u{ff52}\u{ff49}\u{ff47}"),
        // Mixed: a mathematical letter, a ligature and a plain one.
        ("import xmrig", "import \u{1d431}m\u{1d42b}ig"),
        ("import pty\npty.spawn('/bin/sh')", "import pty\npty.\u{17f}pawn('/bin/sh')"),
    ] {
        let expected = policy.check_cell(plain, &free);
        assert_eq!(expected.action, Action::Block, "{plain}: {expected:?}");
        assert_eq!(render(&policy.check_cell(spelt, &free)), render(&expected), "{spelt}");
        let notebook = serde_json::json!({"cells": [{"cell_type": "code", "source": spelt}]});
        let scanned = policy.scan_document("n.ipynb", notebook.to_string().as_bytes(), &free);
        assert_eq!(scanned.verdict.action, Action::Block, "{spelt} in a notebook");
        let scanned = policy.scan_document("s.py", spelt.as_bytes(), &free);
        assert_eq!(scanned.verdict.action, Action::Block, "{spelt} in a script");
    }
}

/// A compatibility character that Python reads as punctuation only inside a string (a
/// full-width quote, a small number sign) stays as written. Read as a plain quote, the string
/// `"＂＂"` would become `""""`, a docstring the policy thinks runs on over the code after it.
#[test]
fn compatibility_punctuation_does_not_hide_code() {
    let policy = Policy::builtin();
    let free = CheckContext::new("free");
    for code in [
        "\"\u{ff02}\u{ff02}\"\nimport pty\npty.spawn('/bin/sh')\n\"\u{ff02}\u{ff02}\"",
        "x = 1\n'\u{ff07}\u{ff07}'\nimport pty\npty.spawn('/bin/sh')\n'\u{ff07}\u{ff07}'",
        "s = \"\u{fe5f}\" ; import pty; pty.spawn('/bin/sh')",
        "s = \"\u{ff3c}\"\nimport \u{ff58}\u{ff4d}\u{ff52}\u{ff49}\u{ff47}",
    ] {
        let verdict = policy.check_cell(code, &free);
        assert_eq!(verdict.action, Action::Block, "{code}: {verdict:?}");
    }
}

#[test]
fn free_tier_rules_act_only_on_the_free_tier() {
    let policy = Policy::builtin();
    let code = "!git clone https://github.com/AUTOMATIC1111/stable-diffusion-webui\n%cd stable-diffusion-webui\n!python launch.py --share --xformers";
    assert_eq!(
        policy.check_cell(code, &CheckContext::new("free")).action,
        Action::Block
    );
    let pro = policy.check_cell(code, &CheckContext::new("pro"));
    assert_eq!(pro.action, Action::Allow);
    assert_eq!(pro.categories[0].category, "sd-webui");
    assert!(pro.categories[0].decided);
}

#[test]
fn deepfake_detection_is_not_deepfake_creation() {
    check_cell(
        "methods = ['Deepfakes', 'Face2Face', 'FaceSwap', 'NeuralTextures']\nroot = 'FaceForensics++/manipulated_sequences/FaceSwap/c23/videos'\nmodel = build_deepfake_detector()",
        expect![[r#"
            allow -
              deepfake 0.30
              line 1 deepfake.word +0.30 `Deepfakes`
        "#]],
    );
}

#[test]
fn user_message_names_rules_evidence_and_appeal() {
    let policy = Policy::configured(
        &PolicyConfig {
            appeal_url: Some("https://lab.example/appeal".to_owned()),
            ..PolicyConfig::default()
        },
        &[],
    )
    .expect("valid config");
    let verdict = policy.check_cell(
        "!pip install libtorrent\nimport libtorrent as lt",
        &CheckContext::new("free"),
    );
    expect![[r#"
        This code was not run because it matches the usage policy's "p2p" rules.
        - rule p2p.torrent-client: Installs, imports or runs a BitTorrent or peer-to-peer client
          matched `libtorrent` at line 1: !pip install libtorrent
        The rules are published; if this is a mistake, appeal at https://lab.example/appeal and quote the rule ids above."#]]
    .assert_eq(&policy.user_message(&verdict));
}

#[test]
fn operator_config_disables_reweights_and_shadows() {
    let code = "!./xmrig -o pool.minexmr.com:4444 -u 4ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let config: PolicyConfig = toml::from_str(
        r#"
        shadow = ["mining.miner-program"]
        [rules."mining.pool-host"]
        weight = 0.1
        [rules."mining.pool-login"]
        enabled = false
        "#,
    )
    .expect("config parses");
    let policy = Policy::configured(&config, &[]).expect("valid config");
    check_cell_with(
        &policy,
        "free",
        code,
        expect![[r#"
            allow - (shadow: block)
              mining 0.70
              line 1 mining.miner-program +1.00 `xmrig`
              line 1 mining.pool-endpoint +0.60 `pool.minexmr.com:4444`
              line 1 mining.pool-host +0.10 `minexmr.com`
        "#]],
    );
    assert!(policy
        .check_cell(code, &CheckContext::new("free"))
        .is_shadow_only());

    let disabled: PolicyConfig = toml::from_str("disable = [\"mining\"]").expect("config parses");
    let policy = Policy::configured(&disabled, &[]).expect("valid config");
    assert_eq!(
        policy.check_cell(code, &CheckContext::new("free")).action,
        Action::Allow
    );
    assert!(
        !policy
            .packs()
            .iter()
            .find(|pack| pack.id == "mining")
            .expect("mining pack")
            .enabled
    );
}

#[test]
fn operator_config_is_checked() {
    let unknown: PolicyConfig =
        toml::from_str("disable = [\"mining.no-such-rule\"]").expect("config parses");
    assert_eq!(
        Policy::configured(&unknown, &[]).err(),
        Some(PackError::Unknown {
            id: "mining.no-such-rule".to_owned()
        })
    );
    let typo = toml::from_str::<PolicyConfig>("disabled = [\"mining\"]")
        .expect_err("unknown field is refused");
    assert!(typo.to_string().contains("unknown field"), "{typo}");
    let bad_pack = "[pack]\nid = \"site\"\nname = \"Site\"\ndescription = \"d\"\ncategory = \"mining\"\n[[rule]]\nid = \"site.x\"\ndescription = \"d\"\nweight = 1.0\n";
    let err = Policy::configured(
        &PolicyConfig::default(),
        &[("site.toml".to_owned(), bad_pack.to_owned())],
    )
    .expect_err("a rule without terms is refused");
    expect![[r#"rule site.x: a rule needs at least one of terms, literals, pattern or sha256"#]]
        .assert_eq(&err.to_string());
}

#[test]
fn operator_packs_add_rules_and_digests() {
    let site_pack = r#"
        [pack]
        id = "site"
        name = "Site rules"
        description = "Rules of this site."
        category = "mining"
        action = { default = "stop" }

        [[rule]]
        id = "site.known-miner-digest"
        description = "Runs an executable whose digest is a known miner build"
        sha256 = ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
        weight = 1.0
    "#;
    let mut packs = Policy::builtin_specs();
    packs.push(crate::pack::parse_pack("site.toml", site_pack).expect("pack parses"));
    let policy = Policy::from_packs(packs).expect("valid packs");
    let observation = Observation::Process {
        pid: Some(7),
        exe: "/tmp/.x/kworker".to_owned(),
        cmdline: vec!["kworker".to_owned()],
        sha256: Some("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08".to_owned()),
    };
    let verdict = policy.inspect_runtime(&[observation], &CheckContext::new("pro"));
    expect![[r#"
        stop mining
          mining 1.00 decided
          line 1 site.known-miner-digest +1.00 `sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08` [digest]
    "#]]
    .assert_eq(&render(&verdict));
}

#[test]
fn disguised_documents_are_classified() {
    let policy = Policy::builtin();
    let folder = test_data().join("documents");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|err| panic!("{}: {err}", folder.display()))
        .map(|entry| entry.expect("entry").path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 10);
    let mut failures = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let expected = if name.starts_with("allowed-") {
            None
        } else {
            Some(
                *CATEGORIES
                    .iter()
                    .find(|c| name.starts_with(&format!("{c}-")))
                    .expect("name starts with a category"),
            )
        };
        let bytes = std::fs::read(&path).expect("readable");
        let report = policy.scan_document(&name, &bytes, &CheckContext::new("free"));
        let got = report
            .verdict
            .category
            .as_deref()
            .filter(|_| report.verdict.action > Action::Allow);
        if got != expected {
            failures.push(format!(
                "{name}: expected {expected:?}, got {got:?}\n{}",
                render(&report.verdict)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn runtime_miner_renamed_process() {
    check_runtime(
        "miner-renamed-process.json",
        expect![[r#"
            stop mining
              mining 3.70 decided
              line 1 mining.pool-endpoint +0.60 `pool.hashvault.pro:3333`
              line 1 mining.pool-host +0.80 `hashvault.pro`
              line 1 mining.pool-login +0.70 `-o pool.hashvault.pro:3333 -u 44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQ…`
              line 2 mining.pool-connection +0.50 `connect tcp pool.hashvault.pro:3333`
              line 2 mining.pool-endpoint +0.60 `pool.hashvault.pro:3333`
              line 2 mining.pool-host +0.80 `hashvault.pro`
              line 2 mining.stratum-json +0.60 `"method":"login"`
              line 3 mining.saturation-profile +0.50 `profile:cpu-saturated-unattended`
        "#]],
    );
}

#[test]
fn runtime_sshd_behind_ngrok() {
    check_runtime(
        "sshd-behind-ngrok.json",
        expect![[r#"
            block remote-access
              remote-access 3.30 decided
              sd-webui 0.30
              line 1 remote-access.ssh-server +0.60 `sshd`
              line 2 remote-access.tcp-tunnel +0.50 `tcp`
              line 2 remote-access.tunnel-to-ssh +1.00 `tcp 22`
              line 2 remote-access.tunnel-tool +0.30 `ngrok`
              line 2 sd-webui.tunnel +0.30 `ngrok`
              line 3 remote-access.listen-port +0.60 `listen tcp :22`
              line 4 remote-access.tunnel-service-connection +0.30 `ngrok.com`
        "#]],
    );
}

#[test]
fn runtime_torrent_client() {
    check_runtime(
        "torrent-client.json",
        expect![[r#"
            block p2p
              p2p 2.50 decided
              line 1 p2p.torrent-client +1.00 `qbittorrent-nox`
              line 2 p2p.torrent-file +0.50 `.torrent`
              line 4 p2p.bittorrent-handshake +1.00 `BitTorrent protocol`
        "#]],
    );
}

#[test]
fn runtime_training_job_is_allowed() {
    check_runtime(
        "training-job.json",
        expect![[r#"
            allow -
        "#]],
    );
}

#[test]
fn runtime_saturation_alone_does_not_convict() {
    check_runtime(
        "unattended-saturation-only.json",
        expect![[r#"
            allow -
              mining 0.50
              line 2 mining.saturation-profile +0.50 `profile:cpu-saturated-unattended`
        "#]],
    );
}

#[test]
fn runtime_face_swap_files() {
    check_runtime(
        "face-swap-files.json",
        expect![[r#"
            block deepfake
              deepfake 3.00 decided
              line 1 deepfake.face-swap-tool +1.00 `inswapper_128`
              line 1 deepfake.swap-model-file +0.80 `inswapper_128.onnx`
              line 2 deepfake.face-swap-tool +1.00 `roop`
              line 3 deepfake.face-swap-tool +1.00 `face_swapper`
              line 3 deepfake.swap-cli +0.70 `--frame-processor`
              line 3 deepfake.swap-words +0.50 `frame-processor`
        "#]],
    );
}

#[test]
fn oversized_cells_are_cut_at_the_limit() {
    let config = PolicyConfig {
        cell_bytes_max: Some(64),
        ..PolicyConfig::default()
    };
    let policy = Policy::configured(&config, &[]).expect("valid config");
    let code = format!(
        "{}\n!./xmrig -o pool.minexmr.com:4444",
        "x = 1\n".repeat(20)
    );
    assert_eq!(
        policy.check_cell(&code, &CheckContext::new("free")).action,
        Action::Allow
    );
    assert_eq!(
        Policy::builtin()
            .check_cell(&code, &CheckContext::new("free"))
            .action,
        Action::Block
    );
}

//! Findings, appeals and restrictions through the hub: each user sees and appeals only their
//! own, administrators see the evidence and decide, decisions reach the user, and every step is
//! in the audit log. Findings are written through the user's scoped store, as the policy gate
//! writes them.

use commonlab_policy::{CheckContext, Policy, PolicyConfig};
use commonlab_store::FindingRecord;
use reqwest::Method;
use serde_json::{json, Value};

use crate::accounts::{get_page, log_in, post_form, spawn_hub, TestHub, NOW};

const MINING_CELL: &str =
    "import os; os.system(\"./xmrig -o pool.supportxmr.com:3333 --donate-level 1 --user '<b>bold</b>'\")";

/// Stores a policy finding about `code` for `owner`'s kernel `kernel_id`, as the gate does, and
/// returns its id.
fn insert_finding(hub: &TestHub, owner: &str, kernel_id: &str, code: &str, shadow: bool) -> i64 {
    let policy = Policy::configured(&PolicyConfig::default(), &[]).unwrap();
    let verdict = policy.check_cell(code, &CheckContext::new("free"));
    assert!(!verdict.findings.is_empty(), "{code} is found");
    let store = hub.store.for_owner(owner);
    store
        .insert_finding(&FindingRecord {
            at: NOW.into(),
            kernel_id: kernel_id.into(),
            msg_id: format!("msg-{kernel_id}"),
            action: verdict.action.as_str().into(),
            category: verdict.category.clone(),
            shadow,
            verdict: serde_json::to_string(&verdict).unwrap(),
        })
        .unwrap();
    store.finding_list(Some(owner), 1).unwrap()[0].id
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn users_appeal_only_their_own_findings_and_admins_decide_with_the_evidence() {
    let Some(hub) = spawn_hub().await else { return };
    let alice_finding = insert_finding(&hub, "alice", "k-alice", MINING_CELL, false);
    let alice_shadow = insert_finding(&hub, "alice", "k-alice", MINING_CELL, true);
    let bob_finding = insert_finding(&hub, "bob", "k-bob", MINING_CELL, false);

    // Alice lists her own findings, with the evidence; shadow-mode ones are not shown to her.
    let (status, findings) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/findings", None)
        .await;
    assert_eq!(status, 200, "{findings}");
    assert_eq!(ids(&findings), [alice_finding]);
    let finding = &findings[0];
    assert_eq!(finding["user"], "alice");
    assert_eq!(finding["kernel_id"], "k-alice");
    assert_eq!(finding["category"], "mining");
    assert!(finding["rules"]
        .as_array()
        .unwrap()
        .contains(&json!("mining.miner-program")));
    assert!(
        finding["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["matched"].as_str().unwrap().contains("xmrig")),
        "{finding}"
    );
    assert!(
        finding.get("verdict").is_none(),
        "the raw verdict is for admins"
    );
    for query in ["?user=bob", "?all=1"] {
        let (status, body) = hub
            .call(
                Some(&hub.alice),
                Method::GET,
                &format!("/hub/api/findings{query}"),
                None,
            )
            .await;
        assert_eq!((status, body["code"].as_str()), (403, Some("admin_only")));
    }
    // Carol, an admin, sees anyone's, shadow ones included.
    let (_, findings) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/findings?user=alice",
            None,
        )
        .await;
    assert_eq!(ids(&findings), [alice_shadow, alice_finding]);
    let (_, findings) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/findings?all=1",
            None,
        )
        .await;
    assert_eq!(ids(&findings), [bob_finding, alice_shadow, alice_finding]);

    // Alice appeals her finding.
    let appeal_body =
        |finding_id: i64, message: &str| json!({"finding_id": finding_id, "message": message});
    let (status, appeal) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/appeals",
            Some(
                &appeal_body(alice_finding, "That was a course exercise on detection.").to_string(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{appeal}");
    assert_eq!(appeal["status"], "open");
    assert_eq!(appeal["kind"], "finding");
    let appeal_id = appeal["id"].as_i64().unwrap();

    // Not bob's finding, nor a shadow one, nor one that does not exist; not twice; not an empty
    // message; and no restriction to appeal.
    for (finding_id, message, expected) in [
        (bob_finding, "mine?", (404, "no_such_finding")),
        (alice_shadow, "shadow", (404, "no_such_finding")),
        (99_999, "none", (404, "no_such_finding")),
        (alice_finding, "again", (409, "appeal_open")),
        (alice_finding, "  ", (400, "invalid_message")),
    ] {
        let (status, body) = hub
            .call(
                Some(&hub.alice),
                Method::POST,
                "/hub/api/appeals",
                Some(&appeal_body(finding_id, message).to_string()),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str().unwrap()),
            expected,
            "{finding_id} {message:?}: {body}"
        );
    }
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/appeals",
            Some(r#"{"message":"lift it"}"#),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("nothing_to_appeal"))
    );
    assert!(body["message"].as_str().unwrap().contains("not restricted"));

    // Bob sees none of it.
    let (_, appeals) = hub
        .call(Some(&hub.bob), Method::GET, "/hub/api/appeals", None)
        .await;
    assert_eq!(appeals, json!([]));
    let (status, _) = hub
        .call(
            Some(&hub.bob),
            Method::GET,
            "/hub/api/appeals?user=alice",
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Carol sees it among the open appeals, with the evidence.
    let (status, open) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/appeals?status=open",
            None,
        )
        .await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(ids(&open), [appeal_id]);
    assert_eq!(open[0]["user"], "alice");
    assert_eq!(open[0]["finding"]["id"], alice_finding);
    assert!(
        open[0]["finding"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["matched"] == "xmrig"),
        "{open}"
    );
    assert_eq!(open[0]["restriction"], Value::Null);
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/appeals?status=pending",
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_status"))
    );

    // Users cannot decide; carol grants it, once.
    let decision = format!("/hub/api/appeals/{appeal_id}/decision");
    let grant = r#"{"grant":true,"note":"Agreed: a detection exercise."}"#;
    for token in [&hub.alice, &hub.bob] {
        let (status, body) = hub
            .call(Some(token), Method::POST, &decision, Some(grant))
            .await;
        assert_eq!((status, body["code"].as_str()), (403, Some("admin_only")));
    }
    let (status, decided) = hub
        .call(Some(&hub.carol), Method::POST, &decision, Some(grant))
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "granted");
    assert_eq!(decided["restriction_lifted"], false);
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            &decision,
            Some(r#"{"grant":false}"#),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("appeal_decided"))
    );
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            "/hub/api/appeals/99999/decision",
            Some(grant),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_such_appeal"))
    );

    // Alice sees the decision.
    let (_, appeals) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/appeals", None)
        .await;
    assert_eq!(ids(&appeals), [appeal_id]);
    assert_eq!(appeals[0]["status"], "granted");
    assert_eq!(appeals[0]["decided_by"], "carol");
    assert_eq!(appeals[0]["decision_note"], "Agreed: a detection exercise.");
}

#[tokio::test]
async fn a_restriction_is_appealed_and_lifted_and_every_step_is_audited() {
    let Some(hub) = spawn_hub().await else { return };
    for user in ["alice", "carol"] {
        let (status, body) = hub
            .call(
                Some(&hub.carol),
                Method::PATCH,
                &format!("/hub/api/users/{user}"),
                Some(r#"{"restricted_until":"2099-01-01T00:00:00+00:00","restricted_reason":"mining process"}"#),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, appeal) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/appeals",
            Some(r#"{"message":"I was not mining; the process was a test fixture."}"#),
        )
        .await;
    assert_eq!(status, 201, "{appeal}");
    assert_eq!(appeal["kind"], "restriction");
    assert_eq!(appeal["finding_id"], Value::Null);
    assert_eq!(appeal["restriction"]["reason"], "mining process");
    assert_eq!(appeal["restriction"]["active"], true);
    let appeal_id = appeal["id"].as_i64().unwrap();
    let (status, body) = hub
        .call(
            Some(&hub.alice),
            Method::POST,
            "/hub/api/appeals",
            Some(r#"{"message":"again"}"#),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("appeal_open")));

    // An admin does not decide their own appeal.
    let (status, own) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            "/hub/api/appeals",
            Some(r#"{"message":"mine"}"#),
        )
        .await;
    assert_eq!(status, 201, "{own}");
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            &format!("/hub/api/appeals/{}/decision", own["id"]),
            Some(r#"{"grant":true}"#),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("own_appeal")));

    let (_, open) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/appeals?status=open&user=alice",
            None,
        )
        .await;
    assert_eq!(ids(&open), [appeal_id]);
    assert_eq!(open[0]["restriction"]["until"], "2099-01-01T00:00:00+00:00");
    let (status, decided) = hub
        .call(
            Some(&hub.carol),
            Method::POST,
            &format!("/hub/api/appeals/{appeal_id}/decision"),
            Some(r#"{"grant":true,"note":"Lifted."}"#),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["restriction_lifted"], true);
    let (_, me) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!(me["restricted_until"], Value::Null);
    assert_eq!(me["restricted_reason"], Value::Null);

    let records = hub.store.audit_list(0, 100).unwrap();
    let find = |action: &str, actor: &str| {
        records
            .iter()
            .filter(|r| r.action == action && r.actor.as_deref() == Some(actor))
            .collect::<Vec<_>>()
    };
    let appealed = find("appeal", "alice");
    assert_eq!(appealed.len(), 1);
    assert_eq!(appealed[0].detail["appeal_id"], appeal_id);
    assert_eq!(
        appealed[0].detail["restriction"]["reason"],
        "mining process"
    );
    let decisions = find("appeal_decision", "carol");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].subject.as_deref(), Some("alice"));
    assert_eq!(decisions[0].detail["status"], "granted");
    assert_eq!(decisions[0].detail["note"], "Lifted.");
    let lifted: Vec<_> = find("restriction", "carol")
        .into_iter()
        .filter(|r| r.detail["appeal_id"] == appeal_id)
        .collect();
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].detail["lifted"], true);
    assert!(
        lifted[0].seq > decisions[0].seq,
        "the lift follows the decision"
    );
    let verify = hub.store.audit_verify().unwrap();
    assert!(verify.first_bad.is_none(), "{verify:?}");
}

#[tokio::test]
async fn the_appeal_pages_show_the_evidence_and_take_appeals_and_decisions() {
    let Some(hub) = spawn_hub().await else { return };
    let finding = insert_finding(&hub, "alice", "k-alice", MINING_CELL, false);

    // Nobody logged in is sent to the login page; the policy's built-in link leads here.
    let (status, location, _) = get_page(&hub, "/hub/appeal", None).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/hub/login?next=/hub/appeal")
    );
    let (status, location, _) = get_page(&hub, "/hub/admin/appeals", None).await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/hub/login?next=/hub/admin/appeals")
    );
    let (status, location, _) = get_page(&hub, "/hub/appeals", None).await;
    assert_eq!((status, location.as_str()), (303, "/hub/appeal"));

    // Alice's page shows her finding's evidence, escaped, with a form to appeal it.
    let (alice, alice_xsrf) = log_in(&hub, "alice").await;
    let (status, _, html) = get_page(&hub, "/hub/appeal", Some(&alice)).await;
    assert_eq!(status, 200, "{html}");
    for expected in [
        format!(r#"id="finding-{finding}""#),
        "mining.miner-program".into(),
        "xmrig".into(),
        "k-alice".into(),
        format!(r#"name="finding_id" value="{finding}""#),
        format!(r#"name="_xsrf" value="{alice_xsrf}""#),
        "The account is not restricted".into(),
    ] {
        assert!(html.contains(&expected), "{expected} missing from {html}");
    }
    assert!(
        !html.contains("<b>bold</b>") && html.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "{html}"
    );
    // Bob's page does not show alice's finding.
    let (bob, bob_xsrf) = log_in(&hub, "bob").await;
    let (status, _, html) = get_page(&hub, "/hub/appeal", Some(&bob)).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("k-alice") && !html.contains("xmrig"),
        "{html}"
    );
    // Nor can bob appeal it through the form.
    let finding_id = finding.to_string();
    let (status, _, html) = post_form(
        &hub,
        "/hub/appeal",
        &bob,
        &[
            ("_xsrf", &bob_xsrf),
            ("finding_id", &finding_id),
            ("message", "mine"),
        ],
    )
    .await;
    assert_eq!(status, 404, "{html}");

    // The form needs the XSRF value; with it, the appeal is filed and shown.
    let message = "A detection exercise for the security course.";
    let (status, _, _) = post_form(
        &hub,
        "/hub/appeal",
        &alice,
        &[("finding_id", &finding_id), ("message", message)],
    )
    .await;
    assert_eq!(status, 403);
    assert!(hub.store.appeal_list(None, None).unwrap().is_empty());
    let (status, location, _) = post_form(
        &hub,
        "/hub/appeal",
        &alice,
        &[
            ("_xsrf", &alice_xsrf),
            ("finding_id", &finding_id),
            ("message", message),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let appeal = hub.store.appeal_list(Some("alice"), None).unwrap()[0].clone();
    assert_eq!(appeal.message, message);
    assert_eq!(location, format!("/hub/appeal?filed={}", appeal.id));
    let (_, _, html) = get_page(&hub, &location, Some(&alice)).await;
    assert!(
        html.contains(&format!("Your appeal {} is open", appeal.id)) && html.contains(message),
        "{html}"
    );
    // A second appeal of the same finding is refused on the page, with the reason.
    let (status, _, html) = post_form(
        &hub,
        "/hub/appeal",
        &alice,
        &[
            ("_xsrf", &alice_xsrf),
            ("finding_id", &finding_id),
            ("message", "again"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(html.contains("already open"), "{html}");

    // The admin page is for admins only.
    let (status, _, _) = get_page(&hub, "/hub/admin/appeals", Some(&alice)).await;
    assert_eq!(status, 403);
    let appeal_id = appeal.id.to_string();
    let (status, _, _) = post_form(
        &hub,
        "/hub/admin/appeals",
        &alice,
        &[
            ("_xsrf", &alice_xsrf),
            ("appeal_id", &appeal_id),
            ("decision", "grant"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let (carol, carol_xsrf) = log_in(&hub, "carol").await;
    let (status, _, html) = get_page(&hub, "/hub/admin/appeals", Some(&carol)).await;
    assert_eq!(status, 200, "{html}");
    for expected in [
        format!(r#"id="appeal-{appeal_id}""#),
        "xmrig".into(),
        "mining.miner-program".into(),
        message.into(),
        format!(r#"name="appeal_id" value="{appeal_id}""#),
    ] {
        assert!(html.contains(&expected), "{expected} missing from {html}");
    }
    // Carol denies it with a note, which alice then sees.
    let note = "The process ran for hours on the GPU; not an exercise.";
    let (status, location, _) = post_form(
        &hub,
        "/hub/admin/appeals",
        &carol,
        &[
            ("_xsrf", &carol_xsrf),
            ("appeal_id", &appeal_id),
            ("decision", "deny"),
            ("note", note),
        ],
    )
    .await;
    assert_eq!(
        (status, location),
        (303, format!("/hub/admin/appeals?decided={appeal_id}"))
    );
    let (status, _, html) = post_form(
        &hub,
        "/hub/admin/appeals",
        &carol,
        &[
            ("_xsrf", &carol_xsrf),
            ("appeal_id", &appeal_id),
            ("decision", "grant"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(html.contains("already decided"), "{html}");
    let (_, _, html) = get_page(&hub, "/hub/appeal", Some(&alice)).await;
    assert!(
        html.contains("denied by carol") && html.contains(note),
        "{html}"
    );
}

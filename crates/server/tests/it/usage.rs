//! The usage ledger as users and administrators see it: `/hub/api/usage` and the account page
//! show a user their own rows and quota, administrators anyone's, and the page's token forms
//! work only with the page's XSRF value.

use std::collections::BTreeMap;

use commonlab_manager::TierQuota;
use commonlab_store::Usage;
use reqwest::Method;

use crate::accounts::{get_page, log_in, post_form, spawn_hub, TestHub};

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .format("%Y-%m-%d")
        .to_string()
}

/// Alice's rows: 1.5 GPU-hours held today, two hours yesterday, and a day long ago.
fn record_alices_usage(hub: &TestHub) {
    let add = |day: &str, usage: Usage| hub.store.usage_add("alice", day, &usage).unwrap();
    add(
        &today(),
        Usage {
            cpu_seconds: 4321.0,
            gpu_seconds_held: 5400.0,
            gpu_seconds_busy: 1800.0,
            kernel_seconds: 7200.0,
            memory_bytes_peak: 300 << 20,
        },
    );
    add(
        &days_ago(1),
        Usage {
            cpu_seconds: 60.0,
            gpu_seconds_held: 7200.0,
            ..Usage::default()
        },
    );
    add(
        &days_ago(30),
        Usage {
            cpu_seconds: 1.0,
            gpu_seconds_held: 36000.0,
            ..Usage::default()
        },
    );
}

#[tokio::test]
async fn usage_is_shown_to_its_user_and_administrators_only() {
    let Some(hub) = spawn_hub().await else { return };
    record_alices_usage(&hub);

    let (status, alice) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(status, 200, "{alice}");
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["tier"], "free");
    assert_eq!(alice["today"], today());
    let days: Vec<&str> = alice["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    assert_eq!(
        days,
        [days_ago(1), today()],
        "the last 14 days, oldest first"
    );
    let today_row = &alice["days"][1];
    assert_eq!(today_row["cpu_seconds"], 4321.0);
    assert_eq!(today_row["gpu_seconds_held"], 5400.0);
    assert_eq!(today_row["gpu_seconds_busy"], 1800.0);
    assert_eq!(today_row["kernel_seconds"], 7200.0);
    assert_eq!(today_row["memory_bytes_peak"], 300 << 20);
    assert_eq!(alice["gpu_hours"]["used"], 3.5, "today and yesterday");
    assert_eq!(alice["gpu_hours"]["window_days"], 7);
    assert!(alice["gpu_hours"]["limit"].is_null(), "no quota configured");
    assert!(alice["gpu_hours"]["left"].is_null());
    assert_eq!(alice["kernels"]["running"], 0);
    let (status, same) = hub
        .call(
            Some(&hub.alice),
            Method::GET,
            "/hub/api/usage?user=alice",
            None,
        )
        .await;
    assert_eq!((status, &same), (200, &alice), "naming herself is allowed");

    // Bob sees his own (nothing), and may not ask for alice's.
    let (status, bob) = hub
        .call(Some(&hub.bob), Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob["user"], "bob");
    assert_eq!(bob["days"], serde_json::json!([]));
    assert_eq!(bob["gpu_hours"]["used"], 0.0);
    let (status, body) = hub
        .call(
            Some(&hub.bob),
            Method::GET,
            "/hub/api/usage?user=alice",
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "admin_only");
    let (status, _) = hub.call(None, Method::GET, "/hub/api/usage", None).await;
    assert_eq!(status, 403, "no credential, no usage");

    // An administrator reads alice's.
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/usage?user=alice",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["days"], alice["days"]);
    let (status, body) = hub
        .call(
            Some(&hub.carol),
            Method::GET,
            "/hub/api/usage?user=nobody",
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "no_such_user");

    // With quotas configured, what is left.
    hub.hub.set_tier_quotas(BTreeMap::from([(
        "free".to_owned(),
        TierQuota {
            gpu_hours_per_week: 10.0,
            kernels_max: 2,
        },
    )]));
    let (_, alice) = hub
        .call(Some(&hub.alice), Method::GET, "/hub/api/usage", None)
        .await;
    assert_eq!(alice["gpu_hours"]["limit"], 10.0);
    assert_eq!(alice["gpu_hours"]["left"], 6.5);
    assert_eq!(alice["kernels"]["limit"], 2);
    assert_eq!(alice["kernels"]["left"], 2);
}

#[tokio::test]
async fn the_account_page_shows_a_users_own_usage_and_quota() {
    let Some(hub) = spawn_hub().await else { return };
    record_alices_usage(&hub);
    hub.store
        .user_restrict(
            "alice",
            Some("2999-01-01T00:00:00Z"),
            Some("usage policy: <mining>"),
        )
        .unwrap();

    let (alice_cookies, _) = log_in(&hub, "alice").await;
    let (status, _, html) = get_page(&hub, "/hub/account", Some(&alice_cookies)).await;
    assert_eq!(status, 200);
    assert!(html.contains("<strong>alice</strong>, user, tier <strong>free</strong>"));
    assert!(
        html.contains(&format!(r#"<tr id="day-{}">"#, today()))
            && html.contains(&format!(r#"<tr id="day-{}">"#, days_ago(1))),
        "{html}"
    );
    assert!(
        !html.contains(&format!(r#"<tr id="day-{}">"#, days_ago(30))),
        "older than 14 days"
    );
    assert!(
        html.contains("1 h 12 min"),
        "alice's CPU time today: {html}"
    );
    assert!(html.contains("300.0 MiB"), "her peak memory today");
    assert!(html.contains("No GPU quota configured for your tier (free)"));
    assert!(
        html.contains("restricted until 2999-01-01T00:00:00Z")
            && html.contains("usage policy: &lt;mining&gt;")
            && html.contains(r#"href="/hub/appeal""#),
        "the restriction, escaped, with the appeal link: {html}"
    );

    hub.hub.set_tier_quotas(BTreeMap::from([(
        "free".to_owned(),
        TierQuota {
            gpu_hours_per_week: 10.0,
            kernels_max: 2,
        },
    )]));
    let (_, _, html) = get_page(&hub, "/hub/account", Some(&alice_cookies)).await;
    assert!(
        html.contains(r#"<meter id="gpu-quota" min="0" max="10" value="3.5""#),
        "{html}"
    );
    assert!(html.contains("3.50 of 10 GPU-hours used, 6.50 left"));
    assert!(html.contains("0 of 2 kernels running, 2 more can start"));

    let (bob_cookies, _) = log_in(&hub, "bob").await;
    let (status, _, html) = get_page(&hub, "/hub/account", Some(&bob_cookies)).await;
    assert_eq!(status, 200);
    assert!(html.contains("<strong>bob</strong>"));
    assert!(
        !html.contains("alice") && !html.contains(r#"<tr id="day-"#),
        "bob's page shows nothing of alice's: {html}"
    );
    assert!(html.contains("No usage recorded in the last 14 days"));
    assert!(html.contains("not restricted"));

    // Not logged in: the login page, coming back here.
    let (status, location, _) = get_page(&hub, "/hub/account", None).await;
    assert_eq!(status, 303);
    assert_eq!(location, "/hub/login?next=/hub/account");
}

#[tokio::test]
async fn the_account_pages_token_forms_need_the_pages_xsrf_value() {
    let Some(hub) = spawn_hub().await else { return };
    let (cookies, xsrf) = log_in(&hub, "alice").await;
    let (status, _, html) = get_page(&hub, "/hub/account", Some(&cookies)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!(r#"name="_xsrf" value="{xsrf}""#))
            && html.contains(r#"name="action" value="create_token""#),
        "the forms echo the XSRF cookie: {html}"
    );
    let tokens_before = hub.store.api_token_list("alice").unwrap().len();

    // Without the page's value (a post from another site), nothing is created.
    for form in [
        vec![("action", "create_token"), ("label", "forged")],
        vec![
            ("action", "create_token"),
            ("label", "forged"),
            ("_xsrf", "not-the-cookie"),
        ],
    ] {
        let (status, _, html) = post_form(&hub, "/hub/account", &cookies, &form).await;
        assert_eq!(status, 403, "{html}");
        assert!(html.contains("expired or was sent from another site"));
    }
    let session_only = cookies.split("; ").next().unwrap();
    let (status, _, _) = post_form(
        &hub,
        "/hub/account",
        session_only,
        &[
            ("action", "create_token"),
            ("label", "forged"),
            ("_xsrf", &xsrf),
        ],
    )
    .await;
    assert_eq!(
        status, 403,
        "the field alone, without the cookie, is refused"
    );
    assert_eq!(
        hub.store.api_token_list("alice").unwrap().len(),
        tokens_before
    );

    // With it: a token, shown once, that works.
    let (status, _, html) = post_form(
        &hub,
        "/hub/account",
        &cookies,
        &[
            ("action", "create_token"),
            ("label", "laptop <1>"),
            ("_xsrf", &xsrf),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let token = html
        .split(r#"<code id="new-token">"#)
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .expect("the new token is shown")
        .to_owned();
    assert!(token.starts_with("clt_"), "{token}");
    assert!(html.contains("laptop &lt;1&gt;"), "the label, escaped");
    let (status, me) = hub
        .call(Some(&token), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!((status, me["name"].as_str()), (200, Some("alice")));
    let created = hub
        .store
        .api_token_list("alice")
        .unwrap()
        .into_iter()
        .find(|t| t.label == "laptop <1>")
        .unwrap();
    let (_, _, html) = get_page(&hub, "/hub/account", Some(&cookies)).await;
    assert!(
        !html.contains(&token),
        "the token is not shown again: {html}"
    );
    assert!(html.contains(&format!(r#"<tr id="token-{}">"#, created.id)));

    // Another user's token cannot be revoked from alice's page.
    let bobs = hub.store.api_token_list("bob").unwrap()[0].id.to_string();
    let (status, _, _) = post_form(
        &hub,
        "/hub/account",
        &cookies,
        &[
            ("action", "revoke_token"),
            ("token_id", &bobs),
            ("_xsrf", &xsrf),
        ],
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = hub
        .call(Some(&hub.bob), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!(status, 200, "bob's token still works");

    // Revoking hers ends it.
    let id = created.id.to_string();
    let (status, location, _) = post_form(
        &hub,
        "/hub/account",
        &cookies,
        &[
            ("action", "revoke_token"),
            ("token_id", &id),
            ("_xsrf", &xsrf),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("/hub/account?revoked={id}"));
    let (status, _) = hub
        .call(Some(&token), Method::GET, "/hub/api/user", None)
        .await;
    assert_eq!(status, 403, "the revoked token no longer works");
    let log = hub.store.audit_list(0, 1000).unwrap();
    for action in ["token_create", "token_revoke"] {
        assert!(
            log.iter()
                .any(|r| r.action == action && r.actor.as_deref() == Some("alice")),
            "{action} is audited"
        );
    }
}

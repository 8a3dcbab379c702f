//! Where users stand: `GET /hub/api/usage` (behind the hub API's authentication) and the
//! account page `/hub/account`.
//!
//! Both show the caller's tier quota used and left — GPU-hours over the rolling week and
//! kernels at once, from [`Hub::set_tier_quotas`] — and the last days of their usage ledger.
//! Administrators may read anyone's usage with `?user=NAME`. The page also shows who the user
//! is, their restriction with a link to appeal it, and their API tokens, with forms to create
//! and revoke them protected by the double-submit `_xsrf` cookie as the login form is.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Json, Router};
use commonlab_manager::{TierQuota, UsageReport, QUOTA_WINDOW_DAYS};
use commonlab_store::{Role, StoreError, UserRecord};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{require_admin, store_error, Caller};
use super::page::{
    error_page, escape_html, form_expired, html_response, layout, message_html, to_login,
    xsrf_for_page, xsrf_matches,
};
use super::Hub;
use crate::ApiError;

/// The longest label of an API token made on the page, in characters.
const TOKEN_LABEL_CHARS_MAX: usize = 100;

/// The API route; [`super::api::router`] puts it behind its authentication.
pub(super) fn router() -> Router<Arc<Hub>> {
    Router::new().route("/hub/api/usage", get(usage))
}

/// The page, which authenticates for itself (a login redirect rather than a 403).
pub(super) fn pages() -> Router<Arc<Hub>> {
    Router::new().route("/hub/account", get(page).post(page_submit))
}

/// `user`'s report now: their tier's quota, their kernels, their ledger.
fn report(hub: &Hub, user: &UserRecord) -> Result<UsageReport, ApiError> {
    let quota = hub.tier_quota(&user.tier);
    let running = hub
        .store
        .for_owner(&user.name)
        .kernels()
        .map_err(store_error)?
        .len();
    commonlab_manager::usage_report(
        &hub.store,
        &user.name,
        quota,
        u32::try_from(running).unwrap_or(u32::MAX),
        chrono::Utc::now(),
    )
    .map_err(store_error)
}

fn report_json(user: &UserRecord, report: &UsageReport) -> Value {
    let days: Vec<Value> = report
        .days
        .iter()
        .map(|day| {
            json!({
                "day": day.day,
                "cpu_seconds": day.usage.cpu_seconds,
                "gpu_seconds_held": day.usage.gpu_seconds_held,
                "gpu_seconds_busy": day.usage.gpu_seconds_busy,
                "kernel_seconds": day.usage.kernel_seconds,
                "memory_bytes_peak": day.usage.memory_bytes_peak,
            })
        })
        .collect();
    json!({
        "user": user.name,
        "tier": user.tier,
        "today": report.today,
        "gpu_hours": {
            "window_days": QUOTA_WINDOW_DAYS,
            "since": report.week_since,
            "used": report.gpu_seconds_held_week / 3600.0,
            "limit": report.quota.map(|q| q.gpu_hours_per_week),
            "left": report.gpu_hours_left,
        },
        "kernels": {
            "running": report.kernels_running,
            "limit": report.quota.map(|q| q.kernels_max),
            "left": report.kernels_left,
        },
        "days": days,
    })
}

async fn usage(
    State(hub): State<Arc<Hub>>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let user = match query.get("user").filter(|name| !name.is_empty()) {
        Some(name) if *name != caller.name => {
            require_admin(&Caller(caller.clone()))?;
            hub.store
                .user_get(name)
                .map_err(store_error)?
                .ok_or_else(|| store_error(StoreError::NoSuchUser(name.clone())))?
        }
        _ => caller,
    };
    let report = report(&hub, &user)?;
    Ok(Json(report_json(&user, &report)))
}

// The page.

/// Seconds as people read them: `42 s`, `3 min 05 s`, `2 h 07 min`.
fn duration_text(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `300.0 MiB`, `2.0 GiB`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn quota_html(user: &UserRecord, report: &UsageReport) -> String {
    let used_hours = report.gpu_seconds_held_week / 3600.0;
    let Some(TierQuota {
        gpu_hours_per_week,
        kernels_max,
    }) = report.quota
    else {
        return format!(
            r#"<p id="no-quota">No GPU quota configured for your tier ({tier}).</p>
<p>GPU time held in the last {QUOTA_WINDOW_DAYS} days (since {since}): {used:.2} GPU-hours. Kernels running: {running}.</p>"#,
            tier = escape_html(&user.tier),
            since = report.week_since,
            used = used_hours,
            running = report.kernels_running,
        );
    };
    format!(
        r#"<p><label for="gpu-quota">GPU-hours in the last {QUOTA_WINDOW_DAYS} days (since {since})</label><br>
<meter id="gpu-quota" min="0" max="{gpu_hours_per_week}" value="{used_shown}" high="{high}">{used:.2} of {gpu_hours_per_week}</meter><br>
{used:.2} of {gpu_hours_per_week} GPU-hours used, {left:.2} left. Your tier is {tier}.</p>
<p><label for="kernel-quota">Kernels running</label><br>
<meter id="kernel-quota" min="0" max="{kernels_max}" value="{running_shown}">{running} of {kernels_max}</meter><br>
{running} of {kernels_max} kernels running, {kernels_left} more can start.</p>"#,
        since = report.week_since,
        used = used_hours,
        used_shown = used_hours.min(gpu_hours_per_week),
        high = gpu_hours_per_week * 0.9,
        left = report.gpu_hours_left.unwrap_or(0.0),
        tier = escape_html(&user.tier),
        running = report.kernels_running,
        running_shown = report.kernels_running.min(kernels_max),
        kernels_left = report.kernels_left.unwrap_or(0),
    )
}

fn usage_table_html(report: &UsageReport) -> String {
    if report.days.is_empty() {
        return "<p>No usage recorded in the last 14 days.</p>".into();
    }
    let mut html = String::from(
        "<table><tr><th>Day (UTC)</th><th>CPU time</th><th>Kernel time</th><th>GPU time held</th><th>GPU time busy</th><th>Peak memory</th></tr>",
    );
    for day in report.days.iter().rev() {
        let usage = &day.usage;
        let _ = write!(
            html,
            r#"<tr id="day-{day}"><td>{day}</td><td class="number">{cpu}</td><td class="number">{kernel}</td><td class="number">{held}</td><td class="number">{busy}</td><td class="number">{memory}</td></tr>"#,
            day = escape_html(&day.day),
            cpu = duration_text(usage.cpu_seconds),
            kernel = duration_text(usage.kernel_seconds),
            held = duration_text(usage.gpu_seconds_held),
            busy = duration_text(usage.gpu_seconds_busy),
            memory = bytes_text(usage.memory_bytes_peak),
        );
    }
    html.push_str("</table>");
    html
}

fn restriction_html(hub: &Hub, user: &UserRecord) -> String {
    let appeal = hub.url("hub/appeal");
    let now = chrono::Utc::now().to_rfc3339();
    match &user.restricted_until {
        Some(until) if user.is_restricted_at(&now).unwrap_or(true) => {
            let reason = user
                .restricted_reason
                .as_deref()
                .map(|r| format!(": {}", escape_html(r)))
                .unwrap_or_default();
            format!(
                r#"<p id="restriction">Your account is <strong>restricted until {until}</strong>{reason}. You cannot start kernels until then. <a href="{appeal}">See why and appeal</a>.</p>"#,
                until = escape_html(until),
            )
        }
        _ => format!(
            r#"<p>Your account is not restricted. Findings of the usage policy about your code and your appeals are on <a href="{appeal}">your findings and appeals</a>.</p>"#
        ),
    }
}

fn tokens_html(hub: &Hub, user: &UserRecord, xsrf: &str) -> Result<String, ApiError> {
    let tokens = hub.store.api_token_list(&user.name).map_err(store_error)?;
    let action = hub.url("hub/account");
    let xsrf = escape_html(xsrf);
    let mut html = String::new();
    if tokens.is_empty() {
        html.push_str("<p>You have no API tokens.</p>");
    } else {
        html.push_str("<table><tr><th>Label</th><th>Created</th><th>Last used</th><th></th></tr>");
        for token in &tokens {
            let _ = write!(
                html,
                r#"<tr id="token-{id}"><td>{label}</td><td>{created}</td><td>{used}</td><td><form method="post" action="{action}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<input type="hidden" name="action" value="revoke_token">
<input type="hidden" name="token_id" value="{id}">
<button type="submit">Revoke</button>
</form></td></tr>"#,
                id = token.id,
                label = escape_html(&token.label),
                created = escape_html(&token.created_at),
                used = escape_html(token.last_used_at.as_deref().unwrap_or("never")),
            );
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        r#"<form method="post" action="{action}" id="create-token">
<input type="hidden" name="_xsrf" value="{xsrf}">
<input type="hidden" name="action" value="create_token">
<p><label>Label <input type="text" name="label" maxlength="{TOKEN_LABEL_CHARS_MAX}" placeholder="laptop"></label>
<button type="submit">Create a token</button></p>
</form>
<p>Connect a Jupyter client to <code>{server}</code> with a token as <code>Authorization: token …</code>.</p>"#,
        server = escape_html(&hub.url(&format!("user/{}/", user.name))),
    );
    Ok(html)
}

fn render(
    hub: &Hub,
    user: &UserRecord,
    xsrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
    new_token: Option<&str>,
) -> Result<String, ApiError> {
    let report = report(hub, user)?;
    let role = match user.role {
        Role::Admin => "administrator",
        Role::User => "user",
    };
    let new_token = new_token
        .map(|token| {
            format!(
                r#"<div class="box notice" role="alert"><p>Your new API token is shown only this once; copy it now:</p><p><code id="new-token">{}</code></p></div>"#,
                escape_html(token)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Your account</h1>
{notice}{error}{new_token}
<section class="box" id="who"><p><strong>{name}</strong>, {role}, tier <strong>{tier}</strong>; account created {created}.</p>
{restriction}</section>
<h2>Quota</h2><section class="box" id="quota">{quota}</section>
<h2>Recent usage</h2><section id="usage">{usage}</section>
<h2>API tokens</h2><section class="box" id="tokens">{tokens}</section>"#,
        notice = message_html("notice", notice),
        error = message_html("error", error),
        name = escape_html(&user.name),
        tier = escape_html(&user.tier),
        created = escape_html(&user.created_at),
        restriction = restriction_html(hub, user),
        quota = quota_html(user, &report),
        usage = usage_table_html(&report),
        tokens = tokens_html(hub, user, xsrf)?,
    );
    Ok(layout(hub, "Your account", Some(user), &body))
}

#[derive(Debug, Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    revoked: Option<i64>,
}

async fn page(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let Some((user, _)) = super::identify(&hub, &headers, &uri) else {
        return to_login(&hub, &uri);
    };
    let (xsrf, set_cookie) = xsrf_for_page(&hub, &headers);
    let notice = query
        .revoked
        .map(|_| "The token was revoked; clients using it can no longer connect.".to_owned());
    match render(&hub, &user, &xsrf, notice.as_deref(), None, None) {
        Ok(html) => html_response(StatusCode::OK, html, set_cookie),
        Err(e) => error_page(&hub, Some(&user), &e),
    }
}

#[derive(Debug, Deserialize)]
struct AccountForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    token_id: String,
}

/// Creates or revokes one of `user`'s tokens as the form asks, recorded in the audit log.
/// Returns the new token, shown once.
fn apply_form(
    hub: &Hub,
    user: &UserRecord,
    form: &AccountForm,
) -> Result<Option<String>, ApiError> {
    match form.action.as_str() {
        "create_token" => {
            let label = form.label.trim();
            if label.chars().count() > TOKEN_LABEL_CHARS_MAX {
                return Err(ApiError::bad_request(
                    "invalid_label",
                    format!("A token's label may have at most {TOKEN_LABEL_CHARS_MAX} characters"),
                ));
            }
            let now = chrono::Utc::now().to_rfc3339();
            let token = hub
                .store
                .api_token_create(&user.name, label, &now)
                .map_err(store_error)?;
            hub.audit(
                Some(&user.name),
                "token_create",
                Some(&user.name),
                json!({"label": label}),
            );
            Ok(Some(token))
        }
        "revoke_token" => {
            let no_such = || {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_token",
                    "No such token of yours",
                )
            };
            let id = form.token_id.trim().parse::<i64>().map_err(|_| no_such())?;
            if !hub
                .store
                .api_token_revoke(&user.name, id)
                .map_err(store_error)?
            {
                return Err(no_such());
            }
            hub.audit(
                Some(&user.name),
                "token_revoke",
                Some(&user.name),
                json!({"id": id}),
            );
            hub.revocations.revoked(&user.name);
            Ok(None)
        }
        _ => Err(ApiError::bad_request(
            "invalid_action",
            "Use the page's buttons to create or revoke a token",
        )),
    }
}

async fn page_submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<AccountForm>,
) -> Response {
    let Some((user, _)) = super::identify(&hub, &headers, &uri) else {
        return error_page(
            &hub,
            None,
            &ApiError::new(
                StatusCode::FORBIDDEN,
                "not_authenticated",
                "Log in to change your tokens.",
            ),
        );
    };
    if !xsrf_matches(&headers, &form._xsrf) {
        return error_page(&hub, Some(&user), &form_expired());
    }
    let outcome = apply_form(&hub, &user, &form);
    let rendered = match &outcome {
        Ok(None) => {
            return Redirect::to(&format!(
                "{}?revoked={}",
                hub.url("hub/account"),
                form.token_id.trim()
            ))
            .into_response()
        }
        Ok(Some(token)) => render(
            &hub,
            &user,
            &form._xsrf,
            Some("Token created."),
            None,
            Some(token),
        )
        .map(|html| (StatusCode::OK, html)),
        Err(e) => render(&hub, &user, &form._xsrf, None, Some(&e.message), None)
            .map(|html| (e.status, html)),
    };
    match rendered {
        Ok((status, html)) => html_response(status, html, None),
        Err(e) => error_page(&hub, Some(&user), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(duration_text(0.4), "0 s");
        assert_eq!(duration_text(42.0), "42 s");
        assert_eq!(duration_text(185.0), "3 min 05 s");
        assert_eq!(duration_text(7620.0), "2 h 07 min");
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(300 << 20), "300.0 MiB");
        assert_eq!(bytes_text(2 << 30), "2.0 GiB");
    }
}

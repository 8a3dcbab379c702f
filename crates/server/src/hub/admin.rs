//! `/hub/admin`: the operators' overview — every account with its tier, role, restriction and
//! running kernels, the open appeals, and the latest audit records with whether the chain
//! verifies. Read-only; changes go through the admin API and the appeals page.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use commonlab_store::{AppealStatus, UserRecord};

use super::page::{error_page, escape_html, html_response, layout, page_admin};
use super::Hub;
use crate::ApiError;

/// Audit records shown, newest first.
const AUDIT_SHOWN_MAX: usize = 50;

pub(super) fn pages() -> Router<Arc<Hub>> {
    Router::new().route("/hub/admin", get(page))
}

async fn page(State(hub): State<Arc<Hub>>, headers: HeaderMap, uri: Uri) -> Response {
    let admin = match page_admin(
        &hub,
        &headers,
        &uri,
        "Only administrators may see the admin overview.",
    ) {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    match render(&hub, &admin) {
        Ok(body) => html_response(
            StatusCode::OK,
            layout(&hub, "Admin", Some(&admin), &body),
            None,
        ),
        Err(e) => error_page(&hub, Some(&admin), &e),
    }
}

fn store_failed(e: commonlab_store::StoreError) -> ApiError {
    tracing::error!(error = %e, "admin page: store error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_failed",
        "The server could not read its database; try again, and check the server log if it persists",
    )
}

fn render(hub: &Hub, admin: &UserRecord) -> Result<String, ApiError> {
    let now = chrono::Utc::now().to_rfc3339();
    let users = hub.store.user_list().map_err(store_failed)?;
    let running = hub.running_kernels();
    let open_appeals = hub
        .store
        .appeal_list(None, Some(AppealStatus::Open.as_str()))
        .map_err(store_failed)?;
    let mut body = format!(
        r#"<h1>Admin</h1><p>Logged in as {}. {} account(s), {} kernel(s) running, <a href="{}">{} open appeal(s)</a>.</p>"#,
        escape_html(&admin.name),
        users.len(),
        running.values().sum::<usize>(),
        hub.url("hub/admin/appeals"),
        open_appeals.len(),
    );
    body.push_str(r#"<h2>Accounts</h2><table id="users"><tr><th>Name</th><th>Role</th><th>Tier</th><th>Uid</th><th>Kernels running</th><th>Restriction</th><th>Created</th></tr>"#);
    for user in &users {
        let restriction = if user.is_restricted_at(&now).unwrap_or(false) {
            format!(
                "until {} — {}",
                escape_html(user.restricted_until.as_deref().unwrap_or("")),
                escape_html(user.restricted_reason.as_deref().unwrap_or(""))
            )
        } else {
            "—".to_owned()
        };
        let _ = write!(
            body,
            r#"<tr id="user-{name}"><td>{name}</td><td>{role}</td><td>{tier}</td><td class="number">{uid}</td><td class="number">{kernels}</td><td>{restriction}</td><td>{created}</td></tr>"#,
            name = escape_html(&user.name),
            role = user.role.as_str(),
            tier = escape_html(&user.tier),
            uid = user.uid,
            kernels = running.get(&user.name).copied().unwrap_or(0),
            created = escape_html(&user.created_at),
        );
    }
    body.push_str("</table>");

    let verify = hub.store.audit_verify().map_err(store_failed)?;
    let chain = match &verify.first_bad {
        None => format!(
            r#"<p class="notice" id="audit-chain">The audit chain verifies: {} record(s).</p>"#,
            verify.records
        ),
        Some(bad) => format!(
            r#"<p class="error" id="audit-chain">The audit chain is broken at record {}: {}.</p>"#,
            bad.seq,
            escape_html(&bad.reason)
        ),
    };
    let last = hub.store.audit_last_seq().map_err(store_failed)?;
    let after = last.saturating_sub(AUDIT_SHOWN_MAX as i64);
    let mut records = hub
        .store
        .audit_list(after, AUDIT_SHOWN_MAX)
        .map_err(store_failed)?;
    records.reverse();
    let _ = write!(
        body,
        r#"<h2>Audit log</h2>{chain}<table id="audit"><tr><th>Seq</th><th>At</th><th>Actor</th><th>Action</th><th>Subject</th><th>Detail</th></tr>"#
    );
    for record in &records {
        let _ = write!(
            body,
            "<tr><td class=\"number\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            record.seq,
            escape_html(&record.at),
            escape_html(record.actor.as_deref().unwrap_or("")),
            escape_html(&record.action),
            escape_html(record.subject.as_deref().unwrap_or("")),
            escape_html(&record.detail.to_string()),
        );
    }
    body.push_str("</table>");
    Ok(body)
}

//! Findings, appeals and restrictions, shown to the people they concern and decided by
//! administrators.
//!
//! The API, behind the hub API's authentication: `GET /hub/api/findings`,
//! `GET|POST /hub/api/appeals` and `POST /hub/api/appeals/{id}/decision`. The pages:
//! `/hub/appeal`, where a user sees their findings with the evidence, their restriction and
//! their appeals, and appeals (the policy's notices link here), and `/hub/admin/appeals`, where
//! administrators decide open appeals. Pages and API go through [`file_appeal`] and
//! [`decide_appeal`], which check who may do what and write the audit log.
//!
//! Evidence from shadow-mode rules is recorded to evaluate rules quietly, so it is shown to
//! administrators only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use commonlab_store::{
    AppealDecision, AppealRecord, AppealStatus, Role, StoreError, StoredFinding, UserRecord,
    FINDINGS_LISTED_MAX,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{require_admin, store_error, Caller};
use super::page::{
    error_page, escape_html, form_expired, html_response, layout, message_html, page_admin,
    to_login, xsrf_for_page, xsrf_matches,
};
use super::Hub;
use crate::api::parse_json;
use crate::ApiError;

/// Findings listed when the request names no limit.
const FINDINGS_LISTED_DEFAULT: usize = 100;

/// Evidence items shown per finding.
const EVIDENCE_ITEMS_MAX: usize = 20;

/// Characters of matched text shown on a page before it is cut.
const MATCHED_CHARS_SHOWN_MAX: usize = 200;

/// Decided appeals shown on the administrators' page.
const DECIDED_APPEALS_SHOWN_MAX: usize = 20;

/// The API routes; [`super::api::router`] puts them behind its authentication.
pub(super) fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/hub/api/findings", get(findings_list))
        .route("/hub/api/appeals", get(appeals_list).post(appeal_create))
        .route("/hub/api/appeals/{id}/decision", post(appeal_decision))
}

/// The pages, which authenticate for themselves (a login redirect rather than a 403).
pub(super) fn pages() -> Router<Arc<Hub>> {
    Router::new()
        .route("/hub/appeal", get(page).post(page_submit))
        // The policy's built-in appeal link, before the hub set its own.
        .route("/hub/appeals", get(to_page))
        .route("/hub/admin/appeals", get(admin_page).post(admin_submit))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn is_admin(user: &UserRecord) -> bool {
    user.role == Role::Admin
}

/// Maps the appeal errors of the store; the rest as the hub API does.
fn appeal_error(e: StoreError) -> ApiError {
    let message = e.to_string();
    match e {
        StoreError::NoSuchFinding(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_finding", message)
        }
        StoreError::NoSuchAppeal(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_appeal", message)
        }
        StoreError::NothingToAppeal { .. } => ApiError::bad_request(
            "nothing_to_appeal",
            "Your account is not restricted, so there is no restriction to appeal; to appeal a finding, send its finding_id (GET /hub/api/findings lists yours)",
        ),
        StoreError::AppealOpen { .. } => ApiError::new(StatusCode::CONFLICT, "appeal_open", message),
        StoreError::AppealDecided { .. } => {
            ApiError::new(StatusCode::CONFLICT, "appeal_decided", message)
        }
        StoreError::InvalidAppealMessage { .. } => ApiError::bad_request("invalid_message", message),
        StoreError::InvalidDecisionNote { .. } => ApiError::bad_request("invalid_note", message),
        StoreError::InvalidAppealStatus(_) => ApiError::bad_request("invalid_status", message),
        StoreError::NotAdmin(_) => ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_only",
            "Forbidden: only administrators may do this",
        ),
        other => store_error(other),
    }
}

/// A finding as shown: what was decided, and the evidence from its stored verdict.
fn finding_json(finding: &StoredFinding, admin: bool) -> Value {
    let verdict: Value = serde_json::from_str(&finding.record.verdict).unwrap_or(Value::Null);
    let evidence: Vec<Value> = verdict["findings"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|item| admin || item["shadow"] != Value::Bool(true))
                .take(EVIDENCE_ITEMS_MAX)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut rules: Vec<&str> = Vec::new();
    for rule in evidence.iter().filter_map(|item| item["rule"].as_str()) {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    let record = &finding.record;
    let mut shown = json!({
        "id": finding.id,
        "user": finding.owner,
        "at": record.at,
        "kernel_id": record.kernel_id,
        "msg_id": record.msg_id,
        "action": record.action,
        "category": record.category,
        "shadow": record.shadow,
        "rules": rules,
        "evidence": evidence,
    });
    if admin {
        shown["verdict"] = verdict;
    }
    shown
}

fn restriction_json(user: &UserRecord, now: &str) -> Value {
    match &user.restricted_until {
        None => Value::Null,
        Some(until) => json!({
            "until": until,
            "reason": user.restricted_reason,
            "active": user.is_restricted_at(now).unwrap_or(true),
        }),
    }
}

/// An appeal with what it is about: the finding's evidence, and the user's restriction now.
fn appeal_json(
    hub: &Hub,
    appeal: &AppealRecord,
    admin: bool,
    users: &mut HashMap<String, Option<UserRecord>>,
    now: &str,
) -> Result<Value, ApiError> {
    let finding = match appeal.finding_id {
        Some(id) => hub
            .store
            .finding_get(id)
            .map_err(store_error)?
            .map(|f| finding_json(&f, admin)),
        None => None,
    };
    if !users.contains_key(&appeal.user) {
        let user = hub.store.user_get(&appeal.user).map_err(store_error)?;
        users.insert(appeal.user.clone(), user);
    }
    let restriction = users[&appeal.user]
        .as_ref()
        .map_or(Value::Null, |user| restriction_json(user, now));
    Ok(json!({
        "id": appeal.id,
        "user": appeal.user,
        "kind": if appeal.finding_id.is_some() { "finding" } else { "restriction" },
        "finding_id": appeal.finding_id,
        "message": appeal.message,
        "status": appeal.status.as_str(),
        "created": appeal.created_at,
        "decided_by": appeal.decided_by,
        "decision_note": appeal.decision_note,
        "decided_at": appeal.decided_at,
        "finding": finding,
        "restriction": restriction,
    }))
}

/// Files `caller`'s appeal of their finding, or of their restriction when `finding_id` is
/// `None`, and records it in the audit log.
fn file_appeal(
    hub: &Hub,
    caller: &UserRecord,
    finding_id: Option<i64>,
    message: &str,
) -> Result<AppealRecord, ApiError> {
    if let Some(id) = finding_id {
        // Shadow findings are not shown to users, so they cannot be appealed by them either.
        let visible = hub
            .store
            .finding_get(id)
            .map_err(store_error)?
            .is_some_and(|f| f.owner == caller.name && (!f.record.shadow || is_admin(caller)));
        if !visible {
            return Err(appeal_error(StoreError::NoSuchFinding(id)));
        }
    }
    let appeal = hub
        .store
        .appeal_create(&caller.name, finding_id, message, &now())
        .map_err(appeal_error)?;
    let restriction = match finding_id {
        Some(_) => Value::Null,
        None => json!({"until": caller.restricted_until, "reason": caller.restricted_reason}),
    };
    hub.audit(
        Some(&caller.name),
        "appeal",
        Some(&caller.name),
        json!({
            "appeal_id": appeal.id,
            "finding_id": finding_id,
            "restriction": restriction,
            "message": appeal.message,
        }),
    );
    Ok(appeal)
}

/// Decides an open appeal as the administrator `caller`, records the decision (and a lifted
/// restriction) in the audit log.
fn decide_appeal(
    hub: &Hub,
    caller: &UserRecord,
    id: i64,
    grant: bool,
    note: &str,
) -> Result<AppealDecision, ApiError> {
    require_admin(&Caller(caller.clone()))?;
    let appeal = hub
        .store
        .appeal_get(id)
        .map_err(store_error)?
        .ok_or_else(|| appeal_error(StoreError::NoSuchAppeal(id)))?;
    if appeal.user == caller.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "own_appeal",
            "Forbidden: another administrator must decide your own appeal",
        ));
    }
    let decision = hub
        .store
        .appeal_decide(id, &caller.name, grant, note, &now())
        .map_err(appeal_error)?;
    let decided = &decision.appeal;
    hub.audit(
        Some(&caller.name),
        "appeal_decision",
        Some(&decided.user),
        json!({
            "appeal_id": decided.id,
            "finding_id": decided.finding_id,
            "status": decided.status.as_str(),
            "note": decided.decision_note,
        }),
    );
    if decision.restriction_lifted {
        hub.audit(
            Some(&caller.name),
            "restriction",
            Some(&decided.user),
            json!({"until": null, "reason": null, "lifted": true, "appeal_id": decided.id}),
        );
    }
    Ok(decision)
}

/// Whose findings or appeals a request asks for: `Some(name)`, or everyone's (`None`, admins
/// only). A user may name only themselves.
fn whose(
    hub: &Hub,
    caller: &UserRecord,
    query: &HashMap<String, String>,
    all_by_default: bool,
) -> Result<Option<String>, ApiError> {
    let all = query
        .get("all")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    let asked = match query.get("user").filter(|u| !u.is_empty()) {
        Some(user) => Some(user.clone()),
        None if all || (all_by_default && is_admin(caller)) => None,
        None => Some(caller.name.clone()),
    };
    if asked.as_deref() != Some(caller.name.as_str()) {
        require_admin(&Caller(caller.clone()))?;
    }
    if let Some(name) = &asked {
        if hub.store.user_get(name).map_err(store_error)?.is_none() {
            return Err(store_error(StoreError::NoSuchUser(name.clone())));
        }
    }
    Ok(asked)
}

async fn findings_list(
    State(hub): State<Arc<Hub>>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let owner = whose(&hub, &caller, &query, false)?;
    let limit = match query.get("limit") {
        None => FINDINGS_LISTED_DEFAULT,
        Some(limit) => limit.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "invalid_limit",
                format!("limit must be a number from 1 to {FINDINGS_LISTED_MAX}"),
            )
        })?,
    };
    let admin = is_admin(&caller);
    let findings = hub
        .store
        .finding_list(owner.as_deref(), limit)
        .map_err(store_error)?;
    Ok(Json(Value::Array(
        findings
            .iter()
            .filter(|f| admin || !f.record.shadow)
            .map(|f| finding_json(f, admin))
            .collect(),
    )))
}

async fn appeals_list(
    State(hub): State<Arc<Hub>>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let user = whose(&hub, &caller, &query, true)?;
    let status = query.get("status").filter(|s| !s.is_empty());
    let appeals = hub
        .store
        .appeal_list(user.as_deref(), status.map(String::as_str))
        .map_err(appeal_error)?;
    let (admin, now) = (is_admin(&caller), now());
    let mut users = HashMap::new();
    let shown = appeals
        .iter()
        .map(|appeal| appeal_json(&hub, appeal, admin, &mut users, &now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Value::Array(shown)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAppeal {
    #[serde(default)]
    finding_id: Option<i64>,
    message: String,
}

async fn appeal_create(
    State(hub): State<Arc<Hub>>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateAppeal = parse_json(&body, false)?.expect("a body is required");
    let appeal = file_appeal(&hub, &caller, body.finding_id, &body.message)?;
    let shown = appeal_json(
        &hub,
        &appeal,
        is_admin(&caller),
        &mut HashMap::new(),
        &now(),
    )?;
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    grant: bool,
    #[serde(default)]
    note: String,
}

async fn appeal_decision(
    State(hub): State<Arc<Hub>>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_admin(&Caller(caller.clone()))?;
    let body: Decision = parse_json(&body, false)?.expect("a body is required");
    let decision = decide_appeal(&hub, &caller, id, body.grant, &body.note)?;
    let mut shown = appeal_json(&hub, &decision.appeal, true, &mut HashMap::new(), &now())?;
    shown["restriction_lifted"] = Value::Bool(decision.restriction_lifted);
    Ok(Json(shown))
}

// The pages.

fn shorten(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The evidence of a finding as HTML, from its [`finding_json`].
fn evidence_html(finding: &Value) -> String {
    let text = |value: &Value| escape_html(value.as_str().unwrap_or(""));
    let mut html = format!(
        r#"<p>Finding {id} · {at} · action <strong>{action}</strong>{category} · kernel <code>{kernel}</code>{shadow}</p><ul class="evidence">"#,
        id = finding["id"],
        at = text(&finding["at"]),
        action = text(&finding["action"]),
        category = finding["category"]
            .as_str()
            .map(|c| format!(r#" · category <strong>{}</strong>"#, escape_html(c)))
            .unwrap_or_default(),
        kernel = text(&finding["kernel_id"]),
        shadow = if finding["shadow"] == Value::Bool(true) {
            " · shadow mode (not shown to the user)"
        } else {
            ""
        },
    );
    for item in finding["evidence"].as_array().into_iter().flatten() {
        // Findings on what runs (the supervisor's, `msg_id` "runtime") number processes, not
        // lines.
        let runtime = finding["msg_id"] == "runtime";
        let location = match (
            item["location"]["cell"].as_u64(),
            item["location"]["line"].as_u64(),
        ) {
            _ if runtime => " in a running process".to_owned(),
            (Some(cell), Some(line)) => format!(" at cell {cell}, line {line}"),
            (None, Some(line)) => format!(" at line {line}"),
            _ => String::new(),
        };
        let via = match item["via"]["kind"].as_str() {
            Some(kind) if kind != "direct" => format!(" ({})", escape_html(kind)),
            _ => String::new(),
        };
        let line = item["line_text"]
            .as_str()
            .filter(|l| !l.is_empty())
            .map(|l| format!(": <code>{}</code>", escape_html(l)))
            .unwrap_or_default();
        let _ = write!(
            html,
            "<li>rule <strong>{rule}</strong>: {description}<br>matched <code>{matched}</code>{via}{location}{line}</li>",
            rule = text(&item["rule"]),
            description = text(&item["description"]),
            matched = escape_html(&shorten(
                item["matched"].as_str().unwrap_or(""),
                MATCHED_CHARS_SHOWN_MAX
            )),
        );
    }
    html.push_str("</ul>");
    html
}

fn restriction_html(restriction: &Value) -> String {
    if restriction.is_null() {
        return "<p>The account is not restricted.</p>".into();
    }
    let reason = restriction["reason"]
        .as_str()
        .map(|r| format!(": {}", escape_html(r)))
        .unwrap_or_default();
    let until = escape_html(restriction["until"].as_str().unwrap_or(""));
    if restriction["active"] == Value::Bool(true) {
        format!("<p>The account is <strong>restricted until {until}</strong>{reason}.</p>")
    } else {
        format!("<p>The account's restriction ended at {until}{reason}.</p>")
    }
}

/// What an appeal is about, as its tables say it.
fn about(appeal: &AppealRecord) -> String {
    appeal
        .finding_id
        .map(|id| format!("finding {id}"))
        .unwrap_or_else(|| "restriction".into())
}

fn decision_html(appeal: &AppealRecord) -> String {
    match (&appeal.decided_by, &appeal.decided_at) {
        (Some(by), Some(at)) => format!(
            "{} by {} at {}{}",
            appeal.status,
            escape_html(by),
            escape_html(at),
            appeal
                .decision_note
                .as_deref()
                .map(|n| format!(": {}", escape_html(n)))
                .unwrap_or_default()
        ),
        _ => "awaiting an administrator".into(),
    }
}

fn appeal_form(hub: &Hub, xsrf: &str, finding_id: Option<i64>, label: &str) -> String {
    let finding = finding_id.map(|id| id.to_string()).unwrap_or_default();
    format!(
        r#"<form method="post" action="{action}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<input type="hidden" name="finding_id" value="{finding}">
<label>Why is this a mistake? <textarea name="message" maxlength="{max}" required></textarea></label>
<button type="submit">{label}</button>
</form>"#,
        action = hub.url("hub/appeal"),
        xsrf = escape_html(xsrf),
        max = commonlab_store::APPEAL_MESSAGE_CHARS_MAX,
    )
}

/// The user's page: their restriction, findings with evidence and appeal forms, and appeals.
fn render_user_page(
    hub: &Hub,
    user: &UserRecord,
    xsrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<String, ApiError> {
    let now = now();
    let admin = is_admin(user);
    let appeals = hub
        .store
        .appeal_list(Some(&user.name), None)
        .map_err(appeal_error)?;
    let open_for = |finding_id: Option<i64>| {
        appeals
            .iter()
            .find(|a| a.status == AppealStatus::Open && a.finding_id == finding_id)
    };
    let mut body = format!(
        "<h1>Your findings and appeals</h1>{}{}",
        message_html("notice", notice),
        message_html("error", error)
    );

    body.push_str(r#"<h2>Restriction</h2><section id="restriction"><article>"#);
    let restriction = restriction_json(user, &now);
    body.push_str(&restriction_html(&restriction));
    if restriction["active"] == Value::Bool(true) {
        match open_for(None) {
            Some(open) => {
                let _ = write!(
                    body,
                    "<p>Your appeal {} of this restriction is open.</p>",
                    open.id
                );
            }
            None => body.push_str(&appeal_form(hub, xsrf, None, "Appeal the restriction")),
        }
    }
    body.push_str("</article></section>");

    body.push_str(r#"<h2>Findings</h2><section id="findings">"#);
    let findings: Vec<StoredFinding> = hub
        .store
        .finding_list(Some(&user.name), FINDINGS_LISTED_DEFAULT)
        .map_err(store_error)?
        .into_iter()
        .filter(|f| admin || !f.record.shadow)
        .collect();
    if findings.is_empty() {
        body.push_str("<p>The usage policy has found nothing in your code.</p>");
    }
    for finding in &findings {
        let _ = write!(
            body,
            r#"<article id="finding-{}">{}"#,
            finding.id,
            evidence_html(&finding_json(finding, admin))
        );
        match open_for(Some(finding.id)) {
            Some(open) => {
                let _ = write!(body, "<p>Your appeal {} is open.</p>", open.id);
            }
            None => body.push_str(&appeal_form(
                hub,
                xsrf,
                Some(finding.id),
                "Appeal this finding",
            )),
        }
        body.push_str("</article>");
    }
    body.push_str("</section>");

    body.push_str(r#"<h2>Your appeals</h2><section id="appeals">"#);
    if appeals.is_empty() {
        body.push_str("<p>You have not appealed anything.</p>");
    } else {
        body.push_str("<table><tr><th>Appeal</th><th>About</th><th>Filed</th><th>Your message</th><th>Status</th><th>Decision</th></tr>");
        for appeal in &appeals {
            let about = about(appeal);
            let _ = write!(
                body,
                r#"<tr id="appeal-{id}"><td>{id}</td><td>{about}</td><td>{created}</td><td>{message}</td><td class="status-{status}">{status}</td><td>{decision}</td></tr>"#,
                id = appeal.id,
                created = escape_html(&appeal.created_at),
                message = escape_html(&appeal.message),
                status = appeal.status,
                decision = decision_html(appeal),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    Ok(layout(hub, "Findings and appeals", Some(user), &body))
}

/// The administrators' page: open appeals with their evidence and decision forms, then the
/// latest decided ones.
fn render_admin_page(
    hub: &Hub,
    admin: &UserRecord,
    xsrf: &str,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<String, ApiError> {
    let now = now();
    let mut users = HashMap::new();
    let mut open = hub
        .store
        .appeal_list(None, Some("open"))
        .map_err(appeal_error)?;
    open.reverse();
    let mut body = format!(
        "<h1>Open appeals</h1>{}{}",
        message_html("notice", notice),
        message_html("error", error)
    );
    body.push_str(r#"<section id="open">"#);
    if open.is_empty() {
        body.push_str("<p>No appeal is waiting for a decision.</p>");
    }
    for appeal in &open {
        let shown = appeal_json(hub, appeal, true, &mut users, &now)?;
        let about = match (&appeal.finding_id, &shown["finding"]) {
            (Some(_), finding) if !finding.is_null() => evidence_html(finding),
            (Some(id), _) => format!("<p>Finding {id} is no longer stored.</p>"),
            (None, _) => "<p>An appeal of the account's restriction.</p>".into(),
        };
        let _ = write!(
            body,
            r#"<article id="appeal-{id}"><h3>Appeal {id} by {user}, filed {created}</h3>{about}{restriction}<p>Their message:</p><blockquote>{message}</blockquote>"#,
            id = appeal.id,
            user = escape_html(&appeal.user),
            created = escape_html(&appeal.created_at),
            restriction = restriction_html(&shown["restriction"]),
            message = escape_html(&appeal.message),
        );
        if appeal.user == admin.name {
            body.push_str("<p>This is your own appeal: another administrator must decide it.</p>");
        } else {
            let _ = write!(
                body,
                r#"<form method="post" action="{action}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<input type="hidden" name="appeal_id" value="{id}">
<label>Note to {user} <textarea name="note" maxlength="{max}"></textarea></label>
<button type="submit" name="decision" value="grant">Grant</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>"#,
                action = hub.url("hub/admin/appeals"),
                xsrf = escape_html(xsrf),
                id = appeal.id,
                user = escape_html(&appeal.user),
                max = commonlab_store::DECISION_NOTE_CHARS_MAX,
            );
        }
        body.push_str("</article>");
    }
    body.push_str("</section>");

    let decided: Vec<AppealRecord> = hub
        .store
        .appeal_list(None, None)
        .map_err(appeal_error)?
        .into_iter()
        .filter(|a| a.status != AppealStatus::Open)
        .take(DECIDED_APPEALS_SHOWN_MAX)
        .collect();
    body.push_str(r#"<h2>Recently decided</h2><section id="decided">"#);
    if decided.is_empty() {
        body.push_str("<p>None yet.</p>");
    } else {
        body.push_str("<table><tr><th>Appeal</th><th>User</th><th>About</th><th>Message</th><th>Decision</th></tr>");
        for appeal in &decided {
            let about = about(appeal);
            let _ = write!(
                body,
                r#"<tr id="appeal-{id}"><td>{id}</td><td>{user}</td><td>{about}</td><td>{message}</td><td class="status-{status}">{decision}</td></tr>"#,
                id = appeal.id,
                user = escape_html(&appeal.user),
                message = escape_html(&appeal.message),
                status = appeal.status,
                decision = decision_html(appeal),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
    Ok(layout(hub, "Open appeals", Some(admin), &body))
}

#[derive(Debug, Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    filed: Option<i64>,
    #[serde(default)]
    decided: Option<i64>,
}

async fn to_page(State(hub): State<Arc<Hub>>) -> Redirect {
    Redirect::to(&hub.url("hub/appeal"))
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
    let notice = query.filed.map(|id| {
        format!("Your appeal {id} was filed. An administrator will decide it; the decision will show here.")
    });
    match render_user_page(&hub, &user, &xsrf, notice.as_deref(), None) {
        Ok(html) => html_response(StatusCode::OK, html, set_cookie),
        Err(e) => error_page(&hub, Some(&user), &e),
    }
}

#[derive(Debug, Deserialize)]
struct AppealForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    finding_id: String,
    #[serde(default)]
    message: String,
}

async fn page_submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<AppealForm>,
) -> Response {
    let Some((user, _)) = super::identify(&hub, &headers, &uri) else {
        return error_page(
            &hub,
            None,
            &ApiError::new(
                StatusCode::FORBIDDEN,
                "not_authenticated",
                "Log in to appeal.",
            ),
        );
    };
    if !xsrf_matches(&headers, &form._xsrf) {
        return error_page(&hub, Some(&user), &form_expired());
    }
    let finding_id = match form.finding_id.trim() {
        "" => Ok(None),
        id => id
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request("invalid_finding_id", format!("No finding {id:?}"))),
    };
    let filed = finding_id.and_then(|id| file_appeal(&hub, &user, id, &form.message));
    match filed {
        Ok(appeal) => {
            Redirect::to(&format!("{}?filed={}", hub.url("hub/appeal"), appeal.id)).into_response()
        }
        Err(e) => match render_user_page(&hub, &user, &form._xsrf, None, Some(&e.message)) {
            Ok(html) => html_response(e.status, html, None),
            Err(e) => error_page(&hub, Some(&user), &e),
        },
    }
}

/// The signed-in administrator, or the response for anyone else: a login redirect for no one,
/// 403 for a user.
async fn admin_page(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<PageQuery>,
) -> Response {
    let admin = match page_admin(
        &hub,
        &headers,
        &uri,
        "Only administrators may decide appeals.",
    ) {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    let (xsrf, set_cookie) = xsrf_for_page(&hub, &headers);
    let notice = query
        .decided
        .map(|id| format!("Appeal {id} was decided; the user sees the decision on their page."));
    match render_admin_page(&hub, &admin, &xsrf, notice.as_deref(), None) {
        Ok(html) => html_response(StatusCode::OK, html, set_cookie),
        Err(e) => error_page(&hub, Some(&admin), &e),
    }
}

#[derive(Debug, Deserialize)]
struct DecisionForm {
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    appeal_id: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

async fn admin_submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<DecisionForm>,
) -> Response {
    let admin = match page_admin(
        &hub,
        &headers,
        &uri,
        "Only administrators may decide appeals.",
    ) {
        Ok(admin) => admin,
        Err(response) => return *response,
    };
    if !xsrf_matches(&headers, &form._xsrf) {
        return error_page(&hub, Some(&admin), &form_expired());
    }
    let decided = form
        .appeal_id
        .trim()
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request("invalid_appeal_id", "No such appeal"))
        .and_then(|id| match form.decision.as_str() {
            "grant" => Ok((id, true)),
            "deny" => Ok((id, false)),
            _ => Err(ApiError::bad_request(
                "invalid_decision",
                "Choose Grant or Deny",
            )),
        })
        .and_then(|(id, grant)| decide_appeal(&hub, &admin, id, grant, &form.note));
    match decided {
        Ok(decision) => Redirect::to(&format!(
            "{}?decided={}",
            hub.url("hub/admin/appeals"),
            decision.appeal.id
        ))
        .into_response(),
        Err(e) => match render_admin_page(&hub, &admin, &form._xsrf, None, Some(&e.message)) {
            Ok(html) => html_response(e.status, html, None),
            Err(e) => error_page(&hub, Some(&admin), &e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appeal_url_sits_under_the_base_url() {
        assert_eq!(crate::appeal_url("/"), "/hub/appeal");
        assert_eq!(crate::appeal_url(""), "/hub/appeal");
        assert_eq!(crate::appeal_url("/lab/"), "/lab/hub/appeal");
        assert_eq!(crate::appeal_url("lab"), "/lab/hub/appeal");
    }

    #[test]
    fn long_matches_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("éé", 2), "éé");
    }

    #[test]
    fn evidence_is_escaped_and_runtime_findings_name_no_line() {
        let finding = json!({
            "id": 7, "at": "t", "action": "stop", "category": "mining", "kernel_id": "k",
            "msg_id": "runtime", "shadow": false,
            "evidence": [{
                "rule": "mining.miner-program", "description": "a <miner>",
                "matched": "xmrig", "line_text": "./xmrig --url '<b>'",
                "location": {"cell": null, "line": 2}, "via": {"kind": "direct"},
            }],
        });
        let html = evidence_html(&finding);
        assert!(html.contains("a &lt;miner&gt;"), "{html}");
        assert!(html.contains("&#39;&lt;b&gt;&#39;"), "{html}");
        assert!(html.contains("in a running process"), "{html}");
        assert!(!html.contains("line 2"), "{html}");
    }
}

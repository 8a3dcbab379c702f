//! What the hub's server-rendered pages share: escaping, the double-submit XSRF cookie, the
//! response headers, and the page layout with its navigation.

use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use commonlab_store::{Role, UserRecord};

use super::Hub;
use crate::auth::{self, XSRF_COOKIE};
use crate::ApiError;

pub(super) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The `Set-Cookie` value of an XSRF cookie for the hub's pages.
pub(super) fn xsrf_cookie(hub: &Hub, value: &str) -> String {
    format!(
        "{XSRF_COOKIE}={value}; Path={}; SameSite=Lax{}",
        hub.config.base_url,
        if hub.config.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The browser's XSRF cookie value, and a `Set-Cookie` for a fresh one when it has none.
pub(super) fn xsrf_for_page(hub: &Hub, headers: &HeaderMap) -> (String, Option<String>) {
    if let Some(existing) = auth::cookie(headers, XSRF_COOKIE).filter(|c| !c.is_empty()) {
        return (existing, None);
    }
    let fresh: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cookie = xsrf_cookie(hub, &fresh);
    (fresh, Some(cookie))
}

/// Whether a form's `_xsrf` field matches the browser's XSRF cookie (double submit).
pub(super) fn xsrf_matches(headers: &HeaderMap, submitted: &str) -> bool {
    auth::cookie(headers, XSRF_COOKIE).is_some_and(|cookie| {
        !cookie.is_empty() && auth::constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
    })
}

/// An HTML page, never cached (pages may show a token once, or a user's evidence), with an
/// XSRF cookie when one was made for it.
pub(super) fn html_response(
    status: StatusCode,
    body: String,
    set_cookie: Option<String>,
) -> Response {
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie.parse().expect("cookie is a header value"),
        );
    }
    response
}

/// A whole page: `body` (already escaped HTML) in the hub's layout, with the navigation of a
/// logged-in `user`.
pub(super) fn layout(hub: &Hub, title: &str, user: Option<&UserRecord>, body: &str) -> String {
    let nav = user
        .map(|user| {
            let admin = if user.role == Role::Admin {
                format!(
                    r#" · <a href="{}">Admin</a> · <a href="{}">Open appeals</a>"#,
                    hub.url("hub/admin"),
                    hub.url("hub/admin/appeals")
                )
            } else {
                String::new()
            };
            format!(
                r#"<nav>Logged in as <strong>{name}</strong> · <a href="{lab}">JupyterLab</a> · <a href="{account}">Your account</a> · <a href="{appeal}">Your findings and appeals</a>{admin} · <a href="{logout}">Log out</a></nav>"#,
                name = escape_html(&user.name),
                lab = hub.url(&format!("user/{}/lab", user.name)),
                account = hub.url("hub/account"),
                appeal = hub.url("hub/appeal"),
                logout = hub.url("hub/logout"),
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Commonlab</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f5f5; margin: 0; padding: 1.5rem; }}
main {{ max-width: 60rem; margin: 0 auto; }}
nav {{ margin-bottom: 1rem; color: #444; }}
h1 {{ font-size: 1.5rem; }}
h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
section > article, .box {{ background: white; padding: 1rem 1.25rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); margin: .8rem 0; }}
code {{ background: #f0f0f0; padding: 0 .2rem; word-break: break-all; }}
meter {{ width: 100%; height: 1.2rem; }}
textarea {{ width: 100%; box-sizing: border-box; min-height: 4.5rem; }}
button {{ margin-top: .5rem; padding: .4rem .9rem; }}
table {{ border-collapse: collapse; width: 100%; background: white; }}
th, td {{ border: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }}
td.number {{ text-align: right; font-variant-numeric: tabular-nums; }}
.error {{ color: #b00020; }}
.notice {{ color: #1b5e20; }}
.status-open {{ color: #8a6d00; }} .status-granted {{ color: #1b5e20; }} .status-denied {{ color: #b00020; }}
</style></head>
<body><main>
{nav}
{body}
</main></body></html>
"#,
        title = escape_html(title),
    )
}

/// A notice or error paragraph, or nothing.
pub(super) fn message_html(kind: &str, message: Option<&str>) -> String {
    message
        .map(|m| format!(r#"<p class="{kind}" role="alert">{}</p>"#, escape_html(m)))
        .unwrap_or_default()
}

/// Sends a browser that is not logged in to the login page, to come back here after.
pub(super) fn to_login(hub: &Hub, uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Redirect::to(&format!(
        "{}?next={}",
        hub.url("hub/login"),
        super::login::percent_encode(next)
    ))
    .into_response()
}

/// A page form whose `_xsrf` field does not match the browser's cookie.
pub(super) fn form_expired() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "xsrf_missing",
        "The form expired or was sent from another site. Reload the page and try again.",
    )
}

/// The administrator a page request comes from; otherwise the response to send instead: the
/// login page for a browser that is not logged in, a 403 page saying `refusal` for a user.
pub(super) fn page_admin(
    hub: &Hub,
    headers: &HeaderMap,
    uri: &Uri,
    refusal: &str,
) -> Result<UserRecord, Box<Response>> {
    match super::identify(hub, headers, uri) {
        None => Err(Box::new(to_login(hub, uri))),
        Some((user, _)) if user.role == Role::Admin => Ok(user),
        Some((user, _)) => Err(Box::new(error_page(
            hub,
            Some(&user),
            &ApiError::new(StatusCode::FORBIDDEN, "admin_only", refusal.to_owned()),
        ))),
    }
}

/// An API error shown as a page.
pub(super) fn error_page(hub: &Hub, user: Option<&UserRecord>, error: &ApiError) -> Response {
    let body = format!(
        "<h1>{}</h1>{}",
        error.status.canonical_reason().unwrap_or("Error"),
        message_html("error", Some(&error.message))
    );
    html_response(error.status, layout(hub, "Error", user, &body), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">'&"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}

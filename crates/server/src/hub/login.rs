//! The login page, the login form's handler and logout. The form is protected against
//! cross-site posts by a double-submit `_xsrf` cookie; the session cookie is `HttpOnly`,
//! `SameSite=Lax`, and `Secure` when configured.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::page::{escape_html, xsrf_cookie};
use super::Hub;
use crate::auth::{self, XSRF_COOKIE};

#[derive(Debug, Deserialize, Default)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    _xsrf: String,
    #[serde(default)]
    next: Option<String>,
}

pub(super) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `next` only ever leads into a user's own server: anything else (another host, another
/// user's URL, the hub) falls back to their lab, so the login form cannot be used to bounce
/// someone elsewhere.
fn landing(hub: &Hub, user: &str, next: Option<&str>) -> String {
    let own = hub.url(&format!("user/{user}/"));
    let hub_page = |next: &str| {
        [
            "hub/appeal",
            "hub/account",
            "hub/admin",
            "hub/admin/appeals",
        ]
        .iter()
        .any(|page| next.split('?').next() == Some(hub.url(page).as_str()))
    };
    match next {
        Some(next)
            if (next.starts_with(&own) || hub_page(next))
                && !next.contains("//")
                && !next.contains('\\') =>
        {
            next.to_owned()
        }
        _ => format!("{own}lab"),
    }
}

fn new_secret() -> String {
    rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The login page; `error` is the stable code and the message of why the last post was refused.
fn render(hub: &Hub, xsrf: &str, next: Option<&str>, error: Option<(&str, &str)>) -> String {
    let action = hub.url("hub/login");
    let next = next
        .map(|n| {
            format!(
                r#"<input type="hidden" name="next" value="{}">"#,
                escape_html(n)
            )
        })
        .unwrap_or_default();
    let error = error
        .map(|(code, message)| {
            format!(
                r#"<p class="error" role="alert" data-code="{code}">{}</p>"#,
                escape_html(message)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Commonlab</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f5f5f5; display: flex; justify-content: center; padding-top: 12vh; }}
form {{ background: white; padding: 2rem 2.5rem; border-radius: 8px; box-shadow: 0 1px 4px rgba(0,0,0,.15); min-width: 18rem; }}
h1 {{ font-size: 1.4rem; margin: 0 0 1.2rem; }}
label {{ display: block; margin: .8rem 0 .3rem; }}
input[type=text], input[type=password] {{ width: 100%; padding: .45rem; box-sizing: border-box; }}
button {{ margin-top: 1.2rem; width: 100%; padding: .55rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="{action}">
<h1>Commonlab</h1>
{error}
<label for="username">Username</label><input id="username" name="username" type="text" autocomplete="username" autofocus required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="_xsrf" value="{xsrf}">
{next}
<button type="submit" id="login_submit">Log in</button>
</form></body></html>
"#
    )
}

pub(super) async fn page(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<NextQuery>,
) -> Response {
    if let Some((user, _)) = super::identify(&hub, &headers, &uri) {
        return Redirect::to(&landing(&hub, &user.name, query.next.as_deref())).into_response();
    }
    let (xsrf, set) = match auth::cookie(&headers, XSRF_COOKIE).filter(|c| !c.is_empty()) {
        Some(existing) => (existing, None),
        None => {
            let fresh = new_secret();
            let cookie = xsrf_cookie(&hub, &fresh);
            (fresh, Some(cookie))
        }
    };
    let mut response = Html(render(&hub, &xsrf, query.next.as_deref(), None)).into_response();
    if let Some(cookie) = set {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie.parse().expect("cookie is a header value"),
        );
    }
    response
}

/// The login page again, with why the post was refused (`code`, a stable snake_case code).
fn refuse(
    hub: &Hub,
    xsrf: &str,
    form_next: Option<&str>,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    (
        status,
        Html(render(hub, xsrf, form_next, Some((code, message)))),
    )
        .into_response()
}

pub(super) async fn submit(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let xsrf = auth::cookie(&headers, XSRF_COOKIE).unwrap_or_default();
    let next = form.next.as_deref();
    if xsrf.is_empty() || !auth::constant_time_eq(xsrf.as_bytes(), form._xsrf.as_bytes()) {
        return refuse(
            &hub,
            &xsrf,
            next,
            StatusCode::FORBIDDEN,
            "login_form_expired",
            "The login form expired or was sent from another site. Reload this page and try again.",
        );
    }
    let name = form.username.trim().to_owned();
    let now = Instant::now();
    if !hub.login_allowed(&name, now) {
        hub.login_refused(&name, "too_many_failures", now);
        let minutes = hub.config.login_failure_window.as_secs().div_ceil(60);
        return refuse(
            &hub,
            &xsrf,
            next,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            &format!("Too many failed logins for this name. Try again in {minutes} minutes, or ask an administrator to reset your password."),
        );
    }
    let bad_credentials = || {
        hub.login_failed(&name, now);
        hub.login_refused(&name, "bad_credentials", now);
        refuse(
            &hub,
            &xsrf,
            next,
            StatusCode::FORBIDDEN,
            "bad_credentials",
            "Invalid username or password.",
        )
    };
    // No account has a name or password like these, so no hash is computed for them: what one
    // post can cost is bounded before a place to check a password is taken.
    if commonlab_store::validate_user_name(&name).is_err()
        || form.password.len() > commonlab_store::PASSWORD_BYTES_MAX
    {
        return bad_credentials();
    }
    // A place to check a password now, or a refusal now: a flood of posts is answered rather
    // than queued, so it holds neither memory nor cores past the configured checks at once.
    let Ok(permit) = hub.password_checks.clone().try_acquire_owned() else {
        hub.login_refused(&name, "login_busy", now);
        let mut response = refuse(
            &hub,
            &xsrf,
            next,
            StatusCode::SERVICE_UNAVAILABLE,
            "login_busy",
            "The server is checking too many logins right now. Try again in a moment.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    let verified = {
        let store = hub.store.clone();
        let (name, password) = (name.clone(), form.password);
        // The permit moves into the check: it is held until the hash is done even if this
        // request is dropped (the client went away), since the blocking work is not cancelled.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store.user_verify_password(&name, &password)
        })
        .await
    };
    let user = match verified {
        Ok(Ok(Some(user))) => user,
        Ok(Ok(None)) => return bad_credentials(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "login: store error");
            return refuse(
                &hub,
                &xsrf,
                next,
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "The server could not check your password right now. Try again in a moment.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "login: password check panicked");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    hub.login_succeeded(&name);
    let now_utc = chrono::Utc::now();
    let expires = now_utc
        + chrono::Duration::from_std(hub.config.login_session_ttl)
            .unwrap_or(chrono::Duration::days(7));
    let session = match hub.store.login_session_create(
        &user.name,
        &now_utc.to_rfc3339(),
        &expires.to_rfc3339(),
    ) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "login: could not create the session");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    hub.audit(
        Some(&user.name),
        "login",
        Some(&user.name),
        serde_json::json!({}),
    );
    let cookie = format!(
        "{}={session}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        auth::session_cookie_name(&headers),
        hub.config.base_url,
        hub.config.login_session_ttl.as_secs(),
        if hub.config.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = Redirect::to(&landing(&hub, &user.name, next)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie.parse().expect("cookie is a header value"),
    );
    response
}

pub(super) async fn logout(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let name = auth::session_cookie_name(&headers);
    if let Some(session) = auth::cookie(&headers, &name) {
        let now = chrono::Utc::now().to_rfc3339();
        let user = hub
            .store
            .login_session_lookup(&session, &now)
            .ok()
            .flatten();
        if let Some(user) = &user {
            hub.audit(
                Some(&user.name),
                "logout",
                Some(&user.name),
                serde_json::json!({}),
            );
        }
        if let Err(e) = hub.store.login_session_delete(&session) {
            tracing::error!(error = %e, "logout: could not delete the session");
        }
        // The session's open kernel connections close now, not at their next check.
        if let Some(user) = &user {
            hub.revocations.revoked(&user.name);
        }
    }
    let mut response = Redirect::to(&hub.url("hub/login")).into_response();
    let clear = format!(
        "{name}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
        hub.config.base_url
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        clear.parse().expect("cookie is a header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_percent_encoded() {
        assert_eq!(
            percent_encode("/user/a/lab?x=1&y"),
            "/user/a/lab%3Fx%3D1%26y"
        );
    }
}

//! Authentication of one server's requests. In token mode: `Authorization: token …` (or
//! `Bearer …`) or `?token=…`, as jupyter_server accepts them, or the cookie the front-end pages
//! set (with XSRF checks). In accounts mode, a user's server accepts only its owner: their
//! login-session cookie (with the same XSRF checks) or one of their API tokens.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// How a request carried the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    Header,
    Query,
    /// The cookie set by the front-end pages; unsafe methods must also carry the XSRF header.
    Cookie,
    /// The server has no token.
    None,
}

/// The cookie carrying the token after a page was opened with `?token=`.
pub(crate) const TOKEN_COOKIE: &str = "commonlab-token";
/// The XSRF cookie, named as jupyter_server names it so front ends echo it in `X-XSRFToken`.
pub(crate) const XSRF_COOKIE: &str = "_xsrf";

fn header_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim().to_owned())
}

fn query_token(uri: &Uri) -> Option<String> {
    form_pairs(uri.query()?)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// The login-session cookie's name, with the port (see [`token_cookie_name`]).
pub(crate) fn session_cookie_name(headers: &HeaderMap) -> String {
    token_cookie_name(headers).replace(TOKEN_COOKIE, SESSION_COOKIE)
}

/// The cookie carrying a browser's login session in accounts mode.
pub(crate) const SESSION_COOKIE: &str = "commonlab-session";

/// The secret an accounts-mode request proved itself with, kept by a WebSocket so it can be
/// checked again when the user's credentials change.
#[derive(Clone)]
pub(crate) enum AccountSecret {
    Token(String),
    Session(String),
}

/// Who a request is from in accounts mode, and how they proved it.
pub(crate) fn account_credential(
    store: &commonlab_store::Store,
    headers: &HeaderMap,
    uri: &Uri,
) -> Option<(commonlab_store::UserRecord, Credential)> {
    account_identity(store, headers, uri).map(|(user, credential, _)| (user, credential))
}

/// [`account_credential`], with the secret itself.
pub(crate) fn account_identity(
    store: &commonlab_store::Store,
    headers: &HeaderMap,
    uri: &Uri,
) -> Option<(commonlab_store::UserRecord, Credential, AccountSecret)> {
    let lookup = |token: &str| store.api_token_lookup(token).ok().flatten();
    if let Some(token) = header_token(headers) {
        return lookup(&token).map(|u| (u, Credential::Header, AccountSecret::Token(token)));
    }
    if let Some(token) = query_token(uri) {
        return lookup(&token).map(|u| (u, Credential::Query, AccountSecret::Token(token)));
    }
    let session = cookie(headers, &session_cookie_name(headers))?;
    let now = chrono::Utc::now().to_rfc3339();
    store
        .login_session_lookup(&session, &now)
        .ok()
        .flatten()
        .map(|u| (u, Credential::Cookie, AccountSecret::Session(session)))
}

/// Whether a request asks to become a WebSocket.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

fn token_matches(state: &AppState, token: &str) -> bool {
    !state.token.is_empty() && constant_time_eq(token.as_bytes(), state.token.as_bytes())
}

/// The valid credential a request carries, if any. A presented but wrong header or query
/// token is refused even when a valid cookie is present.
pub(crate) fn credential(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<Credential> {
    if let Some(accounts) = &state.accounts {
        let (user, credential) = account_credential(&accounts.store, headers, uri)?;
        return (user.name == accounts.owner).then_some(credential);
    }
    if let Some(token) = header_token(headers) {
        return token_matches(state, &token).then_some(Credential::Header);
    }
    if let Some(token) = query_token(uri) {
        return token_matches(state, &token).then_some(Credential::Query);
    }
    if state.token.is_empty() {
        return Some(Credential::None);
    }
    let token = cookie(headers, &token_cookie_name(headers))?;
    token_matches(state, &token).then_some(Credential::Cookie)
}

/// The token cookie's name, with the port the browser used: browsers do not keep cookies apart
/// by port, so two servers on one host would otherwise overwrite each other's.
pub(crate) fn token_cookie_name(headers: &HeaderMap) -> String {
    let port = headers
        .get(axum::http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    match port {
        Some(port) => format!("{TOKEN_COOKIE}-{port}"),
        None => TOKEN_COOKIE.to_owned(),
    }
}

/// `Set-Cookie` values for a page response: the token cookie when the page was opened with
/// `?token=`, and an XSRF cookie when the browser has none.
pub(crate) fn page_cookies(
    state: &AppState,
    headers: &HeaderMap,
    credential: Credential,
) -> Vec<String> {
    let path = &state.base_url;
    let mut cookies = Vec::new();
    if credential == Credential::Query && state.accounts.is_none() {
        cookies.push(format!(
            "{}={}; Path={path}; HttpOnly; SameSite=Lax",
            token_cookie_name(headers),
            state.token
        ));
    }
    if cookie(headers, XSRF_COOKIE).is_none() {
        let value: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        cookies.push(format!("{XSRF_COOKIE}={value}; Path={path}; SameSite=Lax"));
    }
    cookies
}

/// Whether a browser request's `Origin` names the host it was sent to (absent `Origin`: not a
/// browser, allowed).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, h)| h.trim_end_matches('/') == host)
}

pub(crate) fn xsrf_ok(headers: &HeaderMap) -> bool {
    let Some(expected) = cookie(headers, XSRF_COOKIE).filter(|c| !c.is_empty()) else {
        return false;
    };
    headers
        .get("x-xsrftoken")
        .or_else(|| headers.get("x-csrftoken"))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), expected.as_bytes()))
}

pub(crate) fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((percent_decode(k)?, percent_decode(v)?))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rejects requests without the server's token with 403, as jupyter_server does for the API.
/// Requests authenticated only by the cookie must carry the XSRF header on unsafe methods.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let credential = credential(&state, request.headers(), request.uri());
    let safe_method = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let is_websocket = is_websocket_upgrade(request.headers());
    match credential {
        None => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "not_authenticated",
                "Forbidden: a valid token is required (send `Authorization: token <token>` or `?token=<token>`)",
            )
            .into_response();
        }
        Some(Credential::Cookie)
            if !safe_method && !is_websocket && !xsrf_ok(request.headers()) =>
        {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "xsrf_missing",
                "Forbidden: '_xsrf' argument missing from POST",
            )
            .into_response();
        }
        Some(Credential::Cookie) if is_websocket && !same_origin(request.headers()) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "Forbidden: cross-origin WebSocket authenticated by cookie",
            )
            .into_response();
        }
        Some(_) => crate::listener::authenticated(request.extensions()),
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded() {
        let pairs: Vec<_> = form_pairs("a=1&token=x%2By+z&b").collect();
        assert_eq!(pairs[1], ("token".to_owned(), "x+y z".to_owned()));
        assert_eq!(pairs[2], ("b".to_owned(), String::new()));
    }

    #[test]
    fn the_token_cookie_is_named_for_the_port() {
        let with_host = |host: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(axum::http::header::HOST, host.parse().unwrap());
            token_cookie_name(&headers)
        };
        assert_eq!(with_host("127.0.0.1:8888"), "commonlab-token-8888");
        assert_eq!(with_host("[::1]:9000"), "commonlab-token-9000");
        assert_eq!(with_host("lab.example"), "commonlab-token");
        assert_eq!(token_cookie_name(&HeaderMap::new()), "commonlab-token");
    }
}

//! Token authentication: `Authorization: token …` (or `Bearer …`) or `?token=…`, as
//! jupyter_server accepts them.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

fn token_from_request(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().to_owned());
        }
    }
    let query = request.uri().query()?;
    form_pairs(query)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rejects requests without the server's token with 403, as jupyter_server does for the API.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let authorized = match token_from_request(&request) {
        Some(token) => {
            !state.token.is_empty() && constant_time_eq(token.as_bytes(), state.token.as_bytes())
        }
        None => state.token.is_empty(),
    };
    if !authorized {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "not_authenticated",
            "Forbidden: a valid token is required (send `Authorization: token <token>` or `?token=<token>`)",
        )
        .into_response();
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
}

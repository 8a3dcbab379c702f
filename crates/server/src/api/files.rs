//! `/files/<path>`: a file's bytes as they are on disk, for downloads and for images and links in
//! Markdown cells, as jupyter_server serves them.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, Default)]
pub(crate) struct FileQuery {
    /// `?download=1` (or `true`) asks the browser to save the file rather than show it.
    #[serde(default)]
    download: Option<String>,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path(path): Path<String>,
    Query(query): Query<FileQuery>,
) -> Result<Response, ApiError> {
    let (bytes, mimetype) = state.contents.read_file(&path).await?;
    let name = path.rsplit('/').next().unwrap_or(&path).replace('"', "");
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                mimetype.unwrap_or("application/octet-stream").to_owned(),
            ),
            // A file from the workspace must not run as a page of the server's origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
                    .to_owned(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        bytes,
    )
        .into_response();
    if query
        .download
        .as_deref()
        .is_some_and(|d| d == "1" || d.eq_ignore_ascii_case("true"))
    {
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\"")
                .parse()
                .map_err(|_| ApiError::bad_request("bad_name", "The file name cannot be sent"))?,
        );
    }
    Ok(response)
}

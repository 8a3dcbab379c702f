//! `GET /api/nbconvert`: the export formats the front ends list in "Save and Export As".
//! Conversion itself (`/nbconvert/<format>/<path>`) is not served yet.

use axum::Json;
use serde_json::{json, Value};

pub(crate) async fn formats() -> Json<Value> {
    Json(json!({
        "asciidoc": { "output_mimetype": "text/asciidoc" },
        "html": { "output_mimetype": "text/html" },
        "latex": { "output_mimetype": "text/latex" },
        "markdown": { "output_mimetype": "text/markdown" },
        "notebook": { "output_mimetype": "application/json" },
        "pdf": { "output_mimetype": "application/pdf" },
        "python": { "output_mimetype": "text/x-python" },
        "rst": { "output_mimetype": "text/x-rst" },
        "script": { "output_mimetype": "" },
        "slides": { "output_mimetype": "text/html" },
        "webpdf": { "output_mimetype": "text/html" },
    }))
}

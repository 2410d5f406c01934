//! The admin API's error answers: `{"error": "..."}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The answer to a purge or an inspection on a node with nothing that caches.
pub(super) const NO_CACHE: &str = "this node has no edge or shield role: nothing here caches; \
     send purges to an edge, a shield or the purge hub";

/// `status` with `{"error": msg}`.
pub(super) fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

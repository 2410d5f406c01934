//! `GET /cache?url=URL`: what each caching node of the process (edge, shield) holds for a URL.

use super::reply::{error, NO_CACHE};
use crate::proxy::Proxy;
use crate::purge::event::parse_url;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The query of `GET /cache`.
#[derive(serde::Deserialize)]
pub(super) struct CacheQuery {
    #[serde(default)]
    pub url: Option<String>,
}

/// The URL's keys and stored variants on every node of `nodes` that serves its host.
pub(super) async fn answer(nodes: &[Arc<Proxy>], url: Option<String>) -> Response {
    if nodes.is_empty() {
        return error(StatusCode::CONFLICT, NO_CACHE);
    }
    let Some(url) = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "name the object: GET /cache?url=https://www.example.com/path (the URL percent-encoded)",
        );
    };
    let target = match parse_url(&url) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let mut views = Vec::new();
    for n in nodes {
        views.extend(n.inspect(&target).await);
    }
    if views.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("no site of this node serves host {}", target.host),
        );
    }
    let cached = views.iter().any(|n| !n.entries.is_empty());
    Json(serde_json::json!({
        "url": url,
        "host": target.host,
        "path": target.path,
        "cached": cached,
        "nodes": views,
    }))
    .into_response()
}

//! The admin API (axum, its own listener): `GET /healthz` (open, for probes), and behind a
//! bearer token compared in constant time: `GET /metrics` (Prometheus text), `GET /stats` (JSON).

use crate::proxy::Proxy;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin API reports on.
#[derive(Clone)]
pub struct AdminState {
    token: Arc<str>,
    edges: Vec<Arc<Proxy>>,
}

impl AdminState {
    /// State for a token and the edges of this process.
    pub fn new(token: &str, edges: Vec<Arc<Proxy>>) -> Self {
        Self {
            token: Arc::from(token),
            edges,
        }
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn require_token(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => error(StatusCode::UNAUTHORIZED, "missing bearer token"),
        Some(t) if bool::from(t.as_bytes().ct_eq(st.token.as_bytes())) => next.run(req).await,
        Some(_) => error(StatusCode::FORBIDDEN, "invalid token"),
    }
}

async fn healthz() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

async fn metrics(State(st): State<AdminState>) -> Response {
    let mut out = String::new();
    for e in &st.edges {
        out.push_str(&e.stats().render_prometheus(&e.gauges()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn stats(State(st): State<AdminState>) -> Response {
    let edges: Vec<_> = st
        .edges
        .iter()
        .map(|e| e.stats().to_json(&e.gauges()))
        .collect();
    Json(serde_json::json!({ "edge": edges })).into_response()
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        .with_state(state)
}

/// Serves the admin API on `listener` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

//! The admin API (axum, its own listener): `GET /healthz` (open, for probes), and behind a
//! bearer token compared in constant time: `GET /metrics` (Prometheus text), `GET /stats`
//! (JSON), `POST /purge` and `GET /purge/log?since=N&wait=MS`.

use crate::proxy::Proxy;
use crate::purge::event::PurgeRequest;
use crate::purge::service::{PurgeError, PurgeService};
use axum::extract::Query;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin API reports on.
#[derive(Clone)]
pub struct AdminState {
    token: Arc<str>,
    edges: Vec<Arc<Proxy>>,
    purge: Option<Arc<PurgeService>>,
    shutdown: Option<watch::Receiver<bool>>,
    extra_metrics: Vec<MetricsSource>,
}

/// Prometheus text from another role of the process (the DNS server, say), appended to `/metrics`.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

impl AdminState {
    /// State for a token and the edges of this process.
    pub fn new(token: &str, edges: Vec<Arc<Proxy>>) -> Self {
        Self {
            token: Arc::from(token),
            edges,
            purge: None,
            shutdown: None,
            extra_metrics: Vec::new(),
        }
    }

    /// Adds a source of Prometheus text for `/metrics`.
    pub fn with_metrics(mut self, source: MetricsSource) -> Self {
        self.extra_metrics.push(source);
        self
    }

    /// Adds the purge service (enables `/purge` and `/purge/log`).
    pub fn with_purge(mut self, purge: Arc<PurgeService>) -> Self {
        self.purge = Some(purge);
        self
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
    if let Some(p) = &st.purge {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP outpost_purge_applied_version Newest purge version applied on this node.\n# TYPE outpost_purge_applied_version gauge\noutpost_purge_applied_version {}", p.applied());
        let _ = writeln!(out, "# HELP outpost_purge_log_version Newest purge version in this node's log.\n# TYPE outpost_purge_log_version gauge\noutpost_purge_log_version {}", p.latest());
    }
    for source in &st.extra_metrics {
        append_families(&mut out, &source());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Appends the metric families of `text` whose names `out` does not have yet: a family may
/// be rendered natively and again from the OpenTelemetry instruments
/// (`outpost_purge_applied_version`), and Prometheus rejects a name seen twice.
fn append_families(out: &mut String, text: &str) {
    let family = |line: &str| {
        line.strip_prefix("# TYPE ")
            .or_else(|| line.strip_prefix("# HELP "))
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    };
    let have: std::collections::HashSet<String> = out.lines().filter_map(family).collect();
    let mut skip = false;
    for line in text.lines() {
        if let Some(name) = family(line) {
            skip = have.contains(&name);
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
}

async fn stats(State(st): State<AdminState>) -> Response {
    let edges: Vec<_> = st
        .edges
        .iter()
        .map(|e| e.stats().to_json(&e.gauges()))
        .collect();
    let purge = st.purge.as_ref().map(
        |p| serde_json::json!({ "applied": p.applied(), "log": p.latest(), "hub": p.is_hub() }),
    );
    Json(serde_json::json!({ "edge": edges, "purge": purge })).into_response()
}

async fn purge(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    let Some(svc) = &st.purge else {
        return error(StatusCode::NOT_FOUND, "purge is not enabled on this node");
    };
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid purge JSON: {e}")),
    };
    match svc.submit(&req).await {
        Ok(version) => (
            StatusCode::OK,
            Json(serde_json::json!({ "version": version })),
        )
            .into_response(),
        Err(PurgeError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, &m),
        Err(e @ PurgeError::Log(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e @ PurgeError::Hub(_)) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    since: u64,
    /// Milliseconds to wait for a newer event.
    #[serde(default)]
    wait: u64,
}

async fn purge_log(
    State(st): State<AdminState>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(svc) = &st.purge else {
        return error(StatusCode::NOT_FOUND, "purge is not enabled on this node");
    };
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "use ?since=N&wait=MS with integers",
        );
    };
    // A long poll ends early when the node shuts down, so shutdown never waits on it.
    let events = match st.shutdown.clone() {
        Some(mut stop) => tokio::select! {
            e = svc.log_since(q.since, Duration::from_millis(q.wait)) => e,
            _ = async move { let _ = stop.wait_for(|s| *s).await; } => svc.log_since(q.since, Duration::ZERO).await,
        },
        None => svc.log_since(q.since, Duration::from_millis(q.wait)).await,
    };
    Json(serde_json::json!({ "events": events, "latest": svc.latest(), "applied": svc.applied() }))
        .into_response()
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/purge", axum::routing::post(purge))
        .route("/purge/log", get(purge_log))
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
    let mut state = state;
    state.shutdown = Some(shutdown.clone());
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::append_families;

    #[test]
    fn a_family_already_rendered_is_not_appended_twice() {
        let mut out = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n".to_string();
        append_families(
            &mut out,
            "# HELP a_total A again.\n# TYPE a_total counter\na_total{x=\"y\"} 2\n# TYPE b gauge\nb 3\n",
        );
        assert_eq!(
            out,
            "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 3\n"
        );
    }
}

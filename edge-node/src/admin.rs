//! The admin API (axum, its own listener): `GET /healthz` (open, for probes and geo-DNS: 503
//! with the reason while a caching role cannot serve, see `readiness.rs`) and `GET
//! /livez` (open: the process answers), and behind a bearer token compared in constant time:
//! `GET /metrics` (the process's instruments as Prometheus text), `GET /stats` (the same added
//! up per node and per site, as JSON, with the caches' gauges), `POST /purge`, `GET
//! /purge/log?since=N&wait=MS`, `GET /cache?url=URL` (what the caches hold for a URL,
//! `inspect.rs`) and `POST /reload`; the web console at `/ui` (`console/`, its own sign-in)
//! and, on the purge hub, `POST /fleet/report` (the nodes' reports the console's fleet page
//! shows). The `[admin] allow` and `deny` networks guard all but the two probes, before the
//! token (`access.rs`).

mod access;
pub mod console;
mod inspect;
mod reply;

use crate::node::Node;
use crate::purge::event::{PurgeRequest, PurgeTarget};
use crate::purge::service::{PurgeError, PurgeService};
use agent::metrics::Registry;
use axum::extract::Query;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use reply::{error, NO_CACHE};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What the admin API reports on.
#[derive(Clone)]
pub struct AdminState {
    token: Arc<str>,
    nodes: Vec<Arc<Node>>,
    reload: Option<Arc<dyn Reload>>,
    purge: Option<Arc<PurgeService>>,
    metrics: Option<Registry>,
    shutdown: Option<watch::Receiver<bool>>,
    /// The node's ACME state, and whether its keys may be served here.
    acme: Option<(crate::AcmeHandle, bool)>,
    /// The DNS-01 records of this node's `[dns]` role.
    dns_challenges: Option<Arc<dyn ChallengeRecords>>,
    /// Which peers may use it (`[admin] allow` and `deny`).
    access: Arc<access::AdminAccess>,
    /// Who the node is, for the console.
    console: console::Info,
}

/// The ACME DNS-01 records a `[dns]` node publishes (`_acme-challenge.NAME` TXT), which
/// `POST` and `DELETE /dns/acme-challenge` add and withdraw.
pub trait ChallengeRecords: Send + Sync {
    /// Publishes `value` at `name`.
    fn add(&self, name: &str, value: &str) -> Result<(), String>;
    /// Withdraws `value` from `name`.
    fn remove(&self, name: &str, value: &str) -> Result<(), String>;
}

/// A reload's outcome: `Ok` lists what changed (empty: nothing did), `Err` every reason
/// nothing was applied.
pub type ReloadOutcome = Result<Vec<String>, Vec<String>>;

/// What `POST /reload` runs: re-reads the node's config and applies it.
pub trait Reload: Send + Sync {
    /// Reloads.
    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ReloadOutcome> + Send + '_>>;
}

impl AdminState {
    /// State for a token and the caching nodes (edge, shield) of this process.
    pub fn new(token: &str, nodes: Vec<Arc<Node>>) -> Self {
        Self {
            token: Arc::from(token),
            nodes,
            reload: None,
            purge: None,
            metrics: None,
            shutdown: None,
            acme: None,
            dns_challenges: None,
            access: Arc::default(),
            console: console::Info::default(),
        }
    }

    /// Lets only peers in `allow` (empty: every address) and not in `deny` use the API but
    /// `/healthz` and `/livez`; the others get 403 before their token is looked at. The
    /// networks are CIDRs or bare addresses, as `[admin] allow` and `deny` take them.
    pub fn with_access_lists(mut self, allow: &[String], deny: &[String]) -> Result<Self, String> {
        self.access = Arc::new(access::AdminAccess::new(allow, deny)?);
        Ok(self)
    }

    /// Names the node and its config for the console (`/ui`).
    pub fn with_console(mut self, info: console::Info) -> Self {
        self.console = info;
        self
    }

    /// Lets the fleet's ACME clients publish DNS-01 records in this node's zones.
    pub fn with_dns_challenges(mut self, records: Option<Arc<dyn ChallengeRecords>>) -> Self {
        self.dns_challenges = records;
        self
    }

    /// Shares the node's ACME state with its followers (`GET /acme/state`). It holds private
    /// keys: `private_channel` says the admin API is on TLS or reachable from this host only;
    /// otherwise the endpoint refuses.
    pub fn with_acme(mut self, acme: Option<crate::AcmeHandle>, private_channel: bool) -> Self {
        self.acme = acme.map(|a| (a, private_channel));
        self
    }

    /// The registry `/metrics` renders: every instrument of every role of the process.
    pub fn with_metrics(mut self, registry: Registry) -> Self {
        self.metrics = Some(registry);
        self
    }

    /// Enables `POST /reload`.
    pub fn with_reload(mut self, reload: Arc<dyn Reload>) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Adds the purge service (enables `/purge` and `/purge/log`).
    pub fn with_purge(mut self, purge: Arc<PurgeService>) -> Self {
        self.purge = Some(purge);
        self
    }
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

/// `GET /healthz`: 200 while every caching role can serve (`"degraded"` with the reasons
/// when something limits it, such as a full disk), else 503 with the reasons.
async fn healthz(State(st): State<AdminState>) -> Response {
    let mut reasons = Vec::new();
    for n in &st.nodes {
        if let Some(why) = n.unready().await {
            reasons.push(why);
        }
    }
    if reasons.is_empty() {
        let degraded: Vec<String> = st.nodes.iter().flat_map(|n| n.degraded()).collect();
        let body = if degraded.is_empty() {
            serde_json::json!({ "status": "ok" })
        } else {
            serde_json::json!({ "status": "degraded", "reasons": degraded })
        };
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let body = serde_json::json!({ "status": "unavailable", "reasons": reasons });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /livez`: the process is up and answering (whatever its upstreams do).
async fn livez() -> Response {
    (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response()
}

/// `POST /reload`: re-reads the config file and applies it, or says why nothing changed.
async fn reload(State(st): State<AdminState>) -> Response {
    let Some(r) = &st.reload else {
        return error(
            StatusCode::NOT_FOUND,
            "this process has no config file to reload",
        );
    };
    match r.reload().await {
        Ok(changes) => {
            Json(serde_json::json!({ "reloaded": !changes.is_empty(), "changes": changes }))
                .into_response()
        }
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "reloaded": false,
                "error": format!("nothing was reloaded: {}", problems.join("; ")),
                "errors": problems,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<AdminState>) -> Response {
    let out = st
        .metrics
        .as_ref()
        .map(Registry::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn stats(State(st): State<AdminState>) -> Response {
    let mut json = serde_json::json!({});
    for n in &st.nodes {
        let mut entry = json[n.tier()].as_array().cloned().unwrap_or_default();
        entry.push(n.proxy().stats_json());
        json[n.tier()] = serde_json::Value::Array(entry);
    }
    json["purge"] = st
        .purge
        .as_ref()
        .map(
            |p| serde_json::json!({ "applied": p.applied(), "log": p.latest(), "hub": p.is_hub() }),
        )
        .unwrap_or_default();
    Json(json).into_response()
}

/// Why this node takes no purges: nothing here caches, or purge is off.
fn no_purge(st: &AdminState) -> Response {
    if st.nodes.is_empty() {
        error(StatusCode::CONFLICT, NO_CACHE)
    } else {
        error(StatusCode::NOT_FOUND, "purge is not enabled on this node")
    }
}

/// A URL or prefix of `req` whose host no site of this node serves, named in a 400; `None`
/// when every host is served, or when the node has no sites to check against (a dedicated
/// purge hub accepts for the whole fleet).
fn unserved_host(st: &AdminState, req: &PurgeRequest) -> Option<Response> {
    if st.nodes.is_empty() {
        return None;
    }
    let targets = match req.target().ok()? {
        PurgeTarget::Urls(t) | PurgeTarget::Prefixes(t) => t,
        PurgeTarget::Tags(_) | PurgeTarget::All => return None,
    };
    let host = targets
        .iter()
        .map(|t| t.host.as_str())
        .find(|h| !st.nodes.iter().any(|n| n.proxy().serves_host(h)))?;
    Some(error(
        StatusCode::BAD_REQUEST,
        &format!("no site of this node serves host {host}"),
    ))
}

async fn purge(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    let Some(svc) = &st.purge else {
        return no_purge(&st);
    };
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid purge JSON: {e}")),
    };
    if let Some(refused) = unserved_host(&st, &req) {
        return refused;
    }
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
        return no_purge(&st);
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
    match events {
        Ok(events) => Json(serde_json::json!({
            "events": events,
            "latest": svc.latest(),
            "applied": svc.applied(),
        }))
        .into_response(),
        Err(e @ crate::purge::log::SinceError::Gone { oldest, .. }) => (
            StatusCode::GONE,
            Json(serde_json::json!({
                "error": e.to_string(),
                "oldest": oldest,
                "latest": svc.latest(),
            })),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /cache?url=URL`: what the caches hold for a URL (`inspect.rs`).
async fn cache(
    State(st): State<AdminState>,
    q: Result<Query<inspect::CacheQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let proxies: Vec<_> = st.nodes.iter().map(|n| n.proxy()).collect();
    inspect::answer(&proxies, q.ok().and_then(|Query(q)| q.url)).await
}

#[derive(serde::Deserialize)]
struct AcmeStateQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    wait: u64,
    /// The follower asking.
    #[serde(default)]
    node: Option<String>,
}

/// `GET /acme/state?since=V&wait=MS&node=ID`: the ACME challenges and certificates followers
/// take.
async fn acme_state(
    State(st): State<AdminState>,
    q: Result<Query<AcmeStateQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some((acme, private_channel)) = &st.acme else {
        return error(StatusCode::NOT_FOUND, "no acme = true site on this node");
    };
    if !private_channel {
        return error(
            StatusCode::FORBIDDEN,
            "certificate keys are only shared over TLS ([admin] cert and key) or on loopback",
        );
    }
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "use ?since=N&wait=MS with integers",
        );
    };
    let wait = Duration::from_millis(q.wait.min(60_000));
    let node = q.node.as_deref().filter(|n| n.len() <= 64);
    let state = match st.shutdown.clone() {
        Some(mut stop) => tokio::select! {
            s = acme.state_since(q.since, wait, node) => s,
            _ = async move { let _ = stop.wait_for(|s| *s).await; } => acme.state_since(q.since, Duration::ZERO, node).await,
        },
        None => acme.state_since(q.since, wait, node).await,
    };
    Json(state).into_response()
}

/// The body of `/dns/acme-challenge`.
#[derive(serde::Deserialize, serde::Serialize)]
pub struct ChallengeRecord {
    /// `_acme-challenge.NAME`.
    pub name: String,
    /// The TXT value.
    pub value: String,
}

async fn dns_challenge(
    st: &AdminState,
    body: Result<Json<ChallengeRecord>, axum::extract::rejection::JsonRejection>,
    add: bool,
) -> Response {
    let Some(records) = &st.dns_challenges else {
        return error(StatusCode::NOT_FOUND, "no [dns] role on this node");
    };
    let Ok(Json(r)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "send JSON: {\"name\": \"_acme-challenge.example.com\", \"value\": \"...\"}",
        );
    };
    let done = if add {
        records.add(&r.name, &r.value)
    } else {
        records.remove(&r.name, &r.value)
    };
    match done {
        Ok(()) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// `POST /dns/acme-challenge`: publishes a DNS-01 record.
async fn dns_challenge_add(
    State(st): State<AdminState>,
    body: Result<Json<ChallengeRecord>, axum::extract::rejection::JsonRejection>,
) -> Response {
    dns_challenge(&st, body, true).await
}

/// `DELETE /dns/acme-challenge`: withdraws a DNS-01 record.
async fn dns_challenge_remove(
    State(st): State<AdminState>,
    body: Result<Json<ChallengeRecord>, axum::extract::rejection::JsonRejection>,
) -> Response {
    dns_challenge(&st, body, false).await
}

/// `POST /fleet/report`: a follower's report, kept by the hub for the console's fleet page.
async fn fleet_report(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    console::fleet_report(st.purge.as_ref(), &body)
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let ui = console::router(console::Parts {
        token: state.token.clone(),
        nodes: state.nodes.clone(),
        purge: state.purge.clone(),
        metrics: state.metrics.clone(),
        info: state.console.clone(),
        shutdown: state.shutdown.clone(),
    })
    // The console is the API in a browser: the same networks may use it.
    .route_layer(middleware::from_fn_with_state(
        state.access.clone(),
        access::guard,
    ));
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/purge", axum::routing::post(purge))
        .route("/purge/log", get(purge_log))
        .route("/reload", axum::routing::post(reload))
        .route("/cache", get(cache))
        .route("/fleet/report", axum::routing::post(fleet_report))
        .route("/acme/state", get(acme_state))
        .route(
            "/dns/acme-challenge",
            axum::routing::post(dns_challenge_add).delete(dns_challenge_remove),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(
            state.access.clone(),
            access::guard,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .merge(protected)
        .merge(ui)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such admin endpoint") })
        // A `Date` that follows the wall clock back too (see `listener/date.rs`).
        .layer(middleware::map_response(|mut res: Response| async move {
            crate::listener::date::ensure(res.headers_mut());
            res
        }))
        .with_state(state)
}

/// TLS for the admin listener of `cfg`, if it has a certificate.
pub fn acceptor(cfg: &crate::config::AdminConfig) -> Result<Option<TlsAcceptor>, String> {
    let Some(cert) = cfg.certificate() else {
        return Ok(None);
    };
    let tls = crate::tls::server_config(&[cert], None, Arc::default())
        .map_err(|e| format!("admin: {e}"))?;
    Ok(Some(TlsAcceptor::from(tls)))
}

/// Serves the admin API on `listener` (over TLS with `tls`) until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AdminState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut state = state;
    state.shutdown = Some(shutdown.clone());
    let app = router(state).into_make_service_with_connect_info::<access::PeerAddr>();
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(acceptor) => {
            let listener =
                crate::tls::TlsListener::new(listener, acceptor, Duration::from_secs(10))?;
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

//! The console's data (JSON for its pages' scripts) and its form posts: sign-in, sign-out and
//! purge. Purges go through the same purge service as `POST /purge`.

use super::auth::set_cookie;
use super::history::{self, Sample};
use super::pages;
use super::redact::redact;
use super::session::{csrf_matches, token_matches, Session};
use super::state::{report, ConsoleState};
use crate::admin::inspect;
use crate::purge::event::{PurgeRequest, PurgeTarget};
use crate::purge::fleet::FleetReport;
use crate::purge::service::{PurgeError, PurgeService};
use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Purge log entries shown.
const LOG_SHOWN: u64 = 50;

fn err(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: the admin token for a session cookie.
pub(crate) async fn login(
    State(st): State<ConsoleState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    if token.len() > 4096 || !token_matches(&token, &st.token) {
        // Refusals wait 200 ms one after the other: at most 5 guesses a second, whatever the
        // number of connections; a right token never waits.
        let _one_at_a_time = st.refusals.lock().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracing::warn!("console: sign-in refused (wrong token)");
        return pages::login_page(
            StatusCode::FORBIDDEN,
            Some("That is not this node's admin token."),
        );
    }
    let Some(s) = st.sessions.create(Instant::now()) else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session id",
        );
    };
    tracing::info!("console: signed in");
    (
        [(
            header::SET_COOKIE,
            set_cookie(&st.cookie, Some(&s), st.info.tls),
        )],
        Redirect::to("/ui"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /ui/logout`: ends the session.
pub(crate) async fn logout(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if !csrf_matches(csrf.as_deref(), &s) {
        return err(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    st.sessions.remove(&s.id);
    (
        [(
            header::SET_COOKIE,
            set_cookie(&st.cookie, None, st.info.tls),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct PurgeForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    mode: String,
}

impl PurgeForm {
    /// The request the form asks for: one target per line of `value`.
    fn request(&self) -> Result<PurgeRequest, String> {
        let items: Vec<String> = self
            .value
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let mut r = PurgeRequest {
            soft: self.mode == "soft",
            ..Default::default()
        };
        match self.kind.as_str() {
            "url" => r.urls = items,
            "prefix" => r.prefixes = items,
            "tag" => r.tags = items,
            "all" => r.all = true,
            _ => return Err("choose URL, prefix, tag or everything".into()),
        }
        Ok(r)
    }
}

/// `POST /ui/purge`: a purge from the form, then the purge page with the outcome.
pub(crate) async fn purge(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
    form: Result<Form<PurgeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return err(StatusCode::BAD_REQUEST, "malformed form");
    };
    if !csrf_matches(f.csrf.as_deref(), &s) {
        return err(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
    }
    let Some(svc) = &st.purge else {
        return pages::purge_page(
            &st,
            &s,
            StatusCode::CONFLICT,
            Err("purge is not enabled on this node"),
        );
    };
    let req = match f.request() {
        Ok(r) => r,
        Err(e) => return pages::purge_page(&st, &s, StatusCode::BAD_REQUEST, Err(&e)),
    };
    if let Some(host) = unserved_host(&st, &req) {
        let msg = format!("no site of this node serves host {host}");
        return pages::purge_page(&st, &s, StatusCode::BAD_REQUEST, Err(&msg));
    }
    match svc.submit(&req).await {
        Ok(v) => {
            tracing::info!(version = v, "console: purge submitted");
            Redirect::to(&format!("/ui/purge?done={v}")).into_response()
        }
        Err(e) => {
            let status = match e {
                PurgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
                PurgeError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
                PurgeError::Hub(_) => StatusCode::BAD_GATEWAY,
            };
            pages::purge_page(&st, &s, status, Err(&e.to_string()))
        }
    }
}

/// A URL or prefix host no site of this node serves (none checked on a dedicated hub).
fn unserved_host(st: &ConsoleState, req: &PurgeRequest) -> Option<String> {
    if st.nodes.is_empty() {
        return None;
    }
    let targets = match req.target().ok()? {
        PurgeTarget::Urls(t) | PurgeTarget::Prefixes(t) => t,
        PurgeTarget::Tags(_) | PurgeTarget::All => return None,
    };
    targets
        .iter()
        .map(|t| t.host.clone())
        .find(|h| !st.nodes.iter().any(|n| n.proxy().serves_host(h)))
}

/// A sample of every series now: per tier, and per tier and site.
pub(crate) fn sample_now(st: &ConsoleState) -> Option<Sample> {
    let registry = st
        .metrics
        .clone()
        .or_else(|| st.nodes.first().map(|n| n.proxy().registry().clone()))?;
    let snap = registry.snapshot()?;
    let mut series = std::collections::BTreeMap::new();
    for n in &st.nodes {
        let p = n.proxy();
        let tier = p.tier();
        series.insert(
            tier.to_string(),
            history::Counters::of(&snap, &[("cdn.tier", tier)]),
        );
        let mut sites: Vec<String> = p.sites().iter().map(|s| s.name.clone()).collect();
        sites.sort();
        sites.dedup();
        for site in sites {
            let c = history::Counters::of(&snap, &[("cdn.tier", tier), ("cdn.site", &site)]);
            series.insert(format!("{tier} · {site}"), c);
        }
    }
    Some(Sample {
        at_ms: crate::cache::clock::now_ms(),
        series,
    })
}

/// `GET /ui/api/overview`: the rates of every series over the last hour, the totals, and
/// each role's readiness.
pub(crate) async fn overview(State(st): State<ConsoleState>) -> Response {
    let samples = st.history.samples();
    let mut series = serde_json::Map::new();
    let mut totals = serde_json::Map::new();
    if let Some(last) = samples.last() {
        for (name, c) in &last.series {
            series.insert(name.clone(), json!(history::rates(&samples, name)));
            totals.insert(
                name.clone(),
                json!({
                    "requests": c.requests, "hits": c.hits, "misses": c.misses,
                    "passes": c.passes, "errors": c.errors, "bytes": c.bytes,
                    "classes": c.classes, "upstream_attempts": c.upstream_attempts,
                    "upstream_errors": c.upstream_errors,
                }),
            );
        }
    }
    let mut health = Vec::new();
    for n in &st.nodes {
        let why = n.unready().await;
        health.push(json!({ "tier": n.tier(), "ready": why.is_none(), "reason": why }));
    }
    Json(json!({
        "interval_s": history::interval().as_secs(),
        "samples": samples.len(),
        "series": series,
        "totals": totals,
        "health": health,
    }))
    .into_response()
}

/// `GET /ui/api/purge-log`: the last purges and this node's purge versions.
pub(crate) async fn purge_log(State(st): State<ConsoleState>) -> Response {
    let Some(svc) = &st.purge else {
        return Json(json!({ "enabled": false })).into_response();
    };
    let since = svc.latest().saturating_sub(LOG_SHOWN);
    let mut events = svc
        .log_since(since, Duration::ZERO)
        .await
        .unwrap_or_default();
    events.reverse();
    Json(json!({
        "enabled": true,
        "hub": svc.is_hub(),
        "latest": svc.latest(),
        "applied": svc.applied(),
        "events": events,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
pub(crate) struct UrlQuery {
    #[serde(default)]
    url: Option<String>,
}

/// `GET /ui/api/cache?url=URL`: the `/cache` view.
pub(crate) async fn cache(
    State(st): State<ConsoleState>,
    q: Result<Query<UrlQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let proxies: Vec<_> = st.nodes.iter().map(|n| n.proxy()).collect();
    inspect::answer(&proxies, q.ok().and_then(|Query(q)| q.url)).await
}

/// `GET /ui/api/config`: the effective configuration, secrets redacted.
pub(crate) async fn config(State(st): State<ConsoleState>) -> Response {
    let cfg = st
        .info
        .config
        .as_ref()
        .map_or(Value::Null, |c| redact(&c()));
    Json(json!({ "config": cfg })).into_response()
}

/// `GET /ui/api/dns`: the `[dns]` role's counters, when it runs here.
pub(crate) async fn dns(State(st): State<ConsoleState>) -> Response {
    let runs = st.info.roles.iter().any(|r| r == "dns");
    let Some(snap) = st
        .metrics
        .as_ref()
        .and_then(|m| m.snapshot())
        .filter(|_| runs)
    else {
        return Json(json!({ "enabled": false })).into_response();
    };
    let by = |name: &str, attr: &str| json!(snap.totals_by(name, &[], Some(attr)));
    Json(json!({
        "enabled": true,
        "queries": by("outpost.dns.queries", "network.transport"),
        "responses": by("outpost.dns.responses", "dns.response_code"),
        "answers_by_region": by("outpost.dns.geo.answers", "cdn.region"),
        "answers_by_name": by("outpost.dns.geo.answers", "dns.question.name"),
        "endpoints": by("outpost.dns.region.endpoint.up", "url.full"),
        "ecs_queries": snap.total("outpost.dns.ecs_queries", &[]),
        "fail_open": snap.total("outpost.dns.fail_open", &[]),
        "dropped": snap.total("outpost.dns.dropped", &[]),
    }))
    .into_response()
}

/// `GET /ui/api/fleet`: on the hub, every node reporting to it and the hub itself; elsewhere,
/// this node alone.
pub(crate) async fn fleet(State(st): State<ConsoleState>) -> Response {
    let me = report(&st.info, &st.nodes, st.purge.as_ref()).await;
    let Some(svc) = &st.purge else {
        return Json(json!({ "hub": false, "self": me, "nodes": [] })).into_response();
    };
    let latest = svc.latest();
    let nodes = if svc.is_hub() {
        svc.fleet().view(latest, SystemTime::now())
    } else {
        Vec::new()
    };
    Json(json!({
        "hub": svc.is_hub(),
        "latest": latest,
        "self": me,
        "nodes": nodes,
    }))
    .into_response()
}

/// `POST /fleet/report` (bearer token, on the hub): a follower's report.
pub(crate) fn record_report(purge: Option<&Arc<PurgeService>>, body: &[u8]) -> Response {
    let Some(svc) = purge.filter(|p| p.is_hub()) else {
        return err(StatusCode::NOT_FOUND, "this node is not a purge hub");
    };
    let r: FleetReport = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return err(StatusCode::BAD_REQUEST, &format!("invalid report: {e}")),
    };
    if let Some(p) = r.problem() {
        return err(StatusCode::BAD_REQUEST, &p);
    }
    svc.fleet().record(r, SystemTime::now());
    Json(json!({ "ok": true })).into_response()
}

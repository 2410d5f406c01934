//! The web console at `/ui` of the admin listener: sign-in with the admin token (`auth.rs`,
//! `session.rs`), pages (`pages.rs`, with the embedded `assets/`), their data (`api.rs`), the
//! overview's history ring and its sampler (`history.rs`), the live tail (`live.rs`) and the
//! config page's redaction (`redact.rs`). Everything it serves is in the binary; it costs the
//! request path nothing while nobody looks (the sampler reads the instruments `/stats` reads;
//! the live tail is fed only while watched).

mod api;
mod auth;
mod history;
mod live;
mod pages;
mod redact;
pub use redact::secret_key;
mod session;
mod state;

pub use state::{ConfigSource, Info};

use crate::node::Node;
use crate::purge::service::PurgeService;
use agent::metrics::Registry;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use state::{ConsoleState, Inner};
use std::sync::Arc;
use tokio::sync::watch;

/// What the console is built from (the admin API's state).
pub(crate) struct Parts {
    /// The admin token, exchanged for a session at sign-in.
    pub(crate) token: Arc<str>,
    /// The caching roles of the process.
    pub(crate) nodes: Vec<Arc<Node>>,
    /// The purge service, if the node takes purges.
    pub(crate) purge: Option<Arc<PurgeService>>,
    /// The process's instruments.
    pub(crate) metrics: Option<Registry>,
    /// Who the node is, and its config.
    pub(crate) info: Info,
    /// Flips when the node stops (ends the live streams).
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
}

/// The console's routes, under `/ui`; with a runtime, starts the history sampler, which ends
/// when the router is dropped.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(p: Parts) -> Router<S> {
    let st = ConsoleState(Arc::new(Inner {
        token: p.token,
        nodes: p.nodes,
        purge: p.purge,
        metrics: p.metrics,
        cookie: auth::cookie_name(p.info.admin.as_deref()),
        info: p.info,
        sessions: Default::default(),
        refusals: Default::default(),
        history: Default::default(),
        shutdown: p.shutdown,
    }));
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(sample(Arc::downgrade(&st.0)));
    }
    let pages = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/", get(pages::overview))
        .route("/ui/fleet", get(pages::fleet))
        .route("/ui/purge", get(pages::purge))
        .route("/ui/cache", get(pages::cache))
        .route("/ui/live", get(pages::live))
        .route("/ui/dns", get(pages::dns))
        .route("/ui/config", get(pages::config))
        .route_layer(middleware::from_fn_with_state(st.clone(), auth::pages_gate));
    let data = Router::new()
        .route("/ui/purge", post(api::purge))
        .route("/ui/logout", post(api::logout))
        .route("/ui/api/overview", get(api::overview))
        .route("/ui/api/purge-log", get(api::purge_log))
        .route("/ui/api/cache", get(api::cache))
        .route("/ui/api/config", get(api::config))
        .route("/ui/api/dns", get(api::dns))
        .route("/ui/api/fleet", get(api::fleet))
        .route("/ui/api/live", get(live::live))
        .route_layer(middleware::from_fn_with_state(st.clone(), auth::api_gate));
    let open = Router::new()
        .route("/ui/login", get(pages::login).post(api::login))
        .route("/ui/assets/console.css", get(pages::css))
        .route("/ui/assets/console.js", get(pages::js));
    pages.merge(data).merge(open).with_state(st)
}

/// Every route of the console that needs a session (all but the sign-in page and its assets),
/// as (method, path): the tests check that each refuses without one.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui"),
    ("GET", "/ui/fleet"),
    ("GET", "/ui/purge"),
    ("GET", "/ui/cache"),
    ("GET", "/ui/live"),
    ("GET", "/ui/dns"),
    ("GET", "/ui/config"),
    ("POST", "/ui/purge"),
    ("POST", "/ui/logout"),
    ("GET", "/ui/api/overview"),
    ("GET", "/ui/api/purge-log"),
    ("GET", "/ui/api/cache"),
    ("GET", "/ui/api/config"),
    ("GET", "/ui/api/dns"),
    ("GET", "/ui/api/fleet"),
    ("GET", "/ui/api/live"),
];

/// The history sampler: a sample now, then one per interval, while the console exists.
async fn sample(st: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(history::interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = st.upgrade() else {
            return;
        };
        let st = ConsoleState(inner);
        if let Some(s) = api::sample_now(&st) {
            st.history.push(s);
        }
    }
}

/// `POST /fleet/report` on the hub: keeps a follower's report (see [`crate::purge::fleet`]).
pub(crate) fn fleet_report(purge: Option<&Arc<PurgeService>>, body: &[u8]) -> Response {
    api::record_report(purge, body)
}

/// This node's report to its purge hub, as the hub's `POST /fleet/report` takes it.
pub async fn own_report(
    info: &Info,
    nodes: &[Arc<Node>],
    purge: Option<&Arc<PurgeService>>,
) -> crate::purge::fleet::FleetReport {
    state::report(info, nodes, purge).await
}

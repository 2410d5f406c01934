//! What the console reads: the node's caching roles, purge service, instruments and identity,
//! its sessions and its history ring. Built by the admin router from its own state.

use super::history::History;
use super::session::Sessions;
use crate::node::Node;
use crate::purge::fleet::FleetReport;
use crate::purge::service::PurgeService;
use agent::metrics::Registry;
use std::sync::Arc;

/// The effective configuration, as JSON, for the config page (redacted before it is shown).
pub type ConfigSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Who this node is, for the console's header and the fleet reports.
#[derive(Clone, Default)]
pub struct Info {
    /// Its name (`node_id`, or region and admin address).
    pub node: String,
    /// Its roles (`edge`, `shield`, `dns`, `purge hub`).
    pub roles: Vec<String>,
    /// Its region, if any.
    pub region: Option<String>,
    /// The configuration shown (redacted) on the config page.
    pub config: Option<ConfigSource>,
    /// The admin API's URL, shown on the hub's fleet page.
    pub admin: Option<String>,
    /// The admin listener is on TLS (session cookies get `Secure`).
    pub tls: bool,
}

/// The console's view of the node (cheap to clone).
#[derive(Clone)]
pub(crate) struct ConsoleState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub token: Arc<str>,
    pub nodes: Vec<Arc<Node>>,
    pub purge: Option<Arc<PurgeService>>,
    pub metrics: Option<Registry>,
    pub info: Info,
    /// The session cookie's name (`auth.rs`).
    pub cookie: String,
    pub sessions: Sessions,
    /// Held by a refused sign-in while it waits (`api.rs`).
    pub refusals: tokio::sync::Mutex<()>,
    pub history: History,
    pub shutdown: Option<tokio::sync::watch::Receiver<bool>>,
}

impl std::ops::Deref for ConsoleState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What a node says of itself to its purge hub (and shows on its own fleet page).
pub(crate) async fn report(
    info: &Info,
    nodes: &[Arc<Node>],
    purge: Option<&Arc<PurgeService>>,
) -> FleetReport {
    let mut reasons = Vec::new();
    for n in nodes {
        if let Some(why) = n.unready().await {
            reasons.push(why);
        }
    }
    FleetReport {
        node: info.node.clone(),
        roles: info.roles.clone(),
        region: info.region.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        applied: purge.map_or(0, |p| p.applied()),
        healthy: reasons.is_empty(),
        reasons,
        admin: info.admin.clone(),
    }
}

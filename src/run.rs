//! Starting the roles a node config names, and stopping them on SIGINT/SIGTERM.

use crate::config::NodeConfig;
use crate::reload::{acme_hub, Reloader};
use edge_node::admin::{self, AdminState};
use edge_node::cache::PurgeMarks;
use edge_node::purge::NatsBus;
use edge_node::purge::{PurgeService, PurgeSink, PurgeSubmitter, Role};
use edge_node::{Edge, Node};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A started node: its bound addresses and the handle to stop it.
pub struct Running {
    /// Plain HTTP addresses of the edge.
    pub edge_addrs: Vec<SocketAddr>,
    /// TLS addresses of the edge.
    pub edge_tls_addrs: Vec<SocketAddr>,
    /// Plain HTTP addresses of the shield.
    pub shield_addrs: Vec<SocketAddr>,
    /// TLS addresses of the shield.
    pub shield_tls_addrs: Vec<SocketAddr>,
    /// The admin address, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Whether the admin API is on TLS.
    pub admin_tls: bool,
    /// The DNS server, if configured.
    pub dns: Option<geo_dns::DnsServer>,
    /// Applies a changed config file, when the node was started from one.
    pub reloader: Option<Arc<Reloader>>,
    /// The edge and shield roles, serving.
    nodes: Vec<Arc<Node>>,
    /// Held for the node's life: the `PURGE` method reaches it through a weak reference, and
    /// a hub without an admin listener has no other holder.
    _purge: Option<Arc<PurgeService>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Lines announcing what listens where (read by scripts and process tests).
    pub fn banner(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.edge_addrs {
            out.push(format!("outpost: {name} listening on http://{a}"));
        }
        for a in &self.edge_tls_addrs {
            out.push(format!("outpost: {name} listening on https://{a}"));
        }
        for a in &self.shield_addrs {
            out.push(format!("outpost: shield listening on http://{a}"));
        }
        for a in &self.shield_tls_addrs {
            out.push(format!("outpost: shield listening on https://{a}"));
        }
        if let Some(a) = self.admin_addr {
            let scheme = if self.admin_tls { "https" } else { "http" };
            out.push(format!("outpost: admin listening on {scheme}://{a}"));
        }
        for a in self.dns.iter().flat_map(|d| d.local_addrs()) {
            out.push(format!("outpost: dns listening on udp+tcp {a}"));
        }
        out
    }

    /// Re-reads the config file and applies it (see `reload.rs`): what changed, or every
    /// reason nothing was applied.
    pub async fn reload(&self) -> Result<Vec<String>, Vec<String>> {
        match &self.reloader {
            Some(r) => r.reload().await,
            None => Err(vec!["this node was not started from a config file".into()]),
        }
    }

    /// Reopens the access logs' files (SIGUSR1).
    pub async fn reopen_logs(&self) {
        let nodes = self.nodes.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for n in nodes {
                n.reopen_access_log();
            }
        })
        .await;
    }

    /// Stops every role: first the edge and shield stop accepting and finish the requests
    /// under way (up to their `drain_timeout`; `/healthz` says 503 meanwhile), logged; then
    /// the rest stops.
    pub async fn stop(mut self) {
        let mut drains = JoinSet::new();
        for n in self.nodes.clone() {
            drains.spawn(async move {
                let role = n.tier();
                tracing::info!(
                    role,
                    "draining: no new connections; finishing the requests under way"
                );
                if n.drain().await {
                    tracing::info!(role, "drained: every request under way finished");
                } else {
                    tracing::warn!(role, "drain timeout: requests still under way were cut off");
                }
            });
        }
        while drains.join_next().await.is_some() {}
        let _ = self.shutdown.send(true);
        if let Some(d) = self.dns.take() {
            d.stop().await;
        }
        while self.tasks.join_next().await.is_some() {}
        tracing::info!("stopped");
    }
}

/// Binds every listener of `cfg` and starts serving; every role's instruments go to `metrics`.
pub async fn start(
    cfg: &NodeConfig,
    metrics: &agent::metrics::Registry,
    path: Option<&std::path::Path>,
) -> Result<Running, String> {
    start_with(cfg, metrics, path, None).await
}

/// [`start`] for a config given as text (`src`, shown on the console's config page).
pub async fn start_text(
    cfg: &NodeConfig,
    metrics: &agent::metrics::Registry,
    src: &str,
) -> Result<Running, String> {
    start_with(cfg, metrics, None, Some(src)).await
}

async fn start_with(
    cfg: &NodeConfig,
    metrics: &agent::metrics::Registry,
    path: Option<&std::path::Path>,
    src: Option<&str>,
) -> Result<Running, String> {
    let (tx, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    if let Some(t) = &cfg.telemetry {
        tracing::info!(
            service = %t.service_name,
            region = t.region.as_deref().unwrap_or("-"),
            otlp = t.otlp_endpoint.as_deref().unwrap_or("off"),
            "starting node"
        );
    }
    let admin_token = match &cfg.admin {
        Some(ac) => Some(ac.resolve_token().map_err(|e| format!("admin: {e}"))?),
        None => None,
    };
    // The caches of the process share the purge marks saved with the purge state.
    let state_dir = state_dir(cfg);
    let marks =
        PurgeService::restore_marks(state_dir.as_deref()).map_err(|e| format!("purge: {e}"))?;
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    let mut bound = Vec::new();
    let (mut edge_node, mut shield_node) = (None, None);
    let mut shield_addrs = Vec::new();
    let mut shield_tls_addrs = Vec::new();
    if let Some(sc) = &cfg.shield {
        let shield = origin_shield::bind(sc, marks.clone(), metrics)
            .await
            .map_err(|e| format!("shield: {e}"))?;
        shield_addrs = shield.local_addrs();
        shield_tls_addrs = shield.tls_local_addrs();
        shield_node = Some(shield.node());
        nodes.push(shield.node());
        bound.push(shield);
    }
    let mut edge_addrs = Vec::new();
    let mut edge_tls_addrs = Vec::new();
    let mut acme = None;
    if let Some(ec) = &cfg.edge {
        let edge = Edge::builder(ec)
            .purge_marks(marks.clone())
            .metrics(metrics)
            .acme(cfg.acme.as_ref())
            .acme_hub(acme_hub(ec, admin_token.as_deref()))
            .bind()
            .await
            .map_err(|e| format!("edge: {e}"))?;
        edge_addrs = edge.local_addrs();
        edge_tls_addrs = edge.tls_local_addrs();
        acme = edge.acme();
        edge_node = Some(edge.node());
        nodes.push(edge.node());
        bound.push(edge);
    }
    // Purges are taken where something caches, or by a dedicated hub (`[admin] purge_hub`);
    // any other node refuses them rather than accept a purge no cache applies.
    let dedicated_hub = cfg.admin.as_ref().is_some_and(|a| a.purge_hub);
    let purge = if nodes.is_empty() && !dedicated_hub {
        None
    } else {
        let sinks = nodes
            .iter()
            .map(|n| n.clone() as Arc<dyn PurgeSink>)
            .collect();
        let purge =
            open_purge(cfg, admin_token.as_deref(), state_dir, marks.clone(), sinks).await?;
        purge.register_metrics(&metrics.meter());
        let submitter: Arc<dyn PurgeSubmitter> = purge.clone();
        for n in &nodes {
            n.set_purge_submitter(&submitter);
        }
        if !purge.is_hub() {
            tasks.spawn(purge.clone().follow(rx.clone()));
        }
        Some(purge)
    };
    // Only now, with purges logged before a crash applied to every cache, do they serve.
    for node in bound {
        tasks.spawn(node.serve(rx.clone()));
    }
    let dns = match &cfg.dns {
        Some(dc) => Some(geo_dns::DnsServer::start(dc, &metrics.meter()).await?),
        None => None,
    };
    let reloader = match path {
        Some(path) => Some(Arc::new(Reloader::new(crate::reload::Parts {
            path: path.to_path_buf(),
            cfg: cfg.clone(),
            edge: edge_node,
            shield: shield_node,
            dns: dns.as_ref().map(geo_dns::DnsServer::handle),
            marks: marks.clone(),
            registry: metrics.clone(),
            admin_token: admin_token.clone(),
        })?)),
        None => None,
    };
    let mut admin_addr = None;
    let mut admin_tls = false;
    if let (Some(ac), Some(token)) = (&cfg.admin, &admin_token) {
        let tls = admin::acceptor(ac)?;
        admin_tls = tls.is_some();
        let l = tokio::net::TcpListener::bind(ac.listen)
            .await
            .map_err(|e| format!("admin: cannot listen on {}: {e}", ac.listen))?;
        admin_addr = l.local_addr().ok();
        // Keys cross only encrypted, or not off this host.
        let private_channel = admin_tls || ac.listen.ip().is_loopback();
        let dns_records = dns
            .as_ref()
            .map(|d| Arc::new(DnsChallenges(d.acme_txt())) as Arc<dyn admin::ChallengeRecords>);
        let mut state = AdminState::new(token, nodes.clone())
            .with_access_lists(&ac.allow, &ac.deny)?
            .with_acme(acme, private_channel)
            .with_dns_challenges(dns_records)
            .with_metrics(metrics.clone());
        if let Some(r) = &reloader {
            state = state.with_reload(Arc::new(AdminReload(r.clone())));
        }
        if let Some(p) = &purge {
            state = state.with_purge(p.clone());
        }
        let scheme = if admin_tls { "https" } else { "http" };
        let info = console_info(cfg, admin_addr, scheme, purge.as_ref(), &reloader, src);
        if let Some(p) = purge.as_ref().filter(|p| !p.is_hub()) {
            tasks.spawn(report_to_hub(
                p.clone(),
                info.clone(),
                nodes.clone(),
                rx.clone(),
            ));
        }
        state = state.with_console(info);
        let rx = rx.clone();
        tasks.spawn(async move {
            if let Err(e) = admin::serve(l, tls, state, rx).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    Ok(Running {
        edge_addrs,
        shield_addrs,
        shield_tls_addrs,
        edge_tls_addrs,
        admin_addr,
        admin_tls,
        dns,
        reloader,
        nodes,
        _purge: purge,
        shutdown: tx,
        tasks,
    })
}

/// Who this node is for the console and the fleet page: `node_id` (of `[edge]`, else of
/// `[telemetry]`), else its region and admin address; its roles; its config.
fn console_info(
    cfg: &NodeConfig,
    admin: Option<SocketAddr>,
    scheme: &str,
    purge: Option<&Arc<PurgeService>>,
    reloader: &Option<Arc<Reloader>>,
    src: Option<&str>,
) -> admin::console::Info {
    let region = cfg.telemetry.as_ref().and_then(|t| t.region.clone());
    let addr = admin.map(|a| a.to_string()).unwrap_or_default();
    let node = cfg
        .edge
        .as_ref()
        .and_then(|e| e.node_id.clone())
        .or_else(|| cfg.telemetry.as_ref().and_then(|t| t.node_id.clone()))
        .unwrap_or_else(|| match &region {
            Some(r) => format!("{r}@{addr}"),
            None => addr.clone(),
        });
    let mut roles: Vec<String> = cfg
        .roles()
        .into_iter()
        .filter(|r| *r != "admin")
        .map(str::to_string)
        .collect();
    if purge.is_some_and(|p| p.is_hub()) {
        roles.push("purge hub".into());
    }
    let config: Option<admin::console::ConfigSource> = match (reloader, src) {
        (Some(r), _) => {
            let r = r.clone();
            Some(Arc::new(move || {
                r.current_json().unwrap_or_else(
                    || serde_json::json!({ "note": "a reload is running: look again" }),
                )
            }))
        }
        (None, Some(src)) => {
            let v = src
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| serde_json::to_value(t).ok())
                .unwrap_or_default();
            Some(Arc::new(move || v.clone()))
        }
        (None, None) => None,
    };
    admin::console::Info {
        node,
        roles,
        region,
        config,
        admin: admin.map(|a| format!("{scheme}://{a}")),
        tls: scheme == "https",
    }
}

/// A follower's reports to its purge hub (the hub's console lists the fleet), every
/// [`edge_node::purge::fleet::REPORT_EVERY`] until `shutdown` flips.
async fn report_to_hub(
    purge: Arc<PurgeService>,
    info: admin::console::Info,
    nodes: Vec<Arc<Node>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let report = admin::console::own_report(&info, &nodes, Some(&purge)).await;
        match purge.report_to_hub(&report).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::debug!(error = %e, "cannot report to the purge hub (its fleet page shows this node stale)");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(edge_node::purge::fleet::REPORT_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// `POST /reload` runs the node's reloader, and logs the outcome as SIGHUP does.
struct AdminReload(Arc<Reloader>);

impl admin::Reload for AdminReload {
    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = admin::ReloadOutcome> + Send + '_>>
    {
        Box::pin(async move {
            let r = self.0.reload().await;
            log_reload("admin API", &r);
            r
        })
    }
}

/// Logs a reload's outcome: what changed, nothing, or why nothing was applied.
pub fn log_reload(by: &str, r: &Result<Vec<String>, Vec<String>>) {
    match r {
        Ok(changes) if changes.is_empty() => {
            tracing::info!(by, "reload: the config file is unchanged; nothing to apply")
        }
        Ok(changes) => {
            tracing::info!(
                by,
                changes = changes.len(),
                "reloaded: the new config serves new requests"
            );
            for c in changes {
                tracing::info!("reload changed {c}");
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::error!(by, "reload rejected, the old config keeps serving: {e}");
            }
        }
    }
}

/// Where purge state lives: `state_dir` of the edge or shield, else beside a disk cache
/// (purge state must outlive a restart wherever cached objects do), else a dedicated hub's
/// `[admin] state_dir`.
fn state_dir(cfg: &NodeConfig) -> Option<std::path::PathBuf> {
    let edge = cfg.edge.as_ref().and_then(|c| {
        c.state_dir
            .clone()
            .or_else(|| c.disk_path.as_ref().map(|p| p.join("state")))
    });
    let shield = cfg.shield.as_ref().and_then(|c| {
        c.state_dir
            .clone()
            .or_else(|| c.disk_path.as_ref().map(|p| p.join("state")))
    });
    let admin = cfg.admin.as_ref().and_then(|a| a.state_dir.clone());
    edge.or(shield).or(admin)
}

/// The `[dns]` role's DNS-01 records, as the admin API publishes them.
struct DnsChallenges(Arc<geo_dns::acme_txt::AcmeTxt>);

impl admin::ChallengeRecords for DnsChallenges {
    fn add(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.add(name, value)
    }
    fn remove(&self, name: &str, value: &str) -> Result<(), String> {
        self.0.remove(name, value)
    }
}

/// The purge service of this process (which has a cache, or is a dedicated hub): a follower
/// of `edge.purge_hub` when set, a NATS participant with `edge.purge_nats_url`, else a hub.
async fn open_purge(
    cfg: &NodeConfig,
    admin_token: Option<&str>,
    state_dir: Option<std::path::PathBuf>,
    marks: Arc<PurgeMarks>,
    sinks: Vec<Arc<dyn PurgeSink>>,
) -> Result<Arc<PurgeService>, String> {
    let edge = cfg.edge.as_ref();
    let role = if let Some((url, e)) = edge.and_then(|e| e.purge_nats_url.as_ref().map(|u| (u, e)))
    {
        let node = e.node_id.as_deref().unwrap_or("node");
        let bus = NatsBus::connect(url, &e.purge_nats_stream, node)
            .await
            .map_err(|e| format!("purge: {e}"))?;
        Role::Nats(bus)
    } else {
        match edge.and_then(|e| e.purge_hub.clone()) {
            Some(hub) => {
                let token = edge
                    .and_then(|e| e.purge_hub_token.clone())
                    .or_else(|| admin_token.map(str::to_string))
                    .ok_or(
                        "edge.purge_hub needs a token: set edge.purge_hub_token or an [admin] token",
                    )?;
                Role::Follower {
                    hub: hub.trim_end_matches('/').to_string(),
                    token,
                    ca: edge.and_then(|e| e.purge_hub_ca.clone()),
                }
            }
            None => Role::Hub,
        }
    };
    PurgeService::open(role, state_dir, marks, sinks).map_err(|e| format!("purge: {e}"))
}

/// Resolves at each delivery of `sig` (never when it could not be installed).
pub async fn next(sig: &mut Option<tokio::signal::unix::Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! Starting the roles a node config names, and stopping them on SIGINT/SIGTERM.

use crate::config::NodeConfig;
use edge_node::admin::{self, AdminState};
use edge_node::purge::nats::NatsBus;
use edge_node::purge::service::{PurgeService, Role};
use edge_node::Edge;
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
    /// The admin address, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The DNS server, if configured.
    pub dns: Option<geo_dns::DnsServer>,
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
        if let Some(a) = self.admin_addr {
            out.push(format!("outpost: admin listening on http://{a}"));
        }
        for a in self.dns.iter().flat_map(|d| d.local_addrs()) {
            out.push(format!("outpost: dns listening on udp+tcp {a}"));
        }
        out
    }

    /// Re-reads the config file and applies what can change without a restart: the `[dns]`
    /// zones and geo maps. A bad file changes nothing and returns every problem.
    pub async fn reload(&self, path: &std::path::Path) -> Result<(), Vec<String>> {
        let cfg = NodeConfig::load(path)?;
        match (&self.dns, &cfg.dns) {
            (Some(server), Some(dc)) => server.reload(dc).await.map_err(|e| vec![e]),
            (None, Some(_)) => Err(vec![
                "a [dns] section was added: restart outpost to start the DNS role".into(),
            ]),
            _ => Ok(()),
        }
    }

    /// Stops every role and waits for connections to drain.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(d) = self.dns.take() {
            d.stop().await;
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds every listener of `cfg` and starts serving; every role's instruments go to `metrics`.
pub async fn start(
    cfg: &NodeConfig,
    metrics: &agent::metrics::Registry,
) -> Result<Running, String> {
    let (tx, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut edges = Vec::new();
    let mut edge_addrs = Vec::new();
    let mut edge_tls_addrs = Vec::new();
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
    let purge = open_purge(cfg, admin_token.as_deref()).await?;
    let mut shield_addrs = Vec::new();
    if let Some(sc) = &cfg.shield {
        let shield = Edge::bind_with(sc, purge.generations(), Some(metrics.meter()))
            .await
            .map_err(|e| format!("shield: {e}"))?;
        shield_addrs = shield.local_addrs();
        purge.add_proxy(shield.proxy());
        edges.push(shield.proxy());
        tasks.spawn(shield.serve(rx.clone()));
    }
    if let Some(ec) = &cfg.edge {
        let edge = Edge::bind_with(ec, purge.generations(), Some(metrics.meter()))
            .await
            .map_err(|e| format!("edge: {e}"))?;
        edge_addrs = edge.local_addrs();
        edge_tls_addrs = edge.tls_local_addrs();
        purge.add_proxy(edge.proxy());
        edges.push(edge.proxy());
        tasks.spawn(edge.serve(rx.clone()));
    }
    if !purge.is_hub() {
        tasks.spawn(purge.clone().follow(rx.clone()));
    }
    let dns = match &cfg.dns {
        Some(dc) => Some(geo_dns::DnsServer::start(dc, &metrics.meter()).await?),
        None => None,
    };
    let mut admin_addr = None;
    if let (Some(ac), Some(token)) = (&cfg.admin, &admin_token) {
        let l = tokio::net::TcpListener::bind(ac.listen)
            .await
            .map_err(|e| format!("admin: cannot listen on {}: {e}", ac.listen))?;
        admin_addr = l.local_addr().ok();
        let mut state = AdminState::new(token, edges.clone()).with_purge(purge.clone());
        let reg = metrics.clone();
        state = state.with_metrics(Arc::new(move || reg.render()));
        let rx = rx.clone();
        tasks.spawn(async move {
            if let Err(e) = admin::serve(l, state, rx).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }
    register_gauges(&metrics.meter(), edges, purge.clone());
    Ok(Running {
        edge_addrs,
        shield_addrs,
        edge_tls_addrs,
        admin_addr,
        dns,
        shutdown: tx,
        tasks,
    })
}

/// Gauges read at each metric export: store sizes per tier and purge versions.
fn register_gauges(
    meter: &opentelemetry::metrics::Meter,
    proxies: Vec<Arc<edge_node::proxy::Proxy>>,
    purge: Arc<PurgeService>,
) {
    use opentelemetry::KeyValue;
    let tiers: Vec<(KeyValue, Arc<edge_node::proxy::Proxy>)> = proxies
        .into_iter()
        .map(|p| (KeyValue::new("cdn.tier", p.tier()), p))
        .collect();
    let tiers = Arc::new(tiers);
    type Read = fn(&edge_node::stats::StoreGauges) -> u64;
    let gauges: [(&'static str, &'static str, Read); 4] = [
        ("outpost.cache.memory.bytes", "By", |g| g.memory_bytes),
        ("outpost.cache.objects", "{object}", |g| g.objects),
        ("outpost.cache.inflight", "{fetch}", |g| g.inflight),
        ("outpost.cache.disk.bytes", "By", |g| {
            g.disk.map_or(0, |d| d.bytes)
        }),
    ];
    for (name, unit, read) in gauges {
        let t = tiers.clone();
        let _ = meter
            .u64_observable_gauge(name)
            .with_unit(unit)
            .with_callback(move |o| {
                for (kv, p) in t.iter() {
                    o.observe(read(&p.gauges()), std::slice::from_ref(kv));
                }
            })
            .build();
    }
    let t = tiers.clone();
    let _ = meter
        .u64_observable_gauge("outpost.upstream.up")
        .with_description(
            "Whether each upstream (origin or shield) takes requests now (1 up, 0 down).",
        )
        .with_callback(move |o| {
            for (kv, p) in t.iter() {
                for (kind, addr, up) in p.upstream_health() {
                    o.observe(
                        u64::from(up),
                        &[
                            kv.clone(),
                            KeyValue::new("cdn.upstream", kind),
                            KeyValue::new("server.address", addr.host().to_string()),
                            KeyValue::new("server.port", i64::from(addr.port_u16().unwrap_or(80))),
                        ],
                    );
                }
            }
        })
        .build();
    let p = purge.clone();
    let _ = meter
        .u64_observable_gauge("outpost.purge.applied_version")
        .with_description("Newest purge version applied on this node.")
        .with_callback(move |o| o.observe(p.applied(), &[]))
        .build();
    let _ = meter
        .u64_observable_gauge("outpost.purge.lag")
        .with_description("Purge versions in this node's log not applied yet.")
        .with_callback(move |o| o.observe(purge.latest().saturating_sub(purge.applied()), &[]))
        .build();
}

/// The purge service of this process: a follower of `edge.purge_hub` when set, else a hub.
async fn open_purge(
    cfg: &NodeConfig,
    admin_token: Option<&str>,
) -> Result<Arc<PurgeService>, String> {
    let edge = cfg.edge.as_ref();
    // Purge state must outlive a restart wherever cached objects do: with a disk tier and no
    // state_dir, it lives beside the disk cache.
    let state_dir = [cfg.edge.as_ref(), cfg.shield.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|c| {
            c.state_dir
                .clone()
                .or_else(|| c.disk_path.as_ref().map(|p| p.join("state")))
        });
    if let Some(e) = edge {
        if let Some(url) = &e.purge_nats_url {
            let node = e.node_id.as_deref().unwrap_or("node");
            let bus = NatsBus::connect(url, &e.purge_nats_stream, node)
                .await
                .map_err(|e| format!("purge: {e}"))?;
            return PurgeService::open(Role::Nats(bus), state_dir)
                .map_err(|e| format!("purge: {e}"));
        }
    }
    let role = match edge.and_then(|e| e.purge_hub.clone()) {
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
            }
        }
        None => Role::Hub,
    };
    PurgeService::open(role, state_dir).map_err(|e| format!("purge: {e}"))
}

/// Resolves at each SIGHUP (never on systems without it).
pub async fn hangup(sig: &mut Option<tokio::signal::unix::Signal>) {
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

//! The Outpost edge: an RFC 9111 caching reverse proxy, and the base of every HTTP caching role.
//!
//! `Edge::bind(config)` (or [`Edge::builder`] for a role of its own: a tier name, request-phase
//! [`hooks`], shared purge marks, a metrics registry) binds every listener (so port 0 works
//! and `local_addrs()` reports the real ports); `serve(shutdown)` runs until the shutdown
//! signal flips. The request path is in [`proxy`], the cache (one [`cache::Cache`] over the
//! storage tiers and the purge marks) in [`cache`], talking upstream in [`upstream`], purge
//! propagation in [`purge`], the admin API in [`admin`]. See docs/caching.md for the rules the
//! cache follows.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod access_log;
mod acme;
pub mod admin;
pub use acme::{AcmeHandle, AcmeHub};
pub use node::Node;
pub mod body;
pub mod cache;
mod client_addr;
pub mod config;
#[cfg(fuzzing)]
pub mod fuzz;
mod garbage;
pub mod hooks;
mod interim;
pub mod layer;
pub mod limits;
mod listener;
mod metrics;
mod net;
mod node;
mod pem;
pub mod proxy;
pub mod purge;
mod readiness;
pub mod rules;
mod tls;
pub mod upstream;

use agent::metrics::Registry;
use cache::compress::CompressRules;
use cache::marks::PurgeMarks;
use cache::policy::PolicyOptions;
use cache::{Cache, CacheOptions};
use config::EdgeConfig;
use hooks::{Hooks, NoHooks};
use listener::ConnLimits;
use metrics::NodeMetrics;
use node::{Bound, Kept};
use proxy::sites::Sites;
use proxy::{Proxy, ProxySettings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use upstream::addr::OriginAddr;
use upstream::shields::{ParentTier, Shield};
use upstream::{Timeouts, Upstream};

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Config that validation should have caught, or unreadable certificates.
    #[error("{0}")]
    Config(String),
}

/// An edge with its listeners bound, ready to serve.
pub struct Edge {
    node: Arc<Node>,
    bound: Vec<Bound>,
    acme: Option<Arc<acme::AcmeService>>,
}

/// A new config for a serving node, ready to apply ([`EdgeBuilder::prepare_reload`]).
pub struct Reload {
    node: Arc<Node>,
    generation: listener::Generation,
    listen: Vec<(SocketAddr, bool)>,
    bound: Vec<Bound>,
    kept: Kept,
}

impl Reload {
    /// Makes the new config current: the cache takes its new sizes (a smaller tier evicts
    /// now), new requests and connections use the new request path and TLS (those under way
    /// finish on the old), listeners the config dropped stop accepting and drain, new ones
    /// start.
    pub fn apply(self) {
        self.kept.cache.resize(&cache_options(&self.kept.cfg));
        self.node
            .replace(self.generation, self.kept, &self.listen, self.bound);
    }
}

/// How a caching node is put together beyond its config: its role's name, hooks, the purge
/// marks it shares with the other caches of the process, and where its metrics go.
///
/// ```
/// use edge_node::config::{EdgeConfig, SiteConfig};
/// use edge_node::hooks::NoHooks;
/// use edge_node::Edge;
/// use std::sync::Arc;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A node from code (or `EdgeConfig::from_toml`): one site, one origin, a memory tier.
/// let site = SiteConfig::new(vec!["www.example.test".into()], vec!["http://127.0.0.1:8000".into()]);
/// let mut cfg = EdgeConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![site]);
/// cfg.memory_bytes = edge_node::config::ByteSize(32 << 20);
/// let edge = Edge::builder(&cfg).tier("edge").hooks(Arc::new(NoHooks)).bind().await.unwrap();
/// assert_eq!(edge.local_addrs().len(), 1);
/// let (stop, stopped) = tokio::sync::watch::channel(false);
/// let serving = tokio::spawn(edge.serve(stopped));
/// stop.send(true).unwrap();
/// serving.await.unwrap();
/// # });
/// ```
pub struct EdgeBuilder<'a> {
    cfg: &'a EdgeConfig,
    tier: &'static str,
    hooks: Arc<dyn Hooks>,
    marks: Arc<PurgeMarks>,
    registry: Option<Registry>,
    acme: Option<config::AcmeConfig>,
    acme_hub: Option<acme::AcmeHub>,
}

impl<'a> EdgeBuilder<'a> {
    /// The role's name: `cdn.tier` of its telemetry (default `edge`).
    pub fn tier(mut self, tier: &'static str) -> Self {
        self.tier = tier;
        self
    }

    /// The request-phase hooks (default: none).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// The purge marks the cache checks (default: its own).
    pub fn purge_marks(mut self, marks: Arc<PurgeMarks>) -> Self {
        self.marks = marks;
        self
    }

    /// The `[acme]` section, for the sites with `acme = true` (default: none; such sites are
    /// then an error).
    pub fn acme(mut self, acme: Option<&config::AcmeConfig>) -> Self {
        self.acme = acme.cloned();
        self
    }

    /// Follow this hub's ACME state instead of ordering certificates (default: order them).
    pub fn acme_hub(mut self, hub: Option<AcmeHub>) -> Self {
        self.acme_hub = hub;
        self
    }

    /// The registry the node's instruments go to (default: one of its own).
    pub fn metrics(mut self, registry: &Registry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// Builds the cache and the request path, and binds every listener.
    pub async fn bind(self) -> Result<Edge, EdgeError> {
        let cfg = self.cfg;
        if let Some(p) = cfg.validate(self.tier).first() {
            return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
        }
        let kept = Kept {
            cache: Arc::new(Cache::new(&cache_options(cfg), self.marks.clone())),
            inflight: Arc::default(),
            live: Arc::default(),
            challenges: Arc::default(),
            registry: self.registry.clone().unwrap_or_default(),
            access: None,
            tail: Arc::default(),
            access_dropped: Arc::default(),
            purge: Arc::default(),
            conns: Arc::default(),
            cfg: cfg.clone(),
        };
        let kept = with_access_log(kept, cfg)?;
        register_access_dropped(&kept, self.tier);
        register_connections(&kept, self.tier);
        let acme = self.acme_service(&kept)?;
        let generation = self.generation(&kept)?;
        let bound = bind_new(cfg, &[]).await?;
        Ok(Edge {
            node: Node::new(generation, kept),
            bound,
            acme,
        })
    }

    /// Prepares this builder's config for `node` while it serves: a new request path (sites,
    /// origins, timeouts, hooks), certificates and connection limits for new connections,
    /// the listeners the config adds, bound. Nothing changes until [`Reload::apply`]; an
    /// error (a bad certificate, an address in use, a change only a restart can make: the
    /// disk tier's or state directory, the sites with `acme = true`) changes nothing.
    pub async fn prepare_reload(self, node: &Arc<Node>) -> Result<Reload, EdgeError> {
        let cfg = self.cfg;
        if let Some(p) = cfg.validate(self.tier).first() {
            return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
        }
        let kept = node.kept();
        if let Some(why) = needs_restart(&kept.cfg, cfg) {
            return Err(EdgeError::Config(format!(
                "{why}: restart outpost to change it"
            )));
        }
        let kept = with_access_log(kept, cfg)?;
        let generation = self.generation(&kept)?;
        let bound = bind_new(cfg, &node.listening()).await?;
        Ok(Reload {
            node: node.clone(),
            generation,
            listen: listen_set(cfg),
            bound,
            kept: Kept {
                cfg: cfg.clone(),
                ..kept
            },
        })
    }

    /// The request path, TLS and connection limits of this config, over what `kept` keeps.
    fn generation(&self, kept: &Kept) -> Result<listener::Generation, EdgeError> {
        let cfg = self.cfg;
        let metrics = Arc::new(NodeMetrics::new(
            &kept.registry.meter(),
            self.tier,
            &Sites::names(&cfg.sites),
        ));
        let upstream = upstream(cfg, metrics.clone())?;
        let trusted =
            client_addr::Networks::parse(&cfg.trusted_proxies).map_err(EdgeError::Config)?;
        let limiters = limits::build(&cfg.limits).map_err(EdgeError::Config)?;
        // The database is opened only when a rule asks for a country.
        let wants_geo = cfg
            .sites
            .iter()
            .any(|s| s.rules.iter().any(|r| !r.country.is_empty()));
        let geo = match &cfg.geoip_db {
            Some(path) if wants_geo => Some(Arc::new(
                rules::geo::GeoIp::open(path).map_err(EdgeError::Config)?,
            )),
            _ => None,
        };
        let proxy = Proxy::new(proxy::Parts {
            challenges: kept.challenges.clone(),
            sites: Sites::new(&cfg.sites, &upstream, &limiters, geo).map_err(EdgeError::Config)?,
            limiters: limiters.into_values().collect(),
            cache: kept.cache.clone(),
            inflight: kept.inflight.clone(),
            upstream,
            hooks: self.hooks.clone(),
            metrics,
            registry: kept.registry.clone(),
            access: kept.access.as_ref().map(|(_, log)| log.clone()),
            tail: kept.tail.clone(),
            purge: kept.purge.clone(),
            settings: ProxySettings {
                policy: PolicyOptions {
                    default_swr: cfg.stale_while_revalidate.0,
                    default_sie: cfg.stale_if_error.0,
                    keep: cfg.keep.0,
                    stale_if_unreachable: cfg.stale_if_unreachable.0,
                    rule: Default::default(),
                },
                collapse_timeout: cfg.collapse_timeout.0,
                cache_name: cfg.cache_name.clone(),
                compress: CompressRules {
                    codings: cfg.compress.clone(),
                    types: cfg.compress_types.clone(),
                    min_bytes: cfg.compress_min_bytes.0,
                },
                client_addr: Arc::new(client_addr::ClientAddr::new(
                    trusted.clone(),
                    cfg.real_ip_header,
                )),
                compress_forced: CompressRules {
                    codings: if cfg.compress.is_empty() {
                        vec![cache::Coding::Gzip]
                    } else {
                        cfg.compress.clone()
                    },
                    types: vec!["*/*".into()],
                    min_bytes: cfg.compress_min_bytes.0,
                },
            },
        });
        let acceptor = if cfg.tls_listen.is_empty() {
            None
        } else {
            Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(
                    &cfg.certificates,
                    cfg.client_ca.as_deref(),
                    kept.live.clone(),
                )
                .map_err(EdgeError::Config)?,
            ))
        };
        let limits = ConnLimits {
            header_read_timeout: cfg.header_read_timeout.0,
            max_header_bytes: usize::try_from(cfg.max_header_bytes.0).unwrap_or(usize::MAX),
            max_connections: cfg.max_connections,
            max_connections_per_client: cfg.max_connections_per_client,
            max_requests_per_connection: cfg.max_requests_per_connection,
        };
        let proxy_protocol = cfg.proxy_protocol.then_some(trusted);
        Ok(listener::Generation::new(
            proxy,
            acceptor,
            limits,
            proxy_protocol,
        ))
    }

    /// The ACME service for the `acme = true` sites, with the certificates it saved before
    /// already served; none when no site asks.
    fn acme_service(&self, kept: &Kept) -> Result<Option<Arc<acme::AcmeService>>, EdgeError> {
        let (live, challenges) = (&kept.live, &kept.challenges);
        let cfg = self.cfg;
        if !cfg.sites.iter().any(|s| s.acme) {
            return Ok(None);
        }
        let acme_cfg = self.acme.as_ref().ok_or_else(|| {
            EdgeError::Config("sites with acme = true need an [acme] section".into())
        })?;
        let state_dir = cfg
            .effective_state_dir()
            .ok_or_else(|| EdgeError::Config("sites with acme = true need a state_dir".into()))?;
        let service = acme::AcmeService::new(
            acme_cfg,
            &cfg.sites,
            &state_dir,
            live.clone(),
            challenges.clone(),
            self.acme_hub.clone(),
            &kept.registry.meter(),
        )
        .map_err(|e| EdgeError::Config(format!("acme: {e}")))?;
        service.load_saved();
        acme::register_expiry_gauge(&kept.registry.meter(), live);
        Ok(Some(Arc::new(service)))
    }
}

fn cache_options(cfg: &EdgeConfig) -> CacheOptions {
    CacheOptions {
        memory_bytes: cfg.memory_bytes.0,
        max_variants: cfg.max_variants,
        max_object_bytes: cfg.effective_max_object_bytes(),
        disk: cfg.disk_path.clone().map(|p| (p, cfg.disk_bytes.0)),
    }
}

/// The upstream client of `cfg`: its timeouts, resolver and shields.
fn upstream(cfg: &EdgeConfig, metrics: Arc<NodeMetrics>) -> Result<Upstream, EdgeError> {
    let resolver =
        upstream::resolve::OriginResolver::new(&cfg.resolvers).map_err(EdgeError::Config)?;
    let shields = cfg
        .shields
        .iter()
        .map(|s| OriginAddr::parse(s).map(Shield::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(EdgeError::Config)?;
    let secret =
        match &cfg.shield_secret {
            Some(s) => Some(http::HeaderValue::from_str(s).map_err(|_| {
                EdgeError::Config("edge.shield_secret must be visible ASCII".into())
            })?),
            None => None,
        };
    Upstream::new(
        Timeouts {
            connect: cfg.connect_timeout.0,
            first_byte: cfg.first_byte_timeout.0,
            body_idle: cfg.body_idle_timeout.0,
            body_total: cfg.body_timeout.map(|d| d.0),
        },
        resolver,
        ParentTier { shields, secret },
        &cfg.shield_tls(),
        metrics,
    )
    .map_err(EdgeError::Config)
}

/// `kept` with the access log `cfg` asks for: the same one when its config did not change,
/// else a new one (the old one's writer ends once the last request holding it is done).
fn with_access_log(mut kept: Kept, cfg: &EdgeConfig) -> Result<Kept, EdgeError> {
    kept.access = match (&cfg.access_log, kept.access.take()) {
        (None, _) => None,
        (Some(want), Some((had, log))) if *want == had => Some((had, log)),
        (Some(want), _) => {
            let log = access_log::AccessLog::open(want, kept.access_dropped.clone())
                .map_err(EdgeError::Config)?;
            Some((want.clone(), Arc::new(log)))
        }
    };
    Ok(kept)
}

/// `outpost.access_log.dropped`: records a full buffer dropped.
fn register_access_dropped(kept: &Kept, tier: &'static str) {
    let dropped = kept.access_dropped.clone();
    let _ = kept
        .registry
        .meter()
        .u64_observable_counter("outpost.access_log.dropped")
        .with_description("Access log records dropped because the writer fell behind.")
        .with_callback(move |o| {
            o.observe(
                dropped.load(std::sync::atomic::Ordering::Relaxed),
                &[opentelemetry::KeyValue::new("cdn.tier", tier)],
            )
        })
        .build();
}

/// `outpost.connections.open` and `outpost.connections.refused` (over `max_connections` or
/// `max_connections_per_client`).
fn register_connections(kept: &Kept, tier: &'static str) {
    let meter = kept.registry.meter();
    let attrs = [opentelemetry::KeyValue::new("cdn.tier", tier)];
    let conns = kept.conns.clone();
    let a = attrs.clone();
    let _ = meter
        .u64_observable_gauge("outpost.connections.open")
        .with_description("Client connections open.")
        .with_callback(move |o| o.observe(conns.open() as u64, &a))
        .build();
    let conns = kept.conns.clone();
    let a = attrs.clone();
    let _ = meter
        .u64_observable_counter("outpost.connections.proxy_refused")
        .with_description("Client connections closed before HTTP on proxy_protocol listeners: from a peer not in trusted_proxies, without a PROXY header, or with a bad one.")
        .with_callback(move |o| {
            o.observe(conns.proxy_refused.load(std::sync::atomic::Ordering::Relaxed), &a)
        })
        .build();
    let conns = kept.conns.clone();
    let _ = meter
        .u64_observable_counter("outpost.connections.refused")
        .with_description("Client connections closed at once: over max_connections or max_connections_per_client.")
        .with_callback(move |o| {
            o.observe(conns.refused.load(std::sync::atomic::Ordering::Relaxed), &attrs)
        })
        .build();
}

/// The addresses `cfg` listens on, each with whether it is TLS.
fn listen_set(cfg: &EdgeConfig) -> Vec<(SocketAddr, bool)> {
    let plain = cfg.listen.iter().map(|a| (*a, false));
    plain
        .chain(cfg.tls_listen.iter().map(|a| (*a, true)))
        .collect()
}

/// Binds the listeners of `cfg` not in `already` (listening now).
async fn bind_new(
    cfg: &EdgeConfig,
    already: &[(SocketAddr, bool)],
) -> Result<Vec<Bound>, EdgeError> {
    let mut out = Vec::new();
    for (addr, tls) in listen_set(cfg) {
        if already.contains(&(addr, tls)) {
            continue;
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EdgeError::Bind { addr, source })?;
        out.push(Bound {
            configured: addr,
            tls,
            listener,
        });
    }
    Ok(out)
}

/// What differs between `old` and `new` that only a restart can change, if anything.
fn needs_restart(old: &EdgeConfig, new: &EdgeConfig) -> Option<&'static str> {
    let acme_hosts = |c: &EdgeConfig| -> Vec<Vec<String>> {
        c.sites
            .iter()
            .filter(|s| s.acme)
            .map(|s| s.hosts.clone())
            .collect()
    };
    if old.disk_path != new.disk_path {
        Some("disk_path changed")
    } else if old.effective_state_dir() != new.effective_state_dir() {
        Some("state_dir changed")
    } else if acme_hosts(old) != acme_hosts(new) {
        Some("the sites with acme = true changed")
    } else {
        None
    }
}

impl Edge {
    /// Builds a plain edge of `cfg` (its own purge marks and metrics registry) and binds it.
    pub async fn bind(cfg: &EdgeConfig) -> Result<Self, EdgeError> {
        Self::builder(cfg).bind().await
    }

    /// A node of `cfg` to shape before binding: tier, hooks, purge marks, metrics.
    pub fn builder(cfg: &EdgeConfig) -> EdgeBuilder<'_> {
        EdgeBuilder {
            cfg,
            tier: "edge",
            hooks: Arc::new(NoHooks),
            marks: Arc::default(),
            registry: None,
            acme: None,
            acme_hub: None,
        }
    }

    /// Bound plain-HTTP addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(false)
    }

    /// Bound TLS addresses.
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(true)
    }

    fn addrs(&self, tls: bool) -> Vec<SocketAddr> {
        self.bound
            .iter()
            .filter(|b| b.tls == tls)
            .filter_map(|b| b.listener.local_addr().ok())
            .collect()
    }

    /// The request path, for the admin API, purges and embedding.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.node.proxy()
    }

    /// The serving node: its current request path, its reloads and its drain.
    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// The node's ACME state, if it has `acme = true` sites (for the admin API).
    pub fn acme(&self) -> Option<AcmeHandle> {
        self.acme.clone().map(AcmeHandle)
    }

    /// Serves until `shutdown` becomes true, then stops accepting and drains the requests
    /// under way (up to `drain_timeout`).
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        self.node.start(self.bound);
        if let Some(acme) = self.acme {
            self.node.spawn(acme.run(shutdown.clone()));
        }
        let _ = shutdown.wait_for(|s| *s).await;
        self.node.drain().await;
    }
}

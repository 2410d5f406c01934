//! The Outpost edge: an RFC 9111 caching reverse proxy, and the base of every HTTP caching role.
//!
//! `Edge::bind(config)` (or [`Edge::builder`] for a role of its own: a tier name, request-phase
//! [`hooks`], shared purge marks, a metrics registry) binds every listener (so port 0 works
//! and `local_addrs()` reports the real ports); `serve(shutdown)` runs until the shutdown
//! signal flips. The request path is in [`proxy`], the cache (one [`cache::Cache`] over the
//! storage tiers and the purge marks) in [`cache`], talking upstream in [`upstream`], purge
//! propagation in [`purge`], the admin API in [`admin`]. See docs/caching.md for the rules the
//! cache follows.
#![warn(missing_docs, unreachable_pub)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod acme;
pub mod admin;
pub use acme::{AcmeHandle, AcmeHub};
pub mod body;
pub mod cache;
pub mod config;
mod garbage;
pub mod hooks;
pub mod interim;
mod listener;
mod metrics;
mod pem;
pub mod proxy;
pub mod purge;
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
    proxy: Arc<Proxy>,
    plain: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnLimits,
    acme: Option<Arc<acme::AcmeService>>,
}

/// How a caching node is put together beyond its config: its role's name, hooks, the purge
/// marks it shares with the other caches of the process, and where its metrics go.
pub struct EdgeBuilder<'a> {
    cfg: &'a EdgeConfig,
    tier: &'static str,
    hooks: Arc<dyn Hooks>,
    marks: Arc<PurgeMarks>,
    registry: Registry,
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
        self.registry = registry.clone();
        self
    }

    /// Builds the cache and the request path, and binds every listener.
    pub async fn bind(self) -> Result<Edge, EdgeError> {
        let cfg = self.cfg;
        if let Some(p) = cfg.validate(self.tier).first() {
            return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
        }
        let cache = Arc::new(Cache::new(&cache_options(cfg), self.marks.clone()));
        let metrics = Arc::new(NodeMetrics::new(
            &self.registry.meter(),
            self.tier,
            &Sites::names(&cfg.sites),
        ));
        let upstream = upstream(cfg, metrics.clone())?;
        let live = Arc::new(acme::certs::LiveCerts::default());
        let challenges = Arc::new(acme::challenges::Challenges::default());
        let acme = self.acme_service(&live, &challenges)?;
        let proxy = Proxy::new(proxy::Parts {
            challenges,
            sites: Sites::new(&cfg.sites, &upstream).map_err(EdgeError::Config)?,
            cache,
            upstream,
            hooks: self.hooks,
            metrics,
            registry: self.registry,
            settings: ProxySettings {
                policy: PolicyOptions {
                    default_swr: cfg.stale_while_revalidate.0,
                    default_sie: cfg.stale_if_error.0,
                    keep: cfg.keep.0,
                    stale_if_unreachable: cfg.stale_if_unreachable.0,
                },
                collapse_timeout: cfg.collapse_timeout.0,
                cache_name: cfg.cache_name.clone(),
                compress: CompressRules {
                    codings: cfg.compress.clone(),
                    types: cfg.compress_types.clone(),
                    min_bytes: cfg.compress_min_bytes.0,
                },
            },
        });
        let plain = bind_all(&cfg.listen).await?;
        let tls = bind_all(&cfg.tls_listen).await?;
        let acceptor = if tls.is_empty() {
            None
        } else {
            Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(&cfg.certificates, cfg.client_ca.as_deref(), live)
                    .map_err(EdgeError::Config)?,
            ))
        };
        let limits = ConnLimits {
            header_read_timeout: cfg.header_read_timeout.0,
            max_header_bytes: usize::try_from(cfg.max_header_bytes.0).unwrap_or(usize::MAX),
        };
        Ok(Edge {
            proxy,
            plain,
            tls,
            acceptor,
            limits,
            acme,
        })
    }

    /// The ACME service for the `acme = true` sites, with the certificates it saved before
    /// already served; none when no site asks.
    fn acme_service(
        &self,
        live: &Arc<acme::certs::LiveCerts>,
        challenges: &Arc<acme::challenges::Challenges>,
    ) -> Result<Option<Arc<acme::AcmeService>>, EdgeError> {
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
            &self.registry.meter(),
        )
        .map_err(|e| EdgeError::Config(format!("acme: {e}")))?;
        service.load_saved();
        acme::register_expiry_gauge(&self.registry.meter(), live);
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

async fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, EdgeError> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(
            TcpListener::bind(addr)
                .await
                .map_err(|source| EdgeError::Bind {
                    addr: *addr,
                    source,
                })?,
        );
    }
    Ok(out)
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
            registry: Registry::default(),
            acme: None,
            acme_hub: None,
        }
    }

    /// Bound plain-HTTP addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.plain
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Bound TLS addresses.
    pub fn tls_local_addrs(&self) -> Vec<SocketAddr> {
        self.tls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The request path, for the admin API, purges and embedding.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.clone()
    }

    /// The node's ACME state, if it has `acme = true` sites (for the admin API).
    pub fn acme(&self) -> Option<AcmeHandle> {
        self.acme.clone().map(AcmeHandle)
    }

    /// Serves until `shutdown` becomes true, then drains connections.
    pub async fn serve(self, shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        self.proxy.spawn_health_checks(&shutdown, &mut tasks);
        for l in self.plain {
            tasks.spawn(listener::serve(
                l,
                None,
                self.proxy.clone(),
                self.limits,
                shutdown.clone(),
            ));
        }
        if let Some(acme) = self.acme {
            tasks.spawn(acme.run(shutdown.clone()));
        }
        for l in self.tls {
            tasks.spawn(listener::serve(
                l,
                self.acceptor.clone(),
                self.proxy.clone(),
                self.limits,
                shutdown.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }
}

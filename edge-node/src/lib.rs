//! The Outpost edge: an RFC 9111 caching reverse proxy.
//!
//! `Edge::bind(config)` binds every listener (so port 0 works and `local_addrs()` reports the
//! real ports), then `serve(shutdown)` runs until the shutdown signal flips. The request
//! pipeline is in [`proxy`], the cache (keys, policy, store, collapsing) in [`cache`], the
//! admin API in [`admin`]. See docs/caching.md for the rules the cache follows.
#![warn(missing_docs)]

pub mod admin;
pub mod cache;
pub mod config;
pub mod listener;
pub mod proxy;
pub mod purge;
pub mod stats;
pub mod tls;

use cache::policy::PolicyOptions;
use cache::store::MemoryStore;
use config::EdgeConfig;
use listener::ConnLimits;
use proxy::sites::Sites;
use proxy::upstream::{Timeouts, Upstream};
use proxy::{Proxy, ProxySettings};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
}

impl Edge {
    /// Builds the cache and binds every listener of `cfg`, with purge marks of its own.
    pub async fn bind(cfg: &EdgeConfig) -> Result<Self, EdgeError> {
        Self::bind_with(cfg, Arc::default(), None).await
    }

    /// Like `bind`, checking the purge marks `purges` (shared by the roles of a process).
    pub async fn bind_with(
        cfg: &EdgeConfig,
        purges: Arc<purge::generations::Generations>,
        meter: Option<opentelemetry::metrics::Meter>,
    ) -> Result<Self, EdgeError> {
        let prefix = if cfg.secret.is_some() {
            "shield"
        } else {
            "edge"
        };
        let problems = cfg.validate(prefix);
        if let Some(p) = problems.first() {
            return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
        }
        let sites = Sites::new(&cfg.sites).map_err(EdgeError::Config)?;
        let store = MemoryStore::new(cfg.memory_bytes.0, cfg.max_variants);
        let disk = cfg
            .disk_path
            .as_ref()
            .map(|p| cache::disk::DiskStore::open(p, cfg.disk_bytes.0));
        let resolver =
            proxy::resolve::OriginResolver::new(&cfg.resolvers).map_err(EdgeError::Config)?;
        let mut upstream = Upstream::new(
            Timeouts {
                connect: cfg.connect_timeout.0,
                first_byte: cfg.first_byte_timeout.0,
                body_idle: cfg.body_idle_timeout.0,
                body_total: cfg.body_timeout.map(|d| d.0),
            },
            resolver,
        );
        let shields = cfg
            .shields
            .iter()
            .map(|s| proxy::upstream::OriginAddr::parse(s).map(proxy::upstream::Shield::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EdgeError::Config)?;
        let secret = match &cfg.shield_secret {
            Some(s) => Some(http::HeaderValue::from_str(s).map_err(|_| {
                EdgeError::Config("edge.shield_secret must be visible ASCII".into())
            })?),
            None => None,
        };
        upstream.parents = Arc::new(proxy::upstream::ParentTier { shields, secret });
        let settings = ProxySettings {
            policy: PolicyOptions {
                default_swr: cfg.stale_while_revalidate.0,
                default_sie: cfg.stale_if_error.0,
                keep: cfg.keep.0,
            },
            max_object: cfg.effective_max_object_bytes(),
            collapse_timeout: cfg.collapse_timeout.0,
            cache_name: cfg.cache_name.clone(),
            require_secret: cfg.secret.clone(),
            compress: cache::compress::CompressRules {
                codings: cfg.compress.clone(),
                types: cfg.compress_types.clone(),
                min_bytes: cfg.compress_min_bytes.0,
            },
            memory_capacity: cfg.memory_bytes.0,
        };
        let proxy = Arc::new(Proxy::new(
            sites, store, upstream, settings, purges, disk, meter,
        ));
        let mut plain = Vec::new();
        for addr in &cfg.listen {
            plain.push(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| EdgeError::Bind {
                        addr: *addr,
                        source,
                    })?,
            );
        }
        let mut tls = Vec::new();
        for addr in &cfg.tls_listen {
            tls.push(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| EdgeError::Bind {
                        addr: *addr,
                        source,
                    })?,
            );
        }
        let acceptor = if tls.is_empty() {
            None
        } else {
            Some(tokio_rustls::TlsAcceptor::from(
                tls::server_config(&cfg.certificates).map_err(EdgeError::Config)?,
            ))
        };
        let limits = ConnLimits {
            header_read_timeout: cfg.header_read_timeout.0,
            max_header_bytes: usize::try_from(cfg.max_header_bytes.0).unwrap_or(usize::MAX),
        };
        Ok(Self {
            proxy,
            plain,
            tls,
            acceptor,
            limits,
        })
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

    /// The proxy, for the admin API and embedding.
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.clone()
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

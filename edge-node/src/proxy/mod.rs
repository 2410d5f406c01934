//! The request path of a caching node, split by phase, each phase in its own file:
//!
//! - `route.rs`: Host to site (unknown hosts refused), admission hook, method, cache key.
//! - `lookup.rs`: GET and HEAD ask the cache for a verdict: fresh, stale (and why), miss.
//! - `miss.rs`: a miss or a stale object joins the fill for its key or leads a new one.
//! - `fetch.rs`: the fill task, independent of any client: upstream fetch, storability,
//!   streaming into the fill and the cache; `refresh.rs`: a 304 merged into a stale object.
//! - `pass.rs`: what the cache does not keep (passes, other methods) and invalidation by
//!   unsafe methods (RFC 9111 4.4).
//! - `respond.rs`: every answer's fields (Age, Cache-Status, Via, 304, 206, HEAD) and the one
//!   answer to an upstream failure.
//! - `telemetry.rs`: the server span and the request's metrics.
//! - `purge_method.rs`: the HTTP `PURGE` method from a site's `purge_from` networks.
//!
//! Beside them: `collapse.rs` (fills shared by concurrent requests), `sites.rs`, and the pure
//! pieces `headers.rs`, `conditional.rs`, `range.rs`. The path never touches a storage tier:
//! it asks [`Cache`].

mod buffered;
pub(crate) mod collapse;
pub(crate) mod conditional;
mod ctx;
mod fetch;
mod gauges;
pub(crate) mod headers;
pub mod inspect;
mod limit;
mod lookup;
mod miss;
mod partial;
mod pass;
mod post;
mod purge_method;
mod purge_sink;
pub(crate) mod range;
mod refresh;
mod request_body;
pub(crate) mod respond;
mod route;
mod rules;
pub(crate) mod sites;
mod telemetry;

use crate::body::ProxyBody;
use crate::cache::compress::CompressRules;
use crate::cache::policy::PolicyOptions;
use crate::cache::{Cache, CacheGauges};
use crate::hooks::Hooks;
use crate::metrics::{NodeMetrics, Outcome};
use crate::upstream::Upstream;
use agent::metrics::Registry;
use collapse::Inflight;
use http::header::HeaderValue;
use http::{Request, Response};
use sites::Sites;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where a node's purge service is, once it is built (after the request path, which it
/// holds: so weakly). One slot per node, shared by the request paths its reloads make.
pub(crate) type PurgeSlot =
    Arc<std::sync::OnceLock<std::sync::Weak<dyn crate::purge::PurgeSubmitter>>>;

/// Who sent a request and over what.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's address: the TCP peer's, or the source of the connection's PROXY
    /// protocol header; [`Proxy::handle`] replaces it with the address a trusted proxy's
    /// `X-Forwarded-For` or `Forwarded` names (see `client_addr.rs`). Rate limits, rules,
    /// the access log and the `X-Forwarded-For` sent upstream use it.
    pub addr: SocketAddr,
    /// The TCP peer: the load balancer or proxy in front, when there is one.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The connection's channel for 1xx responses relayed from upstream, when its I/O is
    /// wrapped in `crate::interim`'s writer (the node's own listeners do this).
    pub(crate) interim: Option<crate::interim::Interim>,
    /// The request's id (set by [`Proxy::handle`]): in error answers, the log and the
    /// access log.
    pub(crate) request_id: u64,
}

impl ClientInfo {
    /// A client at `addr` over `scheme` (`http` or `https`), with no 1xx channel.
    pub fn new(addr: SocketAddr, scheme: &'static str) -> Self {
        ClientInfo {
            addr,
            peer: addr,
            scheme,
            interim: None,
            request_id: 0,
        }
    }
}

/// Settings of the request path that come from config.
#[derive(Debug, Clone)]
pub(crate) struct ProxySettings {
    /// Freshness defaults.
    pub policy: PolicyOptions,
    /// Longest wait on another request's fetch.
    pub collapse_timeout: Duration,
    /// Name in Cache-Status and Via.
    pub cache_name: String,
    /// What the node compresses for clients.
    pub compress: CompressRules,
    /// Who the client is behind trusted proxies.
    pub client_addr: Arc<crate::client_addr::ClientAddr>,
    /// What a rule with `compress = true` compresses: any media type, with the node's
    /// codings (gzip when it has none).
    pub compress_forced: CompressRules,
}

/// A response, how it was answered, and its body size when known.
pub(crate) struct Answer {
    res: Response<ProxyBody>,
    outcome: Outcome,
    bytes: Option<u64>,
    /// The site it was routed to (`None`: refused before routing).
    site: Option<usize>,
}

impl Answer {
    fn new(res: Response<ProxyBody>, outcome: Outcome, bytes: Option<u64>) -> Self {
        Self {
            res,
            outcome,
            bytes,
            site: None,
        }
    }
}

/// The parts of a node the request path works with.
pub(crate) struct Parts {
    pub sites: Sites,
    /// The rate limiters of the config (swept in the background).
    pub limiters: Vec<Arc<crate::limits::Limiter>>,
    /// HTTP-01 answers of the ACME orders under way.
    pub challenges: Arc<crate::acme::challenges::Challenges>,
    pub cache: Arc<Cache>,
    /// The fills in flight (kept across reloads, so a fill under way is joined, not repeated).
    pub inflight: Arc<Inflight>,
    pub upstream: Upstream,
    pub hooks: Arc<dyn Hooks>,
    pub metrics: Arc<NodeMetrics>,
    pub registry: Registry,
    /// Where each request's line goes, if anywhere.
    pub access: Option<Arc<crate::access_log::AccessLog>>,
    /// The live tail of the requests (sent to only while watched).
    pub tail: Arc<crate::access_log::Tail>,
    /// The purge service the `PURGE` method submits to (shared by a node's generations).
    pub purge: PurgeSlot,
    pub settings: ProxySettings,
}

/// A caching node's request path, shared by every connection.
pub struct Proxy {
    sites: Sites,
    limiters: Vec<Arc<crate::limits::Limiter>>,
    challenges: Arc<crate::acme::challenges::Challenges>,
    cache: Arc<Cache>,
    inflight: Arc<Inflight>,
    upstream: Upstream,
    hooks: Arc<dyn Hooks>,
    metrics: Arc<NodeMetrics>,
    registry: Registry,
    access: Option<Arc<crate::access_log::AccessLog>>,
    tail: Arc<crate::access_log::Tail>,
    settings: ProxySettings,
    via: HeaderValue,
    /// Whether request spans are made (traces exported).
    traced: bool,
    /// The cache's gauges as last read for the metrics, and when (see `gauges.rs`).
    scraped: std::sync::Mutex<Option<(std::time::Instant, CacheGauges)>>,
    /// Where the `PURGE` method sends purges (`purge_method.rs`), once set.
    purge: PurgeSlot,
}

impl Proxy {
    /// The request path over `p`; its gauges are registered on the registry.
    pub(crate) fn new(p: Parts) -> Arc<Self> {
        let via = HeaderValue::from_str(&format!("1.1 {}", p.settings.cache_name))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 outpost"));
        let proxy = Arc::new(Self {
            sites: p.sites,
            limiters: p.limiters,
            challenges: p.challenges,
            cache: p.cache,
            inflight: p.inflight,
            upstream: p.upstream,
            hooks: p.hooks,
            metrics: p.metrics,
            registry: p.registry,
            access: p.access,
            tail: p.tail,
            settings: p.settings,
            via,
            traced: agent::traces_enabled(),
            scraped: std::sync::Mutex::new(None),
            purge: p.purge,
        });
        proxy.register_gauges();
        proxy
    }

    /// Answers one request.
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        mut client: ClientInfo,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let start = std::time::Instant::now();
        client.request_id = crate::access_log::next_request_id();
        // Before anything looks at the client: limits, rules, logs, upstream fields.
        client.addr = self
            .settings
            .client_addr
            .resolve(req.headers(), client.addr);
        if self.traced
            && agent::propagation::decide(req.headers()) == agent::propagation::Decision::Record
        {
            // Boxed: only sampled requests pay for the span's future, and the common path's
            // future stays as small as with telemetry off.
            return Box::pin(self.handle_traced(req, client, start)).await;
        }
        // Not sampled (or traces off): no span here. Should the request go upstream, it
        // carries an unsampled traceparent (`propagation::inject`) so the next tiers skip it.
        let method = req.method().clone();
        let head = self.access_head(&req, &client, None);
        let answer = self.answer(req, client).await;
        self.finish(answer, &method, start, head)
    }

    /// `edge` or `shield`: the `cdn.tier` of this node's telemetry.
    pub fn tier(&self) -> &'static str {
        self.metrics.tier()
    }

    /// The node's cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The registry the node's instruments are on (render it for `/metrics`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Figures of the cache's tiers.
    pub fn gauges(&self) -> CacheGauges {
        self.cache.gauges()
    }

    /// Upstream fetches in flight.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Starts the active health checks of every site that has them, and the sweep of the
    /// rate limiters' idle keys, until `shutdown` flips.
    pub(crate) fn spawn_health_checks(
        &self,
        shutdown: &tokio::sync::watch::Receiver<bool>,
        tasks: &tokio_util::task::TaskTracker,
    ) {
        tasks.spawn(crate::limits::sweep_every(
            self.limiters.clone(),
            shutdown.clone(),
        ));
        for site in self.sites.all() {
            for pool in site.pools().filter(|p| p.health.is_some()) {
                tasks.spawn(crate::upstream::health::check_origins(
                    pool.clone(),
                    self.upstream.clone(),
                    shutdown.clone(),
                ));
            }
        }
    }

    /// The configured sites.
    pub(crate) fn sites(&self) -> Vec<Arc<sites::Site>> {
        self.sites.all()
    }

    /// The shields this node fetches through (none for a shield or an edge without them).
    pub(crate) fn shields(&self) -> &[crate::upstream::shields::Shield] {
        &self.upstream.parents.shields
    }

    /// Whether each upstream of this node takes requests now: (`origin` or `shield`, its
    /// host:port, up). An origin counts as down while active checks fail or after a passive
    /// failure; a shield while it is skipped after refusing a connection.
    pub(crate) fn upstream_health(&self) -> Vec<(&'static str, http::uri::Authority, bool)> {
        let now = crate::cache::clock::now_ms();
        let mut out: Vec<(&'static str, http::uri::Authority, bool)> = Vec::new();
        for site in self.sites.all() {
            for o in site.pools().flat_map(|p| p.origins()) {
                out.push(("origin", o.addr.authority.clone(), o.usable(now)));
            }
        }
        for s in &self.upstream.parents.shields {
            out.push(("shield", s.addr.authority.clone(), s.is_up(now)));
        }
        // An origin shared by several sites is one upstream.
        out.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
        out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        out
    }
}

//! The request pipeline: route by Host, build the key, look up, serve fresh or stale, or join
//! or start a fetch, and pass through what is not cacheable.
//!
//! `handle` is the whole life of one request; `fetch.rs` holds the fill task that talks to the
//! origin and writes the store; `respond.rs` shapes every cached answer.

pub mod body;
pub mod conditional;
pub mod error;
mod fetch;
pub mod headers;
pub mod origins;
pub mod range;
pub mod resolve;
pub mod respond;
pub mod sites;
pub mod upstream;

use crate::cache::fill::{FillHead, Inflight, Joined};
use crate::cache::key::{normalize_host, normalize_query, CacheKey};
use crate::cache::object::Object;
use crate::cache::policy::{unix_ms, PolicyOptions, Usability};
use crate::cache::store::{Lookup, MemoryStore};
use crate::cache::vary::values_hash;
use crate::purge::generations::Verdict;
use crate::stats::{Outcome, Stats};
use agent::propagation::Decision;
use body::ProxyBody;
use http::header::{self, HeaderValue};
use http::{request, Method, Request, Response, StatusCode};
use respond::{plain, BodySrc, Reply};
use sites::{Site, Sites};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;
use upstream::Upstream;

/// A response, how it was answered, and its body size when known.
type Answer = (Response<ProxyBody>, Outcome, Option<u64>);

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Who sent a request and over what.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// Peer address.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Settings of the proxy that come from config.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Freshness defaults.
    pub policy: PolicyOptions,
    /// Largest stored object.
    pub max_object: u64,
    /// Longest wait on another request's fetch.
    pub collapse_timeout: Duration,
    /// Name in Cache-Status and Via.
    pub cache_name: String,
    /// Memory tier capacity.
    pub memory_capacity: u64,
    /// What the edge compresses for clients.
    pub compress: crate::cache::compress::CompressRules,
    /// As a shield: the secret every request must carry.
    pub require_secret: Option<String>,
}

/// The caching proxy shared by every connection.
pub struct Proxy {
    purges: Arc<crate::purge::generations::Generations>,
    disk: Option<Arc<crate::cache::disk::DiskStore>>,
    sites: Sites,
    store: MemoryStore,
    inflight: Inflight,
    upstream: Upstream,
    stats: Arc<Stats>,
    settings: ProxySettings,
    via: HeaderValue,
    /// `edge` or `shield`, for telemetry.
    tier: &'static str,
    /// Whether request spans are made (traces exported).
    traced: bool,
    /// OTLP instruments, when metrics are exported.
    metrics: Option<Arc<agent::metrics::HttpServerMetrics>>,
}

/// One cacheable request, after routing.
struct Ctx {
    parts: request::Parts,
    site: Arc<Site>,
    host: String,
    key: CacheKey,
    /// Path and normalised query sent upstream.
    upstream_pq: String,
    client: ClientInfo,
}

impl Proxy {
    /// A proxy over `sites` with a fresh store.
    pub fn new(
        sites: Sites,
        store: MemoryStore,
        upstream: Upstream,
        settings: ProxySettings,
        purges: Arc<crate::purge::generations::Generations>,
        disk: Option<Arc<crate::cache::disk::DiskStore>>,
        meter: Option<opentelemetry::metrics::Meter>,
    ) -> Self {
        let via = HeaderValue::from_str(&format!("1.1 {}", settings.cache_name))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 outpost"));
        let tier = if settings.require_secret.is_some() {
            "shield"
        } else {
            "edge"
        };
        let metrics = meter.map(|m| Arc::new(agent::metrics::HttpServerMetrics::new(&m, tier)));
        let mut upstream = upstream;
        upstream.metrics = metrics.clone();
        Self {
            tier,
            traced: agent::traces_enabled(),
            metrics,
            purges,
            disk,
            sites,
            store,
            inflight: Inflight::default(),
            upstream,
            stats: Arc::new(Stats::default()),
            settings,
            via,
        }
    }

    /// Applies the store side of a purge event: URL marks (keys depend on each site's query
    /// rules, for both schemes) and, for hard purges, freeing memory at once. The marks for
    /// prefixes, tags and everything are recorded once per process by the purge service.
    pub fn apply_purge(&self, ev: &crate::purge::event::PurgeEvent) {
        use crate::purge::event::PurgeTarget;
        match &ev.target {
            PurgeTarget::Urls(urls) => {
                for u in urls {
                    let (path, query) = match u.path.split_once('?') {
                        Some((p, q)) => (p, Some(q)),
                        None => (u.path.as_str(), None),
                    };
                    let q = match self.sites.find(&u.host) {
                        Some(site) => normalize_query(query, site.query, &site.drop_params),
                        None => query.map(std::borrow::Cow::Borrowed),
                    };
                    for scheme in ["http", "https"] {
                        let key = CacheKey::new(scheme, &u.host, path, q.as_deref());
                        self.purges.record_url(key, ev);
                        if !ev.soft {
                            self.store.remove(&key);
                            if let Some(d) = &self.disk {
                                d.remove(key);
                            }
                        }
                    }
                }
            }
            PurgeTarget::All if !ev.soft => {
                self.store.clear();
                if let Some(d) = &self.disk {
                    d.clear();
                }
            }
            _ => {}
        }
    }

    /// Starts the active health checks of every site that has them.
    pub fn spawn_health_checks(
        &self,
        shutdown: &tokio::sync::watch::Receiver<bool>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        for site in self.sites.all() {
            if site.origins.health.is_some() {
                tasks.spawn(upstream::check_origins(
                    site.origins.clone(),
                    self.upstream.clone(),
                    shutdown.clone(),
                ));
            }
        }
    }

    /// `edge` or `shield`: the `cdn.tier` of this proxy's telemetry.
    pub fn tier(&self) -> &'static str {
        self.tier
    }

    /// The purge marks this proxy checks.
    pub fn purges(&self) -> &Arc<crate::purge::generations::Generations> {
        &self.purges
    }

    /// The proxy's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Whether each upstream of this tier takes requests now: (`origin` or `shield`, its
    /// host:port, up). An origin counts as down while active checks fail or after a passive
    /// failure; a shield while it is skipped after refusing a connection.
    pub fn upstream_health(&self) -> Vec<(&'static str, http::uri::Authority, bool)> {
        let now = unix_ms(SystemTime::now());
        let mut out: Vec<(&'static str, http::uri::Authority, bool)> = Vec::new();
        for site in self.sites.all() {
            for o in site.origins.origins() {
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

    /// Gauges of the store.
    pub fn gauges(&self) -> crate::stats::StoreGauges {
        crate::stats::StoreGauges {
            memory_bytes: self.store.weighted_size(),
            memory_capacity_bytes: self.settings.memory_capacity,
            objects: self.store.entry_count(),
            inflight: self.inflight.len() as u64,
            disk: self.disk.as_ref().map(|d| {
                use std::sync::atomic::Ordering::Relaxed;
                let (bytes, objects) = d.usage();
                crate::stats::DiskGauges {
                    bytes,
                    capacity_bytes: d.capacity(),
                    objects,
                    ready: d.is_ready(),
                    on: d.is_on(),
                    hits: d.stats.hits.load(Relaxed),
                    writes: d.stats.writes.load(Relaxed),
                    evictions: d.stats.evictions.load(Relaxed),
                    corrupt: d.stats.corrupt.load(Relaxed),
                    errors: d.stats.errors.load(Relaxed),
                }
            }),
        }
    }

    fn status_value(&self, params: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("{}; {params}", self.settings.cache_name))
            .unwrap_or_else(|_| HeaderValue::from_static("outpost"))
    }

    /// Answers one request.
    pub async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: ClientInfo,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<body::BoxError>,
    {
        let start = Instant::now();
        if self.traced && agent::propagation::decide(req.headers()) == Decision::Record {
            // Boxed: only sampled requests pay for the span's future, and the common path's
            // future stays as small as with telemetry off.
            return Box::pin(self.handle_traced(req, client, start)).await;
        }
        // Not sampled (or traces off): no span here. Should the request go upstream, it
        // carries an unsampled traceparent (`propagation::inject`) so the next tiers skip it.
        let method = req.method().clone();
        let (res, outcome, bytes) = self.route(req, client, false).await;
        let elapsed = start.elapsed();
        self.stats.record(outcome, elapsed, bytes);
        if let Some(m) = &self.metrics {
            m.record(
                elapsed.as_secs_f64(),
                &method,
                res.status().as_u16(),
                outcome.as_str(),
                bytes,
            );
        }
        res
    }

    /// [`Proxy::handle`] for a request this node records: the same, inside a server span.
    async fn handle_traced<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: ClientInfo,
        start: Instant,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<body::BoxError>,
    {
        let method = req.method().clone();
        let span = self.server_span(&req, client, agent::metrics::method_value(&method));
        let (res, outcome, bytes) = self.route(req, client, true).instrument(span.clone()).await;
        let elapsed = start.elapsed();
        self.stats.record(outcome, elapsed, bytes);
        let status = res.status().as_u16();
        let cache_status = outcome.as_str();
        span.record("http.response.status_code", status);
        span.record("cdn.cache.status", cache_status);
        if let Some(v) = res
            .headers()
            .get_all(&respond::CACHE_STATUS)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
        {
            span.record("cdn.cache.detail", v);
        }
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(m) = &self.metrics {
            m.record(elapsed.as_secs_f64(), &method, status, cache_status, bytes);
        }
        res
    }

    /// The server span of one request (HTTP semantic conventions plus `cdn.*`), a child of the
    /// caller's span when the request carries a W3C `traceparent`.
    fn server_span<B>(
        &self,
        req: &Request<B>,
        client: ClientInfo,
        method: &'static str,
    ) -> tracing::Span {
        let host = req.uri().host().or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h))
        });
        let version = match req.version() {
            http::Version::HTTP_2 => "2",
            http::Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        let span = tracing::info_span!(
            target: "edge_node::request",
            "request",
            otel.name = method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            url.path = req.uri().path(),
            url.scheme = client.scheme,
            server.address = host.unwrap_or(""),
            client.address = %client.addr.ip(),
            network.protocol.version = version,
            http.response.status_code = tracing::field::Empty,
            cdn.tier = self.tier,
            cdn.cache.status = tracing::field::Empty,
            cdn.cache.detail = tracing::field::Empty,
            cdn.cache.key = tracing::field::Empty,
            cdn.purge.version = self.purges.applied(),
        );
        agent::propagation::set_remote_parent(&span, req.headers());
        span
    }

    /// Answers one request; `recorded` when it runs inside a server span.
    async fn route<B>(
        self: &Arc<Self>,
        req: Request<B>,
        client: ClientInfo,
        recorded: bool,
    ) -> Answer
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<body::BoxError>,
    {
        let raw_host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
        });
        let Some(host) = raw_host.and_then(normalize_host) else {
            let st = self.status_value("fwd=request; detail=bad-host");
            return (
                plain(
                    StatusCode::BAD_REQUEST,
                    st,
                    "outpost: missing or invalid Host",
                ),
                Outcome::Error,
                None,
            );
        };
        let Some(site) = self.sites.find(&host).cloned() else {
            let st = self.status_value("fwd=request; detail=unknown-host");
            let msg = format!("outpost: no site is configured for host {host}");
            return (
                plain(StatusCode::MISDIRECTED_REQUEST, st, &msg),
                Outcome::Error,
                None,
            );
        };
        if let Some(secret) = &self.settings.require_secret {
            use subtle::ConstantTimeEq;
            let ok = req
                .headers()
                .get(&upstream::SHIELD_SECRET)
                .is_some_and(|v| bool::from(v.as_bytes().ct_eq(secret.as_bytes())));
            if !ok {
                let st = self.status_value("fwd=request; detail=not-an-edge");
                return (
                    plain(
                        StatusCode::FORBIDDEN,
                        st,
                        "outpost: this shield serves edges only",
                    ),
                    Outcome::Error,
                    None,
                );
            }
        }
        if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
            let st = self.status_value("fwd=method");
            return (
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    st,
                    "outpost: method not allowed",
                ),
                Outcome::Error,
                None,
            );
        }
        let (parts, body) = req.into_parts();
        let query = normalize_query(parts.uri.query(), site.query, &site.drop_params);
        let key = CacheKey::new(client.scheme, &host, parts.uri.path(), query.as_deref());
        let upstream_pq = match &query {
            Some(q) => format!("{}?{q}", parts.uri.path()),
            None => parts.uri.path().to_string(),
        };
        if recorded {
            tracing::Span::current().record("cdn.cache.key", format!("{:032x}", key.0));
        }
        let ctx = Ctx {
            parts,
            site,
            host,
            key,
            upstream_pq,
            client,
        };
        // An edge tells its shield which purges it has applied; the shield must not answer with
        // anything older, so it waits (briefly) to catch up, else bypasses its cache.
        if self.settings.require_secret.is_some() {
            let wanted = ctx
                .parts
                .headers
                .get(&upstream::PURGE_VERSION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(v) = wanted {
                if !self
                    .purges
                    .wait_applied(v, Duration::from_millis(500))
                    .await
                {
                    return self.pass(ctx, "fwd=request; detail=purge-behind").await;
                }
            }
        }
        if ctx.parts.method == Method::GET || ctx.parts.method == Method::HEAD {
            drop(body);
            self.cached(ctx).await
        } else {
            let body = ProxyBody::Stream(http_body_util::BodyExt::boxed(
                http_body_util::BodyExt::map_err(body, Into::into),
            ));
            self.unsafe_or_other(ctx, body).await
        }
    }

    /// GET and HEAD: the cache path.
    async fn cached(self: &Arc<Self>, ctx: Ctx) -> Answer {
        let now = unix_ms(SystemTime::now());
        let mut found = self.store.lookup(&ctx.key, &ctx.parts.headers);
        if let (Lookup::Miss | Lookup::VaryMiss(_), Some(disk)) = (&found, &self.disk) {
            if let Some((obj, vary, values)) = disk
                .lookup(&ctx.key, &ctx.parts.headers, self.settings.max_object)
                .await
            {
                // Promote: the memory tier decides whether it keeps it.
                let obj = Arc::new(obj);
                let variant = if vary.is_some() {
                    values_hash(&values)
                } else {
                    0
                };
                self.store.insert(ctx.key, vary, values, obj.clone());
                found = Lookup::Found(obj, variant);
            } else if let Some(entry) = disk
                .open_large(&ctx.key, &ctx.parts.headers, self.settings.max_object)
                .await
            {
                // Too large for memory: served from disk while fresh and not purged.
                let m = &entry.meta;
                let verdict = self.purges.verdict(
                    &ctx.key,
                    &ctx.host,
                    ctx.parts.uri.path(),
                    &m.tags,
                    m.purge_version,
                );
                if verdict == Verdict::Keep && m.fresh.usability(now) == Usability::Fresh {
                    let ttl = (m.fresh.fresh_until_ms - now) / 1000;
                    let reply = self.reply(&ctx, &format!("hit; ttl={ttl}; detail=disk"));
                    let (res, n) = reply.serve(
                        m.status,
                        m.headers.to_map(),
                        BodySrc::Disk(entry.clone(), disk.clone()),
                        Some(entry.header.body_len),
                        m.fresh.age_secs(now),
                    );
                    return (res, Outcome::Hit, n);
                }
            }
        }
        if let Lookup::Found(obj, variant) = &found {
            match self.purges.verdict(
                &ctx.key,
                &ctx.host,
                ctx.parts.uri.path(),
                &obj.tags,
                obj.purge_version,
            ) {
                Verdict::Keep => {}
                Verdict::Gone => found = Lookup::Miss,
                Verdict::StaleSince(at) => {
                    found = Lookup::Found(Arc::new(obj.stale_since(at)), *variant)
                }
            }
        }
        match found {
            Lookup::Found(obj, variant) => match obj.fresh.usability(now) {
                Usability::Fresh => {
                    let ttl = (obj.fresh.fresh_until_ms - now) / 1000;
                    let reply = self.reply(&ctx, &format!("hit; ttl={ttl}"));
                    let (res, n) = reply.object(&obj, obj.fresh.age_secs(now));
                    (res, Outcome::Hit, n)
                }
                Usability::StaleWhileRevalidate => {
                    self.refresh_in_background(&ctx, variant, obj.clone());
                    let ttl = (now - obj.fresh.fresh_until_ms) / 1000;
                    let reply = self.reply(
                        &ctx,
                        &format!("hit; ttl=-{ttl}; detail=stale-while-revalidate"),
                    );
                    let (res, n) = reply.object(&obj, obj.fresh.age_secs(now));
                    (res, Outcome::Stale, n)
                }
                Usability::Stale { .. } => self.miss(ctx, Some(obj), variant, true).await,
            },
            Lookup::VaryMiss(values) => {
                let v = values_hash(&values);
                self.miss(ctx, None, v, true).await
            }
            Lookup::Miss => self.miss(ctx, None, 0, true).await,
        }
    }

    fn reply<'a>(&'a self, ctx: &'a Ctx, params: &str) -> Reply<'a> {
        Reply {
            method: &ctx.parts.method,
            req: &ctx.parts.headers,
            cache_status: self.status_value(params),
            via: &self.via,
        }
    }

    /// Serves `stale` if stale-if-error still covers it.
    fn stale_on_error(&self, ctx: &Ctx, stale: &Option<Arc<Object>>, why: &str) -> Option<Answer> {
        let obj = stale.as_ref()?;
        let now = unix_ms(SystemTime::now());
        match obj.fresh.usability(now) {
            Usability::Stale {
                serve_on_error: false,
            } => None,
            _ => {
                let reply = self.reply(ctx, &format!("fwd=stale; {why}; detail=stale-if-error"));
                let (res, n) = reply.object(obj, obj.fresh.age_secs(now));
                Some((res, Outcome::Stale, n))
            }
        }
    }

    /// A miss or a stale object: join the fetch for this key, or lead a new one.
    fn miss(
        self: &Arc<Self>,
        ctx: Ctx,
        stale: Option<Arc<Object>>,
        variant: u64,
        may_recollapse: bool,
    ) -> BoxFuture<'_, Answer> {
        Box::pin(async move {
            let ck = (ctx.key, variant);
            let (fill, leader) = match self.inflight.join(ck) {
                Joined::Leader(fill) => {
                    self.spawn_fill(&ctx, ck, fill.clone(), stale.clone());
                    (fill, true)
                }
                Joined::Follower(fill) => {
                    self.stats.record_collapsed();
                    (fill, false)
                }
            };
            let Some(head) = fill.wait_head(self.settings.collapse_timeout).await else {
                return self.pass(ctx, "detail=collapse-timeout").await;
            };
            let fwd = if stale.is_some() {
                "fwd=stale"
            } else {
                "fwd=miss"
            };
            let collapsed = if leader { "" } else { "; collapsed" };
            match &*head {
                FillHead::Storing { .. } if fill.is_streaming() => self.pass(ctx, fwd).await,
                FillHead::Storing {
                    status,
                    headers,
                    content_length,
                    vary,
                    values,
                    fresh,
                } => {
                    if let Some(spec) = vary {
                        let mine = spec.values(&ctx.parts.headers);
                        if &mine != values {
                            if may_recollapse {
                                let v = values_hash(&mine);
                                return self.miss(ctx, None, v, false).await;
                            }
                            return self.pass(ctx, "fwd=vary-miss").await;
                        }
                    }
                    let reply = self.reply(
                        &ctx,
                        &format!("{fwd}; fwd-status={}; stored{collapsed}", status.as_u16()),
                    );
                    let (res, n) = reply.serve(
                        *status,
                        headers.clone(),
                        BodySrc::Fill(fill.clone()),
                        *content_length,
                        fresh.age_secs(unix_ms(SystemTime::now())),
                    );
                    (res, Outcome::Miss, n)
                }
                FillHead::Refreshed(obj) => {
                    let now = unix_ms(SystemTime::now());
                    let reply = self.reply(&ctx, &format!("fwd=stale; fwd-status=304{collapsed}"));
                    let (res, n) = reply.object(obj, obj.fresh.age_secs(now));
                    (res, Outcome::Miss, n)
                }
                FillHead::Pass { status } => {
                    if status.is_server_error() {
                        if let Some(r) = self.stale_on_error(
                            &ctx,
                            &stale,
                            &format!("fwd-status={}", status.as_u16()),
                        ) {
                            return r;
                        }
                    }
                    if leader {
                        if let Some(res) = fill.take_pass() {
                            return self.relay(
                                res,
                                &ctx,
                                &format!("{fwd}; fwd-status={}", status.as_u16()),
                            );
                        }
                    }
                    self.pass(ctx, fwd).await
                }
                FillHead::Failed(e) => {
                    if let Some(r) =
                        self.stale_on_error(&ctx, &stale, &format!("detail={}", e.kind()))
                    {
                        return r;
                    }
                    let st = self.status_value(&format!("{fwd}; detail=upstream-{}", e.kind()));
                    (
                        plain(e.response_status(), st, &format!("outpost: {e}")),
                        Outcome::Error,
                        None,
                    )
                }
            }
        })
    }

    /// Starts a background refresh of a stale-while-revalidate object, unless one is running.
    fn refresh_in_background(self: &Arc<Self>, ctx: &Ctx, variant: u64, obj: Arc<Object>) {
        let ck = (ctx.key, variant);
        if let Joined::Leader(fill) = self.inflight.join(ck) {
            self.spawn_fill(ctx, ck, fill, Some(obj));
        }
    }

    /// Relays an upstream response untouched but for hop-by-hop fields and our own.
    fn relay(&self, res: Response<hyper::body::Incoming>, ctx: &Ctx, params: &str) -> Answer {
        let (mut parts, body) = res.into_parts();
        headers::for_client(&mut parts.headers);
        parts
            .headers
            .append(respond::CACHE_STATUS.clone(), self.status_value(params));
        headers::append_via(&mut parts.headers, &self.via);
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = if ctx.parts.method == Method::HEAD {
            ProxyBody::empty()
        } else {
            ProxyBody::Incoming(body)
        };
        (Response::from_parts(parts, body), Outcome::Pass, len)
    }

    /// Sends a GET/HEAD upstream for this client alone, storing nothing.
    async fn pass(&self, ctx: Ctx, params: &str) -> Answer {
        let up = self.upstream_parts(&ctx, false);
        self.stats.record_upstream_request();
        match self
            .upstream
            .send(
                &ctx.site.origins,
                ctx.key.0,
                up,
                ProxyBody::empty(),
                true,
                self.purges.applied(),
            )
            .await
        {
            Ok(res) => {
                let p = format!("{params}; fwd-status={}", res.status().as_u16());
                self.relay(res, &ctx, &p)
            }
            Err(e) => {
                self.stats.record_upstream_error(e.kind());
                let st = self.status_value(&format!("{params}; detail=upstream-{}", e.kind()));
                (
                    plain(e.response_status(), st, &format!("outpost: {e}")),
                    Outcome::Error,
                    None,
                )
            }
        }
    }

    /// Unsafe and other methods: passed through; a successful unsafe request invalidates the
    /// target URI, and `Location` and `Content-Location` on the same host (RFC 9111 4.4).
    async fn unsafe_or_other(&self, ctx: Ctx, body: ProxyBody) -> Answer {
        let up = self.upstream_parts(&ctx, false);
        self.stats.record_upstream_request();
        let res = match self
            .upstream
            .send(
                &ctx.site.origins,
                ctx.key.0,
                up,
                body,
                false,
                self.purges.applied(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.stats.record_upstream_error(e.kind());
                let st = self.status_value(&format!("fwd=method; detail=upstream-{}", e.kind()));
                return (
                    plain(e.response_status(), st, &format!("outpost: {e}")),
                    Outcome::Error,
                    None,
                );
            }
        };
        let is_unsafe = !matches!(ctx.parts.method, Method::OPTIONS);
        if is_unsafe && (res.status().is_success() || res.status().is_redirection()) {
            self.store.remove(&ctx.key);
            for h in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(k) = res
                    .headers()
                    .get(&h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| self.key_for_reference(&ctx, v))
                {
                    self.store.remove(&k);
                }
            }
        }
        let p = format!("fwd=method; fwd-status={}", res.status().as_u16());
        self.relay(res, &ctx, &p)
    }

    /// The cache key a `Location`/`Content-Location` value refers to, if on the same host.
    fn key_for_reference(&self, ctx: &Ctx, reference: &str) -> Option<CacheKey> {
        let uri: http::Uri = reference.parse().ok()?;
        if let Some(auth) = uri.authority() {
            if normalize_host(auth.as_str())? != ctx.host {
                return None;
            }
        }
        let path = uri.path();
        if !path.starts_with('/') {
            return None;
        }
        let q = normalize_query(uri.query(), ctx.site.query, &ctx.site.drop_params);
        Some(CacheKey::new(
            ctx.client.scheme,
            &ctx.host,
            path,
            q.as_deref(),
        ))
    }

    fn upstream_parts(&self, ctx: &Ctx, fill: bool) -> request::Parts {
        let h = headers::UpstreamHeaders {
            host: &ctx.host,
            client_ip: ctx.client.addr.ip(),
            scheme: ctx.client.scheme,
            fill,
            via: &self.via,
        };
        let mut b = Request::builder().method(if fill {
            Method::GET
        } else {
            ctx.parts.method.clone()
        });
        b = b.uri(ctx.upstream_pq.as_str());
        let mut parts = match b.body(()) {
            Ok(r) => r.into_parts().0,
            Err(_) => Request::new(()).into_parts().0,
        };
        parts.headers = h.build(&ctx.parts.headers);
        parts
    }
}

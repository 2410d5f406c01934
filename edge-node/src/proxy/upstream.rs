//! Talking to origins: address parsing, the pooled HTTP client, timeouts and failover.
//!
//! Each site lists origin base URLs; a request goes to the first, and on a connect error to the
//! next (nothing was sent, so this is safe for any method without a body).
//!
//! With shields configured, a request goes first to the shields ranked by rendezvous (highest
//! random weight) hashing of its cache key, so each object has one home shield and adding or
//! removing a shield moves only that shield's share of keys. A shield that refuses a connection
//! is skipped for `SHIELD_RETRY` and the next in the ranking is used; when every shield is down,
//! the request goes to the origins directly. Requests to a shield carry the shared secret and
//! the purge version this node has applied.

use super::body::ProxyBody;
use super::error::UpstreamError;
use super::origins::OriginPool;
use http::uri::{Authority, Scheme};
use http::{request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::Instrument;

/// Request field carrying the edge-to-shield shared secret.
pub static SHIELD_SECRET: http::HeaderName = http::HeaderName::from_static("outpost-shield-secret");
/// Request field carrying the purge version the edge has applied.
pub static PURGE_VERSION: http::HeaderName = http::HeaderName::from_static("outpost-purge-version");
/// How long a shield that refused a connection is skipped.
pub const SHIELD_RETRY: Duration = Duration::from_secs(5);

/// A parent-tier node.
#[derive(Debug)]
pub struct Shield {
    /// Its address.
    pub addr: OriginAddr,
    id: u64,
    down_until_ms: AtomicU64,
}

impl Shield {
    /// A shield at `addr`.
    pub fn new(addr: OriginAddr) -> Self {
        let id = xxhash_rust::xxh3::xxh3_64(addr.to_string().as_bytes());
        Self {
            addr,
            id,
            down_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether requests go to it now (it has not refused a connection lately).
    pub fn is_up(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    fn mark_down(&self, now_ms: u64) {
        self.down_until_ms
            .store(now_ms + SHIELD_RETRY.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Ranks shields for a key by rendezvous hashing: highest `hash(key, shield)` first.
pub fn rank(shields: &[Shield], key: u128) -> Vec<&Shield> {
    let mut scored: Vec<(u64, &Shield)> = shields
        .iter()
        .map(|s| {
            let mut buf = [0u8; 24];
            buf[..16].copy_from_slice(&key.to_le_bytes());
            buf[16..].copy_from_slice(&s.id.to_le_bytes());
            (xxhash_rust::xxh3::xxh3_64(&buf), s)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().map(|(_, s)| s).collect()
}

/// The parent tier of an edge: shields and the secret they expect.
#[derive(Debug, Default)]
pub struct ParentTier {
    /// The shields.
    pub shields: Vec<Shield>,
    /// The shared secret sent to them.
    pub secret: Option<http::HeaderValue>,
}

/// Where one attempt goes.
enum Target<'a> {
    Shield(&'a Shield),
    Origin(&'a super::origins::Origin),
}

/// An origin base URL: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAddr {
    /// Scheme (http).
    pub scheme: Scheme,
    /// host:port.
    pub authority: Authority,
}

impl OriginAddr {
    /// Parses an origin URL; only `http://host[:port]` without a path is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{s:?} needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(format!("{s:?}: only http:// origins are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{s:?}: an origin URL must not have a path or query"
            ));
        }
        Ok(Self { scheme, authority })
    }
}

impl std::fmt::Display for OriginAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Timeouts for upstream fetches.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// From request sent to response head.
    pub first_byte: Duration,
    /// Longest gap between body chunks.
    pub body_idle: Duration,
    /// Longest time for a whole body, if limited.
    pub body_total: Option<Duration>,
}

/// The pooled upstream client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector<super::resolve::OriginResolver>, ProxyBody>,
    /// Timeouts applied to every fetch.
    pub timeouts: Timeouts,
    /// Shields in front of the origins, if any.
    pub parents: std::sync::Arc<ParentTier>,
    /// OTLP instruments, when metrics are exported.
    pub metrics: Option<std::sync::Arc<agent::metrics::HttpServerMetrics>>,
}

impl Upstream {
    /// A client with these timeouts.
    pub fn new(timeouts: Timeouts, resolver: super::resolve::OriginResolver) -> Self {
        let mut conn = HttpConnector::new_with_resolver(resolver);
        conn.set_connect_timeout(Some(timeouts.connect));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(conn);
        Self {
            client,
            timeouts,
            parents: Default::default(),
            metrics: None,
        }
    }

    /// Sends `parts` (path and query in its URI) to the home shield of `key`, the next shields,
    /// then the site's origins in load-balancing order, until one answers. A connect error
    /// moves on to the next target; so does a timeout when `may_retry` (idempotent, no body).
    /// `body` is only sent to the first target. `purge_version` goes to shields. Origins that
    /// fail or answer 5xx are reported to the pool (passive health).
    pub async fn send(
        &self,
        origins: &OriginPool,
        key: u128,
        parts: request::Parts,
        body: ProxyBody,
        may_retry: bool,
        purge_version: u64,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut last = None;
        let mut body = Some(body);
        let now = crate::cache::policy::unix_ms(std::time::SystemTime::now());
        let shields = rank(&self.parents.shields, key);
        let targets: Vec<Target> = shields
            .into_iter()
            .filter(|s| s.is_up(now))
            .map(Target::Shield)
            .chain(origins.order(now).into_iter().map(Target::Origin))
            .collect();
        let n = targets.len();
        for (i, target) in targets.into_iter().enumerate() {
            let is_last = i + 1 == n;
            let addr = match &target {
                Target::Shield(s) => &s.addr,
                Target::Origin(o) => &o.addr,
            };
            let Some(b) = body.take().or_else(|| may_retry.then(ProxyBody::empty)) else {
                break;
            };
            let mut p = parts.clone();
            if let Target::Shield(_) = target {
                if let Some(secret) = &self.parents.secret {
                    p.headers.insert(SHIELD_SECRET.clone(), secret.clone());
                }
                p.headers.insert(
                    PURGE_VERSION.clone(),
                    http::HeaderValue::from(purge_version),
                );
            }
            let mut u = http::uri::Parts::default();
            u.scheme = Some(addr.scheme.clone());
            u.authority = Some(addr.authority.clone());
            u.path_and_query = parts
                .uri
                .path_and_query()
                .cloned()
                .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
            p.uri = match Uri::from_parts(u) {
                Ok(u) => u,
                Err(e) => {
                    return Err(UpstreamError::Protocol {
                        origin: addr.to_string(),
                        detail: e.to_string(),
                    })
                }
            };
            let kind = match target {
                Target::Shield(_) => "shield",
                Target::Origin(_) => "origin",
            };
            let span = client_span(&p, addr, kind);
            // The next tier's server span becomes a child of this attempt.
            agent::propagation::inject(&span, &mut p.headers);
            let req = http::Request::from_parts(p, b);
            let failed = |t: &Target| match t {
                Target::Shield(s) => s.mark_down(now),
                Target::Origin(o) => origins.report_failure(o, now),
            };
            let started = std::time::Instant::now();
            let attempt = tokio::time::timeout(self.timeouts.first_byte, self.client.request(req))
                .instrument(span.clone())
                .await;
            self.observe_attempt(&span, kind, started, &attempt);
            match attempt {
                Err(_) => {
                    failed(&target);
                    let e = UpstreamError::Timeout {
                        origin: addr.to_string(),
                        phase: "response head",
                    };
                    if !may_retry || is_last {
                        return Err(e);
                    }
                    tracing::warn!(upstream = %addr, "timed out; trying the next upstream");
                    last = Some(e);
                }
                Ok(Ok(res)) => {
                    if res.status().is_server_error() {
                        failed(&target);
                    }
                    return Ok(res);
                }
                Ok(Err(e)) if e.is_connect() => {
                    tracing::warn!(upstream = %addr, error = %error_chain(&e), "connection failed; trying the next upstream");
                    failed(&target);
                    last = Some(UpstreamError::Connect {
                        origin: addr.to_string(),
                        detail: error_chain(&e),
                    });
                }
                Ok(Err(e)) => {
                    return Err(UpstreamError::Protocol {
                        origin: addr.to_string(),
                        detail: error_chain(&e),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Connect {
            origin: "-".into(),
            detail: "no origin configured".into(),
        }))
    }

    /// Closes the books on one attempt: its span's status and the client duration metric.
    fn observe_attempt(
        &self,
        span: &tracing::Span,
        kind: &'static str,
        started: std::time::Instant,
        attempt: &Result<
            Result<Response<Incoming>, hyper_util::client::legacy::Error>,
            tokio::time::error::Elapsed,
        >,
    ) {
        let (status, error) = match attempt {
            Ok(Ok(res)) => (res.status().as_u16(), None),
            Ok(Err(e)) if e.is_connect() => (0, Some("connect")),
            Ok(Err(_)) => (0, Some("protocol")),
            Err(_) => (0, Some("timeout")),
        };
        if !span.is_none() {
            if status > 0 {
                span.record("http.response.status_code", status);
            }
            if let Some(e) = error {
                span.record("error.type", e);
            }
            if status >= 500 || error.is_some() {
                span.record("otel.status_code", "ERROR");
            }
        }
        if let Some(m) = &self.metrics {
            m.record_upstream(started.elapsed().as_secs_f64(), kind, status, error);
        }
    }

    /// One active health check: GET `path` on `addr`; healthy when it answers 2xx or 3xx.
    pub async fn probe(
        &self,
        addr: &OriginAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> bool {
        let Ok(req) = http::Request::get(format!("{addr}{path}"))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "outpost-health-check")
            .body(ProxyBody::empty())
        else {
            return false;
        };
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(res)) => {
                let ok = res.status().is_success() || res.status().is_redirection();
                let _ = tokio::time::timeout(
                    timeout,
                    http_body_util::BodyExt::collect(res.into_body()),
                )
                .await;
                ok
            }
            _ => false,
        }
    }
}

/// The client span of one upstream attempt (HTTP semantic conventions), or a disabled span
/// when traces are not exported.
fn client_span(p: &request::Parts, addr: &OriginAddr, kind: &'static str) -> tracing::Span {
    // Only inside a recorded request: an unsampled one forwards its traceparent as it is.
    if !agent::traces_enabled() || tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    let method = agent::metrics::method_value(&p.method);
    tracing::info_span!(
        target: "edge_node::upstream",
        "upstream",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        server.address = addr.authority.host(),
        server.port = addr.authority.port_u16().unwrap_or(80),
        url.full = %p.uri,
        cdn.upstream = kind,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Runs the active health checks of `pool` until `shutdown` flips.
pub async fn check_origins(
    pool: std::sync::Arc<OriginPool>,
    upstream: Upstream,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(h) = pool.health.clone() else { return };
    loop {
        for o in pool.origins() {
            let ok = upstream.probe(&o.addr, &h.path, &h.host, h.timeout).await;
            match pool.record_check(o, ok) {
                Some(true) => tracing::info!(origin = %o.addr, "origin is healthy again"),
                Some(false) => {
                    tracing::warn!(origin = %o.addr, path = %h.path, "origin failed its health checks; taken out")
                }
                None => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(h.interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shields(n: usize) -> Vec<Shield> {
        (0..n)
            .map(|i| Shield::new(OriginAddr::parse(&format!("http://10.0.0.{i}:8090")).unwrap()))
            .collect()
    }

    #[test]
    fn rendezvous_moves_only_the_new_shields_share() {
        let three = shields(3);
        let four = shields(4);
        let keys = 20_000u128;
        let mut moved = 0;
        let mut per_shield = [0usize; 3];
        for k in 0..keys {
            let key = (k * 0x9E37_79B9_7F4A_7C15) ^ (k << 64);
            let a = rank(&three, key)[0].id;
            let b = rank(&four, key)[0].id;
            if a != b {
                moved += 1;
                assert_eq!(b, four[3].id, "keys only move to the new shield");
            }
            per_shield[three.iter().position(|s| s.id == a).unwrap()] += 1;
        }
        let share = moved as f64 / keys as f64;
        eprintln!(
            "rendezvous: adding a 4th shield moved {moved} of {keys} keys ({:.1}%)",
            share * 100.0
        );
        assert!((0.22..0.28).contains(&share), "moved {share}");
        for c in per_shield {
            assert!(
                (c as f64 / keys as f64 - 1.0 / 3.0).abs() < 0.03,
                "unbalanced: {per_shield:?}"
            );
        }
    }

    #[test]
    fn the_next_shield_takes_over_when_the_home_one_is_down() {
        let s = shields(3);
        let order: Vec<u64> = rank(&s, 42).iter().map(|x| x.id).collect();
        assert_eq!(order.len(), 3);
        let home = rank(&s, 42)[0];
        home.mark_down(1000);
        assert!(!home.is_up(1000));
        assert!(home.is_up(1000 + SHIELD_RETRY.as_millis() as u64));
    }
}

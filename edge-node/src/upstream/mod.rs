//! Talking upstream: the pooled HTTP client, timeouts, and the order of targets for one
//! request: the home shield of its key and the next shields (`shields.rs`), then the site's
//! origins in load-balancing order (`origins.rs`). A connect error moves on to the next
//! target (nothing was sent); a timeout does too when the request may be retried.

pub(crate) mod addr;
pub(crate) mod error;
pub(crate) mod health;
pub(crate) mod origins;
pub(crate) mod resolve;
pub(crate) mod shields;
pub mod tls;

pub use shields::{PURGE_VERSION, SHIELD_RETRY, SHIELD_SECRET};

use crate::body::ProxyBody;
use crate::metrics::NodeMetrics;
use addr::OriginAddr;
use error::UpstreamError;
use http::{request, Response, Uri};
use hyper::body::Incoming;
use origins::OriginPool;
use shields::{rank, ParentTier, Shield};
use std::sync::Arc;
use std::time::Duration;
use tls::{OriginTls, UpstreamClient};
use tracing::Instrument;

/// Whether a request may go to the next target after the first one timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent and without a body (GET, HEAD, fills): a timeout moves on too.
    Idempotent,
    /// The body goes to the first target only; only a refused connection moves on.
    ConnectOnly,
}

/// Where one attempt goes.
enum Target<'a> {
    Shield(&'a Shield),
    Origin(&'a origins::Origin),
}

impl Target<'_> {
    fn addr(&self) -> &OriginAddr {
        match self {
            Target::Shield(s) => &s.addr,
            Target::Origin(o) => &o.addr,
        }
    }

    /// Its failed requests, said once per interval.
    fn failing(&self) -> &agent::throttle::RepeatedWarning {
        match self {
            Target::Shield(s) => &s.failing,
            Target::Origin(o) => &o.failing,
        }
    }

    /// `shield` or `origin`: the `cdn.upstream` of its span and metrics.
    fn kind(&self) -> &'static str {
        match self {
            Target::Shield(_) => "shield",
            Target::Origin(_) => "origin",
        }
    }
}

/// Timeouts for upstream fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
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
pub(crate) struct Upstream {
    /// For origins of sites with the default TLS settings.
    client: UpstreamClient,
    /// For shields: the fleet's CA and this node's client certificate, HTTP/1.1.
    shield_client: UpstreamClient,
    /// What further clients (sites with TLS settings of their own) are built with.
    resolver: resolve::OriginResolver,
    /// Timeouts applied to every fetch.
    pub timeouts: Timeouts,
    /// Shields in front of the origins, if any.
    pub parents: Arc<ParentTier>,
    metrics: Arc<NodeMetrics>,
}

impl Upstream {
    /// A client with these timeouts, sending misses to `parents` first (reached with
    /// `shield_tls`), recording each attempt in `metrics`.
    pub(crate) fn new(
        timeouts: Timeouts,
        resolver: resolve::OriginResolver,
        parents: ParentTier,
        shield_tls: &OriginTls,
        metrics: Arc<NodeMetrics>,
    ) -> Result<Self, String> {
        let client = tls::client(&OriginTls::default(), resolver.clone(), timeouts.connect)?;
        let shield_client = tls::client(shield_tls, resolver.clone(), timeouts.connect)
            .map_err(|e| format!("shields: {e}"))?;
        Ok(Self {
            client,
            shield_client,
            resolver,
            timeouts,
            parents: Arc::new(parents),
            metrics,
        })
    }

    /// A client for upstreams reached with `tls`: this one's when those are the defaults
    /// (one pool), else a client of its own.
    pub(crate) fn client_for(&self, tls: &OriginTls) -> Result<UpstreamClient, String> {
        if tls.is_default() {
            return Ok(self.client.clone());
        }
        tls::client(tls, self.resolver.clone(), self.timeouts.connect)
    }

    /// Sends `parts` (path and query in its URI) to the home shield of `key`, the next shields,
    /// then the site's origins in load-balancing order, until one answers. A connect error
    /// moves on to the next target; so does a timeout with [`Retry::Idempotent`]. `body` is
    /// only sent to the first target. `purge_version` goes to shields. Origins that fail or
    /// answer 5xx are reported to the pool (passive health).
    pub(crate) async fn send(
        &self,
        origins: &OriginPool,
        key: u128,
        parts: request::Parts,
        body: ProxyBody,
        retry: Retry,
        purge_version: u64,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let now = crate::cache::clock::now_ms();
        let targets = self.targets(origins, key, now);
        let n = targets.len();
        let mut last = None;
        let mut body = Some(body);
        for (i, target) in targets.into_iter().enumerate() {
            let retry_allowed = retry == Retry::Idempotent;
            let Some(b) = body.take().or_else(|| retry_allowed.then(ProxyBody::empty)) else {
                break;
            };
            let req = self.prepare(&parts, &target, origins, purge_version)?;
            let e = match self.attempt(&target, req, b, retry, origins, now).await {
                Ok(res) => {
                    agent::log_report!(target.failing().succeeded());
                    return Ok(res);
                }
                Err(e) => e,
            };
            // With the upstream down, every request fails: said once per interval.
            agent::log_report!(target.failing().failed(&e));
            let moves_on = match &e {
                UpstreamError::Connect { .. } => true,
                UpstreamError::Timeout { .. } => retry_allowed,
                UpstreamError::Protocol { .. } => false,
            };
            if !moves_on || i + 1 == n {
                return Err(e);
            }
            tracing::debug!(upstream = %target.addr(), error = %e, "trying the next upstream");
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| UpstreamError::Connect {
            origin: "-".into(),
            detail: "no origin configured".into(),
        }))
    }

    /// Where a request for `key` goes, in order: the shields that are up, ranked for the key,
    /// then the site's origins in load-balancing order.
    fn targets<'a>(&'a self, origins: &'a OriginPool, key: u128, now: u64) -> Vec<Target<'a>> {
        rank(&self.parents.shields, key)
            .into_iter()
            .filter(|s| s.is_up(now))
            .map(Target::Shield)
            .chain(origins.order(now).into_iter().map(Target::Origin))
            .collect()
    }

    /// The request head for one target: its URI; for a shield the secret and the purge
    /// version this node has applied; for an origin the site's Host override, if any.
    fn prepare(
        &self,
        parts: &request::Parts,
        target: &Target<'_>,
        origins: &OriginPool,
        purge_version: u64,
    ) -> Result<request::Parts, UpstreamError> {
        let addr = target.addr();
        let mut p = parts.clone();
        match target {
            Target::Shield(_) => {
                if let Some(secret) = &self.parents.secret {
                    p.headers.insert(SHIELD_SECRET.clone(), secret.clone());
                }
                p.headers.insert(
                    PURGE_VERSION.clone(),
                    http::HeaderValue::from(purge_version),
                );
            }
            Target::Origin(_) => {
                if let Some(host) = &origins.host {
                    p.headers.insert(http::header::HOST, host.clone());
                }
            }
        }
        let mut u = http::uri::Parts::default();
        u.scheme = Some(addr.scheme.clone());
        u.authority = Some(addr.authority.clone());
        u.path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        p.uri = Uri::from_parts(u).map_err(|e| UpstreamError::Protocol {
            origin: addr.to_string(),
            detail: e.to_string(),
        })?;
        Ok(p)
    }

    /// One attempt at one target, in a client span, bounded by `first_byte`; a failure (or a
    /// 5xx) is reported against the target. With [`Retry::Idempotent`], a request whose
    /// connection closed before any response came is sent once more (see
    /// [`closed_before_response`]).
    async fn attempt(
        &self,
        target: &Target<'_>,
        mut p: request::Parts,
        body: ProxyBody,
        retry: Retry,
        origins: &OriginPool,
        now: u64,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let addr = target.addr();
        let kind = target.kind();
        let span = client_span(&p, addr, kind);
        // The next tier's server span becomes a child of this attempt.
        agent::propagation::inject(&span, &mut p.headers);
        let again = (retry == Retry::Idempotent).then(|| p.clone());
        let req = http::Request::from_parts(p, body);
        let started = std::time::Instant::now();
        let client = match target {
            Target::Origin(_) => origins.client.as_ref().unwrap_or(&self.client),
            Target::Shield(_) => &self.shield_client,
        };
        let mut attempt = tokio::time::timeout(self.timeouts.first_byte, client.request(req))
            .instrument(span.clone())
            .await;
        if let (Ok(Err(e)), Some(p)) = (&attempt, again) {
            if closed_before_response(e) {
                tracing::debug!(upstream = %addr, error = %error_chain(e), "connection closed before a response: sending once more");
                let req = http::Request::from_parts(p, ProxyBody::empty());
                attempt = tokio::time::timeout(self.timeouts.first_byte, client.request(req))
                    .instrument(span.clone())
                    .await;
            }
        }
        self.observe_attempt(&span, origins.site, kind, started, &attempt);
        let failed = || match target {
            Target::Shield(s) => s.mark_down(now),
            Target::Origin(o) => origins.report_failure(o, now),
        };
        match attempt {
            Ok(Ok(res)) => {
                // An origin's 5xx counts against it (passive health). A shield that answers is
                // up, whatever the status: its 5xx is mostly the origin's, relayed, and skipping
                // the shield for it would send every edge straight to an origin that is already
                // failing, for SHIELD_RETRY after each error (the soak's 5% origin errors kept
                // the shield out of the path most of the time).
                if res.status().is_server_error() && matches!(target, Target::Origin(_)) {
                    failed();
                }
                Ok(res)
            }
            Err(_) => {
                failed();
                Err(UpstreamError::Timeout {
                    origin: addr.to_string(),
                    phase: "response head",
                })
            }
            Ok(Err(e)) if e.is_connect() => {
                failed();
                Err(UpstreamError::Connect {
                    origin: addr.to_string(),
                    detail: error_chain(&e),
                })
            }
            Ok(Err(e)) => Err(UpstreamError::Protocol {
                origin: addr.to_string(),
                detail: error_chain(&e),
            }),
        }
    }

    /// Closes the books on one attempt: its span's status and the client duration metric.
    fn observe_attempt(
        &self,
        span: &tracing::Span,
        site: usize,
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
        self.metrics
            .upstream_attempt(started.elapsed().as_secs_f64(), site, kind, status, error);
    }
}

/// Whether `e` says the connection ended before any of the response came: closed (hyper's
/// "connection closed before message completed") or reset. On a pooled keep-alive connection
/// this is mostly a race the client cannot see coming: the upstream closes the connection for
/// being idle (hyper's server does so after its header read timeout, Outpost's own shields
/// after `header_read_timeout`, 10 s by default; Node.js after 5 s) just as it is taken from
/// the pool for a new request. The upstream then never read the request, and an idempotent
/// one may be sent again, as nginx does for a request that fails on a cached keep-alive
/// connection.
fn closed_before_response(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) {
                return true;
            }
        }
        src = s.source();
    }
    false
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

/// `e` and its causes, one after the other.
pub use agent::errors::chain as error_chain;

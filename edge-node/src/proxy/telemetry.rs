//! What a request leaves behind: its metrics (every request), its server span (sampled
//! requests, when traces are exported), and the `/stats` view of the node's instruments.
//!
//! The server span follows the HTTP semantic conventions plus `cdn.*`; it is a child of the
//! caller's span when the request carries a W3C `traceparent`. The fill task and each upstream
//! attempt make their own spans inside it (`fetch.rs`, `upstream/`).

use super::{Answer, ClientInfo, Proxy};
use crate::access_log::Record;
use crate::body::{BoxError, ProxyBody};
use crate::metrics::instrument;
use crate::metrics::Outcome;
use agent::metrics::names;
use http::{header, Method, Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

impl Proxy {
    /// Records an answered request and hands its response to the `response` hook.
    pub(super) fn finish(
        &self,
        answer: Answer,
        method: &Method,
        start: Instant,
        head: Option<Record>,
    ) -> Response<ProxyBody> {
        let Answer {
            mut res,
            outcome,
            bytes,
            site,
        } = answer;
        self.hooks.response(&mut res);
        // The node's own answers (errors, refusals) carry their length in the body.
        let bytes = bytes.or_else(|| http_body::Body::size_hint(res.body()).exact());
        let elapsed = start.elapsed();
        self.metrics.request(
            elapsed.as_secs_f64(),
            site,
            method,
            res.status().as_u16(),
            outcome,
            bytes,
        );
        if let Some(mut r) = head {
            r.site = self.metrics.site_name(site);
            r.status = res.status().as_u16();
            r.bytes = bytes;
            r.duration = elapsed;
            // Hits and refusals never waited on an upstream.
            r.upstream = (!matches!(outcome, Outcome::Hit | Outcome::Error)).then_some(elapsed);
            r.cache = outcome.as_str();
            self.tail.offer(&r);
            if let Some(log) = &self.access {
                log.record(r);
            }
        }
        res
    }

    /// The access log record of a request, with what is known before it is answered (the
    /// rest is filled in by [`Proxy::finish`]); `None` when the node keeps no access log and
    /// nobody watches the live tail: nothing is copied then.
    pub(super) fn access_head<B>(
        &self,
        req: &Request<B>,
        client: &ClientInfo,
        span: Option<&tracing::Span>,
    ) -> Option<Record> {
        if self.access.is_none() && !self.tail.watched() {
            return None;
        }
        Some(Record {
            time: std::time::SystemTime::now(),
            client: client.addr,
            site: self.metrics.site_name(None),
            method: req.method().clone(),
            // Copies, not shared handles: a handle on the request's bytes would keep hyper's
            // read buffer from being reused until the writer is done with the record.
            target: req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .into(),
            version: req.version(),
            referer: req
                .headers()
                .get(header::REFERER)
                .map(|v| v.as_bytes().into()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| v.as_bytes().into()),
            status: 0,
            bytes: None,
            duration: std::time::Duration::ZERO,
            upstream: None,
            cache: "",
            tier: self.tier(),
            id: client.request_id,
            trace: agent::propagation::trace_id(span, req.headers()),
        })
    }

    /// [`Proxy::handle`] for a request this node records: the same, inside a server span.
    pub(super) async fn handle_traced<B>(
        self: Arc<Self>,
        req: Request<B>,
        client: ClientInfo,
        start: Instant,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let method = req.method().clone();
        let span = self.server_span(&req, &client, agent::metrics::method_value(&method));
        let head = self.access_head(&req, &client, Some(&span));
        let answer = self.answer(req, client).instrument(span.clone()).await;
        let outcome = answer.outcome;
        let res = self.finish(answer, &method, start, head);
        let status = res.status().as_u16();
        span.record("http.response.status_code", status);
        span.record("cdn.cache.status", outcome.as_str());
        if let Some(v) = res
            .headers()
            .get_all(&super::respond::CACHE_STATUS)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
        {
            span.record("cdn.cache.detail", v);
        }
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        res
    }

    /// The server span of one request.
    fn server_span<B>(
        &self,
        req: &Request<B>,
        client: &ClientInfo,
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
            cdn.tier = self.tier(),
            cdn.cache.status = tracing::field::Empty,
            cdn.cache.detail = tracing::field::Empty,
            cdn.cache.key = tracing::field::Empty,
            cdn.purge.version = self.cache.purge_version(),
        );
        agent::propagation::set_remote_parent(&span, req.headers());
        span
    }
}

impl Proxy {
    /// The node's figures as JSON (the `/stats` entry of this node): requests by how they
    /// were answered, cache events and upstream figures, added up from the node's
    /// instruments, and the cache's gauges.
    pub fn stats_json(&self) -> serde_json::Value {
        stats_json(self)
    }
}

fn stats_json(p: &Proxy) -> serde_json::Value {
    let tier = [("cdn.tier", p.tier())];
    let Some(snap) = p.registry.snapshot() else {
        return serde_json::json!({ "tier": p.tier() });
    };
    let by_status = snap.totals_by(names::HTTP_SERVER_DURATION, &tier, Some("cdn.cache.status"));
    let status = |s: &str| by_status.get(s).copied().unwrap_or(0);
    let attempts = snap.totals_by(names::HTTP_CLIENT_DURATION, &tier, Some("error.type"));
    let failed = |s: &str| attempts.get(s).copied().unwrap_or(0);
    let body_errors = snap.totals_by(instrument::BODY_ERRORS, &tier, Some("error.type"));
    let mut cache = serde_json::to_value(p.gauges()).unwrap_or_default();
    cache["inflight"] = p.inflight().into();
    serde_json::json!({
        "tier": p.tier(),
        "requests": by_status.values().sum::<u64>(),
        "hits": status("hit"),
        "stale": status("stale"),
        "misses": status("miss"),
        "passes": status("pass"),
        "errors": status("error"),
        "collapsed": snap.total(instrument::COLLAPSED, &tier),
        "revalidated": snap.total(instrument::REVALIDATED, &tier),
        "stores": snap.total(instrument::STORES, &tier),
        "response_body_bytes": snap.total(names::RESPONSE_BYTES, &tier),
        "upstream": {
            "attempts": snap.total(names::HTTP_CLIENT_DURATION, &tier),
            "connect_errors": failed("connect"),
            "timeouts": failed("timeout"),
            "protocol_errors": failed("protocol"),
            "body_errors": body_errors,
            "truncated": body_errors.get("truncated").copied().unwrap_or(0),
        },
        "cache": cache,
        "sites": sites_json(p, &snap),
    })
}

/// Per site (by `cdn.site`): requests, hits, hit ratio, bytes sent, upstream errors.
fn sites_json(p: &Proxy, snap: &agent::metrics::Snapshot) -> serde_json::Value {
    let mut names: Vec<String> = p.sites().iter().map(|s| s.name.clone()).collect();
    names.sort();
    names.dedup();
    let mut out = serde_json::Map::new();
    for name in names {
        let f = [("cdn.tier", p.tier()), ("cdn.site", name.as_str())];
        let by_status = snap.totals_by(names::HTTP_SERVER_DURATION, &f, Some("cdn.cache.status"));
        let status = |s: &str| by_status.get(s).copied().unwrap_or(0);
        let requests: u64 = by_status.values().sum();
        let hits = status("hit") + status("stale");
        let lookups = hits + status("miss");
        let attempts = snap.totals_by(names::HTTP_CLIENT_DURATION, &f, Some("error.type"));
        let by_class = snap.totals_by(
            names::HTTP_CLIENT_DURATION,
            &f,
            Some("http.response.status_class"),
        );
        let ratio = if lookups == 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!((hits as f64 / lookups as f64 * 1000.0).round() / 1000.0)
        };
        out.insert(
            name.clone(),
            serde_json::json!({
                "requests": requests,
                "hits": hits,
                "misses": status("miss"),
                "passes": status("pass"),
                "errors": status("error"),
                "hit_ratio": ratio,
                "response_body_bytes": snap.total(names::RESPONSE_BYTES, &f),
                "upstream": {
                    "attempts": snap.total(names::HTTP_CLIENT_DURATION, &f),
                    "errors": attempts.values().sum::<u64>()
                        + by_class.get("5xx").copied().unwrap_or(0),
                },
            }),
        );
    }
    serde_json::Value::Object(out)
}

//! Metric instruments shared by the roles, named after the OpenTelemetry semantic conventions
//! where one exists (`http.server.request.duration`, `http.client.request.duration`) and
//! `outpost.*` otherwise. Built once at start-up; recording takes only static attribute values,
//! so the request path never allocates for them.

use crate::setup::ExportStats;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Bucket bounds, in seconds, of the duration histograms (the SDK defaults are for
/// milliseconds). The boundaries the HTTP semantic conventions recommend.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Names of the metrics this crate defines.
pub mod names {
    /// Histogram of server request durations, seconds.
    pub const HTTP_SERVER_DURATION: &str = "http.server.request.duration";
    /// Histogram of upstream request durations (to the response head), seconds.
    pub const HTTP_CLIENT_DURATION: &str = "http.client.request.duration";
    /// Counter of response body bytes sent to clients.
    pub const RESPONSE_BYTES: &str = "outpost.http.response.body.bytes";
    /// Counter of spans and log records dropped by the export queues.
    pub const TELEMETRY_DROPPED: &str = "outpost.telemetry.dropped";
    /// Counter of spans and log records accepted by the collector.
    pub const TELEMETRY_EXPORTED: &str = "outpost.telemetry.exported";
}

/// The meter every Outpost instrument belongs to.
pub fn meter() -> Meter {
    opentelemetry::global::meter("outpost")
}

/// A request method as a bounded attribute value (`_OTHER` for anything unusual).
pub fn method_value(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Instruments of an HTTP server tier (edge or shield).
#[derive(Debug, Clone)]
pub struct HttpServerMetrics {
    duration: Histogram<f64>,
    bytes: Counter<u64>,
    client_duration: Histogram<f64>,
    tier: &'static str,
}

impl HttpServerMetrics {
    /// Instruments for `tier` (`edge`, `shield`), from the global meter.
    pub fn new(tier: &'static str) -> Self {
        let m = meter();
        Self {
            duration: m
                .f64_histogram(names::HTTP_SERVER_DURATION)
                .with_unit("s")
                .with_description("Time from request to response head.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            bytes: m
                .u64_counter(names::RESPONSE_BYTES)
                .with_unit("By")
                .with_description("Response body bytes sent to clients.")
                .build(),
            client_duration: m
                .f64_histogram(names::HTTP_CLIENT_DURATION)
                .with_unit("s")
                .with_description("Time from upstream request to its response head.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            tier,
        }
    }

    /// Records one answered request.
    pub fn record(
        &self,
        secs: f64,
        method: &'static str,
        status: u16,
        cache_status: &'static str,
        body_bytes: Option<u64>,
    ) {
        let attrs = [
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("cdn.cache.status", cache_status),
            KeyValue::new("cdn.tier", self.tier),
        ];
        self.duration.record(secs, &attrs);
        if let Some(b) = body_bytes {
            self.bytes.add(b, &attrs[2..]);
        }
    }

    /// Records one upstream attempt; `target` is `shield` or `origin`, `status` 0 when no
    /// response came (then `error` names why).
    pub fn record_upstream(
        &self,
        secs: f64,
        target: &'static str,
        status: u16,
        error: Option<&'static str>,
    ) {
        let mut attrs = vec![
            KeyValue::new("cdn.upstream", target),
            KeyValue::new("cdn.tier", self.tier),
        ];
        if status > 0 {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(e) = error {
            attrs.push(KeyValue::new("error.type", e));
        }
        self.client_duration.record(secs, &attrs);
    }
}

/// Registers the export counters as observable metrics (`outpost.telemetry.*`).
pub(crate) fn register_export_metrics(stats: Arc<ExportStats>) {
    let m = meter();
    let s = stats.clone();
    let _ = m
        .u64_observable_counter(names::TELEMETRY_DROPPED)
        .with_description("Spans and log records dropped: export queue full or export failed.")
        .with_callback(move |o| {
            o.observe(
                s.spans.dropped.load(Relaxed),
                &[KeyValue::new("signal", "spans")],
            );
            o.observe(
                s.logs.dropped.load(Relaxed),
                &[KeyValue::new("signal", "logs")],
            );
        })
        .build();
    let s = stats;
    let _ = m
        .u64_observable_counter(names::TELEMETRY_EXPORTED)
        .with_description("Spans and log records the collector accepted.")
        .with_callback(move |o| {
            o.observe(
                s.spans.exported.load(Relaxed),
                &[KeyValue::new("signal", "spans")],
            );
            o.observe(
                s.logs.exported.load(Relaxed),
                &[KeyValue::new("signal", "logs")],
            );
        })
        .build();
}

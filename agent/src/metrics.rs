//! The metrics pipeline of a node: one OpenTelemetry meter provider per node ([`Registry`]),
//! read by a Prometheus reader for the admin `/metrics` (always) and by the OTLP exporter
//! (when a collector is configured). Instruments are registered on the registry's meter at
//! start-up, never on the request path; roles only emit. Also the shared vocabulary of the
//! HTTP instruments: bucket bounds, bounded attribute values.

use crate::prometheus::PrometheusReader;
use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, Counter, Histogram, Meter, MeterProvider as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::Resource;

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
    /// Counter of export requests that failed or timed out.
    pub const TELEMETRY_FAILED: &str = "outpost.telemetry.failed_exports";
}

/// The instruments of one node: a meter provider with a Prometheus reader (for the admin
/// `/metrics`) and, when the node exports, the OTLP reader. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Registry {
    provider: SdkMeterProvider,
    prometheus: PrometheusReader,
}

impl Default for Registry {
    /// A registry with the SDK's default resource, read only by `/metrics` (tests, embedding).
    fn default() -> Self {
        Self::new(Resource::builder().build())
    }
}

impl Registry {
    /// A registry describing `resource`, read only by `/metrics`.
    pub fn new(resource: Resource) -> Self {
        Self::build(resource, None::<PrometheusReader>)
    }

    /// A registry with a second reader (the OTLP exporter's periodic reader).
    pub(crate) fn build(resource: Resource, reader: Option<impl MetricReader>) -> Self {
        let prometheus = PrometheusReader::default();
        let mut b = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus.clone());
        if let Some(r) = reader {
            b = b.with_reader(r);
        }
        Self {
            provider: b.build(),
            prometheus,
        }
    }

    /// The meter every Outpost instrument of this node is registered on.
    pub fn meter(&self) -> Meter {
        self.provider.meter("outpost")
    }

    /// Every instrument now, as Prometheus text (empty once shut down).
    pub fn render(&self) -> String {
        self.prometheus.render()
    }

    /// Every instrument now, as collected data (for JSON views such as `/stats`).
    pub fn collect(&self) -> Option<ResourceMetrics> {
        self.prometheus.collect_now()
    }

    /// Exports what is pending and stops the readers.
    pub fn shutdown(&self) {
        let _ = self
            .provider
            .shutdown_with_timeout(std::time::Duration::from_secs(5));
    }
}

/// The values of `http.request.method` (the semantic conventions' `_OTHER` for the rest).
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// A request method as a bounded attribute value (`_OTHER` for anything unusual).
pub fn method_value(m: &http::Method) -> &'static str {
    METHODS[method_index(m)]
}

fn method_index(m: &http::Method) -> usize {
    match *m {
        http::Method::GET => 0,
        http::Method::HEAD => 1,
        http::Method::POST => 2,
        http::Method::PUT => 3,
        http::Method::DELETE => 4,
        http::Method::PATCH => 5,
        http::Method::OPTIONS => 6,
        http::Method::CONNECT => 7,
        http::Method::TRACE => 8,
        _ => 9,
    }
}

/// The `cdn.cache.status` values the tiers report.
const CACHE_STATUSES: [&str; 5] = ["hit", "stale", "miss", "pass", "error"];

fn cache_index(c: &str) -> Option<usize> {
    CACHE_STATUSES.iter().position(|s| *s == c)
}

/// Status codes common enough to get a bound slot; the rest are recorded unbound.
const STATUSES: [u16; 24] = [
    200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 410, 413, 416, 429, 431,
    500, 501, 502, 503, 504,
];

fn status_index(status: u16) -> Option<usize> {
    // Sorted: a binary search is a handful of compares.
    STATUSES.binary_search(&status).ok()
}

/// The duration histogram and body-bytes counter bound to one attribute set.
#[derive(Debug)]
struct Bound {
    duration: BoundHistogram<f64>,
    bytes: BoundCounter<u64>,
}

/// Instruments of an HTTP server tier (edge or shield).
#[derive(Debug)]
pub struct HttpServerMetrics {
    duration: Histogram<f64>,
    bytes: Counter<u64>,
    client_duration: Histogram<f64>,
    tier: &'static str,
    /// Bound instruments by (method, cache status, status code), filled on first use.
    bound: Box<[std::sync::OnceLock<Bound>]>,
}

impl HttpServerMetrics {
    /// Instruments for `tier` (`edge`, `shield`), registered on `m`.
    pub fn new(m: &Meter, tier: &'static str) -> Self {
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
            bound: (0..METHODS.len() * CACHE_STATUSES.len() * STATUSES.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        }
    }

    fn attrs(
        &self,
        method: &'static str,
        status: u16,
        cache_status: &'static str,
    ) -> [KeyValue; 4] {
        [
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("cdn.cache.status", cache_status),
            KeyValue::new("cdn.tier", self.tier),
        ]
    }

    /// Records one answered request.
    pub fn record(
        &self,
        secs: f64,
        method: &http::Method,
        status: u16,
        cache_status: &'static str,
        body_bytes: Option<u64>,
    ) {
        let m = method_index(method);
        let method = METHODS[m];
        let slot = cache_index(cache_status).and_then(|c| {
            let s = status_index(status)?;
            Some((m * CACHE_STATUSES.len() + c) * STATUSES.len() + s)
        });
        if let Some(b) = slot.and_then(|i| self.bound.get(i)) {
            let b = b.get_or_init(|| {
                let attrs = self.attrs(method, status, cache_status);
                Bound {
                    duration: self.duration.bind(&attrs),
                    bytes: self.bytes.bind(&attrs[2..]),
                }
            });
            b.duration.record(secs);
            if let Some(n) = body_bytes {
                b.bytes.add(n);
            }
            return;
        }
        let attrs = self.attrs(method, status, cache_status);
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

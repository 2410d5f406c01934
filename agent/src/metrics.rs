//! The metrics pipeline of a node: one OpenTelemetry meter provider per node ([`Registry`]),
//! read by a Prometheus reader for the admin `/metrics` (always) and by the OTLP exporter
//! (when a collector is configured). Instruments are registered on the registry's meter at
//! start-up, never on the request path; roles only emit. Every number is published once, as
//! an instrument; `/metrics` text and the `/stats` JSON ([`Snapshot`]) are views of it. Also
//! the shared vocabulary of the HTTP instruments: bucket bounds, bounded attribute values.

use crate::prometheus::PrometheusReader;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
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

    /// Every instrument now, for views that add series up (`/stats`); `None` once shut down.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.prometheus.collect_now().map(Snapshot)
    }

    /// Exports what is pending and stops the readers.
    pub fn shutdown(&self) {
        let _ = self
            .provider
            .shutdown_with_timeout(std::time::Duration::from_secs(5));
    }
}

/// The values of `http.request.method` (the semantic conventions' `_OTHER` for the rest).
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// A request method as a bounded attribute value (`_OTHER` for anything unusual).
pub fn method_value(m: &http::Method) -> &'static str {
    METHODS[method_index(m)]
}

/// The index of a method in [`METHODS`].
pub fn method_index(m: &http::Method) -> usize {
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

/// One collection of a registry's instruments, for views that add series up (`/stats`).
pub struct Snapshot(ResourceMetrics);

impl Snapshot {
    /// The sum over the points of instrument `name` whose attributes include every pair of
    /// `filter`: the values of a counter or gauge, the counts of a histogram.
    pub fn total(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.totals_by(name, filter, None).values().sum()
    }

    /// Like [`Snapshot::total`], grouped by the value of attribute `by` (points without it
    /// are left out); `by = None` puts everything under `""`.
    pub fn totals_by(
        &self,
        name: &str,
        filter: &[(&str, &str)],
        by: Option<&str>,
    ) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        let mut add = |attrs: &mut dyn Iterator<Item = &KeyValue>, v: u64| {
            let attrs: Vec<&KeyValue> = attrs.collect();
            let has = |k: &str, want: &str| {
                attrs
                    .iter()
                    .any(|kv| kv.key.as_str() == k && kv.value.as_str() == want)
            };
            if !filter.iter().all(|(k, v)| has(k, v)) {
                return;
            }
            let group = match by {
                None => String::new(),
                Some(b) => match attrs.iter().find(|kv| kv.key.as_str() == b) {
                    Some(kv) => kv.value.as_str().into_owned(),
                    None => return,
                },
            };
            *out.entry(group).or_insert(0) += v;
        };
        for scope in self.0.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                match m.data() {
                    AggregatedMetrics::U64(d) => visit(d, &mut add, |v| v),
                    AggregatedMetrics::I64(d) => {
                        visit(d, &mut add, |v| u64::try_from(v).unwrap_or(0))
                    }
                    AggregatedMetrics::F64(d) => visit(d, &mut add, |v| v as u64),
                }
            }
        }
        out
    }
}

impl Snapshot {
    /// The buckets of histogram `name` over its points whose attributes include every pair of
    /// `filter`, added up: the bounds and a count per bucket (one more than the bounds, the
    /// last for above the last bound). `None` when no point matches.
    pub fn buckets(&self, name: &str, filter: &[(&str, &str)]) -> Option<(Vec<f64>, Vec<u64>)> {
        let mut out: Option<(Vec<f64>, Vec<u64>)> = None;
        for scope in self.0.scope_metrics() {
            for m in scope.metrics().filter(|m| m.name() == name) {
                let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                    continue;
                };
                for p in h.data_points() {
                    let attrs: Vec<&KeyValue> = p.attributes().collect();
                    let keep = filter.iter().all(|(k, v)| {
                        attrs
                            .iter()
                            .any(|kv| kv.key.as_str() == *k && kv.value.as_str() == *v)
                    });
                    if !keep {
                        continue;
                    }
                    let (bounds, counts) = out.get_or_insert_with(|| {
                        let b: Vec<f64> = p.bounds().collect();
                        let n = b.len() + 1;
                        (b, vec![0; n])
                    });
                    if p.bounds().count() != bounds.len() {
                        continue;
                    }
                    for (c, n) in counts.iter_mut().zip(p.bucket_counts()) {
                        *c += n;
                    }
                }
            }
        }
        out
    }
}

fn visit<T: Copy>(
    d: &MetricData<T>,
    add: &mut dyn FnMut(&mut dyn Iterator<Item = &KeyValue>, u64),
    to_u64: impl Fn(T) -> u64,
) {
    match d {
        MetricData::Sum(s) => {
            for p in s.data_points() {
                add(&mut p.attributes(), to_u64(p.value()));
            }
        }
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                add(&mut p.attributes(), to_u64(p.value()));
            }
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                add(&mut p.attributes(), p.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_family_per_name_whoever_registers_it() {
        // Two roles of one process register the same instruments on one registry: one family,
        // a series per tier, and callbacks of both observed.
        let r = Registry::default();
        for tier in ["edge", "shield"] {
            let m = r.meter();
            let h = m
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build();
            h.record(0.001, &[KeyValue::new("cdn.tier", tier)]);
            let _ = m
                .u64_observable_gauge("outpost.cache.objects")
                .with_callback(move |o| o.observe(7, &[KeyValue::new("cdn.tier", tier)]))
                .build();
        }
        let text = r.render();
        let families: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = families.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(families.len(), unique.len(), "{text}");
        for want in [
            "outpost_cache_objects{cdn_tier=\"edge\"} 7",
            "outpost_cache_objects{cdn_tier=\"shield\"} 7",
            "http_server_request_duration_seconds_count{cdn_tier=\"shield\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        let snap = r.snapshot().unwrap();
        assert_eq!(snap.total("http.server.request.duration", &[]), 2);
        assert_eq!(
            snap.total("outpost.cache.objects", &[("cdn.tier", "edge")]),
            7
        );
        let (bounds, counts) = snap
            .buckets("http.server.request.duration", &[("cdn.tier", "edge")])
            .unwrap();
        assert_eq!(bounds.len(), DURATION_BUCKETS.len());
        assert_eq!(counts[0], 1, "0.001s is in the first bucket");
        assert_eq!(counts.iter().sum::<u64>(), 1);
        assert!(snap.buckets("nope", &[]).is_none());
        assert_eq!(
            snap.totals_by("http.server.request.duration", &[], Some("cdn.tier"))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("edge".to_string(), 1), ("shield".to_string(), 1)]
        );
    }
}

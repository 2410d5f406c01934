//! The OpenTelemetry metrics of this process as Prometheus text, for the admin `/metrics`.
//!
//! [`PrometheusReader`] is a second reader on the meter provider (beside the OTLP one, or
//! alone when no collector is configured): a scrape collects the instruments' cumulative state
//! and renders it following OpenTelemetry's Prometheus compatibility rules: dots become
//! underscores, the unit becomes a suffix (`s` -> `_seconds`, `By` -> `_bytes`, `{...}`
//! annotations are dropped), monotonic sums get `_total`, histograms become `_bucket`/`_sum`/
//! `_count` families, and the resource is one `target_info` sample.

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Gauge, Histogram, Metric, MetricData, ResourceMetrics, Sum,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A pull reader, shared between the meter provider and the admin endpoint.
#[derive(Debug, Clone)]
pub struct PrometheusReader(Arc<ManualReader>);

impl Default for PrometheusReader {
    fn default() -> Self {
        Self(Arc::new(ManualReader::builder().build()))
    }
}

impl MetricReader for PrometheusReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl PrometheusReader {
    /// Collects every instrument now and renders Prometheus text (empty if the provider is
    /// gone).
    pub fn render(&self) -> String {
        self.collect_now().map(|rm| render(&rm)).unwrap_or_default()
    }

    /// Collects every instrument now (`None` if the provider is gone).
    pub fn collect_now(&self) -> Option<ResourceMetrics> {
        let mut rm = ResourceMetrics::default();
        self.0.collect(&mut rm).ok()?;
        Some(rm)
    }
}

/// Prometheus text of collected metrics.
pub fn render(rm: &ResourceMetrics) -> String {
    let mut out = String::new();
    let resource: Vec<KeyValue> = rm
        .resource()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !resource.is_empty() {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        out.push_str("target_info");
        labels(&mut out, resource.iter(), None);
        out.push_str(" 1\n");
    }
    for scope in rm.scope_metrics() {
        for m in scope.metrics() {
            match m.data() {
                AggregatedMetrics::F64(d) => family(&mut out, m, d),
                AggregatedMetrics::U64(d) => family(&mut out, m, d),
                AggregatedMetrics::I64(d) => family(&mut out, m, d),
            }
        }
    }
    out
}

/// A value Prometheus text can carry.
trait Number: Copy {
    fn write(self, out: &mut String);
}

impl Number for f64 {
    fn write(self, out: &mut String) {
        float(out, self);
    }
}
impl Number for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}
impl Number for i64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

fn float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn family<T: Number>(out: &mut String, m: &Metric, data: &MetricData<T>) {
    let base = metric_name(m.name(), m.unit());
    match data {
        MetricData::Sum(s) => sum(out, m, &base, s),
        MetricData::Gauge(g) => gauge(out, m, &base, g),
        MetricData::Histogram(h) => histogram(out, m, &base, h),
        // Not used by Outpost's instruments (no exponential-histogram view is configured).
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = if help.is_empty() { name } else { help };
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sum<T: Number>(out: &mut String, m: &Metric, base: &str, s: &Sum<T>) {
    let (name, kind) = if s.is_monotonic() {
        (format!("{base}_total"), "counter")
    } else {
        (base.to_string(), "gauge")
    };
    header(out, &name, m.description(), kind);
    for p in s.data_points() {
        sample(out, &name, p.attributes(), None, p.value());
    }
}

fn gauge<T: Number>(out: &mut String, m: &Metric, base: &str, g: &Gauge<T>) {
    header(out, base, m.description(), "gauge");
    for p in g.data_points() {
        sample(out, base, p.attributes(), None, p.value());
    }
}

fn histogram<T: Number>(out: &mut String, m: &Metric, base: &str, h: &Histogram<T>) {
    header(out, base, m.description(), "histogram");
    let bucket = format!("{base}_bucket");
    for p in h.data_points() {
        let mut cumulative = 0u64;
        let mut bounds = p.bounds();
        for count in p.bucket_counts() {
            cumulative += count;
            let mut le = String::new();
            match bounds.next() {
                Some(b) => float(&mut le, b),
                None => le.push_str("+Inf"),
            }
            sample(out, &bucket, p.attributes(), Some(("le", &le)), cumulative);
        }
        sample(out, &format!("{base}_sum"), p.attributes(), None, p.sum());
        sample(
            out,
            &format!("{base}_count"),
            p.attributes(),
            None,
            p.count(),
        );
    }
}

fn sample<'a, T: Number>(
    out: &mut String,
    name: &str,
    attrs: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, &str)>,
    v: T,
) {
    out.push_str(name);
    labels(out, attrs, extra);
    out.push(' ');
    v.write(out);
    out.push('\n');
}

fn labels<'a>(
    out: &mut String,
    attrs: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, &str)>,
) {
    // Sorted by name: the SDK keeps attributes in the order first seen, and a scrape should
    // not depend on which request came first.
    let mut attrs: Vec<&KeyValue> = attrs.collect();
    attrs.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    let mut first = true;
    let mut open = |out: &mut String| {
        out.push(if first { '{' } else { ',' });
        first = false;
    };
    for kv in attrs {
        open(out);
        out.push_str(&sanitize(kv.key.as_str()));
        out.push_str("=\"");
        escape(out, &value_text(&kv.value));
        out.push('"');
    }
    if let Some((k, v)) = extra {
        open(out);
        let _ = write!(out, "{k}=\"");
        escape(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_string(),
        other => other.to_string(),
    }
}

fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A metric or label name with every character Prometheus does not allow made `_`.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// The Prometheus name of an instrument: sanitised, with its unit as a suffix.
fn metric_name(name: &str, unit: &str) -> String {
    let mut n = sanitize(name);
    let suffix = match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "1" => "ratio",
        u if u.is_empty() || u.starts_with('{') => "",
        u => return format!("{n}_{}", sanitize(u)),
    };
    if !suffix.is_empty() && !n.ends_with(suffix) {
        n.push('_');
        n.push_str(suffix);
    }
    n
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    #[test]
    fn names_follow_the_compatibility_rules() {
        assert_eq!(
            metric_name("http.server.request.duration", "s"),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("outpost.http.response.body.bytes", "By"),
            "outpost_http_response_body_bytes"
        );
        assert_eq!(
            metric_name("outpost.cache.objects", "{object}"),
            "outpost_cache_objects"
        );
        assert_eq!(
            metric_name("system.cpu.utilization", "1"),
            "system_cpu_utilization_ratio"
        );
        assert_eq!(sanitize("9bad-name"), "_9bad_name");
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let reader = PrometheusReader::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("edge \"eu\"")
                    .build(),
            )
            .build();
        let meter = provider.meter("t");
        let h = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_boundaries(vec![0.005, 0.01])
            .build();
        h.record(0.002, &[KeyValue::new("cdn.cache.status", "hit")]);
        h.record(0.007, &[KeyValue::new("cdn.cache.status", "hit")]);
        h.record(3.0, &[KeyValue::new("cdn.cache.status", "hit")]);
        let c = meter.u64_counter("outpost.dns.answers").build();
        c.add(5, &[KeyValue::new("dns.region", "eu")]);
        let text = reader.render();
        let want = [
            "# TYPE http_server_request_duration_seconds histogram",
            "http_server_request_duration_seconds_bucket{cdn_cache_status=\"hit\",le=\"0.005\"} 1",
            "http_server_request_duration_seconds_bucket{cdn_cache_status=\"hit\",le=\"0.01\"} 2",
            "http_server_request_duration_seconds_bucket{cdn_cache_status=\"hit\",le=\"+Inf\"} 3",
            "http_server_request_duration_seconds_sum{cdn_cache_status=\"hit\"} 3.009",
            "http_server_request_duration_seconds_count{cdn_cache_status=\"hit\"} 3",
            "# TYPE outpost_dns_answers_total counter",
            "outpost_dns_answers_total{dns_region=\"eu\"} 5",
            "service_name=\"edge \\\"eu\\\"\"",
        ];
        for w in want {
            assert!(text.contains(w), "missing {w:?} in\n{text}");
        }
        // Cumulative: a second scrape still carries the first one's counts.
        c.add(1, &[KeyValue::new("dns.region", "eu")]);
        assert!(reader
            .render()
            .contains("outpost_dns_answers_total{dns_region=\"eu\"} 6"));
        provider.shutdown().unwrap();
        assert_eq!(reader.render(), "");
    }
}

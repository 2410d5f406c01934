//! Criterion benchmark of what telemetry adds to one request, piece by piece: the head-sampling
//! decision, recording the HTTP server metrics (through the OpenTelemetry SDK), and a recorded
//! server span (created, entered, closed and queued for export through tracing-opentelemetry
//! and the bounded export queue). Compare with the whole request's CPU cost from
//! `benches/load/telemetry.sh`. Run: `cargo bench -p agent --bench telemetry_cost`.

use agent::batch::{BatchOptions, QueueSpanProcessor, SignalStats};
use agent::propagation::{decide, Decision};
use criterion::{criterion_group, criterion_main, Criterion};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

/// An exporter that accepts and forgets: the bench measures the request side, not the wire.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn sampling(c: &mut Criterion) {
    let mut h = http::HeaderMap::new();
    h.insert("host", http::HeaderValue::from_static("example.com"));
    c.bench_function("decide: no traceparent", |b| {
        b.iter(|| black_box(decide(black_box(&h)) == Decision::Record))
    });
    h.insert(
        "traceparent",
        http::HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
    );
    c.bench_function("decide: unsampled traceparent", |b| {
        b.iter(|| black_box(decide(black_box(&h)) == Decision::Record))
    });
}

fn metrics(c: &mut Criterion) {
    // What a node records per request (edge-node's `NodeMetrics::request`): one bound
    // histogram and one bound counter, bound to the request's attribute set on first use.
    let registry = agent::metrics::Registry::default();
    let meter = registry.meter();
    let attrs = [
        opentelemetry::KeyValue::new("cdn.tier", "edge"),
        opentelemetry::KeyValue::new("cdn.site", "www"),
        opentelemetry::KeyValue::new("cdn.cache.status", "hit"),
        opentelemetry::KeyValue::new("http.request.method", "GET"),
        opentelemetry::KeyValue::new("http.response.status_class", "2xx"),
    ];
    let duration = meter
        .f64_histogram(agent::metrics::names::HTTP_SERVER_DURATION)
        .with_unit("s")
        .with_boundaries(agent::metrics::DURATION_BUCKETS.to_vec())
        .build()
        .bind(&attrs);
    let bytes = meter
        .u64_counter(agent::metrics::names::RESPONSE_BYTES)
        .with_unit("By")
        .build()
        .bind(&attrs[..3]);
    c.bench_function("metrics: record one request", |b| {
        b.iter(|| {
            duration.record(black_box(0.0004));
            bytes.add(black_box(1024));
        })
    });
    registry.shutdown();
}

fn spans(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let opts = BatchOptions {
        queue_size: 65_536,
        batch_size: 512,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    };
    let resource = opentelemetry_sdk::Resource::builder().build();
    let stats = Arc::new(SignalStats::default());
    let p = QueueSpanProcessor::new(rt.handle(), Discard, opts, stats, &resource);
    let provider = SdkTracerProvider::builder().with_span_processor(p).build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("span: recorded server span", |b| {
            b.iter(|| {
                let span = tracing::info_span!(
                    "request",
                    otel.name = "GET",
                    otel.kind = "server",
                    http.request.method = "GET",
                    url.path = "/bytes/1024",
                    url.scheme = "http",
                    server.address = "example.com",
                    client.address = "127.0.0.1",
                    network.protocol.version = "1.1",
                    http.response.status_code = tracing::field::Empty,
                    cdn.tier = "edge",
                    cdn.cache.status = tracing::field::Empty,
                    cdn.purge.version = 7u64,
                );
                {
                    let _g = span.enter();
                }
                span.record("http.response.status_code", 200);
                span.record("cdn.cache.status", "hit");
                drop(span);
            })
        });
    });
    let _ = provider.shutdown();
    drop(rt);
}

criterion_group!(
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = sampling, metrics, spans
);
criterion_main!(benches);

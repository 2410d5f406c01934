//! Installing telemetry for a process: the tracing subscriber (stderr logs with trace ids,
//! spans to OTLP traces, events to OTLP logs) and the OpenTelemetry meter provider (OTLP
//! metrics), all exporting from a small runtime of their own so that no export ever runs on,
//! or waits for, a serving thread.

use crate::batch::{BatchOptions, QueueLogProcessor, QueueSpanProcessor, SignalStats};
use crate::config::{Protocol, TelemetryConfig};
use crate::export_report::{reported_here, Reported};
use crate::logfmt::{StderrFormat, TraceIdFormat};
use crate::logopts::LogOptions;
use crate::metrics::Registry;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Crates whose own events must never reach the OTLP log exporter: exporting their logs makes
/// every export produce more logs (the exporter's transport is built from them).
pub const EXPORTER_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
];

/// Crates whose spans become OTLP traces.
const SPAN_TARGETS: &[&str] = &["edge_node", "origin_shield", "geo_dns", "agent", "outpost"];

static TRACES_ON: AtomicBool = AtomicBool::new(false);
static LOGS_ON: AtomicBool = AtomicBool::new(false);

/// The target of access log records: exported as OTLP log records when logs are exported,
/// never written to stderr (the access log has its own file).
pub const ACCESS_TARGET: &str = "outpost_access";

/// Whether log records are exported over OTLP (so access log lines become log records).
pub fn logs_exported() -> bool {
    LOGS_ON.load(Relaxed)
}
/// `sampling_ratio` as f64 bits.
static RATIO_BITS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0x3FF0_0000_0000_0000);

/// Whether a request that arrives without a trace context is recorded (`sampling_ratio`).
pub fn sample_root() -> bool {
    let ratio = f64::from_bits(RATIO_BITS.load(Relaxed));
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    ((random_u64() >> 11) as f64 / (1u64 << 53) as f64) < ratio
}

/// A fast per-thread pseudo-random number (xorshift64*), for sampling and ids of unsampled
/// traces; not for anything secret.
pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let thread = std::thread::current().id();
            let h = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), thread);
            (t ^ h) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}
/// Whether request spans are exported: the request path creates its spans only then, so
/// a node without OTLP pays nothing for them.
#[inline]
pub fn traces_enabled() -> bool {
    TRACES_ON.load(Relaxed)
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An exporter could not be built (bad endpoint and the like).
    #[error("telemetry: cannot build the OTLP {signal} exporter: {detail}")]
    Exporter {
        /// traces, metrics or logs.
        signal: &'static str,
        /// The exporter's message.
        detail: String,
    },
    /// The telemetry runtime could not start.
    #[error("telemetry: cannot start the export thread: {0}")]
    Runtime(std::io::Error),
    /// A global subscriber was already installed.
    #[error("telemetry: a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Counters of the export pipelines, for `/metrics` and the `outpost.telemetry.*` metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Spans.
    pub spans: Arc<SignalStats>,
    /// Log records.
    pub logs: Arc<SignalStats>,
    /// Metric exports that failed (each carries every metric of one interval).
    pub metric_failures: std::sync::atomic::AtomicU64,
}

impl ExportStats {
    /// Registers the export counters as observable instruments (`outpost.telemetry.*`).
    fn register(self: &Arc<Self>, meter: &opentelemetry::metrics::Meter) {
        let s = self.clone();
        let _ = meter
            .u64_observable_counter(crate::metrics::names::TELEMETRY_DROPPED)
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
        let s = self.clone();
        let _ = meter
            .u64_observable_counter(crate::metrics::names::TELEMETRY_EXPORTED)
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
        let s = self.clone();
        let _ = meter
            .u64_observable_counter(crate::metrics::names::TELEMETRY_FAILED)
            .with_description("Export requests that failed or timed out.")
            .with_callback(move |o| {
                for (sig, n) in [
                    ("spans", s.spans.failed_exports.load(Relaxed)),
                    ("logs", s.logs.failed_exports.load(Relaxed)),
                    ("metrics", s.metric_failures.load(Relaxed)),
                ] {
                    o.observe(n, &[KeyValue::new("signal", sig)]);
                }
            })
            .build();
    }
}

/// Installed telemetry; `shutdown` flushes what is queued.
pub struct Telemetry {
    runtime: Option<tokio::runtime::Runtime>,
    resource: Resource,
    tracer: Option<SdkTracerProvider>,
    metrics: Registry,
    logger: Option<SdkLoggerProvider>,
    stats: Arc<ExportStats>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.tracer.is_some())
            .field("metrics", &self.metrics)
            .field("logs", &self.logger.is_some())
            .finish()
    }
}

/// The resource of every signal this process emits.
pub fn resource(cfg: &TelemetryConfig, extra: &[(&'static str, String)]) -> Resource {
    let mut attrs = vec![KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION").to_string(),
    )];
    if let Some(r) = &cfg.region {
        attrs.push(KeyValue::new("cdn.region", r.clone()));
        attrs.push(KeyValue::new("cloud.region", r.clone()));
    }
    let node = cfg.node_id.clone().or_else(host_name);
    if let Some(n) = node {
        attrs.push(KeyValue::new("service.instance.id", n.clone()));
        attrs.push(KeyValue::new("host.name", n));
    }
    for (k, v) in extra {
        attrs.push(KeyValue::new(*k, v.clone()));
    }
    for (k, v) in &cfg.resource {
        attrs.push(KeyValue::new(k.clone(), v.clone()));
    }
    Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attributes(attrs)
        .build()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn env_filter(directives: &str) -> EnvFilter {
    EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

impl Telemetry {
    /// Installs the global subscriber and, when `cfg` names an OTLP endpoint, the exporters.
    /// `extra` adds resource attributes the caller knows (such as `cdn.tier`).
    pub fn init(
        cfg: Option<&TelemetryConfig>,
        extra: &[(&'static str, String)],
        log: &LogOptions,
    ) -> Result<Telemetry, TelemetryError> {
        let stats = Arc::new(ExportStats::default());
        let exporting = cfg.filter(|c| c.exports());
        crate::throttle::set_default_interval(log.repeat_interval);
        let stderr_layer = {
            let ansi = log.colours(std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi);
            let layer: Box<dyn Layer<_> + Send + Sync> = if log.json {
                fmt.event_format(StderrFormat).boxed()
            } else {
                fmt.event_format(TraceIdFormat::new(exporting.is_some()))
                    .boxed()
            };
            // The SDK's own line per failed export is reported once per interval instead.
            let not_reported = filter_fn(|m| !reported_here(m));
            let filter = env_filter(&format!("{},{ACCESS_TARGET}=off", log.filter));
            layer.with_filter(filter.and(not_reported))
        };
        let Some(cfg) = exporting else {
            tracing_subscriber::registry()
                .with(stderr_layer)
                .try_init()
                .map_err(|_| TelemetryError::AlreadyInstalled)?;
            log.report_problems();
            // No collector: the instruments still exist, for the admin /metrics alone.
            let defaults = TelemetryConfig::default();
            let resource = resource(cfg.unwrap_or(&defaults), extra);
            return Ok(Telemetry {
                runtime: None,
                metrics: Registry::new(resource.clone()),
                resource,
                tracer: None,
                logger: None,
                stats,
            });
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("outpost-telemetry")
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let rt = runtime.handle().clone();
        // The gRPC exporters start their connection task on the runtime that builds them.
        let _enter = rt.enter();
        let resource = resource(cfg, extra);
        let opts = BatchOptions {
            queue_size: cfg.queue_size,
            batch_size: cfg.batch_size,
            interval: cfg.batch_interval.0,
            timeout: cfg.export_timeout.0,
        };
        let tracer = if cfg.traces {
            let exporter = reported(span_exporter(cfg)?, cfg, "traces");
            let p = QueueSpanProcessor::new(&rt, exporter, opts, stats.spans.clone(), &resource);
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(p)
                    // Requests are head-sampled where they enter (`propagation::decide`):
                    // unsampled ones make no span, so whatever reaches the SDK is recorded.
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };
        let logger = if cfg.logs {
            let exporter = reported(log_exporter(cfg)?, cfg, "logs");
            let p = QueueLogProcessor::new(&rt, exporter, opts, stats.logs.clone(), &resource);
            Some(
                SdkLoggerProvider::builder()
                    .with_log_processor(p)
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };
        let reader = if cfg.metrics {
            let exporter = OnRuntime {
                inner: reported(metric_exporter(cfg)?, cfg, "metrics"),
                rt: rt.clone(),
                stats: stats.clone(),
            };
            Some(
                PeriodicReader::builder(exporter)
                    .with_interval(cfg.metrics_interval.0)
                    .build(),
            )
        } else {
            None
        };
        let metrics = Registry::build(resource.clone(), reader);
        stats.register(&metrics.meter());

        let span_filter = SPAN_TARGETS
            .iter()
            .fold(Targets::new(), |t, c| t.with_target(*c, LevelFilter::INFO));
        let trace_layer = tracer.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("outpost"))
                // Per-span extras the request path does not need: each costs clock reads or
                // attributes on every span.
                .with_threads(false)
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_level(false)
                .with_filter(span_filter)
        });
        let log_layer = logger.as_ref().map(|p| {
            let off: String = EXPORTER_TARGETS
                .iter()
                .map(|t| format!(",{t}=off"))
                .collect();
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(p)
                .with_filter(env_filter(&format!("{}{off}", log.filter)))
        });
        tracing_subscriber::registry()
            .with(stderr_layer)
            .with(trace_layer)
            .with(log_layer)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        log.report_problems();
        RATIO_BITS.store(cfg.sampling_ratio.clamp(0.0, 1.0).to_bits(), Relaxed);
        TRACES_ON.store(tracer.is_some(), Relaxed);
        LOGS_ON.store(logger.is_some(), Relaxed);
        drop(_enter);
        Ok(Telemetry {
            runtime: Some(runtime),
            resource,
            tracer,
            metrics,
            logger,
            stats,
        })
    }

    /// The instruments of this node: register on its meter, render it on `/metrics`.
    pub fn metrics(&self) -> Registry {
        self.metrics.clone()
    }

    /// The export runtime and the resource, when OTLP export is on (the `[agent]` role
    /// ships through them).
    pub fn export_runtime(&self) -> Option<(tokio::runtime::Handle, &Resource)> {
        self.runtime
            .as_ref()
            .map(|rt| (rt.handle().clone(), &self.resource))
    }

    /// The export counters.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats.clone()
    }

    /// Whether anything is exported.
    pub fn exporting(&self) -> bool {
        self.runtime.is_some()
    }

    /// Sends what is queued (bounded by each export's timeout) and stops the exporters.
    /// Call it outside any async runtime.
    pub fn shutdown(mut self) {
        TRACES_ON.store(false, Relaxed);
        LOGS_ON.store(false, Relaxed);
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown_with_timeout(Duration::from_secs(5));
        }
        if let Some(l) = self.logger.take() {
            let _ = l.shutdown_with_timeout(Duration::from_secs(5));
        }
        self.metrics.shutdown();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Builds one signal's OTLP exporter: the three exporter builders share no trait, so one macro
/// keeps the transport choice (gRPC with metadata, HTTP with headers) in one place.
macro_rules! otlp_exporter {
    ($exporter:ty, $cfg:expr, $signal:literal) => {{
        let cfg: &TelemetryConfig = $cfg;
        let ep = cfg.signal_endpoint($signal).unwrap_or_default();
        let timeout = cfg.export_timeout.0;
        let r = match cfg.protocol {
            Protocol::Grpc => <$exporter>::builder()
                .with_tonic()
                .with_endpoint(ep)
                .with_timeout(timeout)
                .with_metadata(metadata(cfg))
                .build(),
            Protocol::Http => <$exporter>::builder()
                .with_http()
                .with_endpoint(ep)
                .with_timeout(timeout)
                .with_headers(cfg.headers.clone().into_iter().collect())
                .build(),
        };
        r.map_err(|e| TelemetryError::Exporter {
            signal: $signal,
            detail: e.to_string(),
        })
    }};
}

/// `exporter` with its failures logged once per interval, naming the signal's endpoint.
fn reported<E>(exporter: E, cfg: &TelemetryConfig, signal: &'static str) -> Reported<E> {
    let endpoint = cfg.signal_endpoint(signal).unwrap_or_default();
    Reported::new(exporter, signal, &endpoint)
}

fn span_exporter(
    cfg: &TelemetryConfig,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    otlp_exporter!(opentelemetry_otlp::SpanExporter, cfg, "traces")
}

pub(crate) fn log_exporter(
    cfg: &TelemetryConfig,
) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
    otlp_exporter!(opentelemetry_otlp::LogExporter, cfg, "logs")
}

fn metric_exporter(
    cfg: &TelemetryConfig,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    otlp_exporter!(opentelemetry_otlp::MetricExporter, cfg, "metrics")
}

fn metadata(cfg: &TelemetryConfig) -> tonic::metadata::MetadataMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in &cfg.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    tonic::metadata::MetadataMap::from_headers(h)
}

/// The metric exporter, polled by the SDK's reader thread, with the telemetry runtime entered
/// on every poll: the async HTTP client and the gRPC channel need a Tokio reactor, and the
/// reader thread has none. Failed exports are counted.
struct OnRuntime<E> {
    inner: E,
    rt: tokio::runtime::Handle,
    stats: Arc<ExportStats>,
}

struct Entered<F> {
    fut: std::pin::Pin<Box<F>>,
    rt: tokio::runtime::Handle,
}

impl<F: std::future::Future> std::future::Future for Entered<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let _g = self.rt.enter();
        self.fut.as_mut().poll(cx)
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for OnRuntime<E>
{
    #[allow(clippy::manual_async_fn)]
    fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        async move {
            let r = Entered {
                fut: Box::pin(self.inner.export(metrics)),
                rt: self.rt.clone(),
            }
            .await;
            if r.is_err() {
                self.stats.metric_failures.fetch_add(1, Relaxed);
            }
            r
        }
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

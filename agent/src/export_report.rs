//! Failed OTLP exports on stderr: once when the collector goes away, then one line per
//! interval with a count, and a line when it takes data again ([`crate::throttle`]).
//!
//! The OpenTelemetry SDK and exporter report a failed export themselves, as tracing events
//! of their own (`opentelemetry-otlp` "Export.Failed.*" after its retries,
//! `opentelemetry_sdk` "PeriodicReader.ExportError"), one per export and signal: with the
//! collector down, several lines every few seconds. They never report a recovery. So each
//! exporter is wrapped in [`Reported`], which sees every export's outcome, and those events
//! are kept off stderr ([`reported_here`]).

use crate::throttle::RepeatedWarning;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use std::future::Future;
use std::time::Duration;

/// An exporter whose failures and recovery are logged through a [`RepeatedWarning`].
#[derive(Debug)]
pub(crate) struct Reported<E> {
    inner: E,
    warning: RepeatedWarning,
}

impl<E> Reported<E> {
    /// Wraps the exporter of `signal` (traces, metrics, logs) sending to `endpoint`.
    pub(crate) fn new(inner: E, signal: &str, endpoint: &str) -> Self {
        Self {
            inner,
            warning: RepeatedWarning::new(
                format!("cannot export {signal} to the OTLP collector {endpoint}"),
                format!("OTLP collector {endpoint} takes {signal} again"),
            ),
        }
    }

    async fn report(&self, export: impl Future<Output = OTelSdkResult>) -> OTelSdkResult {
        let mut pending = Pending(Some(&self.warning));
        let r = export.await;
        if let Some(w) = pending.0.take() {
            log_report!(w.record(&r));
        }
        r
    }
}

/// An export in flight: dropped unfinished (the export queue's own timeout gave up on it),
/// it counts as a failure.
struct Pending<'a>(Option<&'a RepeatedWarning>);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            log_report!(w.failed("no answer within the export timeout"));
        }
    }
}

/// Whether `meta` is one of the SDK's own events about a failed export, which [`Reported`]
/// reports instead.
pub(crate) fn reported_here(meta: &tracing::Metadata<'_>) -> bool {
    let name = meta.name();
    meta.target().starts_with("opentelemetry")
        && (name.starts_with("Export.Failed") || name.ends_with("ExportError"))
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.report(self.inner.export(batch))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Reported<E> {
    fn export(&self, batch: LogBatch<'_>) -> impl Future<Output = OTelSdkResult> + Send {
        self.report(self.inner.export(batch))
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Reported<E> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        self.report(self.inner.export(metrics))
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Default)]
    struct Flaky(AtomicBool);

    impl SpanExporter for Flaky {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            if self.0.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(OTelSdkError::InternalFailure("connection refused".into()))
            }
        }
    }

    #[derive(Debug)]
    struct Hang;

    impl SpanExporter for Hang {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn export_outcomes_reach_the_warning() {
        let r = Reported::new(Flaky::default(), "traces", "http://127.0.0.1:4317");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(r.export(Vec::new())).is_err());
        assert!(r.warning.is_failing());
        assert_eq!(
            r.warning.condition(),
            "cannot export traces to the OTLP collector http://127.0.0.1:4317"
        );
        r.inner.0.store(true, Ordering::Relaxed);
        assert!(rt.block_on(r.export(Vec::new())).is_ok());
        assert!(!r.warning.is_failing(), "recovered");
        // An export given up on (dropped before it finished) is a failure.
        let hung = Reported::new(Hang, "traces", "http://127.0.0.1:4317");
        drop(hung.export(Vec::new()));
        assert!(
            !hung.warning.is_failing(),
            "a future never polled sent nothing"
        );
        let mut f = Box::pin(hung.export(Vec::new()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        drop(f);
        assert!(hung.warning.is_failing());
    }
}

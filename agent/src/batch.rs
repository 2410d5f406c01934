//! Bounded export queues for spans and log records, run off the request path.
//!
//! The SDK's batch processors count the items they drop but keep the count private; Outpost
//! must expose it as a metric, so this is a small processor of its own: `on_end`/`emit` only
//! `try_send` into a bounded lock-free channel (never blocking, never allocating beyond the
//! item, never waking a thread per item), and a task on the telemetry runtime sends batches of
//! up to `batch_size` every `batch_interval`, or as soon as a full batch is waiting.
//! A full queue drops the newest item; a failed or timed-out export drops its batch. Both are
//! counted in [`SignalStats`].

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Counters of one signal's export pipeline.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Items handed to the exporter and acknowledged.
    pub exported: AtomicU64,
    /// Items dropped: queue full, or their export failed.
    pub dropped: AtomicU64,
    /// Export requests that failed or timed out.
    pub failed_exports: AtomicU64,
}

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Items held while waiting.
    pub queue_size: usize,
    /// Most items per export.
    pub batch_size: usize,
    /// Longest wait before a partial batch goes.
    pub interval: Duration,
    /// Longest time one export may take.
    pub timeout: Duration,
}

/// Sends batches of `T` with an async export function.
trait Export<T>: Send + 'static {
    fn export(&mut self, batch: Vec<T>) -> impl std::future::Future<Output = OTelSdkResult> + Send;
    fn set_resource(&mut self, resource: &Resource);
}

/// The producer side shared by the span and log processors.
///
/// Items go into a lock-free bounded channel that wakes nobody: the export task drains it on
/// its interval, or early when a producer sees a full batch waiting (one wake-up per batch,
/// not per item, so a traced request costs no cross-thread wake-up).
#[derive(Debug)]
struct Queue<T> {
    tx: crossbeam_channel::Sender<T>,
    /// Rung when a full batch is waiting.
    ready: Arc<tokio::sync::Notify>,
    batch_size: usize,
    /// Flush requests, apart from items so that a full queue cannot block them.
    ctl: mpsc::UnboundedSender<oneshot::Sender<()>>,
    stats: Arc<SignalStats>,
}

impl<T: Send + 'static> Queue<T> {
    fn start<E: Export<T>>(
        rt: &tokio::runtime::Handle,
        mut exporter: E,
        opts: BatchOptions,
        stats: Arc<SignalStats>,
        resource: &Resource,
    ) -> Self {
        exporter.set_resource(resource);
        let batch_size = opts.batch_size.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<T>(opts.queue_size.max(1));
        let ready = Arc::new(tokio::sync::Notify::new());
        let (ctl, mut ctl_rx) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let st = stats.clone();
        let woken = ready.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(opts.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let flushed = tokio::select! {
                    () = woken.notified() => None,
                    m = ctl_rx.recv() => match m {
                        Some(done) => Some(done),
                        None => break,
                    },
                    _ = tick.tick() => None,
                };
                // On a flush send everything queued now; otherwise full batches plus one
                // partial batch per tick.
                loop {
                    let send: Vec<T> = rx.try_iter().take(batch_size).collect();
                    if send.is_empty() {
                        break;
                    }
                    let len = send.len() as u64;
                    match tokio::time::timeout(opts.timeout, exporter.export(send)).await {
                        Ok(Ok(())) => {
                            st.exported.fetch_add(len, Relaxed);
                        }
                        _ => {
                            st.dropped.fetch_add(len, Relaxed);
                            st.failed_exports.fetch_add(1, Relaxed);
                        }
                    }
                    if flushed.is_none() && rx.len() < batch_size {
                        break;
                    }
                }
                if let Some(done) = flushed {
                    let _ = done.send(());
                }
            }
        });
        Self {
            tx,
            ready,
            batch_size,
            ctl,
            stats,
        }
    }

    fn push(&self, item: T) {
        match self.tx.try_send(item) {
            Ok(()) => {
                // At most one wake-up per drain: once woken, the task empties the queue below a
                // batch; until then a further notify only stores a permit.
                if self.tx.len() >= self.batch_size {
                    self.ready.notify_one();
                }
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    fn flush(&self, timeout: Duration) -> OTelSdkResult {
        let (done, wait) = oneshot::channel();
        self.ctl
            .send(done)
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        // Called from shutdown paths, never from a request: a short blocking wait is fine,
        // but never on a runtime thread (that would stall the runtime).
        if tokio::runtime::Handle::try_current().is_ok() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(futures_block_on(wait));
        });
        match rx.recv_timeout(timeout) {
            Ok(_) => Ok(()),
            Err(_) => Err(OTelSdkError::Timeout(timeout)),
        }
    }
}

/// Waits for a oneshot without a runtime.
fn futures_block_on(rx: oneshot::Receiver<()>) -> Result<(), oneshot::error::RecvError> {
    rx.blocking_recv()
}

struct Spans<E>(E);

impl<E: SpanExporter + 'static> Export<SpanData> for Spans<E> {
    fn export(
        &mut self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.export(batch)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// A span processor with a bounded queue and a drop counter.
#[derive(Debug)]
pub struct QueueSpanProcessor {
    q: Queue<SpanData>,
}

impl QueueSpanProcessor {
    /// Starts the export task on `rt`.
    pub fn new<E: SpanExporter + 'static>(
        rt: &tokio::runtime::Handle,
        exporter: E,
        opts: BatchOptions,
        stats: Arc<SignalStats>,
        resource: &Resource,
    ) -> Self {
        Self {
            q: Queue::start(rt, Spans(exporter), opts, stats, resource),
        }
    }
}

impl SpanProcessor for QueueSpanProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.q.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.q.flush(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.q.flush(timeout)
    }
}

struct Logs<E>(E);

type OwnedLog = Box<(SdkLogRecord, InstrumentationScope)>;

impl<E: LogExporter + 'static> Export<OwnedLog> for Logs<E> {
    #[allow(clippy::manual_async_fn)]
    fn export(
        &mut self,
        batch: Vec<OwnedLog>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        async move {
            let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                batch.iter().map(|b| (&b.0, &b.1)).collect();
            self.0.export(LogBatch::new(&refs)).await
        }
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// A log processor with a bounded queue and a drop counter.
#[derive(Debug)]
pub struct QueueLogProcessor {
    q: Queue<OwnedLog>,
}

impl QueueLogProcessor {
    /// Starts the export task on `rt`.
    pub fn new<E: LogExporter + 'static>(
        rt: &tokio::runtime::Handle,
        exporter: E,
        opts: BatchOptions,
        stats: Arc<SignalStats>,
        resource: &Resource,
    ) -> Self {
        Self {
            q: Queue::start(rt, Logs(exporter), opts, stats, resource),
        }
    }
}

impl LogProcessor for QueueLogProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        self.q
            .push(Box::new((data.clone(), instrumentation.clone())));
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.q.flush(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.q.flush(timeout)
    }
}

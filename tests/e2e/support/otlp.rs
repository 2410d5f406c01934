//! A real OTLP/gRPC receiver for the tests (tonic with the opentelemetry-proto types, decoding
//! the real protobufs): it keeps every span, metric and log record it is sent, each with the
//! `service.name` of its resource, and can go down and come back on the same address.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got, each item with the `service.name` of its resource (and logs with
/// their instrumentation scope).
#[derive(Default)]
pub struct Received {
    pub spans: Mutex<Vec<(String, Span)>>,
    pub metrics: Mutex<Vec<(String, Metric)>>,
    pub logs: Mutex<Vec<(String, String, LogRecord)>>,
}

impl Received {
    /// The string bodies of the log records, in arrival order.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, l)| match l.body.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// The names of the metrics received, in arrival order.
    pub fn metric_names(&self) -> Vec<String> {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.name.clone())
            .collect()
    }
}

/// An attribute's value as text (strings, ints, bools, doubles).
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The `service.name` of a resource (empty if none).
pub fn service_of(r: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    r.and_then(|r| attr(&r.attributes, "service.name"))
        .unwrap_or_default()
}

#[derive(Clone)]
struct Receiver(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let svc = service_of(rs.resource.as_ref());
            for ss in rs.scope_spans {
                spans.extend(ss.spans.into_iter().map(|s| (svc.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.0.metrics.lock().unwrap();
        for rm in req.into_inner().resource_metrics {
            let svc = service_of(rm.resource.as_ref());
            for sm in rm.scope_metrics {
                metrics.extend(sm.metrics.into_iter().map(|m| (svc.clone(), m)));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = self.0.logs.lock().unwrap();
        for rl in req.into_inner().resource_logs {
            let svc = service_of(rl.resource.as_ref());
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.name).unwrap_or_default();
                logs.extend(
                    sl.log_records
                        .into_iter()
                        .map(|l| (svc.clone(), scope.clone(), l)),
                );
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A running receiver; dropping it stops it too.
pub struct Collector {
    pub addr: std::net::SocketAddr,
    pub got: Arc<Received>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Starts a receiver on `addr` (`127.0.0.1:0` for any port).
    pub async fn start(addr: &str) -> Collector {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Received::default());
        let r = Receiver(got.clone());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(r.clone()))
                .add_service(MetricsServiceServer::new(r.clone()))
                .add_service(LogsServiceServer::new(r))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l),
                    async {
                        let _ = rx.await;
                    },
                )
                .await
                .unwrap();
        });
        Collector {
            addr,
            got,
            stop,
            task,
        }
    }

    /// Stops serving and closes every connection: the collector is down. Returns what it got.
    pub async fn down(self) -> Arc<Received> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("collector stops")
            .unwrap();
        self.got
    }
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `limit`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

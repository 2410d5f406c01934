//! The `[telemetry]` config section: serde struct, defaults in one place, and a `validate()`
//! that returns every problem at once, each naming its key path (the binary turns the path into
//! `FILE:LINE`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::units::{ByteSize, Dur};

/// One problem found in a config section: the dotted key path and what is wrong. Every role's
/// section reports its problems with this type (the binary turns the path into `FILE:LINE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the offending key, with array indices (`edge.sites[0].origins[1]`).
    pub path: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention); `/v1/traces`, `/v1/metrics`
    /// and `/v1/logs` are appended to the endpoint.
    Http,
}

/// The `[telemetry]` section, shared by every role of a process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `service.name` of everything this node emits.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// `cdn.region` resource attribute (and `cloud.region`).
    #[serde(default)]
    pub region: Option<String>,
    /// `service.instance.id`: this node's name, unique in the cluster (default: the host name).
    #[serde(default)]
    pub node_id: Option<String>,
    /// OTLP collector endpoint (`http://127.0.0.1:4317`); absent: no OTLP export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `"grpc"` or `"http"` (HTTP/protobuf).
    #[serde(default)]
    pub protocol: Protocol,
    /// Extra headers (gRPC metadata) sent with every export, e.g. an API key.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra resource attributes on everything this node emits.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Share of traces started here that are recorded (0.0 to 1.0); a request that arrives
    /// with a `traceparent` follows the caller's decision.
    #[serde(default = "defaults::sampling_ratio")]
    pub sampling_ratio: f64,
    /// Export spans.
    #[serde(default = "defaults::yes")]
    pub traces: bool,
    /// Export metrics.
    #[serde(default = "defaults::yes")]
    pub metrics: bool,
    /// Export logs.
    #[serde(default = "defaults::yes")]
    pub logs: bool,
    /// Time between metric exports.
    #[serde(default = "defaults::metrics_interval")]
    pub metrics_interval: Dur,
    /// Longest wait before a batch of spans or logs is sent.
    #[serde(default = "defaults::batch_interval")]
    pub batch_interval: Dur,
    /// Longest time one export may take.
    #[serde(default = "defaults::export_timeout")]
    pub export_timeout: Dur,
    /// Spans (and, separately, log records) held while waiting for export; beyond it new
    /// items are dropped and counted, never waited for.
    #[serde(default = "defaults::queue_size")]
    pub queue_size: usize,
    /// Most items per export request.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
}

mod defaults {
    use super::*;
    pub fn service_name() -> String {
        "outpost".into()
    }
    pub fn sampling_ratio() -> f64 {
        0.01
    }
    pub fn yes() -> bool {
        true
    }
    pub fn metrics_interval() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn batch_interval() -> Dur {
        Dur(Duration::from_secs(1))
    }
    pub fn export_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn queue_size() -> usize {
        4096
    }
    pub fn batch_size() -> usize {
        512
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            service_name: defaults::service_name(),
            region: None,
            node_id: None,
            otlp_endpoint: None,
            protocol: Protocol::default(),
            headers: BTreeMap::new(),
            resource: BTreeMap::new(),
            sampling_ratio: defaults::sampling_ratio(),
            traces: true,
            metrics: true,
            logs: true,
            metrics_interval: defaults::metrics_interval(),
            batch_interval: defaults::batch_interval(),
            export_timeout: defaults::export_timeout(),
            queue_size: defaults::queue_size(),
            batch_size: defaults::batch_size(),
        }
    }
}

impl TelemetryConfig {
    /// Whether anything is exported over OTLP.
    pub fn exports(&self) -> bool {
        self.otlp_endpoint.is_some() && (self.traces || self.metrics || self.logs)
    }

    /// The endpoint of one signal: gRPC uses the base URL, HTTP appends `/v1/{signal}`.
    pub fn signal_endpoint(&self, signal: &str) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?;
        Some(match self.protocol {
            Protocol::Grpc => base.to_string(),
            Protocol::Http => format!("{}/v1/{signal}", base.trim_end_matches('/')),
        })
    }

    /// Every problem with this section; `prefix` is its key path (`telemetry`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if self.service_name.trim().is_empty() {
            out.push(ConfigProblem::new(
                format!("{prefix}.service_name"),
                "must not be empty",
            ));
        }
        if let Some(ep) = &self.otlp_endpoint {
            match ep.parse::<http::Uri>() {
                Ok(u)
                    if matches!(u.scheme_str(), Some("http" | "https"))
                        && u.authority().is_some() => {}
                _ => out.push(ConfigProblem::new(
                    format!("{prefix}.otlp_endpoint"),
                    format!("{ep:?} must be a URL like http://127.0.0.1:4317"),
                )),
            }
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            out.push(ConfigProblem::new(
                format!("{prefix}.sampling_ratio"),
                "must be between 0.0 and 1.0",
            ));
        }
        for (k, v) in &self.headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                out.push(ConfigProblem::new(
                    format!("{prefix}.headers.{k}"),
                    "must be a valid header name with a visible ASCII value",
                ));
            }
        }
        for k in self.resource.keys() {
            if k.trim().is_empty() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.resource"),
                    "attribute names must not be empty",
                ));
            }
        }
        if self.queue_size == 0 {
            out.push(ConfigProblem::new(
                format!("{prefix}.queue_size"),
                "must be at least 1",
            ));
        }
        if self.batch_size == 0 || self.batch_size > self.queue_size.max(1) {
            out.push(ConfigProblem::new(
                format!("{prefix}.batch_size"),
                "must be between 1 and queue_size",
            ));
        }
        for (k, d) in [
            ("metrics_interval", self.metrics_interval),
            ("batch_interval", self.batch_interval),
            ("export_timeout", self.export_timeout),
        ] {
            if d.0.is_zero() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.{k}"),
                    "must be longer than 0",
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn validates_every_key() {
        let c: TelemetryConfig = toml_like(
            r#"{"otlp_endpoint":"ftp://x","sampling_ratio":1.5,"queue_size":0,"service_name":" ","headers":{"bad name":"v"}}"#,
        );
        let p: Vec<String> = c
            .validate("telemetry")
            .into_iter()
            .map(|p| p.path)
            .collect();
        for want in [
            "telemetry.otlp_endpoint",
            "telemetry.sampling_ratio",
            "telemetry.queue_size",
            "telemetry.batch_size",
            "telemetry.service_name",
            "telemetry.headers.bad name",
        ] {
            assert!(p.iter().any(|x| x == want), "{want} missing in {p:?}");
        }
        let ok: TelemetryConfig =
            toml_like(r#"{"otlp_endpoint":"http://127.0.0.1:4317","protocol":"http"}"#);
        assert!(ok.validate("telemetry").is_empty());
        assert_eq!(
            ok.signal_endpoint("traces").unwrap(),
            "http://127.0.0.1:4317/v1/traces"
        );
    }

    fn toml_like(json: &str) -> TelemetryConfig {
        serde_json::from_str(json).unwrap()
    }
}

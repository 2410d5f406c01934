//! The `[agent]` config section: host metrics, log files to ship, and the on-disk buffer.

use crate::config::ConfigProblem;
use crate::units::{ByteSize, Dur};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// One log file to ship.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSource {
    /// The file; followed across rotation (a new inode or a shorter file starts again at 0).
    pub path: PathBuf,
}

/// The `[agent]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Export host metrics (CPU, memory, load, filesystems, network) with the node's metrics.
    #[serde(default = "yes")]
    pub host_metrics: bool,
    /// Log files to ship as OTLP log records.
    #[serde(default)]
    pub logs: Vec<LogSource>,
    /// Directory of the on-disk buffer and the tail checkpoints (required with `logs`).
    #[serde(default)]
    pub buffer_dir: Option<PathBuf>,
    /// Largest size of the on-disk buffer; when full, tailing pauses (files keep the lines).
    #[serde(default = "default_buffer")]
    pub buffer_bytes: ByteSize,
    /// How often log files are read.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
}

fn yes() -> bool {
    true
}
fn default_buffer() -> ByteSize {
    ByteSize(256 << 20)
}
fn default_poll() -> Dur {
    Dur(Duration::from_millis(250))
}

impl AgentConfig {
    /// Every problem with this section; `exporting`: whether `[telemetry]` has an endpoint.
    pub fn validate(&self, prefix: &str, exporting: bool) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let p = |k: &str, m: &str| ConfigProblem {
            path: format!("{prefix}.{k}"),
            message: m.to_string(),
        };
        if !exporting {
            out.push(ConfigProblem {
                path: prefix.to_string(),
                message: "the agent forwards over OTLP: set [telemetry] otlp_endpoint".into(),
            });
        }
        if !self.logs.is_empty() && self.buffer_dir.is_none() {
            out.push(p("buffer_dir", "shipping logs needs a buffer_dir"));
        }
        if self.buffer_bytes.0 < 1 << 20 {
            out.push(p("buffer_bytes", "must be at least 1MiB"));
        }
        if self.poll_interval.0.is_zero() {
            out.push(p("poll_interval", "must be longer than 0"));
        }
        for (i, l) in self.logs.iter().enumerate() {
            if !l.path.is_absolute() {
                out.push(p(&format!("logs[{i}].path"), "must be an absolute path"));
            }
        }
        out
    }
}

//! The `[agent]` config section: host metrics, log files to ship, and the on-disk buffer.

use crate::config::{ConfigProblem, Dur};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// A size written as an integer of bytes or a string like `"256MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"512"`, `"64KiB"`, `"256MiB"`, `"1GiB"`, `"1GB"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size like \"256MiB\""))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("{s:?}: unknown unit {u:?}")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

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
    pub buffer_bytes: Size,
    /// How often log files are read.
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
}

fn yes() -> bool {
    true
}
fn default_buffer() -> Size {
    Size(256 << 20)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("lots").is_err());
    }
}

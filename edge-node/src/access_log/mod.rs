//! The access log: one line per request, written off the request path.
//!
//! The request path builds a [`Record`] (a few copied fields and reference-counted clones of
//! the request's URI and headers) and pushes it on a bounded queue (`queue.rs`); a writer
//! thread takes the queue's records in batches, formats them (`format.rs`: `combined`,
//! `json`, or a list of fields) and writes each batch to a file or stderr in one write
//! (`writer.rs`), reopening the file on request (SIGUSR1, for logrotate). A full queue drops
//! the record and counts it: the request never waits on the log, and never wakes the writer. When
//! `[telemetry]` exports logs, each record is also an OTLP log record (target
//! [`agent::ACCESS_TARGET`], which stderr never shows). The same records feed the console's
//! live tail (`tail.rs`) while someone watches it, whether or not a log file is configured.

mod format;
mod queue;
mod record;
mod tail;
mod writer;

pub(crate) use format::Format;
pub(crate) use record::Record;
pub(crate) use tail::{Tail, TailEntry, Watch};

use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

/// `access_log` of `[edge]` or `[shield]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    /// A file (appended to; reopened on SIGUSR1), or `stderr`.
    pub path: String,
    /// `combined` (Apache/nginx), `json`, or field names separated by spaces, written as
    /// `key=value` pairs: `time client site method target protocol status bytes duration
    /// upstream_time cache tier request_id trace_id referer user_agent`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Records waiting for the writer at most; more are dropped (and counted).
    #[serde(default = "default_buffer")]
    pub buffer: usize,
}

fn default_format() -> String {
    "combined".into()
}

fn default_buffer() -> usize {
    16_384
}

impl AccessLogConfig {
    /// Problems of this section, as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = Format::parse(&self.format) {
            out.push(("format", e));
        }
        if self.buffer == 0 || self.buffer > 1 << 24 {
            out.push((
                "buffer",
                format!("{} records: use 1 to 16777216", self.buffer),
            ));
        }
        if self.path.is_empty() {
            out.push(("path", "empty: a file path, or \"stderr\"".into()));
        }
        out
    }
}

/// A node's access log: where its records go.
pub(crate) struct AccessLog {
    queue: Arc<queue::Queue>,
    dropped: Arc<AtomicU64>,
    /// Joined when the log is dropped, so what was queued is written.
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens the log of `cfg` and starts its writer thread; drops add to `dropped`.
    pub(crate) fn open(cfg: &AccessLogConfig, dropped: Arc<AtomicU64>) -> Result<Self, String> {
        let format = Format::parse(&cfg.format)?;
        let out = writer::Output::open(&cfg.path)?;
        let queue = Arc::new(queue::Queue::new(cfg.buffer));
        let q = queue.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer::run(&q, out, format))
            .map_err(|e| format!("cannot start the access log writer: {e}"))?;
        Ok(Self {
            queue,
            dropped,
            writer: Some(writer),
        })
    }

    /// Offers `r` to the writer; a full queue drops it (counted).
    pub(crate) fn record(&self, r: Record) {
        if !self.queue.push(r) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub(crate) fn reopen(&self) {
        self.queue.reopen();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A request id unique in practice: per thread, a random 32-bit prefix and a counter (no
/// shared counter for the threads to contend on).
pub(crate) fn next_request_id() -> u64 {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = std::cell::Cell::new({
            let seed = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ u64::from(std::process::id()).rotate_left(32);
            let thread = format!("{:?}", std::thread::current().id());
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(thread.as_bytes(), seed);
            h << 32
        });
    }
    NEXT.with(|n| {
        let v = n.get();
        n.set(v.wrapping_add(1));
        v
    })
}

//! The `[agent]` role: host metrics, and log files shipped over OTLP through a bounded
//! on-disk buffer.
//!
//! Pipeline (after Vector's sources -> buffer -> sinks): one tailer thread reads the configured
//! files from their checkpoints and appends whole lines to the [`buffer::DiskBuffer`] (fsync),
//! then saves the checkpoints; one shipper thread sends the buffer in order, in batches, as
//! OTLP log records, acknowledging a batch only once the collector accepted it, and retrying
//! with backoff (up to 5 s between tries) while it is down. When the buffer is full, the
//! tailer pauses: the lines stay in their files and are read later, so nothing is dropped.
//! A restart resumes from the checkpoints and the acknowledged position: nothing is lost,
//! and a line is sent twice only if the process stopped between sending a batch and saving
//! its acknowledgement (or between buffering lines and saving their checkpoint).

pub mod buffer;
pub mod config;
pub mod host;

use crate::throttle::RepeatedWarning;
use buffer::{DiskBuffer, Record};
use config::AgentConfig;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Lines per export request.
const BATCH: usize = 512;

/// Counters of the agent's log pipeline.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Lines read from files into the buffer.
    pub buffered: AtomicU64,
    /// Lines the collector accepted.
    pub shipped: AtomicU64,
    /// Export attempts that failed (the lines stay buffered).
    pub failed_exports: AtomicU64,
}

/// The running role; stopped by [`Agent::stop`].
#[derive(Debug)]
pub struct Agent {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<AgentStats>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Checkpoint {
    inode: u64,
    offset: u64,
}

impl Agent {
    /// Starts the role on the process's telemetry: host instruments on its registry, and the
    /// log pipeline shipping through its export runtime to the collector `tcfg` names. Needs
    /// OTLP export (`[telemetry] otlp_endpoint`).
    pub fn start(
        cfg: &AgentConfig,
        telemetry: &crate::setup::Telemetry,
        tcfg: &crate::config::TelemetryConfig,
    ) -> Result<Agent, String> {
        let Some((rt, resource)) = telemetry.export_runtime() else {
            return Err("the agent needs [telemetry] otlp_endpoint".into());
        };
        let _enter = rt.enter();
        let exporter = crate::setup::log_exporter(tcfg).map_err(|e| e.to_string())?;
        if cfg.host_metrics {
            host::register(&telemetry.metrics().meter());
        }
        let sink = Sink {
            exporter,
            rt: rt.clone(),
            timeout: tcfg.export_timeout.0,
            failures: ship_warning(&tcfg.signal_endpoint("logs").unwrap_or_default()),
        };
        Self::start_pipeline(cfg, sink, resource).map_err(|e| format!("agent: {e}"))
    }

    /// The tail and ship threads. `sink` sends log records; `resource` describes this host.
    fn start_pipeline(
        cfg: &AgentConfig,
        mut sink: Sink,
        resource: &opentelemetry_sdk::Resource,
    ) -> std::io::Result<Agent> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AgentStats::default());
        let mut threads = Vec::new();
        if let (Some(dir), false) = (&cfg.buffer_dir, cfg.logs.is_empty()) {
            let buf = Arc::new(Mutex::new(DiskBuffer::open(
                &dir.join("buffer"),
                cfg.buffer_bytes.0,
            )?));
            let files: Vec<PathBuf> = cfg.logs.iter().map(|l| l.path.clone()).collect();
            let (b, s, st, poll, cp) = (
                buf.clone(),
                stop.clone(),
                stats.clone(),
                cfg.poll_interval.0,
                dir.join("checkpoints.json"),
            );
            threads.push(
                std::thread::Builder::new()
                    .name("outpost-agent-tail".into())
                    .spawn(move || tail_loop(&files, &cp, &b, &s, &st, poll))?,
            );
            let (s, st) = (stop.clone(), stats.clone());
            sink.exporter.set_resource(resource);
            threads.push(
                std::thread::Builder::new()
                    .name("outpost-agent-ship".into())
                    .spawn(move || ship_loop(&sink, &buf, &s, &st, poll))?,
            );
        }
        Ok(Agent {
            stop,
            threads,
            stats,
        })
    }

    /// Stops the threads (what is buffered stays on disk for the next start).
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn inode(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::ino(m)
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        0
    }
}

fn save_checkpoints(path: &Path, cps: &BTreeMap<String, Checkpoint>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(cps).map_err(std::io::Error::other)?,
    )?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, path)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Reads new whole lines of each file into the buffer, then saves the checkpoints.
fn tail_loop(
    files: &[PathBuf],
    cp_path: &Path,
    buf: &Mutex<DiskBuffer>,
    stop: &AtomicBool,
    stats: &AgentStats,
    poll: Duration,
) {
    let save_failed = RepeatedWarning::new(
        format!("agent: cannot save tail checkpoints {}", cp_path.display()),
        "agent: tail checkpoints saved again",
    );
    let write_failed = RepeatedWarning::new(
        "agent: cannot write the buffer",
        "agent: the buffer takes lines again",
    );
    let mut cps: BTreeMap<String, Checkpoint> = std::fs::read(cp_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    while !stop.load(Relaxed) {
        let mut progressed = false;
        for f in files {
            let key = f.display().to_string();
            let Ok(file) = std::fs::File::open(f) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let mut cp = cps.get(&key).copied().unwrap_or_default();
            if cp.inode != inode(&meta) || meta.len() < cp.offset {
                // New file, rotated, or truncated: start from its beginning.
                cp = Checkpoint {
                    inode: inode(&meta),
                    offset: 0,
                };
            }
            if meta.len() == cp.offset {
                cps.insert(key, cp);
                continue;
            }
            let mut r = std::io::BufReader::new(file);
            if r.seek(SeekFrom::Start(cp.offset)).is_err() {
                continue;
            }
            let mut records = Vec::new();
            let mut offset = cp.offset;
            let mut line = String::new();
            while records.len() < BATCH {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        offset += n as u64;
                        records.push(Record {
                            src: key.clone(),
                            line: line.trim_end_matches(['\n', '\r']).to_string(),
                            t: now_nanos(),
                        });
                    }
                    _ => break, // end of file, or a line still being written
                }
            }
            if records.is_empty() {
                continue;
            }
            let appended = buf
                .lock()
                .map(|mut b| b.append(&records))
                .unwrap_or(Ok(false));
            if !matches!(appended, Ok(false)) {
                // Ok(false): the buffer is full, the lines wait in the file.
                log_report!(write_failed.record(&appended));
            }
            if let Ok(true) = appended {
                stats.buffered.fetch_add(records.len() as u64, Relaxed);
                cps.insert(key, Checkpoint { offset, ..cp });
                log_report!(save_failed.record(&save_checkpoints(cp_path, &cps)));
                progressed = true;
            }
        }
        if !progressed {
            std::thread::sleep(poll);
        }
    }
}

/// Where shipped lines go: the OTLP log exporter, polled on the telemetry runtime.
struct Sink {
    exporter: opentelemetry_otlp::LogExporter,
    rt: tokio::runtime::Handle,
    /// Longest wait for one export.
    timeout: Duration,
    /// Failed exports, said once per interval.
    failures: RepeatedWarning,
}

fn ship_warning(endpoint: &str) -> RepeatedWarning {
    RepeatedWarning::new(
        format!("agent: cannot ship logs to the OTLP collector {endpoint}"),
        format!("agent: OTLP collector {endpoint} takes shipped logs again"),
    )
}

impl Sink {
    /// Sends one batch; whether the collector accepted it.
    fn send(&self, batch: LogBatch<'_>) -> bool {
        let sent = self.rt.block_on(async {
            match tokio::time::timeout(self.timeout, self.exporter.export(batch)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            }
        });
        log_report!(self.failures.record(&sent));
        sent.is_ok()
    }
}

/// Sends the buffer in order; acknowledges a batch once the collector accepted it.
fn ship_loop(
    sink: &Sink,
    buf: &Mutex<DiskBuffer>,
    stop: &AtomicBool,
    stats: &AgentStats,
    poll: Duration,
) {
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder().build();
    let logger = provider.logger("outpost.agent");
    let scope = InstrumentationScope::builder("outpost.agent").build();
    let read_failed = RepeatedWarning::new(
        "agent: cannot read the buffer",
        "agent: the buffer is readable again",
    );
    let ack_failed = RepeatedWarning::new(
        "agent: cannot save the buffer position",
        "agent: the buffer position is saved again",
    );
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Relaxed) {
        let read = buf
            .lock()
            .map_err(|_| "a thread panicked holding it".to_string())
            .and_then(|b| b.read(BATCH).map_err(|e| e.to_string()));
        log_report!(read_failed.record(&read));
        let Ok((records, next)) = read else {
            std::thread::sleep(poll);
            continue;
        };
        if records.is_empty() {
            std::thread::sleep(poll);
            continue;
        }
        let logs: Vec<SdkLogRecord> = records
            .iter()
            .map(|r| {
                let mut l = logger.create_log_record();
                let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(r.t);
                l.set_timestamp(t);
                l.set_observed_timestamp(t);
                l.set_body(AnyValue::from(r.line.clone()));
                l.add_attribute("log.file.path", r.src.clone());
                l
            })
            .collect();
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            logs.iter().map(|l| (l, &scope)).collect();
        if sink.send(LogBatch::new(&refs)) {
            stats.shipped.fetch_add(records.len() as u64, Relaxed);
            if let Ok(mut b) = buf.lock() {
                log_report!(ack_failed.record(&b.ack(next)));
            }
            backoff = Duration::from_millis(100);
        } else {
            stats.failed_exports.fetch_add(1, Relaxed);
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until && !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

//! The purge log: every accepted purge, in version order, with no gaps. On the hub it is the
//! source of truth, appended with an fsync before a purge is acknowledged; followers keep an
//! in-memory copy of what they applied. Long-poll readers wait for the next version.

use super::event::{PurgeEvent, PurgeTarget};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Most events one read returns.
pub(crate) const MAX_BATCH: usize = 1000;

/// An ordered, optionally persistent log of purge events.
#[derive(Debug)]
pub(crate) struct PurgeLog {
    /// Versions up to `base` are not held (a follower's copy starts at its applied version).
    base: u64,
    events: RwLock<Vec<PurgeEvent>>,
    latest: watch::Sender<u64>,
    file: Mutex<Option<File>>,
    path: Option<PathBuf>,
}

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be read or written.
    #[error("purge log {path}: {source}")]
    Io {
        /// The log file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line before the last is not a valid event, or versions are not 1, 2, 3, ...
    #[error("purge log {path}, line {line}: {msg}")]
    Corrupt {
        /// The log file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
}

impl PurgeLog {
    /// An in-memory log (followers, tests).
    pub(crate) fn in_memory() -> Self {
        Self::in_memory_from(0)
    }

    /// An in-memory copy that starts after version `base` (a follower's applied version).
    pub(crate) fn in_memory_from(base: u64) -> Self {
        Self {
            base,
            events: RwLock::new(Vec::new()),
            latest: watch::Sender::new(base),
            file: Mutex::new(None),
            path: None,
        }
    }

    /// Opens (or creates) a persistent log. A torn last line (a crash mid-append, never
    /// acknowledged) is dropped; anything else that does not parse is an error.
    pub(crate) fn open(path: &Path) -> Result<Self, LogError> {
        let p = path.display().to_string();
        let io = |source| LogError::Io {
            path: p.clone(),
            source,
        };
        let mut events: Vec<PurgeEvent> = Vec::new();
        let mut good_len: u64 = 0;
        if path.exists() {
            let f = File::open(path).map_err(io)?;
            let lines: Vec<String> = BufReader::new(f)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(io)?;
            let n = lines.len();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<PurgeEvent>(line) {
                    Ok(ev) if ev.version == events.len() as u64 + 1 => {
                        good_len += line.len() as u64 + 1;
                        events.push(ev);
                    }
                    Ok(ev) => {
                        return Err(LogError::Corrupt {
                            path: p,
                            line: i + 1,
                            msg: format!(
                                "version {} where {} was expected",
                                ev.version,
                                events.len() + 1
                            ),
                        })
                    }
                    Err(_) if i + 1 == n => {
                        tracing::warn!(path = %p, "dropping a torn last line of the purge log");
                    }
                    Err(e) => {
                        return Err(LogError::Corrupt {
                            path: p,
                            line: i + 1,
                            msg: e.to_string(),
                        })
                    }
                }
            }
        }
        let file = agent::files::append(path).map_err(io)?;
        file.set_len(good_len).map_err(io)?;
        let latest = events.len() as u64;
        Ok(Self {
            base: 0,
            events: RwLock::new(events),
            latest: watch::Sender::new(latest),
            file: Mutex::new(Some(file)),
            path: Some(path.to_path_buf()),
        })
    }

    /// The newest version (0 when empty).
    pub(crate) fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Accepts a purge: gives it the next version, persists it (fsync), then publishes it.
    pub(crate) fn append(
        &self,
        target: PurgeTarget,
        soft: bool,
        at_ms: u64,
    ) -> Result<PurgeEvent, LogError> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| self.io_err(std::io::Error::other("log lock poisoned")))?;
        let version = self.latest() + 1;
        let ev = PurgeEvent {
            version,
            at_ms,
            soft,
            target,
        };
        if let Some(f) = file.as_mut() {
            let mut line =
                serde_json::to_vec(&ev).map_err(|e| self.io_err(std::io::Error::other(e)))?;
            line.push(b'\n');
            f.write_all(&line)
                .and_then(|_| f.sync_data())
                .map_err(|e| self.io_err(e))?;
        }
        self.push(ev.clone());
        Ok(ev)
    }

    /// Adds an event accepted elsewhere (a follower's copy); it must be the next version.
    pub(crate) fn record(&self, ev: &PurgeEvent) -> bool {
        let _guard = self.file.lock();
        if ev.version != self.latest() + 1 {
            return false;
        }
        self.push(ev.clone());
        true
    }

    fn push(&self, ev: PurgeEvent) {
        let v = ev.version;
        if let Ok(mut events) = self.events.write() {
            events.push(ev);
        }
        self.latest.send_replace(v);
    }

    fn io_err(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(memory)".into()),
            source,
        }
    }

    /// Events with versions above `since`, oldest first, at most `MAX_BATCH`.
    pub(crate) fn since(&self, since: u64) -> Vec<PurgeEvent> {
        let Ok(events) = self.events.read() else {
            return Vec::new();
        };
        let start = usize::try_from(since.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(events.len());
        events[start..].iter().take(MAX_BATCH).cloned().collect()
    }

    /// Waits until a version above `since` exists, or `timeout` passes.
    pub(crate) async fn wait_beyond(&self, since: u64, timeout: Duration) {
        let mut rx = self.latest.subscribe();
        let wait = async move {
            let _ = rx.wait_for(|v| *v > since).await;
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "outpost-purgelog-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn versions_persist_and_torn_tails_are_dropped() {
        let d = dir();
        let path = d.join("purge.log");
        {
            let log = PurgeLog::open(&path).unwrap();
            assert_eq!(log.append(PurgeTarget::All, false, 1).unwrap().version, 1);
            assert_eq!(
                log.append(PurgeTarget::Tags(vec!["a".into()]), true, 2)
                    .unwrap()
                    .version,
                2
            );
        }
        // A crash mid-append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"version\":3,\"at_").unwrap();
        drop(f);
        let log = PurgeLog::open(&path).unwrap();
        assert_eq!(log.latest(), 2);
        assert_eq!(log.since(1).len(), 1);
        assert_eq!(log.append(PurgeTarget::All, false, 3).unwrap().version, 3);
        drop(log);
        let log = PurgeLog::open(&path).unwrap();
        assert_eq!(
            log.since(0).iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );

        // Corruption before the last line is an error, not silently skipped purges.
        let text =
            std::fs::read_to_string(&path)
                .unwrap()
                .replacen("\"version\":2", "\"version\":7", 1);
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            PurgeLog::open(&path),
            Err(LogError::Corrupt { line: 2, .. })
        ));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn followers_record_only_the_next_version() {
        let log = PurgeLog::in_memory();
        let ev = |v| PurgeEvent {
            version: v,
            at_ms: 0,
            soft: false,
            target: PurgeTarget::All,
        };
        assert!(!log.record(&ev(2)));
        assert!(log.record(&ev(1)));
        assert!(!log.record(&ev(1)));
        assert!(log.record(&ev(2)));
        assert_eq!(log.latest(), 2);
    }

    #[tokio::test]
    async fn long_poll_wakes_on_append() {
        let log = std::sync::Arc::new(PurgeLog::in_memory());
        let l2 = log.clone();
        let waiter = tokio::spawn(async move {
            let t = std::time::Instant::now();
            l2.wait_beyond(0, Duration::from_secs(10)).await;
            t.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(PurgeTarget::All, false, 0).unwrap();
        assert!(waiter.await.unwrap() < Duration::from_secs(5));
    }
}

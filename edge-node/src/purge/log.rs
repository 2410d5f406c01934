//! The purge log: every accepted purge, in version order, with no gaps. On the hub it is the
//! source of truth, appended with an fsync before a purge is acknowledged; followers keep a
//! copy of what they applied. Long-poll readers wait for the next version.
//!
//! Memory is bounded: only the newest [`TAIL`] events stay in memory. A hub with a file reads
//! older ones back from it, seeking by a sparse index (one byte offset per [`INDEX_EVERY`]
//! versions, 8 bytes per thousand events). An in-memory log (a hub without `state_dir`, a
//! follower's copy) forgets them: asking for them is [`SinceError::Gone`], and a follower that
//! far behind an in-memory hub purges everything and resumes at the hub's oldest event
//! (`service.rs`).

use super::event::{PurgeEvent, PurgeTarget};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Most events one read returns.
pub(crate) const MAX_BATCH: usize = 1000;

/// Events held in memory; older ones are read from the file, or gone without one.
pub(crate) const TAIL: usize = 4096;

/// Versions per entry of the file's offset index.
const INDEX_EVERY: u64 = 1024;

/// An ordered, optionally persistent log of purge events.
#[derive(Debug)]
pub(crate) struct PurgeLog {
    tail: RwLock<Tail>,
    latest: watch::Sender<u64>,
    file: Mutex<Option<LogFile>>,
    path: Option<PathBuf>,
    /// Events held in memory (`TAIL`, smaller in tests).
    keep: usize,
}

/// The newest events: versions `base + 1 ..= base + events.len()`.
#[derive(Debug, Default)]
struct Tail {
    base: u64,
    events: VecDeque<PurgeEvent>,
}

/// The hub's open log file and where its events start.
#[derive(Debug)]
struct LogFile {
    file: File,
    /// `offsets[i]`: byte offset of version `i * INDEX_EVERY + 1`.
    offsets: Vec<u64>,
    /// Length of the good part of the file (where the next event goes).
    end: u64,
}

/// Why a read of the log found nothing to return.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SinceError {
    /// The versions asked for are no longer held (an in-memory log keeps the newest `TAIL`).
    #[error("purge versions after {since} are no longer held; the oldest held is {oldest}")]
    Gone {
        /// The version asked after.
        since: u64,
        /// The oldest version still held.
        oldest: u64,
    },
    /// The file could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
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

impl Tail {
    fn push(&mut self, ev: PurgeEvent, keep: usize) {
        self.events.push_back(ev);
        while self.events.len() > keep {
            self.events.pop_front();
            self.base += 1;
        }
    }
}

impl PurgeLog {
    /// An in-memory log (followers, tests).
    pub(crate) fn in_memory() -> Self {
        Self::in_memory_from(0)
    }

    /// An in-memory copy that starts after version `base` (a follower's applied version).
    pub(crate) fn in_memory_from(base: u64) -> Self {
        Self {
            tail: RwLock::new(Tail {
                base,
                events: VecDeque::new(),
            }),
            latest: watch::Sender::new(base),
            file: Mutex::new(None),
            path: None,
            keep: TAIL,
        }
    }

    /// Opens (or creates) a persistent log. A torn last line (a crash mid-append, never
    /// acknowledged) is dropped; anything else that does not parse is an error.
    pub(crate) fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_keeping(path, TAIL)
    }

    fn open_keeping(path: &Path, keep: usize) -> Result<Self, LogError> {
        let p = path.display().to_string();
        let io = |source| LogError::Io {
            path: p.clone(),
            source,
        };
        let mut tail = Tail::default();
        let mut offsets = Vec::new();
        let mut end: u64 = 0;
        let mut count: u64 = 0;
        if path.exists() {
            let mut r = BufReader::new(File::open(path).map_err(io)?);
            let mut line = String::new();
            let mut n = 0usize;
            loop {
                line.clear();
                let len = r.read_line(&mut line).map_err(io)?;
                if len == 0 {
                    break;
                }
                n += 1;
                let text = line.strip_suffix('\n').unwrap_or(&line);
                match serde_json::from_str::<PurgeEvent>(text) {
                    Ok(ev) if ev.version == count + 1 && line.ends_with('\n') => {
                        if count % INDEX_EVERY == 0 {
                            offsets.push(end);
                        }
                        count += 1;
                        end += len as u64;
                        tail.push(ev, keep);
                    }
                    Ok(ev) if ev.version != count + 1 => {
                        return Err(LogError::Corrupt {
                            path: p,
                            line: n,
                            msg: format!("version {} where {} was expected", ev.version, count + 1),
                        })
                    }
                    // Unparsable, or whole but without its newline: torn if nothing follows.
                    res => {
                        let mut rest = Vec::new();
                        std::io::Read::read_to_end(&mut r, &mut rest).map_err(io)?;
                        if !rest.is_empty() {
                            return Err(LogError::Corrupt {
                                path: p,
                                line: n,
                                msg: match res {
                                    Err(e) => e.to_string(),
                                    Ok(_) => "line without its end".into(),
                                },
                            });
                        }
                        tracing::warn!(path = %p, "dropping a torn last line of the purge log");
                        break;
                    }
                }
            }
        }
        let file = agent::files::append(path).map_err(io)?;
        file.set_len(end).map_err(io)?;
        Ok(Self {
            tail: RwLock::new(tail),
            latest: watch::Sender::new(count),
            file: Mutex::new(Some(LogFile { file, offsets, end })),
            path: Some(path.to_path_buf()),
            keep,
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
        if let Some(lf) = file.as_mut() {
            let mut line =
                serde_json::to_vec(&ev).map_err(|e| self.io_err(std::io::Error::other(e)))?;
            line.push(b'\n');
            let written = lf.file.write_all(&line).and_then(|_| lf.file.sync_data());
            if let Err(e) = written {
                // Whatever part reached the file is cut off, so the next append starts clean.
                let _ = lf.file.set_len(lf.end);
                return Err(self.io_err(e));
            }
            if (version - 1) % INDEX_EVERY == 0 {
                lf.offsets.push(lf.end);
            }
            lf.end += line.len() as u64;
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

    /// Drops every event and continues after version `v` (a follower that skipped ahead).
    pub(crate) fn restart_at(&self, v: u64) {
        let _guard = self.file.lock();
        if let Ok(mut tail) = self.tail.write() {
            *tail = Tail {
                base: v,
                events: VecDeque::new(),
            };
        }
        self.latest.send_replace(v);
    }

    fn push(&self, ev: PurgeEvent) {
        let v = ev.version;
        if let Ok(mut tail) = self.tail.write() {
            tail.push(ev, self.keep);
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

    /// How many events are held in memory (at most `TAIL`).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.tail.read().map(|t| t.events.len()).unwrap_or(0)
    }

    /// Events with versions above `since`, oldest first, at most `MAX_BATCH`: from memory,
    /// or for versions older than the tail, from the file.
    pub(crate) fn since(&self, since: u64) -> Result<Vec<PurgeEvent>, SinceError> {
        let base = {
            let Ok(tail) = self.tail.read() else {
                return Ok(Vec::new());
            };
            if since >= tail.base {
                let start = usize::try_from(since - tail.base)
                    .unwrap_or(usize::MAX)
                    .min(tail.events.len());
                return Ok(tail
                    .events
                    .range(start..)
                    .take(MAX_BATCH)
                    .cloned()
                    .collect());
            }
            tail.base
        };
        if self.path.is_none() {
            return Err(SinceError::Gone {
                since,
                oldest: base + 1,
            });
        }
        let mut events = self.read_file(since, base)?;
        if events.len() < MAX_BATCH {
            // The file part ends at `base`; the rest comes from memory.
            let more = self.since(base)?;
            events.extend(more.into_iter().take(MAX_BATCH - events.len()));
        }
        Ok(events)
    }

    /// Events `since + 1 ..= until` (at most `MAX_BATCH`) read back from the file.
    fn read_file(&self, since: u64, until: u64) -> Result<Vec<PurgeEvent>, LogError> {
        let offset = {
            let guard = self
                .file
                .lock()
                .map_err(|_| self.io_err(std::io::Error::other("log lock poisoned")))?;
            let Some(lf) = guard.as_ref() else {
                return Ok(Vec::new());
            };
            let i = usize::try_from(since / INDEX_EVERY).unwrap_or(usize::MAX);
            lf.offsets.get(i).copied().unwrap_or(lf.end)
        };
        let path = self.path.as_deref().unwrap_or(Path::new(""));
        let mut f = File::open(path).map_err(|e| self.io_err(e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| self.io_err(e))?;
        let mut events = Vec::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| self.io_err(e))?;
            let ev: PurgeEvent = serde_json::from_str(&line).map_err(|e| LogError::Corrupt {
                path: path.display().to_string(),
                line: n + 1,
                msg: format!("{e} (counting from byte {offset})"),
            })?;
            if ev.version > until || events.len() >= MAX_BATCH {
                break;
            }
            if ev.version > since {
                events.push(ev);
            }
        }
        Ok(events)
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
        assert_eq!(log.since(1).unwrap().len(), 1);
        assert_eq!(log.append(PurgeTarget::All, false, 3).unwrap().version, 3);
        drop(log);
        let log = PurgeLog::open(&path).unwrap();
        assert_eq!(versions(&log.since(0).unwrap()), [1, 2, 3]);

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

    fn versions(events: &[PurgeEvent]) -> Vec<u64> {
        events.iter().map(|e| e.version).collect()
    }

    #[test]
    fn only_the_tail_stays_in_memory_and_the_file_serves_the_rest() {
        let d = dir();
        let path = d.join("purge.log");
        let total = 2 * INDEX_EVERY + 100;
        {
            let log = PurgeLog::open_keeping(&path, 50).unwrap();
            for i in 1..=total {
                log.append(PurgeTarget::Tags(vec![format!("t{i}")]), false, i)
                    .unwrap();
            }
            assert_eq!(log.held(), 50);
            assert_eq!(log.latest(), total);
        }
        // Reopened: the tail is rebuilt and the index covers the whole file.
        let log = PurgeLog::open_keeping(&path, 50).unwrap();
        assert_eq!(log.held(), 50);
        for since in [
            0,
            1,
            INDEX_EVERY - 1,
            INDEX_EVERY,
            INDEX_EVERY + 1,
            2 * INDEX_EVERY,
            total - 60,
            total - 50,
            total - 1,
        ] {
            let got = log.since(since).unwrap();
            let want: Vec<u64> = (since + 1..=total).take(MAX_BATCH).collect();
            assert_eq!(versions(&got), want, "since {since}");
            let first = got.first().unwrap();
            assert_eq!(
                first.target,
                PurgeTarget::Tags(vec![format!("t{}", since + 1)]),
                "the event read back is the one written"
            );
        }
        assert!(log.since(total).unwrap().is_empty());
        assert!(log.since(total + 5).unwrap().is_empty());
        // Appends after reopening extend the index where the old file left off.
        for i in total + 1..=total + INDEX_EVERY {
            log.append(PurgeTarget::All, true, i).unwrap();
        }
        let got = log.since(2 * INDEX_EVERY + 50).unwrap();
        assert_eq!(got.len(), MAX_BATCH);
        assert_eq!(got[0].version, 2 * INDEX_EVERY + 51);
        let got = log.since(3 * INDEX_EVERY + 3).unwrap();
        assert_eq!(got[0].version, 3 * INDEX_EVERY + 4);
        assert!(got[0].soft);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn an_in_memory_log_says_what_it_no_longer_holds() {
        let log = PurgeLog {
            keep: 10,
            ..PurgeLog::in_memory_from(5)
        };
        for v in 6..=30 {
            assert!(log.record(&PurgeEvent {
                version: v,
                at_ms: 0,
                soft: false,
                target: PurgeTarget::All,
            }));
        }
        assert_eq!(log.held(), 10);
        assert_eq!(
            versions(&log.since(20).unwrap()),
            (21..=30).collect::<Vec<_>>()
        );
        assert_eq!(
            versions(&log.since(25).unwrap()),
            (26..=30).collect::<Vec<_>>()
        );
        assert!(matches!(
            log.since(19),
            Err(SinceError::Gone {
                since: 19,
                oldest: 21
            })
        ));
        assert!(matches!(log.since(0), Err(SinceError::Gone { .. })));
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

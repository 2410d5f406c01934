//! Request collapsing: one upstream fetch per key, shared by every request that wants it.
//!
//! A `Fill` is the shared state of one fetch: the response head once known, the body chunks as
//! they arrive, and how it ended. The fetch runs in its own task, independent of the client that
//! started it, so a client that goes away never strands the others (pingora #931). Readers,
//! the first client included, stream from the chunks while the fill goes on. Waiting for the
//! head is bounded by a timeout, so a stuck fetch cannot hold its waiters forever.
//! The registry (`Inflight`) keeps a fill findable until its object is in the store, so there
//! is no gap in which a new request would start a second fetch.
//!
//! Memory: while a body may still be stored, the fill keeps every chunk (bounded by the largest
//! storable object). Once it is known not to be stored (too large), the fill switches to
//! streaming: chunks every attached reader has passed are released, the fetch waits for the
//! slowest reader when it runs more than `STREAM_WINDOW` bytes ahead, and no new reader may
//! join. Memory then stays flat whatever the body size.

use crate::cache::key::CacheKey;
use crate::cache::object::Object;
use crate::cache::policy::Freshness;
use crate::cache::vary::{VarySpec, VaryValues};
use crate::upstream::error::UpstreamError;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Weak;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The head of a storable response, as its fill publishes it.
#[derive(Debug)]
pub(crate) struct StoringHead {
    /// Response status.
    pub(crate) status: StatusCode,
    /// Headers as clients see them (before per-response Age and Cache-Status).
    pub(crate) headers: HeaderMap,
    /// Body length, when the upstream said.
    pub(crate) content_length: Option<u64>,
    /// What the response varies on.
    pub(crate) vary: Option<VarySpec>,
    /// The request values the response was fetched for.
    pub(crate) values: VaryValues,
    /// Its freshness record (for `Age`).
    pub(crate) fresh: Freshness,
}

/// What the fetch learned once the response head arrived.
#[derive(Debug)]
pub(crate) enum FillHead {
    /// A storable response; readers stream its body from the fill.
    Storing(StoringHead),
    /// A revalidation answered 304: the stored response, refreshed.
    Refreshed(Arc<Object>),
    /// Not storable: the leader takes the upstream response; others fetch for themselves.
    Pass {
        /// The upstream status (a 5xx lets stale-if-error apply).
        status: StatusCode,
    },
    /// The upstream could not be reached or failed before a head.
    Failed(UpstreamError),
}

/// How the body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FillEnd {
    /// Every byte arrived.
    Complete,
    /// The upstream closed or stalled mid-body; readers must abort their responses.
    Truncated,
}

/// Shared state of one fetch.
#[derive(Debug, Default)]
pub(crate) struct FillState {
    /// The head, once known.
    pub head: Option<Arc<FillHead>>,
    /// Body chunks not yet released; chunk `i` of the body is `chunks[i - base]`.
    pub chunks: VecDeque<Bytes>,
    /// Chunks released from the front (streaming mode only).
    pub base: usize,
    /// Bytes in `chunks`.
    pub held_bytes: u64,
    /// How the body ended, once it has.
    pub end: Option<FillEnd>,
    /// For bodies written straight to the disk tier: the file and the offset of the body in
    /// it. Readers then read the file instead of `chunks`, so memory stays flat and a reader
    /// may join at any time.
    pub spool: Option<Arc<(std::path::PathBuf, u64)>>,
    /// Body bytes written to the spool file so far.
    pub spooled: u64,
}

/// One in-flight fetch.
#[derive(Debug)]
pub(crate) struct Fill {
    state: watch::Sender<FillState>,
    pass: Mutex<Option<Response<hyper::body::Incoming>>>,
    streaming: AtomicBool,
    readers: Mutex<Vec<Weak<AtomicUsize>>>,
    advanced: tokio::sync::Notify,
}

/// How far (bytes) a streaming fill may run ahead of its slowest reader.
pub(crate) const STREAM_WINDOW: u64 = 4 << 20;

impl Default for Fill {
    fn default() -> Self {
        Self {
            state: watch::Sender::new(FillState::default()),
            pass: Mutex::new(None),
            streaming: AtomicBool::new(false),
            readers: Mutex::new(Vec::new()),
            advanced: tokio::sync::Notify::new(),
        }
    }
}

impl Fill {
    /// Publishes the head (once).
    pub(crate) fn set_head(&self, head: FillHead) {
        self.state.send_modify(|s| s.head = Some(Arc::new(head)));
    }

    /// Publishes a pass-through response: the leader takes it with `take_pass`.
    pub(crate) fn set_pass(&self, res: Response<hyper::body::Incoming>) {
        let status = res.status();
        if let Ok(mut slot) = self.pass.lock() {
            *slot = Some(res);
        }
        self.set_head(FillHead::Pass { status });
    }

    /// Takes the pass-through response (only the first caller gets it).
    pub(crate) fn take_pass(&self) -> Option<Response<hyper::body::Incoming>> {
        self.pass.lock().ok().and_then(|mut s| s.take())
    }

    /// Appends a body chunk.
    pub(crate) fn push(&self, chunk: Bytes) {
        self.state.send_modify(|s| {
            s.held_bytes += chunk.len() as u64;
            s.chunks.push_back(chunk);
        });
    }

    /// Makes this a file-backed fill: the body goes to `path` at `offset`, readers read it there.
    pub(crate) fn set_spool(&self, path: std::path::PathBuf, offset: u64) {
        self.state
            .send_modify(|s| s.spool = Some(Arc::new((path, offset))));
    }

    /// Records that the spool file now holds `written` body bytes.
    pub(crate) fn spooled(&self, written: u64) {
        self.state.send_modify(|s| s.spooled = written);
    }

    /// Switches to streaming: the body will not be stored, so chunks that every reader has
    /// passed can go, and no reader may join from now on.
    pub(crate) fn stream_only(&self) {
        self.streaming.store(true, Ordering::SeqCst);
    }

    /// Whether the fill has switched to streaming.
    pub(crate) fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::SeqCst)
    }

    /// In streaming mode: releases chunks all readers have passed, then waits while the
    /// slowest reader is more than `STREAM_WINDOW` bytes behind. Returns at once otherwise.
    pub(crate) async fn release_and_pace(&self) {
        if !self.is_streaming() {
            return;
        }
        loop {
            let notified = self.advanced.notified();
            let slowest = {
                let Ok(mut readers) = self.readers.lock() else {
                    return;
                };
                readers.retain(|w| w.strong_count() > 0);
                readers
                    .iter()
                    .filter_map(Weak::upgrade)
                    .map(|p| p.load(Ordering::SeqCst))
                    .min()
            };
            let mut behind = 0;
            self.state.send_if_modified(|s| {
                let upto = slowest.unwrap_or(s.base + s.chunks.len());
                let mut changed = false;
                while s.base < upto {
                    let Some(c) = s.chunks.pop_front() else { break };
                    s.held_bytes -= c.len() as u64;
                    s.base += 1;
                    changed = true;
                }
                behind = s.held_bytes;
                changed
            });
            if behind <= STREAM_WINDOW {
                return;
            }
            notified.await;
        }
    }

    /// Marks the body finished.
    pub(crate) fn finish(&self, end: FillEnd) {
        self.state.send_modify(|s| s.end = Some(end));
    }

    /// Waits up to `timeout` for the head.
    pub(crate) async fn wait_head(&self, timeout: Duration) -> Option<Arc<FillHead>> {
        let mut rx = self.state.subscribe();
        let wait = async move {
            rx.wait_for(|s| s.head.is_some())
                .await
                .ok()
                .and_then(|s| s.head.clone())
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// A reader of the body bytes in `[start, end)` (`end = None`: to the end); `None` once
    /// the fill streams and has released its first chunks.
    pub(crate) fn reader(self: &Arc<Self>, start: u64, end: Option<u64>) -> Option<FillReader> {
        let at = Arc::new(AtomicUsize::new(0));
        {
            let mut readers = self.readers.lock().ok()?;
            if self.is_streaming() && self.state.borrow().base > 0 {
                return None;
            }
            readers.push(Arc::downgrade(&at));
        }
        Some(FillReader {
            fill: self.clone(),
            at,
            rx: self.state.subscribe(),
            spool_file: None,
            next: 0,
            pos: 0,
            start,
            end,
        })
    }
}

/// Streams a fill's body (or a byte range of it) as the chunks arrive.
pub(crate) struct FillReader {
    rx: watch::Receiver<FillState>,
    spool_file: Option<std::fs::File>,
    fill: Arc<Fill>,
    /// This reader's next chunk index, shared with the fill for releasing chunks.
    at: Arc<AtomicUsize>,
    next: usize,
    pos: u64,
    start: u64,
    end: Option<u64>,
}

impl FillReader {
    /// The next piece of the body; `Ok(None)` at the end, `Err` if the fill was truncated.
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>, std::io::Error> {
        loop {
            let spool = {
                let s = self.rx.borrow_and_update();
                s.spool.clone().map(|sp| (sp, s.spooled, s.end))
            };
            if let Some((sp, written, ended)) = spool {
                return self.next_from_spool(&sp, written, ended).await;
            }
            if let Some(end) = self.end {
                if self.pos >= end {
                    return Ok(None);
                }
            }
            let (chunk, ended) = {
                let s = self.rx.borrow_and_update();
                let chunk = self
                    .next
                    .checked_sub(s.base)
                    .and_then(|i| s.chunks.get(i))
                    .cloned();
                (chunk, s.end)
            };
            match chunk {
                Some(c) => {
                    self.next += 1;
                    self.at.store(self.next, Ordering::SeqCst);
                    self.fill.advanced.notify_one();
                    let chunk_start = self.pos;
                    let chunk_end = self.pos + c.len() as u64;
                    self.pos = chunk_end;
                    let lo = self.start.max(chunk_start);
                    let hi = self.end.map_or(chunk_end, |e| e.min(chunk_end));
                    if lo < hi {
                        return Ok(Some(
                            c.slice((lo - chunk_start) as usize..(hi - chunk_start) as usize),
                        ));
                    }
                }
                None => match ended {
                    Some(end) => return end_of_body(end),
                    None => self.wait_change().await?,
                },
            }
        }
    }
}

impl FillReader {
    /// Reads the next piece of a file-backed fill. The reads hit the page cache the writer just
    /// filled, so they are done in place rather than on a blocking thread.
    async fn next_from_spool(
        &mut self,
        sp: &(std::path::PathBuf, u64),
        mut written: u64,
        mut ended: Option<FillEnd>,
    ) -> Result<Option<Bytes>, std::io::Error> {
        use std::os::unix::fs::FileExt;
        if self.spool_file.is_none() {
            let mut path = sp.0.clone();
            loop {
                match std::fs::File::open(&path) {
                    Ok(f) => {
                        self.spool_file = Some(f);
                        break;
                    }
                    // Renamed into the store just now: the fill publishes the new path. Or
                    // dropped (its key was removed while it streamed): once the fill has
                    // ended with no other path, none will come.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let current = {
                            let s = self.rx.borrow_and_update();
                            written = s.spooled;
                            ended = s.end;
                            s.spool.as_ref().map(|n| n.0.clone())
                        };
                        match current {
                            Some(p) if p != path => path = p,
                            _ if ended.is_some() => return Err(e),
                            _ => {
                                if self.rx.changed().await.is_err() {
                                    return Err(e);
                                }
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        loop {
            let from = self.pos.max(self.start);
            let limit = self.end.map_or(written, |e| e.min(written));
            if from < limit {
                let n = (limit - from).min(64 * 1024) as usize;
                let mut buf = vec![0u8; n];
                if let Some(f) = &self.spool_file {
                    f.read_exact_at(&mut buf, sp.1 + from)?;
                }
                self.pos = from + n as u64;
                return Ok(Some(Bytes::from(buf)));
            }
            if self.end.is_some_and(|e| from >= e) {
                return Ok(None);
            }
            match ended {
                Some(end) => return end_of_body(end),
                None => {
                    self.wait_change().await?;
                    let s = self.rx.borrow_and_update();
                    written = s.spooled;
                    ended = s.end;
                }
            }
        }
    }
}

/// What a reader returns once the body has ended and it has read everything.
fn end_of_body(end: FillEnd) -> Result<Option<Bytes>, std::io::Error> {
    match end {
        FillEnd::Complete => Ok(None),
        FillEnd::Truncated => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "upstream body ended early",
        )),
    }
}

impl FillReader {
    async fn wait_change(&mut self) -> Result<(), std::io::Error> {
        self.rx
            .changed()
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "fill abandoned"))
    }
}

/// Identifies one collapsible fetch: the URL, and a hash of the Vary values when known.
pub(crate) type CollapseKey = (CacheKey, u64);

/// The registry of fetches in flight.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<CollapseKey, Arc<Fill>>>,
}

/// Whether a request leads a new fetch or follows an existing one.
pub(crate) enum Joined {
    /// Start the fetch: nobody else is.
    Leader(Arc<Fill>),
    /// Another request's fetch is under way.
    Follower(Arc<Fill>),
}

impl Inflight {
    /// Joins the fetch for `key`, or registers a new one and makes the caller its leader.
    pub(crate) fn join(&self, key: CollapseKey) -> Joined {
        let Ok(mut map) = self.map.lock() else {
            return Joined::Leader(Arc::new(Fill::default()));
        };
        if let Some(f) = map.get(&key) {
            return Joined::Follower(f.clone());
        }
        let f = Arc::new(Fill::default());
        map.insert(key, f.clone());
        Joined::Leader(f)
    }

    /// Whether a fetch for `key` is under way.
    pub(crate) fn contains(&self, key: &CollapseKey) -> bool {
        self.map.lock().is_ok_and(|m| m.contains_key(key))
    }

    /// Unregisters `fill` (only if it is still the one registered for `key`).
    pub(crate) fn remove(&self, key: &CollapseKey, fill: &Arc<Fill>) {
        if let Ok(mut map) = self.map.lock() {
            if map.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
                map.remove(key);
            }
        }
    }

    /// Fetches in flight.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_stream_ranges_and_see_truncation() {
        let fill = Arc::new(Fill::default());
        let mut whole = fill.reader(0, None).unwrap();
        let mut mid = fill.reader(3, Some(7)).unwrap();
        fill.push(Bytes::from_static(b"01234"));
        fill.push(Bytes::from_static(b"56789"));
        fill.finish(FillEnd::Complete);
        let mut got = Vec::new();
        while let Some(c) = whole.next_chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, b"0123456789");
        let mut got = Vec::new();
        while let Some(c) = mid.next_chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert_eq!(got, b"3456");

        let cut = Arc::new(Fill::default());
        let mut r = cut.reader(0, None).unwrap();
        cut.push(Bytes::from_static(b"ab"));
        cut.finish(FillEnd::Truncated);
        assert_eq!(r.next_chunk().await.unwrap().unwrap(), "ab");
        assert!(r.next_chunk().await.is_err());
    }

    #[tokio::test]
    async fn head_wait_times_out() {
        let fill = Arc::new(Fill::default());
        assert!(fill.wait_head(Duration::from_millis(20)).await.is_none());
        fill.set_head(FillHead::Pass {
            status: StatusCode::OK,
        });
        assert!(fill.wait_head(Duration::from_millis(20)).await.is_some());
    }

    #[tokio::test]
    async fn streaming_fill_releases_what_readers_passed_and_refuses_late_readers() {
        let fill = Arc::new(Fill::default());
        let mut r = fill.reader(0, None).unwrap();
        fill.stream_only();
        for _ in 0..4 {
            fill.push(Bytes::from(vec![0u8; 1 << 20]));
        }
        fill.release_and_pace().await; // 4 MiB behind: within the window
        assert_eq!(fill.state.borrow().held_bytes, 4 << 20);
        fill.push(Bytes::from(vec![0u8; 1 << 20]));
        // 5 MiB ahead of the reader: the fetch waits until the reader moves.
        let pace = fill.release_and_pace();
        tokio::pin!(pace);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut pace)
            .await
            .is_err());
        r.next_chunk().await.unwrap();
        r.next_chunk().await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), &mut pace)
            .await
            .expect("reader advanced");
        assert_eq!(fill.state.borrow().base, 2);
        assert_eq!(fill.state.borrow().held_bytes, 3 << 20);
        assert!(
            fill.reader(0, None).is_none(),
            "a late reader cannot start from released chunks"
        );
        drop(r);
        fill.release_and_pace().await;
        assert_eq!(
            fill.state.borrow().held_bytes,
            0,
            "no reader left: everything released"
        );
    }

    #[test]
    fn one_leader_per_key() {
        let inflight = Inflight::default();
        let key = (CacheKey(7), 0);
        let Joined::Leader(f) = inflight.join(key) else {
            panic!("first must lead")
        };
        assert!(matches!(inflight.join(key), Joined::Follower(_)));
        assert!(matches!(inflight.join((CacheKey(7), 1)), Joined::Leader(_)));
        inflight.remove(&key, &f);
        assert!(matches!(inflight.join(key), Joined::Leader(_)));
    }
}

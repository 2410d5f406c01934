//! The disk tier: stored responses that survive a restart, bounded by bytes with LRU eviction.
//!
//! Written by hand rather than with a crate: foyer's hybrid cache and cacache were the
//! candidates, but Outpost needs per-block checksums that let a Range read verify only what it
//! sends, an index rebuilt in the background while requests are served, and a store that turns
//! itself off (memory-only) on a full or read-only disk instead of failing requests; neither
//! crate offers those together, and the format here is small (`format.rs`).
//!
//! Layout: `objects/<2 hex>/<url key>-<variant hash>` files, one per stored response, written
//! under `tmp/` and renamed into place when complete (so a killed write leaves only a temporary
//! file, removed at start). Every stored object is written through to disk after it is stored
//! in memory; a memory miss looks here and promotes what it finds. The index (URL key ->
//! variants, sizes, last use) lives in memory and is rebuilt from the files at start, in the
//! background: until it is done, lookups miss.
//!
//! Errors: a full file system (ENOSPC, EDQUOT) is not a failed disk. The tier then keeps to
//! the bytes it held when a write found no space (evicting the least recently used to make
//! room, so writes go on), says so once per interval, and reports itself degraded, not
//! failed; after [`FULL_RETRY`] it tries its configured size again. Any other write error
//! turns the tier off for [`RETRY_AFTER`] (memory only), and the node reports it failed.

pub(crate) mod format;
pub(crate) mod peek;

use crate::cache::key::CacheKey;
use crate::cache::object::{Extras, Object};
use crate::cache::vary::{values_hash, VarySpec, VaryValues};
use bytes::Bytes;
use format::{FormatError, Meta};
use http::HeaderMap;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::xxh3_64;

/// How long the tier stays off after a write error before it tries again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long the tier keeps to a smaller bound after its file system filled up, before it
/// tries its configured size again.
pub(crate) const FULL_RETRY: Duration = Duration::from_secs(30);

/// The file system filled up before the tier reached its configured size.
#[derive(Debug, Clone, Copy)]
struct Full {
    /// Bytes the tier held when a write found no space: its bound for now.
    limit: u64,
    /// When it tries its configured size again.
    until: Instant,
}

/// Whether `e` says the file system (or the user's quota) has no room.
fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[derive(Debug, Clone)]
struct Slot {
    vh: u64,
    vary: Option<VarySpec>,
    values: VaryValues,
    size: u64,
    last_used: u64,
}

/// The in-memory index of the tier, and what was invalidated while writes were under way.
#[derive(Debug, Default)]
struct Index {
    slots: HashMap<CacheKey, Vec<Slot>>,
    /// Writes under way, by key.
    writing: HashMap<CacheKey, u32>,
    /// Keys removed while a write of theirs was under way, with the clock tick of the
    /// removal: a write scheduled before that tick must not be installed (it holds what was
    /// invalidated). An entry goes with the key's last write, so this holds at most one entry
    /// per write under way.
    removed: HashMap<CacheKey, u64>,
    /// Tick of the last `clear`: writes scheduled before it are not installed.
    cleared_at: u64,
}

impl Index {
    /// Whether what was scheduled for `key` at tick `scheduled` has been invalidated since.
    fn invalidated_since(&self, key: &CacheKey, scheduled: u64) -> bool {
        self.cleared_at > scheduled || self.removed.get(key).is_some_and(|t| *t > scheduled)
    }
}

/// Counters of the disk tier.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    /// Lookups answered from disk.
    pub hits: AtomicU64,
    /// Objects written.
    pub writes: AtomicU64,
    /// Objects evicted to make room.
    pub evictions: AtomicU64,
    /// Entries found damaged (checksum, truncation) and dropped.
    pub corrupt: AtomicU64,
    /// Read or write errors (full disk, read-only disk, I/O errors).
    pub errors: AtomicU64,
    /// Writes that found the file system full (counted in `errors` too).
    pub full: AtomicU64,
}

/// The disk tier.
pub(crate) struct DiskStore {
    root: PathBuf,
    /// The bound on bytes stored; a reload may change it (`resize`).
    max_bytes: AtomicU64,
    index: Mutex<Index>,
    used: AtomicU64,
    /// Bytes of writes under way: counted against the bound from the moment room is made for
    /// them, so concurrent writes cannot overshoot it together.
    reserved: AtomicU64,
    clock: AtomicU64,
    ready: AtomicBool,
    off_until: Mutex<Option<Instant>>,
    /// Set while the file system is full (see [`Full`]).
    full: Mutex<Option<Full>>,
    /// Says once per interval that the file system is full, and when it is not any more.
    full_warning: agent::throttle::RepeatedWarning,
    /// Counters.
    pub stats: DiskStats,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("root", &self.root)
            .field("max_bytes", &self.capacity())
            .finish()
    }
}

impl DiskStore {
    /// Opens the tier at `root` (preparing its directories now) and starts rebuilding its
    /// index in the background. A directory that cannot be written makes a tier that is off
    /// (memory-only), with an error logged.
    pub(crate) fn open(root: &Path, max_bytes: u64) -> Arc<Self> {
        let store = Arc::new(Self {
            root: root.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            index: Mutex::new(Index::default()),
            used: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            clock: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            off_until: Mutex::new(None),
            full: Mutex::new(None),
            full_warning: agent::throttle::RepeatedWarning::new(
                format!("disk cache {}: the file system is full", root.display()),
                format!("disk cache {}: writes fit again", root.display()),
            ),
            stats: DiskStats::default(),
        });
        // Prepared before open returns (two directory operations): a write of the first
        // requests must not race with the clean-up of `tmp/`, which would fail it and turn
        // the tier off. Only the index rebuild runs in the background.
        if let Err(e) = agent::files::create_dir_all(&store.root.join("objects"))
            .and_then(|_| store.reset_tmp())
        {
            store.fail("cannot prepare the disk cache directory", &e);
            return store;
        }
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let n = s.rebuild();
            s.ready.store(true, Relaxed);
            tracing::info!(objects = n, bytes = s.used.load(Relaxed), took = ?t.elapsed(), path = %s.root.display(), "disk cache index rebuilt");
        });
        store
    }

    fn reset_tmp(&self) -> std::io::Result<()> {
        let tmp = self.root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        agent::files::create_dir_all(&tmp)
    }

    /// Whether the index rebuild has finished.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Whether the tier accepts writes now (false for a while after a write error).
    pub(crate) fn is_on(&self) -> bool {
        match self.off_until.lock() {
            Ok(g) => g.is_none_or(|t| Instant::now() >= t),
            Err(_) => false,
        }
    }

    fn fail(&self, what: &str, e: &std::io::Error) {
        self.stats.errors.fetch_add(1, Relaxed);
        tracing::error!(error = %e, path = %self.root.display(), "{what}; disk cache off, serving from memory only for now");
        if let Ok(mut g) = self.off_until.lock() {
            *g = Some(Instant::now() + RETRY_AFTER);
        }
    }

    /// A write failed with `e`: a full file system makes the tier keep to what it holds
    /// now; any other error turns it off for a while.
    fn write_failed(&self, e: &std::io::Error) {
        if !is_full(e) {
            self.fail("cannot write to the disk cache", e);
            return;
        }
        self.stats.errors.fetch_add(1, Relaxed);
        self.stats.full.fetch_add(1, Relaxed);
        let limit = self.used.load(Relaxed);
        if let Ok(mut g) = self.full.lock() {
            *g = Some(Full {
                limit,
                until: Instant::now() + FULL_RETRY,
            });
        }
        agent::log_report!(self.full_warning.failed(format_args!(
            "{e}; keeping the tier at {limit} bytes of its configured {} (evicting the least recently used to make room; serving from memory and origin meanwhile)",
            self.capacity()
        )));
    }

    /// The bound the tier keeps to now while its file system is full, or `None`.
    pub(crate) fn full_limit(&self) -> Option<u64> {
        let g = self.full.lock().ok()?;
        g.filter(|f| Instant::now() < f.until).map(|f| f.limit)
    }

    /// The bound writes must fit in now: the configured size, or less while the file system
    /// is full.
    fn bound(&self) -> u64 {
        let max = self.capacity();
        self.full_limit().map_or(max, |l| l.min(max))
    }

    /// A write went in: if the file system was full and the tier is back at its configured
    /// size, that is said once.
    fn wrote(&self) {
        self.stats.writes.fetch_add(1, Relaxed);
        if self.full_warning.is_failing() && self.full_limit().is_none() {
            agent::log_report!(self.full_warning.succeeded());
        }
    }

    /// Bytes on disk and entries.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let n = self
            .index
            .lock()
            .map(|i| i.slots.values().map(|v| v.len() as u64).sum())
            .unwrap_or(0);
        (self.used.load(Relaxed), n)
    }

    /// Configured size.
    pub(crate) fn capacity(&self) -> u64 {
        self.max_bytes.load(Relaxed)
    }

    fn path(&self, key: CacheKey, vh: u64) -> PathBuf {
        let hex = format!("{:032x}", key.0);
        self.root
            .join("objects")
            .join(&hex[..2])
            .join(format!("{hex}-{vh:016x}"))
    }

    fn rebuild(&self) -> usize {
        let mut n = 0;
        let Ok(dirs) = std::fs::read_dir(self.root.join("objects")) else {
            return 0;
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                match read_head(&p) {
                    Ok((h, meta)) => {
                        let vh = values_hash(&meta.values);
                        if p != self.path(meta.key, vh) {
                            let _ = std::fs::remove_file(&p);
                            continue;
                        }
                        let size = h.file_len();
                        self.insert_slot(
                            meta.key,
                            Slot {
                                vh,
                                vary: meta.vary,
                                values: meta.values,
                                size,
                                last_used: meta.fresh.response_time_ms / 1000,
                            },
                        );
                        n += 1;
                    }
                    Err(e) => {
                        tracing::warn!(file = %p.display(), error = %e, "dropping a damaged disk cache entry");
                        self.stats.corrupt.fetch_add(1, Relaxed);
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        n
    }

    fn insert_slot(&self, key: CacheKey, slot: Slot) {
        if let Ok(mut idx) = self.index.lock() {
            self.insert_slot_locked(&mut idx, key, slot);
        }
    }

    fn insert_slot_locked(&self, idx: &mut Index, key: CacheKey, slot: Slot) {
        let list = idx.slots.entry(key).or_default();
        if let Some(old) = list.iter_mut().find(|s| s.vh == slot.vh) {
            self.used.fetch_sub(old.size, Relaxed);
            *old = slot.clone();
        } else {
            if list.first().is_some_and(|s| s.vary != slot.vary) {
                // The URL's Vary changed: older variants are unreachable.
                for s in list.drain(..) {
                    self.used.fetch_sub(s.size, Relaxed);
                    let _ = std::fs::remove_file(self.path(key, s.vh));
                }
            }
            list.push(slot.clone());
        }
        self.used.fetch_add(slot.size, Relaxed);
    }

    /// Finds the stored variant for `req`, if the index has one.
    fn find(&self, key: &CacheKey, req: &HeaderMap) -> Option<PathBuf> {
        if !self.is_ready() {
            return None;
        }
        let mut idx = self.index.lock().ok()?;
        let list = idx.slots.get_mut(key)?;
        let tick = self.clock.fetch_add(1, Relaxed);
        let slot = match list.first()?.vary.clone() {
            None => list.first_mut()?,
            Some(spec) => {
                let values = spec.values(req);
                list.iter_mut().find(|s| s.values == values)?
            }
        };
        slot.last_used = slot.last_used.max(tick);
        Some(self.path(*key, slot.vh))
    }

    /// Reads the stored response for `req` under `key` whose body is at most `max_body` bytes,
    /// verifying every checksum. A damaged entry is dropped and reported as a miss.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        key: &CacheKey,
        req: &HeaderMap,
        max_body: u64,
    ) -> Option<(Object, Option<VarySpec>, VaryValues)> {
        let path = self.find(key, req)?;
        let me = self.clone();
        let key = *key;
        let res =
            tokio::task::spawn_blocking(move || read_whole(&path, max_body).map_err(|e| (e, path)))
                .await
                .ok()?;
        match res {
            Ok(Some((meta, body))) => {
                self.stats.hits.fetch_add(1, Relaxed);
                let obj = Object {
                    status: meta.status,
                    headers: meta.headers,
                    body,
                    fresh: meta.fresh,
                    extras: Extras::new(Box::default(), meta.tags),
                    purge_version: meta.purge_version,
                };
                Some((obj, meta.vary, meta.values))
            }
            Ok(None) => None,
            Err((e, path)) => {
                match e {
                    ReadError::Io(ref io) if io.kind() == std::io::ErrorKind::NotFound => {}
                    ReadError::Io(ref io) => {
                        me.stats.errors.fetch_add(1, Relaxed);
                        tracing::warn!(error = %io, "disk cache read failed");
                    }
                    ReadError::Format(ref f) => {
                        me.stats.corrupt.fetch_add(1, Relaxed);
                        tracing::warn!(file = %path.display(), error = %f, "damaged disk cache entry dropped; refetching");
                    }
                }
                me.forget(key, &path);
                None
            }
        }
    }

    fn forget(&self, key: CacheKey, path: &Path) {
        if let Ok(mut idx) = self.index.lock() {
            if let Some(list) = idx.slots.get_mut(&key) {
                list.retain(|s| {
                    let gone = self.path(key, s.vh) == path;
                    if gone {
                        self.used.fetch_sub(s.size, Relaxed);
                    }
                    !gone
                });
                if list.is_empty() {
                    idx.slots.remove(&key);
                }
            }
        }
        let _ = std::fs::remove_file(path);
    }

    /// Writes `obj` (stored under `key` for `vary`/`values`) in the background.
    pub(crate) fn write(
        self: &Arc<Self>,
        key: CacheKey,
        vary: Option<VarySpec>,
        values: VaryValues,
        obj: Arc<Object>,
    ) {
        if !self.is_on() {
            return;
        }
        let me = self.clone();
        let scheduled = self.begin_write(key);
        tokio::task::spawn_blocking(move || {
            me.write_now(key, vary, values, &obj, scheduled);
            me.end_write(key);
        });
    }

    /// Counts a write of `key` as under way; returns the tick it was scheduled at.
    fn begin_write(&self, key: CacheKey) -> u64 {
        let Ok(mut idx) = self.index.lock() else {
            return self.clock.fetch_add(1, Relaxed);
        };
        *idx.writing.entry(key).or_default() += 1;
        self.clock.fetch_add(1, Relaxed)
    }

    /// Counts a write of `key` as finished; with none of its writes left, its removal needs
    /// no remembering.
    fn end_write(&self, key: CacheKey) {
        if let Ok(mut idx) = self.index.lock() {
            let left = match idx.writing.get_mut(&key) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n
                }
                None => 0,
            };
            if left == 0 {
                idx.writing.remove(&key);
                idx.removed.remove(&key);
            }
        }
    }

    /// Moves a finished file into place and indexes it, unless its key was removed (or the
    /// tier cleared) after the write was scheduled: then the file is dropped. Under the index
    /// lock, so a removal cannot slip between the check and the rename.
    fn install(
        &self,
        key: CacheKey,
        slot: Slot,
        scheduled: u64,
        tmp: &Path,
        dest: &Path,
    ) -> std::io::Result<bool> {
        // Outside the lock: idempotent, and lookups need not wait for it.
        if let Some(dir) = dest.parent() {
            agent::files::create_dir_all(dir)?;
        }
        let Ok(mut idx) = self.index.lock() else {
            return Ok(false);
        };
        if idx.invalidated_since(&key, scheduled) {
            let _ = std::fs::remove_file(tmp);
            return Ok(false);
        }
        std::fs::rename(tmp, dest)?;
        self.insert_slot_locked(&mut idx, key, slot);
        Ok(true)
    }

    fn write_now(
        &self,
        key: CacheKey,
        vary: Option<VarySpec>,
        values: VaryValues,
        obj: &Object,
        scheduled: u64,
    ) {
        let meta = Meta {
            key,
            status: obj.status,
            fresh: obj.fresh,
            purge_version: obj.purge_version,
            vary: vary.clone(),
            values: values.clone(),
            tags: obj.tags().into(),
            headers: obj.headers.clone(),
        };
        let head = format::encode_head(&meta, obj.body.len() as u64);
        let sums: Vec<u64> = obj
            .body
            .chunks(format::BLOCK as usize)
            .map(xxh3_64)
            .collect();
        let tail = format::encode_tail(&sums);
        let size = (head.len() + obj.body.len() + tail.len()) as u64;
        if size > self.capacity() / 4 {
            return;
        }
        if !self.make_room(size) {
            return;
        }
        let vh = values_hash(&values);
        let dest = self.path(key, vh);
        let tmp = self.root.join("tmp").join(format!(
            "{:032x}-{vh:016x}-{}",
            key.0,
            self.clock.fetch_add(1, Relaxed)
        ));
        let res = (|| -> std::io::Result<bool> {
            let mut f = agent::files::create(&tmp)?;
            f.write_all(&head)?;
            f.write_all(&obj.body)?;
            f.write_all(&tail)?;
            drop(f);
            let slot = Slot {
                vh,
                vary,
                values,
                size,
                last_used: self.clock.fetch_add(1, Relaxed),
            };
            self.install(key, slot, scheduled, &tmp, &dest)
        })();
        match res {
            Ok(true) => self.wrote(),
            // Invalidated while it was being written: dropped, as it should be.
            Ok(false) => {}
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.write_failed(&e);
            }
        }
        self.release(size);
    }

    /// Ends the reservation `make_room` made for a write (indexed or abandoned).
    fn release(&self, size: u64) {
        self.reserved.fetch_sub(size, Relaxed);
    }

    /// Evicts least recently used entries until `incoming` more bytes fit, and reserves them.
    /// False when they cannot fit even with every stored entry gone (other writes under way
    /// hold the room): the write is skipped. A true return is paired with one
    /// [`DiskStore::release`].
    fn make_room(&self, incoming: u64) -> bool {
        let Ok(mut idx) = self.index.lock() else {
            return false;
        };
        // Under the index lock, so two writers cannot both take the last room.
        let pending = self.reserved.fetch_add(incoming, Relaxed) + incoming;
        let max_bytes = self.bound();
        if self.used.load(Relaxed) + pending <= max_bytes {
            return true;
        }
        self.evict_locked(&mut idx, (max_bytes / 10 * 9).saturating_sub(pending));
        if self.used.load(Relaxed) + pending > max_bytes {
            self.release(incoming);
            return false;
        }
        true
    }

    /// Changes the bound to `max_bytes`; a smaller bound evicts the least recently used
    /// entries at once, down to it.
    pub(crate) fn resize(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Relaxed);
        if let Ok(mut idx) = self.index.lock() {
            let pending = self.reserved.load(Relaxed);
            if self.used.load(Relaxed) + pending > max_bytes {
                self.evict_locked(&mut idx, max_bytes.saturating_sub(pending));
            }
        }
    }

    /// Evicts least recently used entries until at most `target` bytes are stored.
    fn evict_locked(&self, idx: &mut Index, target: u64) {
        let mut all: Vec<(u64, CacheKey, u64, u64)> = idx
            .slots
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |s| (s.last_used, *k, s.vh, s.size)))
            .collect();
        all.sort_unstable_by_key(|e| e.0);
        for (_, k, vh, size) in all {
            if self.used.load(Relaxed) <= target {
                break;
            }
            if let Some(list) = idx.slots.get_mut(&k) {
                list.retain(|s| s.vh != vh);
                if list.is_empty() {
                    idx.slots.remove(&k);
                }
            }
            self.used.fetch_sub(size, Relaxed);
            self.stats.evictions.fetch_add(1, Relaxed);
            let _ = std::fs::remove_file(self.path(k, vh));
        }
    }

    /// Starts writing a response of `body_len` bytes as it arrives (objects too large for the
    /// memory tier). `None` when the tier is off or the object would take more than a quarter
    /// of it.
    pub(crate) fn begin(self: &Arc<Self>, meta: Meta, body_len: u64) -> Option<DiskWriter> {
        if !self.is_on() || !self.is_ready() {
            return None;
        }
        let head = format::encode_head(&meta, body_len);
        let header = format::decode_header(&head).ok()?;
        let size = header.file_len();
        if size > self.capacity() / 4 {
            return None;
        }
        if !self.make_room(size) {
            return None;
        }
        let vh = values_hash(&meta.values);
        let dest = self.path(meta.key, vh);
        let tmp = self.root.join("tmp").join(format!(
            "{:032x}-{vh:016x}-{}",
            meta.key.0,
            self.clock.fetch_add(1, Relaxed)
        ));
        let file = (|| -> std::io::Result<std::fs::File> {
            let mut f = agent::files::create(&tmp)?;
            f.write_all(&head)?;
            Ok(f)
        })();
        match file {
            Ok(file) => Some(DiskWriter {
                scheduled: self.begin_write(meta.key),
                store: self.clone(),
                file,
                tmp,
                dest,
                meta,
                vh,
                header,
                written: 0,
                sums: Vec::new(),
                block: xxhash_rust::xxh3::Xxh3::new(),
                in_block: 0,
                done: false,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.release(size);
                self.write_failed(&e);
                None
            }
        }
    }

    /// Opens a stored response larger than `min_body` for streaming reads (the memory tier
    /// does not take it). Header, meta and block table are verified here; each body block is
    /// verified as it is read.
    pub(crate) async fn open_large(
        self: &Arc<Self>,
        key: &CacheKey,
        req: &HeaderMap,
        min_body: u64,
    ) -> Option<Arc<LargeEntry>> {
        let path = self.find(key, req)?;
        let p = path.clone();
        type Opened = (std::fs::File, format::Header, Meta, Vec<u64>);
        let res = tokio::task::spawn_blocking(move || -> Result<Opened, ReadError> {
            let (h, meta) = read_head(&p)?;
            let mut f = std::fs::File::open(&p).map_err(ReadError::Io)?;
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(h.sums_offset()))
                .map_err(ReadError::Io)?;
            let mut tail = Vec::new();
            f.read_to_end(&mut tail).map_err(ReadError::Io)?;
            let sums = format::decode_tail(&tail, h.blocks()).map_err(ReadError::Format)?;
            Ok((f, h, meta, sums))
        })
        .await
        .ok()?;
        match res {
            Ok((file, header, meta, sums)) if header.body_len > min_body => {
                self.stats.hits.fetch_add(1, Relaxed);
                Some(Arc::new(LargeEntry {
                    file,
                    header,
                    meta,
                    sums,
                    store: self.clone(),
                }))
            }
            Ok(_) => None,
            Err(e) => {
                if let ReadError::Format(f) = &e {
                    self.stats.corrupt.fetch_add(1, Relaxed);
                    tracing::warn!(file = %path.display(), error = %f, "damaged disk cache entry dropped; refetching");
                }
                self.forget(*key, &path);
                None
            }
        }
    }

    /// Removes every variant stored under `key`.
    pub(crate) fn remove(&self, key: CacheKey) {
        let slots = match self.index.lock() {
            Ok(mut idx) => {
                if idx.writing.contains_key(&key) {
                    let tick = self.clock.fetch_add(1, Relaxed);
                    idx.removed.insert(key, tick);
                }
                idx.slots.remove(&key).unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
        for s in slots {
            self.used.fetch_sub(s.size, Relaxed);
            let _ = std::fs::remove_file(self.path(key, s.vh));
        }
    }

    /// Removes everything (in the background).
    pub(crate) fn clear(&self) {
        let Ok(mut idx) = self.index.lock() else {
            return;
        };
        idx.slots.clear();
        idx.cleared_at = self.clock.fetch_add(1, Relaxed);
        self.used.store(0, Relaxed);
        let doomed = self.root.join(format!(
            "objects.deleting-{}",
            self.clock.fetch_add(1, Relaxed)
        ));
        if std::fs::rename(self.root.join("objects"), &doomed).is_ok() {
            let _ = agent::files::create_dir_all(&self.root.join("objects"));
            std::thread::spawn(move || {
                let _ = std::fs::remove_dir_all(doomed);
            });
        }
    }
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Format(FormatError),
}

fn read_head(p: &Path) -> Result<(format::Header, Meta), ReadError> {
    let mut f = std::fs::File::open(p).map_err(ReadError::Io)?;
    let len = f.metadata().map_err(ReadError::Io)?.len();
    let mut hb = [0u8; format::HEADER_LEN as usize];
    f.read_exact(&mut hb)
        .map_err(|_| ReadError::Format(FormatError::Truncated))?;
    let h = format::decode_header(&hb).map_err(ReadError::Format)?;
    if len != h.file_len() {
        return Err(ReadError::Format(FormatError::Truncated));
    }
    let mut mb = vec![0u8; h.meta_len as usize];
    f.read_exact(&mut mb)
        .map_err(|_| ReadError::Format(FormatError::Truncated))?;
    let meta = format::decode_meta(&h, &mb).map_err(ReadError::Format)?;
    Ok((h, meta))
}

/// Reads and verifies a whole entry whose body is at most `max_body` bytes (`None` if larger).
fn read_whole(p: &Path, max_body: u64) -> Result<Option<(Meta, Bytes)>, ReadError> {
    let (h, meta) = read_head(p)?;
    if h.body_len > max_body {
        return Ok(None);
    }
    let mut f = std::fs::File::open(p).map_err(ReadError::Io)?;
    let mut all = Vec::with_capacity(h.file_len() as usize);
    f.read_to_end(&mut all).map_err(ReadError::Io)?;
    if all.len() as u64 != h.file_len() {
        return Err(ReadError::Format(FormatError::Truncated));
    }
    let body = &all[h.body_offset() as usize..h.sums_offset() as usize];
    let sums = format::decode_tail(&all[h.sums_offset() as usize..], h.blocks())
        .map_err(ReadError::Format)?;
    for (block, sum) in body.chunks(h.block_size as usize).zip(&sums) {
        if xxh3_64(block) != *sum {
            return Err(ReadError::Format(FormatError::Checksum("body block")));
        }
    }
    // A large body goes straight into a memory file, as a fetched one does (`mapped.rs`).
    let body = super::mapped::from_chunks(&[body], body.len())
        .unwrap_or_else(|| Bytes::copy_from_slice(body));
    Ok(Some((meta, body)))
}

/// A stored response being written as it arrives.
pub(crate) struct DiskWriter {
    store: Arc<DiskStore>,
    /// The tick this write was scheduled at (see `DiskStore::install`).
    scheduled: u64,
    file: std::fs::File,
    tmp: PathBuf,
    dest: PathBuf,
    meta: Meta,
    vh: u64,
    header: format::Header,
    written: u64,
    sums: Vec<u64>,
    block: xxhash_rust::xxh3::Xxh3,
    in_block: u64,
    done: bool,
}

impl DiskWriter {
    /// The file being written (readers of the fill read it while it grows).
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the file goes when complete.
    pub(crate) fn dest(&self) -> PathBuf {
        self.dest.clone()
    }

    /// Offset of the body in the file.
    pub(crate) fn body_offset(&self) -> u64 {
        self.header.body_offset()
    }

    /// Appends body bytes. These are page-cache writes, done in place.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> std::io::Result<u64> {
        if self.written + data.len() as u64 > self.header.body_len {
            return Err(std::io::Error::other("body longer than announced"));
        }
        if let Err(e) = self.file.write_all(data) {
            self.store.write_failed(&e);
            return Err(e);
        }
        self.written += data.len() as u64;
        let bs = u64::from(self.header.block_size);
        while !data.is_empty() {
            let take = ((bs - self.in_block) as usize).min(data.len());
            self.block.update(&data[..take]);
            self.in_block += take as u64;
            data = &data[take..];
            if self.in_block == bs {
                self.sums.push(self.block.digest());
                self.block.reset();
                self.in_block = 0;
            }
        }
        Ok(self.written)
    }

    /// Completes the entry: writes the block table, moves it into place, indexes it. `false`:
    /// its key was removed (invalidated, purged) while it was written, so it was dropped.
    pub(crate) fn finish(mut self) -> std::io::Result<bool> {
        if self.written != self.header.body_len {
            return Err(std::io::Error::other("body shorter than announced"));
        }
        if self.in_block > 0 {
            self.sums.push(self.block.digest());
        }
        if let Err(e) = self.file.write_all(&format::encode_tail(&self.sums)) {
            self.store.write_failed(&e);
            return Err(e);
        }
        let slot = Slot {
            vh: self.vh,
            vary: self.meta.vary.clone(),
            values: self.meta.values.clone(),
            size: self.header.file_len(),
            last_used: self.store.clock.fetch_add(1, Relaxed),
        };
        let installed = self
            .store
            .install(self.meta.key, slot, self.scheduled, &self.tmp, &self.dest)
            .inspect_err(|e| self.store.write_failed(e))?;
        self.done = true;
        if installed {
            self.store.wrote();
        }
        Ok(installed)
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
        // Finished (now indexed) or abandoned: the room `begin` reserved is released.
        self.store.release(self.header.file_len());
        self.store.end_write(self.meta.key);
    }
}

/// An open stored response too large for memory, read block by block.
pub struct LargeEntry {
    file: std::fs::File,
    /// The fixed header.
    pub(crate) header: format::Header,
    /// What was stored about the response.
    pub(crate) meta: Meta,
    sums: Vec<u64>,
    store: Arc<DiskStore>,
}

impl std::fmt::Debug for LargeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeEntry")
            .field("key", &self.meta.key)
            .field("body_len", &self.header.body_len)
            .finish()
    }
}

impl LargeEntry {
    /// The stored status.
    pub fn status(&self) -> http::StatusCode {
        self.meta.status
    }

    /// The body's length.
    pub fn body_len(&self) -> u64 {
        self.header.body_len
    }

    /// Drops this entry from the tier: a block read from it failed its checksum.
    pub(crate) fn drop_damaged(&self) {
        self.store.stats.corrupt.fetch_add(1, Relaxed);
        let vh = values_hash(&self.meta.values);
        self.store
            .forget(self.meta.key, &self.store.path(self.meta.key, vh));
    }

    /// Reads body bytes `[start, end)`, reading and verifying only the blocks they touch.
    pub(crate) fn read_range(&self, start: u64, end: u64) -> Result<Bytes, FormatError> {
        use std::os::unix::fs::FileExt;
        let bs = u64::from(self.header.block_size);
        let end = end.min(self.header.body_len);
        if start >= end {
            return Ok(Bytes::new());
        }
        let first = start / bs;
        let last = (end - 1) / bs;
        let mut out = Vec::with_capacity((end - start) as usize);
        for b in first..=last {
            let lo = b * bs;
            let hi = ((b + 1) * bs).min(self.header.body_len);
            let mut buf = vec![0u8; (hi - lo) as usize];
            self.file
                .read_exact_at(&mut buf, self.header.body_offset() + lo)
                .map_err(|_| FormatError::Truncated)?;
            if self.sums.get(b as usize) != Some(&xxh3_64(&buf)) {
                return Err(FormatError::Checksum("body block"));
            }
            let from = start.max(lo) - lo;
            let to = end.min(hi) - lo;
            out.extend_from_slice(&buf[from as usize..to as usize]);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cache::policy::{unix_ms, Freshness};

    fn object(len: usize) -> Object {
        let now = unix_ms(std::time::SystemTime::now());
        Object {
            status: http::StatusCode::OK,
            headers: crate::cache::StoredHeaders::from_map(&HeaderMap::new(), |_| true),
            body: Bytes::from(vec![b'x'; len]),
            fresh: Freshness {
                response_time_ms: now,
                initial_age_ms: 0,
                fresh_until_ms: now + 600_000,
                swr_ms: 0,
                sie_ms: 0,
                unreachable_ms: 0,
                keep_until_ms: now + 600_000,
            },
            extras: Default::default(),
            purge_version: 0,
        }
    }

    async fn ready_store(name: &str) -> (Arc<DiskStore>, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "outpost-disk-{name}-{}-{}",
            std::process::id(),
            unix_ms(std::time::SystemTime::now())
        ));
        let store = DiskStore::open(&dir, 64 << 20);
        for _ in 0..200 {
            if store.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.is_ready());
        (store, dir)
    }

    #[tokio::test]
    async fn a_write_under_way_when_its_key_is_removed_is_not_installed() {
        let (store, dir) = ready_store("inflight").await;
        let (a, b) = (CacheKey(1), CacheKey(2));
        // Scheduled, then the key is removed (a purge, an unsafe method), then it finishes.
        let scheduled = store.begin_write(a);
        store.remove(a);
        store.write_now(a, None, VaryValues::default(), &object(100), scheduled);
        store.end_write(a);
        assert!(
            store.find(&a, &HeaderMap::new()).is_none(),
            "resurrected by a late write"
        );
        // A write scheduled after the removal is installed.
        let later = store.begin_write(a);
        store.write_now(a, None, VaryValues::default(), &object(100), later);
        store.end_write(a);
        assert!(store.find(&a, &HeaderMap::new()).is_some());
        // A clear invalidates every write scheduled before it.
        let before_clear = store.begin_write(b);
        store.clear();
        store.write_now(b, None, VaryValues::default(), &object(100), before_clear);
        store.end_write(b);
        assert!(store.find(&b, &HeaderMap::new()).is_none());
        // Nothing is remembered once no write is under way.
        let idx = store.index.lock().unwrap();
        assert!(idx.removed.is_empty() && idx.writing.is_empty());
        drop(idx);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_large_object_removed_while_it_streams_is_dropped_at_the_end() {
        let (store, dir) = ready_store("inflight-large").await;
        let key = CacheKey(3);
        let obj = object(10);
        let meta = Meta {
            key,
            status: obj.status,
            fresh: obj.fresh,
            purge_version: 0,
            vary: None,
            values: VaryValues::default(),
            tags: Box::default(),
            headers: crate::cache::StoredHeaders::from_map(&HeaderMap::new(), |_| true),
        };
        let mut w = store.begin(meta, 10).unwrap();
        w.write(b"0123456789").unwrap();
        store.remove(key);
        assert!(!w.finish().unwrap(), "installed after its key was removed");
        assert!(store.find(&key, &HeaderMap::new()).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_never_overshoot_the_bound() {
        let dir = std::env::temp_dir().join(format!(
            "outpost-disk-bound-{}-{}",
            std::process::id(),
            unix_ms(std::time::SystemTime::now())
        ));
        let max = 8 << 20;
        let store = DiskStore::open(&dir, max);
        for _ in 0..200 {
            if store.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.is_ready());
        // Room held by writes under way counts: 16 reservations of 1 MiB, none released yet,
        // get at most 8 MiB between them.
        let granted = (0..16).filter(|_| store.make_room(1 << 20)).count() as u64;
        assert_eq!(granted, 8, "{granted} MiB reserved in an 8 MiB tier");
        for _ in 0..granted {
            store.release(1 << 20);
        }
        // 48 writers of 1 MiB into 8 MiB, in rounds of 16 threads at once.
        for round in 0..3u128 {
            let writers: Vec<_> = (0..16u128)
                .map(|i| {
                    let s = store.clone();
                    std::thread::spawn(move || {
                        s.write_now(
                            CacheKey(round * 100 + i),
                            None,
                            VaryValues::default(),
                            &object(1 << 20),
                            0,
                        );
                        s.usage().0
                    })
                })
                .collect();
            for w in writers {
                let used = w.join().unwrap();
                assert!(used <= max, "{used} bytes indexed, bound {max}");
            }
        }
        assert_eq!(
            store.reserved.load(Relaxed),
            0,
            "every reservation released"
        );
        let on_disk: u64 = std::fs::read_dir(dir.join("objects"))
            .unwrap()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(on_disk <= max, "{on_disk} bytes of files, bound {max}");
        // Writes that found no room (16 MiB under way into 8 MiB) were skipped, not squeezed in.
        let writes = store.stats.writes.load(Relaxed);
        // The first writer of each round always fits.
        assert!((3..=48).contains(&writes), "{writes} writes");
        let _ = std::fs::remove_dir_all(dir);
    }
}

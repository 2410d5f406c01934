//! The cache: one [`Cache`] over the storage tiers (memory, disk, large objects on disk) and
//! the purge marks, and the pure pieces it is made of (keys, policy, Vary, stored headers).
//!
//! The request path asks the cache for a verdict ([`Cache::lookup`]: fresh, stale and why, or
//! a miss) and hands it responses to keep (`Cache::insert`, `Cache::begin_large`); every
//! removal ([`Cache::remove`], [`Cache::clear`], a purge) reaches every tier. Nothing outside
//! this module touches a tier. [`Cache::inspect`] reports what is stored for a URL without
//! changing it (`inspect.rs`).
//!
//! Tiering: the memory tier (quick_cache, bounded by bytes) holds objects up to `max_object_bytes`;
//! every object stored in memory is written through to the disk tier, and a memory miss looks
//! on disk and promotes what it finds. Objects larger than `max_object_bytes` (of known length)
//! go to disk only, written while they stream, and are served from disk block by block.

pub(crate) mod clock;
pub(crate) mod compress;
pub(crate) mod date;
pub(crate) mod disk;
pub(crate) mod headers;
pub(crate) mod hot_headers;
pub mod inspect;
pub(crate) mod key;
pub(crate) mod mapped;
pub(crate) mod marks;
pub(crate) mod memory;
pub(crate) mod object;
pub(crate) mod parts;
pub(crate) mod policy;
pub(crate) mod url;
pub(crate) mod vary;

pub(crate) use compress::Coding;
pub use disk::LargeEntry;
pub use headers::StoredHeaders;
pub use key::CacheKey;
pub(crate) use key::QueryMode;
pub use marks::{Mark, PurgeMarks, Purged};
pub use object::{Extras, Object};
pub use policy::Freshness;
pub use vary::{VarySpec, VaryValues};

use arc_swap::ArcSwap;
use disk::{DiskStore, DiskWriter};
use http::HeaderMap;
use memory::{MemoryLookup, MemoryTier};
use policy::Usability;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use vary::values_hash;

/// The shape of a cache: tier sizes and where the disk tier lives.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Bytes the memory tier may hold.
    pub memory_bytes: u64,
    /// Most Vary variants kept per URL.
    pub max_variants: usize,
    /// Largest object kept in memory; larger ones (of known length) go to disk only.
    pub max_object_bytes: u64,
    /// The disk tier: its directory and size; `None`: memory only.
    pub disk: Option<(PathBuf, u64)>,
}

/// Why a stored response is stale, and what it may still be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Within stale-while-revalidate: serve it, and refresh it in the background.
    WhileRevalidate,
    /// Past its freshness: revalidate first; `serve_on_error` when stale-if-error still
    /// covers it (the upstream failing may be answered with it).
    Revalidate {
        /// Whether it may be served when the upstream fails.
        serve_on_error: bool,
    },
}

/// The cache's verdict for one request.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh stored response.
    Fresh {
        /// The response.
        object: Arc<Object>,
        /// Hash of the request's Vary values (0 without Vary): identifies the fill to join.
        variant: u64,
    },
    /// A fresh response too large for memory, streamed from the disk tier.
    FreshLarge(Arc<LargeEntry>),
    /// A stored response past its freshness (or soft-purged).
    Stale {
        /// The response.
        object: Arc<Object>,
        /// Hash of the request's Vary values (0 without Vary).
        variant: u64,
        /// Why it is stale, and what it may be used for.
        why: Stale,
    },
    /// Nothing usable is stored.
    Miss {
        /// Hash of the request's Vary values when the URL's Vary is known (else 0).
        variant: u64,
    },
}

/// What the request tells the cache about itself.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The primary key (URL).
    pub key: &'a CacheKey,
    /// The request's fields (for Vary).
    pub headers: &'a HeaderMap,
    /// The normalised host (for prefix purges).
    pub host: &'a str,
    /// The request path (for prefix purges).
    pub path: &'a str,
}

/// Figures of the memory tier, and the disk tier when there is one.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CacheGauges {
    /// Bytes charged to the memory tier.
    pub memory_bytes: u64,
    /// Configured memory tier capacity.
    pub memory_capacity_bytes: u64,
    /// URLs stored in memory.
    pub objects: u64,
    /// The disk tier, when configured.
    pub disk: Option<DiskGauges>,
}

/// Figures of the disk tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DiskGauges {
    /// Bytes on disk.
    pub bytes: u64,
    /// Configured size.
    pub capacity_bytes: u64,
    /// Responses stored.
    pub objects: u64,
    /// Whether the index rebuild after start has finished.
    pub ready: bool,
    /// Whether the tier is accepting writes (false for a while after an error).
    pub on: bool,
    /// Lookups answered from disk.
    pub hits: u64,
    /// Objects written.
    pub writes: u64,
    /// Objects evicted.
    pub evictions: u64,
    /// Damaged entries dropped.
    pub corrupt: u64,
    /// I/O errors.
    pub errors: u64,
    /// Writes that found the file system full.
    pub full_errors: u64,
    /// While the file system is full: the bytes the tier keeps to instead of its configured
    /// size (it is degraded, not failed: it evicts to make room and keeps writing).
    pub full_limit_bytes: Option<u64>,
}

/// The storage tiers and purge marks of one node.
///
/// ```
/// use edge_node::cache::{Cache, CacheKey, CacheOptions, Freshness, Lookup, Object, Request};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let opts = CacheOptions { memory_bytes: 1 << 20, max_variants: 4, max_object_bytes: 1 << 16, disk: None };
/// let cache = Cache::new(&opts, Arc::default());
/// let key = CacheKey::new("https", "example.test", "/a", None);
/// let now = 1_800_000_000_000; // ms since the epoch
/// let fresh = Freshness::for_ttl(now, Duration::from_secs(60));
/// let object = Object::new(http::StatusCode::OK, &http::HeaderMap::new(), "hi".into(), fresh);
/// cache.insert(key, None, Box::default(), Arc::new(object));
///
/// let headers = http::HeaderMap::new();
/// let req = Request { key: &key, headers: &headers, host: "example.test", path: "/a" };
/// assert!(matches!(cache.lookup(req, now + 1_000).await, Lookup::Fresh { .. }));
/// assert!(matches!(cache.lookup(req, now + 61_000).await, Lookup::Stale { .. } | Lookup::Miss { .. }));
/// # });
/// ```
pub struct Cache {
    /// Replaced whole when a reload changes its size, its variants per URL or (through the
    /// shard count) the largest object it must hold.
    memory: ArcSwap<MemoryTier>,
    disk: Option<Arc<DiskStore>>,
    marks: Arc<PurgeMarks>,
    max_object: AtomicU64,
    memory_capacity: AtomicU64,
    /// Held by a resize while it copies the old memory tier into the new one, and by every
    /// removal, so nothing removed during the copy comes back with it.
    resizing: Mutex<()>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("memory_capacity", &self.memory_capacity.load(Relaxed))
            .field("max_object", &self.max_object())
            .field("disk", &self.disk)
            .finish()
    }
}

impl Cache {
    /// A cache of `opts` checking `marks` (shared with the other caches of the process). The
    /// disk tier, if any, rebuilds its index in the background: call inside a Tokio runtime.
    pub fn new(opts: &CacheOptions, marks: Arc<PurgeMarks>) -> Self {
        Self {
            memory: ArcSwap::from_pointee(MemoryTier::new(
                opts.memory_bytes,
                opts.max_variants,
                opts.max_object_bytes,
            )),
            disk: opts
                .disk
                .as_ref()
                .map(|(path, bytes)| DiskStore::open(path, *bytes)),
            marks,
            max_object: AtomicU64::new(opts.max_object_bytes),
            memory_capacity: AtomicU64::new(opts.memory_bytes),
            resizing: Mutex::new(()),
        }
    }

    /// Takes the sizes of `opts` (its disk directory is not changed): the memory tier's and
    /// the disk tier's bounds (a smaller tier evicts down to its new size now), the variants
    /// per URL and the largest object kept in memory. Lookups and stores go on meanwhile.
    pub fn resize(&self, opts: &CacheOptions) {
        if let (Some(d), Some((_, disk_bytes))) = (&self.disk, &opts.disk) {
            if d.capacity() != *disk_bytes {
                d.resize(*disk_bytes);
            }
        }
        self.max_object.store(opts.max_object_bytes, Relaxed);
        let memory_bytes = opts.memory_bytes;
        let unchanged = {
            let memory = self.memory.load();
            self.memory_capacity.load(Relaxed) == memory_bytes
                && memory.max_variants() == opts.max_variants.max(1)
                && memory.shards() == MemoryTier::shards_for(memory_bytes, opts.max_object_bytes)
        };
        if unchanged {
            return;
        }
        let _copying = self.resizing.lock();
        let old = self.memory.load_full();
        let new = Arc::new(MemoryTier::new(
            memory_bytes,
            opts.max_variants,
            opts.max_object_bytes,
        ));
        // New stores go to the new tier from here on; the copy never overwrites them.
        self.memory.store(new.clone());
        self.memory_capacity.store(memory_bytes, Relaxed);
        old.copy_into(&new);
    }

    /// The largest object kept in memory.
    pub fn max_object(&self) -> u64 {
        self.max_object.load(Relaxed)
    }

    /// The purge marks this cache checks.
    pub fn marks(&self) -> &Arc<PurgeMarks> {
        &self.marks
    }

    /// The newest purge version applied to this cache: objects fetched from now on are not
    /// covered by any purge up to it.
    pub fn purge_version(&self) -> u64 {
        self.marks.applied()
    }

    /// What the disk tier holds for `req` after a memory miss: an object (promoted into
    /// memory, where the memory tier decides whether it keeps it), a large one fresh and not
    /// purged (served from disk), or nothing usable (no stale use of large objects).
    async fn look_on_disk(
        &self,
        disk: &Arc<DiskStore>,
        req: &Request<'_>,
        now_ms: u64,
    ) -> FromDisk {
        if let Some((obj, vary, values)) =
            disk.lookup(req.key, req.headers, self.max_object()).await
        {
            let obj = Arc::new(obj);
            let variant = if vary.is_some() {
                values_hash(&values)
            } else {
                0
            };
            self.memory
                .load()
                .insert(*req.key, vary, values, obj.clone());
            return FromDisk::Found(obj, variant);
        }
        if let Some(entry) = disk
            .open_large(req.key, req.headers, self.max_object())
            .await
        {
            let m = &entry.meta;
            let purged = self
                .marks
                .verdict(req.key, req.host, req.path, &m.tags, m.purge_version);
            if purged == Purged::Keep && m.fresh.usability(now_ms) == Usability::Fresh {
                return FromDisk::Large(entry);
            }
        }
        FromDisk::Nothing
    }

    /// The verdict for `req` at `now_ms`: memory, then disk (promoting what it finds into
    /// memory), then the purge marks, then freshness.
    pub async fn lookup(&self, req: Request<'_>, now_ms: u64) -> Lookup {
        let mut found = self.memory.load().lookup(req.key, req.headers, now_ms);
        if let (MemoryLookup::Miss | MemoryLookup::VaryMiss(_), Some(disk)) = (&found, &self.disk) {
            // Boxed: a memory hit's future stays small (the request path keeps one per
            // connection and moves a new one in on every request).
            match Box::pin(self.look_on_disk(disk, &req, now_ms)).await {
                FromDisk::Found(obj, variant) => found = MemoryLookup::Found(obj, variant),
                FromDisk::Large(entry) => return Lookup::FreshLarge(entry),
                FromDisk::Nothing => {}
            }
        }
        let (object, variant) = match found {
            MemoryLookup::Found(obj, variant) => (obj, variant),
            MemoryLookup::VaryMiss(values) => {
                return Lookup::Miss {
                    variant: values_hash(&values),
                }
            }
            MemoryLookup::Miss => return Lookup::Miss { variant: 0 },
        };
        let object = match self.marks.verdict(
            req.key,
            req.host,
            req.path,
            object.tags(),
            object.purge_version,
        ) {
            Purged::Keep => object,
            Purged::Gone => return Lookup::Miss { variant },
            Purged::StaleSince(at) => Arc::new(object.stale_since(at)),
        };
        match object.fresh.usability(now_ms) {
            Usability::Fresh => Lookup::Fresh { object, variant },
            Usability::StaleWhileRevalidate => Lookup::Stale {
                object,
                variant,
                why: Stale::WhileRevalidate,
            },
            Usability::Stale { serve_on_error } => Lookup::Stale {
                object,
                variant,
                why: Stale::Revalidate { serve_on_error },
            },
        }
    }

    /// Stores `object` as the variant for `values` under `vary`, in memory and (written
    /// through in the background) on disk.
    pub fn insert(
        &self,
        key: CacheKey,
        vary: Option<VarySpec>,
        values: VaryValues,
        object: Arc<Object>,
    ) {
        if let Some(d) = &self.disk {
            d.write(key, vary.clone(), values.clone(), object.clone());
        }
        self.memory.load().insert(key, vary, values, object);
    }

    /// Starts writing a response too large for memory straight to disk while it streams;
    /// `None` without a disk tier, or when the tier cannot take it.
    pub(crate) fn begin_large(
        &self,
        meta: disk::format::Meta,
        body_len: u64,
    ) -> Option<DiskWriter> {
        self.disk.as_ref()?.begin(meta, body_len)
    }

    /// Removes everything stored for `key` (every variant) from every tier, including a copy
    /// still being written to disk.
    pub fn remove(&self, key: &CacheKey) {
        let _no_copy = self.resizing.lock();
        self.memory.load().remove(key);
        if let Some(d) = &self.disk {
            d.remove(*key);
        }
    }

    /// Removes everything from every tier.
    pub fn clear(&self) {
        let _no_copy = self.resizing.lock();
        self.memory.load().clear();
        if let Some(d) = &self.disk {
            d.clear();
        }
    }

    /// A purge of the URLs with these keys (all variants): marked, and for a hard purge
    /// removed from every tier at once.
    pub fn purge_keys(&self, keys: &[CacheKey], m: Mark) {
        for k in keys {
            self.marks.record_url(*k, m);
            if !m.soft {
                self.remove(k);
            }
        }
    }

    /// A purge of every object carrying one of `tags`: O(1) per tag, checked at lookup.
    pub fn purge_tags<'a>(&self, tags: impl IntoIterator<Item = &'a str>, m: Mark) {
        for t in tags {
            self.marks.record_tag(t, m);
        }
    }

    /// A purge of the paths of a host starting with a prefix, for each `(host, prefix)`.
    pub fn purge_prefixes<'a>(
        &self,
        prefixes: impl IntoIterator<Item = (&'a str, &'a str)>,
        m: Mark,
    ) {
        for (host, prefix) in prefixes {
            self.marks.record_prefix(host, prefix, m);
        }
    }

    /// A purge of everything: marked, and for a hard purge every tier is emptied.
    pub fn purge_all(&self, m: Mark) {
        self.marks.record_all(m);
        if !m.soft {
            self.clear();
        }
    }

    /// Publishes purge `version` as applied, once each of its parts is recorded.
    pub fn purged_up_to(&self, version: u64) {
        self.marks.applied_up_to(version);
    }

    /// Figures of every tier.
    pub fn gauges(&self) -> CacheGauges {
        CacheGauges {
            memory_bytes: self.memory.load().weighted_size(),
            memory_capacity_bytes: self.memory_capacity.load(Relaxed),
            objects: self.memory.load().entry_count(),
            disk: self.disk.as_ref().map(|d| {
                use std::sync::atomic::Ordering::Relaxed;
                let (bytes, objects) = d.usage();
                DiskGauges {
                    bytes,
                    capacity_bytes: d.capacity(),
                    objects,
                    ready: d.is_ready(),
                    on: d.is_on(),
                    hits: d.stats.hits.load(Relaxed),
                    writes: d.stats.writes.load(Relaxed),
                    evictions: d.stats.evictions.load(Relaxed),
                    corrupt: d.stats.corrupt.load(Relaxed),
                    errors: d.stats.errors.load(Relaxed),
                    full_errors: d.stats.full.load(Relaxed),
                    full_limit_bytes: d.full_limit(),
                }
            }),
        }
    }
}

/// What [`Cache::lookup`] found on disk after a memory miss.
enum FromDisk {
    Found(Arc<Object>, u64),
    Large(Arc<LargeEntry>),
    Nothing,
}

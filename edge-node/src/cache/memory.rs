//! The memory tier: a quick_cache cache bounded by bytes (S3-FIFO: new entries start on
//! probation, entries asked for again are kept, and keys evicted recently are remembered so
//! that they come back as kept), one entry per URL holding up to `max_variants` Vary
//! variants. Storage only: no policy decisions here.
//!
//! Why quick_cache rather than moka: its per-entry bookkeeping is one slot in a slab and one
//! index in a hash table, about 60 bytes; moka's is about 400 bytes of separate allocations
//! (entry info, deque nodes, a hash-table bucket), more than a third of a cached 1 KiB
//! object (docs/benchmarks.md, "Memory per cached object").

use super::key::CacheKey;
use super::object::Object;
use super::vary::{values_hash, VarySpec, VaryValues};
use http::HeaderMap;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::Arc;

/// One variant of a URL: the request values it was stored for and the response.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    /// Normalised request values for the entry's `VarySpec`.
    pub values: VaryValues,
    /// The stored response.
    pub object: Arc<Object>,
}

/// Everything stored for one URL. Cloned out of the tier on every lookup: a reference count.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// One response for every request (no Vary): most URLs. The tier's slot holds the
    /// object's `Arc` itself, so such a URL costs no allocation beyond its object.
    Plain(Arc<Object>),
    /// Responses by the request's values for a `Vary` spec.
    Varied(Arc<Varied>),
}

/// The variants of a URL whose responses vary.
#[derive(Debug)]
pub(crate) struct Varied {
    /// What the variants vary on.
    pub vary: VarySpec,
    /// The variants, most recently stored first (at least one).
    pub variants: Box<[Variant]>,
}

/// No values: what a `Plain` entry was stored for.
const NO_VALUES: &[Option<bytes::Bytes>] = &[];

impl Entry {
    /// What the variants vary on; `None`: one response for every request.
    pub(crate) fn vary(&self) -> Option<&VarySpec> {
        match self {
            Entry::Plain(_) => None,
            Entry::Varied(v) => Some(&v.vary),
        }
    }

    /// Every variant as (its request values, its response), most recently stored first.
    pub(crate) fn variants(&self) -> impl Iterator<Item = (&[Option<bytes::Bytes>], &Arc<Object>)> {
        let (plain, varied) = match self {
            Entry::Plain(o) => (Some((NO_VALUES, o)), &[][..]),
            Entry::Varied(v) => (None, &v.variants[..]),
        };
        plain
            .into_iter()
            .chain(varied.iter().map(|v| (&v.values[..], &v.object)))
    }

    fn weight(&self) -> u64 {
        let w = match self {
            Entry::Plain(o) => o.weight(),
            Entry::Varied(v) => {
                VARIED_OVERHEAD
                    + v.variants
                        .iter()
                        .map(|v| v.object.weight() + 16 * v.values.len())
                        .sum::<usize>()
            }
        };
        (ENTRY_OVERHEAD + w) as u64
    }
}

/// What one URL costs the tier beyond its objects: its slot in the tier's slab (48 bytes with
/// a [`SlotKey`]) and its index in the tier's hash table, with the table's spare room.
const ENTRY_OVERHEAD: usize = 64;

/// A [`CacheKey`] as the tier holds it: the same 128 bits as two `u64`s. A `u128` is aligned
/// to 16 bytes, which pads each slot of the tier's slab from 48 bytes to 64; this is aligned
/// to 8.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SlotKey([u64; 2]);

impl From<&CacheKey> for SlotKey {
    fn from(k: &CacheKey) -> Self {
        SlotKey([(k.0 >> 64) as u64, k.0 as u64])
    }
}

/// What a URL with Vary costs beyond that: its `Varied` and that `Arc`, its variant list.
const VARIED_OVERHEAD: usize = 96;

/// Charges each entry its bytes.
#[derive(Clone, Copy)]
struct EntryWeight;

impl Weighter<SlotKey, Entry> for EntryWeight {
    fn weight(&self, _key: &SlotKey, entry: &Entry) -> u64 {
        entry.weight()
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum MemoryLookup {
    /// A stored response for this request, and the hash of its Vary values (0 without Vary).
    Found(Arc<Object>, u64),
    /// Responses exist for the URL, but none for this request's Vary values (given).
    VaryMiss(VaryValues),
    /// Nothing stored for the URL.
    Miss,
}

/// The memory tier.
pub(crate) struct MemoryTier {
    cache: Cache<SlotKey, Entry, EntryWeight>,
    max_variants: usize,
    shards: usize,
}

/// Objects of about this size are what the tier is sized for (only a hint: it sets how many
/// recently evicted keys are remembered, and the table grows as needed).
const TYPICAL_OBJECT: u64 = 16 * 1024;

impl MemoryTier {
    /// A store bounded to `max_bytes`, keeping at most `max_variants` variants per URL and
    /// able to hold an object of `max_object` bytes.
    pub(crate) fn new(max_bytes: u64, max_variants: usize, max_object: u64) -> Self {
        let shards = Self::shards_for(max_bytes, max_object);
        let options = quick_cache::OptionsBuilder::new()
            .weight_capacity(max_bytes)
            .estimated_items_capacity(
                usize::try_from(max_bytes / TYPICAL_OBJECT)
                    .unwrap_or(usize::MAX)
                    .max(64),
            )
            .shards(shards)
            .build();
        let cache = match options {
            Ok(o) => Cache::with_options(o, EntryWeight, Default::default(), Default::default()),
            // Unreachable: both required options are set above.
            Err(_) => Cache::with_weighter(1024, max_bytes, EntryWeight),
        };
        Self {
            cache,
            max_variants: max_variants.max(1),
            shards,
        }
    }

    /// Shards (each locked and bounded on its own) for a tier of `max_bytes` that must hold
    /// objects of `max_object` bytes: a shard holds `max_bytes / shards`, and an object larger
    /// than 97% of that is never kept, so each shard gets at least twice the largest object;
    /// at most four per core, as quick_cache would choose.
    pub(crate) fn shards_for(max_bytes: u64, max_object: u64) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fit = max_bytes / max_object.max(1).saturating_mul(2);
        let fit = usize::try_from(fit)
            .unwrap_or(usize::MAX)
            .clamp(1, cores * 4);
        // A power of two no larger than `fit` (quick_cache rounds a count up).
        1 << fit.ilog2()
    }

    /// The shard count this tier was built with.
    pub(crate) fn shards(&self) -> usize {
        self.shards
    }

    /// Looks up the response stored for `key` that matches `req`'s Vary values, at `now` (ms
    /// on the cache's clock, read once per request by the caller).
    pub(crate) fn lookup(&self, key: &CacheKey, req: &HeaderMap, now: u64) -> MemoryLookup {
        let key = &SlotKey::from(key);
        let Some(entry) = self.cache.get(key) else {
            return MemoryLookup::Miss;
        };
        // Expiry is lazy (a per-entry timer would cost more memory than the object's headers):
        // an object past its keep time is a miss, and the entry goes once none is useful.
        let useful = |o: &Object| o.fresh.keep_until_ms > now;
        match &entry {
            Entry::Plain(o) if useful(o) => MemoryLookup::Found(o.clone(), 0),
            Entry::Plain(_) => {
                self.cache.remove(key);
                MemoryLookup::Miss
            }
            Entry::Varied(v) => {
                let values = v.vary.values(req);
                match v.variants.iter().find(|v| v.values == values) {
                    Some(v) if useful(&v.object) => {
                        MemoryLookup::Found(v.object.clone(), values_hash(&values))
                    }
                    _ => {
                        if !v.variants.iter().any(|v| useful(&v.object)) {
                            self.cache.remove(key);
                        }
                        MemoryLookup::VaryMiss(values)
                    }
                }
            }
        }
    }

    /// Stores `object` as the variant for `values` under `vary`. A change of Vary spec drops
    /// the old variants; beyond the cap the oldest variant goes.
    pub(crate) fn insert(
        &self,
        key: CacheKey,
        vary: Option<VarySpec>,
        values: VaryValues,
        object: Arc<Object>,
    ) {
        let key = SlotKey::from(&key);
        let Some(vary) = vary else {
            self.cache.insert(key, Entry::Plain(object));
            return;
        };
        let mut variants = vec![Variant {
            values: values.clone(),
            object,
        }];
        if let Some(Entry::Varied(old)) = self.cache.get(&key) {
            if old.vary == vary {
                variants.extend(
                    old.variants
                        .iter()
                        .filter(|v| v.values != values)
                        .take(self.max_variants - 1)
                        .cloned(),
                );
            }
        }
        let variants = variants.into_boxed_slice();
        self.cache
            .insert(key, Entry::Varied(Arc::new(Varied { vary, variants })));
    }

    /// Most variants kept per URL.
    pub(crate) fn max_variants(&self) -> usize {
        self.max_variants
    }

    /// Copies what this tier holds into `to`, except keys `to` already holds (newer there);
    /// when `to` is smaller, its eviction policy decides what stays.
    pub(crate) fn copy_into(&self, to: &MemoryTier) {
        for (k, v) in self.cache.iter() {
            if !to.cache.contains_key(&k) {
                to.cache.insert(k, v);
            }
        }
    }

    /// What is stored for `key`, read without counting as an access: the eviction policy (its
    /// record of what was asked for again) is left as it was. For inspection.
    pub(crate) fn peek(&self, key: &CacheKey) -> Option<Entry> {
        self.cache.peek(&SlotKey::from(key))
    }

    /// Removes everything stored for `key` (all variants). Returns whether anything was there.
    pub(crate) fn remove(&self, key: &CacheKey) -> bool {
        self.cache.remove(&SlotKey::from(key)).is_some()
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.cache.clear();
    }

    /// Bytes currently charged.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.weight()
    }

    /// URLs currently stored.
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::clock::now_ms;
    use crate::cache::headers::StoredHeaders;
    use crate::cache::policy::{unix_ms, Freshness};
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};

    fn obj(body: &'static str) -> Arc<Object> {
        obj_of(Bytes::from_static(body.as_bytes()))
    }

    fn obj_of(body: Bytes) -> Arc<Object> {
        let now = unix_ms(std::time::SystemTime::now());
        Arc::new(Object {
            status: StatusCode::OK,
            headers: StoredHeaders::default(),
            body,
            fresh: Freshness {
                response_time_ms: now,
                initial_age_ms: 0,
                fresh_until_ms: now + 60_000,
                swr_ms: 0,
                sie_ms: 0,
                unreachable_ms: 0,
                keep_until_ms: now + 60_000,
            },
            extras: Default::default(),
            purge_version: 0,
        })
    }

    /// Each shard of the tier is bounded on its own: the shard count leaves room in every
    /// shard for the largest object the tier must hold.
    #[test]
    fn the_largest_object_fits_in_its_shard() {
        for (mem, max) in [
            (64u64 << 20, 8u64 << 20), // the default largest object: 1/8 of the tier
            (1 << 30, 128 << 20),
            (1 << 20, 512 << 10),
            (256 << 20, 16 << 10),
        ] {
            let t = MemoryTier::new(mem, 1, max);
            let body = Bytes::from(vec![7u8; max as usize - 2048]);
            t.insert(CacheKey(7), None, Box::new([]), obj_of(body));
            assert!(
                matches!(
                    t.lookup(&CacheKey(7), &HeaderMap::new(), now_ms()),
                    MemoryLookup::Found(..)
                ),
                "{mem} B tier, {max} B object, {} shards",
                t.shards()
            );
        }
        assert_eq!(MemoryTier::shards_for(1 << 20, 1 << 30), 1);
    }

    #[test]
    fn variants_are_capped_and_replaced() {
        let s = MemoryTier::new(1 << 20, 2, 1 << 16);
        let key = CacheKey(1);
        let mut vary_h = HeaderMap::new();
        vary_h.insert("vary", HeaderValue::from_static("x-v"));
        let spec = VarySpec::from_response(&vary_h);
        let req = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert("x-v", HeaderValue::from_static(v));
            m
        };
        for (v, body) in [("a", "A"), ("b", "B"), ("c", "C")] {
            let values = spec.as_ref().unwrap().values(&req(v));
            s.insert(key, spec.clone(), values, obj(body));
        }
        assert!(
            matches!(
                s.lookup(&key, &req("a"), now_ms()),
                MemoryLookup::VaryMiss(_)
            ),
            "oldest variant dropped"
        );
        match s.lookup(&key, &req("c"), now_ms()) {
            MemoryLookup::Found(o, _) => assert_eq!(o.body, "C"),
            other => panic!("{other:?}"),
        }
        // A response without Vary replaces the whole entry.
        s.insert(key, None, Box::new([]), obj("plain"));
        match s.lookup(&key, &req("b"), now_ms()) {
            MemoryLookup::Found(o, _) => assert_eq!(o.body, "plain"),
            other => panic!("{other:?}"),
        }
        assert!(s.remove(&key));
        assert!(matches!(
            s.lookup(&key, &req("b"), now_ms()),
            MemoryLookup::Miss
        ));
    }

    /// Evicted objects give their memory files back: the mapped bodies alive stay within
    /// what the tier can hold, however many went through it.
    #[test]
    fn evicted_large_bodies_release_their_memory_files() {
        const LEN: usize = 128 * 1024;
        let t = MemoryTier::new(8 << 20, 1, 1 << 20);
        let before = crate::cache::mapped::mapped_now();
        for i in 0..200u128 {
            let chunk = Bytes::from(vec![(i % 251) as u8; LEN]);
            let body = crate::cache::mapped::from_chunks(&[chunk], LEN).unwrap();
            t.insert(CacheKey(i), None, Box::new([]), obj_of(body));
        }
        // 8 MiB holds at most 64 such bodies; other tests running beside this one may hold
        // a few of their own.
        let alive = crate::cache::mapped::mapped_now();
        assert!(
            alive <= before + 64 + 8,
            "{alive} mapped bodies alive after 200 inserts"
        );
        drop(t);
        assert!(crate::cache::mapped::mapped_now() <= before + 8);
    }
}

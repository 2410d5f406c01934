//! The memory tier: a moka cache bounded by bytes (TinyLFU admission), one entry per URL
//! holding up to `max_variants` Vary variants. Storage only: no policy decisions here.

use super::key::CacheKey;
use super::object::Object;
use super::vary::{values_hash, VarySpec, VaryValues};
use http::HeaderMap;
use moka::sync::Cache;
use std::sync::Arc;

/// One variant of a URL: the request values it was stored for and the response.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    /// Normalised request values for the entry's `VarySpec` (empty without Vary).
    pub values: VaryValues,
    /// The stored response.
    pub object: Arc<Object>,
}

/// Everything stored for one URL.
#[derive(Debug)]
pub(crate) struct Entry {
    /// What the variants vary on; `None` means one variant for every request.
    pub vary: Option<VarySpec>,
    /// The most recently stored variant (held inline: most URLs have just one).
    pub first: Variant,
    /// Older variants, most recent first (boxed: absent for most URLs, and 8 bytes then).
    #[allow(clippy::box_collection)] // 8 bytes when absent (most URLs); a Vec is 24
    pub rest: Option<Box<Vec<Variant>>>,
}

impl Entry {
    /// Every variant, most recently stored first.
    pub(crate) fn variants(&self) -> impl Iterator<Item = &Variant> {
        std::iter::once(&self.first).chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    fn weight(&self) -> u32 {
        let w: usize = 64
            + self
                .variants()
                .map(|v| v.object.weight() + 16 * v.values.len())
                .sum::<usize>();
        u32::try_from(w).unwrap_or(u32::MAX)
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
#[derive(Clone)]
pub(crate) struct MemoryTier {
    cache: Cache<CacheKey, Arc<Entry>>,
    max_variants: usize,
}

impl MemoryTier {
    /// A store bounded to `max_bytes`, keeping at most `max_variants` variants per URL.
    pub(crate) fn new(max_bytes: u64, max_variants: usize) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<Entry>| v.weight())
            .build();
        Self {
            cache,
            max_variants: max_variants.max(1),
        }
    }

    /// Looks up the response stored for `key` that matches `req`'s Vary values.
    pub(crate) fn lookup(&self, key: &CacheKey, req: &HeaderMap) -> MemoryLookup {
        let Some(entry) = self.cache.get(key) else {
            return MemoryLookup::Miss;
        };
        // Expiry is lazy (a per-entry timer would cost more memory than the object's headers):
        // an object past its keep time is a miss, and the entry goes once none is useful.
        let now = super::clock::now_ms();
        let useful = |v: &Variant| v.object.fresh.keep_until_ms > now;
        match &entry.vary {
            None if useful(&entry.first) => MemoryLookup::Found(entry.first.object.clone(), 0),
            None => {
                self.cache.invalidate(key);
                MemoryLookup::Miss
            }
            Some(spec) => {
                let values = spec.values(req);
                match entry.variants().find(|v| v.values == values) {
                    Some(v) if useful(v) => {
                        MemoryLookup::Found(v.object.clone(), values_hash(&values))
                    }
                    _ => {
                        if !entry.variants().any(useful) {
                            self.cache.invalidate(key);
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
        let first = Variant {
            values: values.clone(),
            object,
        };
        let mut rest = Vec::new();
        if vary.is_some() {
            if let Some(old) = self.cache.get(&key) {
                if old.vary == vary {
                    rest.extend(
                        old.variants()
                            .filter(|v| v.values != values)
                            .take(self.max_variants - 1)
                            .cloned(),
                    );
                }
            }
        }
        let rest = (!rest.is_empty()).then(|| Box::new(rest));
        self.cache
            .insert(key, Arc::new(Entry { vary, first, rest }));
    }

    /// Most variants kept per URL.
    pub(crate) fn max_variants(&self) -> usize {
        self.max_variants
    }

    /// Copies what this tier holds into `to`, except keys `to` already holds (newer there);
    /// when `to` is smaller, its admission policy decides what stays.
    pub(crate) fn copy_into(&self, to: &MemoryTier) {
        for (k, v) in self.cache.iter() {
            to.cache.entry(*k).or_insert(v);
        }
        to.cache.run_pending_tasks();
    }

    /// What is stored for `key`, read without counting as an access: the eviction policy (its
    /// popularity estimate and recency order) is left as it was. For inspection only: moka's
    /// one read that leaves the policy alone is its iterator, so this is O(entries) when the
    /// key is present (`contains_key`, also policy-neutral, answers the absent case at once).
    pub(crate) fn peek(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        if !self.cache.contains_key(key) {
            return None;
        }
        self.cache
            .iter()
            .find_map(|(k, v)| (*k == *key).then_some(v))
    }

    /// Removes everything stored for `key` (all variants). Returns whether anything was there.
    pub(crate) fn remove(&self, key: &CacheKey) -> bool {
        self.cache.remove(key).is_some()
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// Bytes currently charged.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// URLs currently stored.
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::headers::StoredHeaders;
    use crate::cache::policy::{unix_ms, Freshness};
    use bytes::Bytes;
    use http::{HeaderValue, StatusCode};

    fn obj(body: &'static str) -> Arc<Object> {
        let now = unix_ms(std::time::SystemTime::now());
        Arc::new(Object {
            status: StatusCode::OK,
            headers: StoredHeaders::default(),
            body: Bytes::from_static(body.as_bytes()),
            fresh: Freshness {
                response_time_ms: now,
                initial_age_ms: 0,
                fresh_until_ms: now + 60_000,
                swr_ms: 0,
                sie_ms: 0,
                unreachable_ms: 0,
                has_validator: false,
                keep_until_ms: now + 60_000,
            },
            encoded: Box::default(),
            tags: Box::default(),
            purge_version: 0,
        })
    }

    #[test]
    fn variants_are_capped_and_replaced() {
        let s = MemoryTier::new(1 << 20, 2);
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
            matches!(s.lookup(&key, &req("a")), MemoryLookup::VaryMiss(_)),
            "oldest variant dropped"
        );
        match s.lookup(&key, &req("c")) {
            MemoryLookup::Found(o, _) => assert_eq!(o.body, "C"),
            other => panic!("{other:?}"),
        }
        // A response without Vary replaces the whole entry.
        s.insert(key, None, Box::new([]), obj("plain"));
        match s.lookup(&key, &req("b")) {
            MemoryLookup::Found(o, _) => assert_eq!(o.body, "plain"),
            other => panic!("{other:?}"),
        }
        assert!(s.remove(&key));
        assert!(matches!(s.lookup(&key, &req("b")), MemoryLookup::Miss));
    }
}

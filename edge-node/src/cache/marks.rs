//! Purge marks (generations): every purge is recorded as a mark (the purge version, and for
//! soft purges the time), and a stored object is purged when a mark that matches it is newer
//! than the purge version the object was fetched under. Recording is O(1) per purged item,
//! whatever the number of objects it covers; the check runs at lookup: one map probe for the
//! URL, one per tag of the object, a scan of the purged prefixes of the request's host, and the
//! global mark.
//!
//! The marks of a process are shared by its caches (edge and shield): the purge service
//! creates them, restores them from its state file and persists them after each purge.
//!
//! Memory is bounded. Past [`MAX_URL_MARKS`] URL marks (or [`MAX_TAG_MARKS`] tag marks), the
//! older half is folded into [`BUCKETS`] buckets by key (or tag) hash: a folded mark then
//! covers every key of its bucket, so an object fetched before it and hashed to the same
//! bucket is purged too. Folding can purge more than was asked, never less. Past
//! [`MAX_PREFIX_MARKS`] prefixes of one host, the older half folds into one mark for the whole
//! host, likewise.

use super::key::CacheKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

/// URL marks held one per key; past it the older half is folded into buckets.
pub(crate) const MAX_URL_MARKS: usize = 50_000;
/// Tag marks held one per tag; past it the older half is folded into buckets.
pub(crate) const MAX_TAG_MARKS: usize = 50_000;
/// Prefix marks held per host; past it the older half folds into one mark for the host.
pub(crate) const MAX_PREFIX_MARKS: usize = 1_000;
/// Buckets that folded URL (and tag) marks land in.
pub(crate) const BUCKETS: u64 = 65_536;

/// The newest hard and soft purge of one item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marks {
    /// Version of the newest hard purge (0: none).
    pub hard: u64,
    /// Version of the newest soft purge (0: none).
    pub soft: u64,
    /// When that soft purge was accepted (ms since the epoch).
    pub soft_at_ms: u64,
}

/// What the purges say about one stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purged {
    /// Not purged.
    Keep,
    /// Soft-purged: stale since this time (ms since the epoch).
    StaleSince(u64),
    /// Hard-purged: never serve it.
    Gone,
}

impl Purged {
    fn worst(self, other: Purged) -> Purged {
        match (self, other) {
            (Purged::Gone, _) | (_, Purged::Gone) => Purged::Gone,
            (Purged::StaleSince(a), Purged::StaleSince(b)) => Purged::StaleSince(a.min(b)),
            (Purged::StaleSince(a), _) | (_, Purged::StaleSince(a)) => Purged::StaleSince(a),
            _ => Purged::Keep,
        }
    }
}

/// One purge as the marks record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Its purge version.
    pub version: u64,
    /// Soft (mark stale) rather than hard (remove).
    pub soft: bool,
    /// When it was accepted (ms since the epoch): a soft purge makes objects stale from then.
    pub at_ms: u64,
}

impl Marks {
    fn record(&mut self, m: Mark) {
        if m.soft {
            if m.version > self.soft {
                self.soft = m.version;
                self.soft_at_ms = m.at_ms;
            }
        } else {
            self.hard = self.hard.max(m.version);
        }
    }

    /// Adds `other` into these marks, covering at least what either covered: the newest hard
    /// and soft versions, and the earlier soft time (stale windows count from the earlier).
    fn merge(&mut self, other: &Marks) {
        self.hard = self.hard.max(other.hard);
        if other.soft > 0 {
            self.soft_at_ms = if self.soft == 0 {
                other.soft_at_ms
            } else {
                self.soft_at_ms.min(other.soft_at_ms)
            };
            self.soft = self.soft.max(other.soft);
        }
    }

    /// The newest version these marks hold (the order folding goes by).
    fn newest(&self) -> u64 {
        self.hard.max(self.soft)
    }

    /// The verdict for an object fetched under purge version `stored`.
    pub(crate) fn verdict(&self, stored: u64) -> Purged {
        if self.hard > stored {
            Purged::Gone
        } else if self.soft > stored {
            Purged::StaleSince(self.soft_at_ms)
        } else {
            Purged::Keep
        }
    }
}

/// All purge marks of a node, and the purge version it has applied.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct GenState {
    /// The newest purge version applied.
    pub applied: u64,
    /// Purges of everything.
    pub all: Marks,
    /// URL purges, by cache key (hex).
    pub urls: HashMap<String, Marks>,
    /// Prefix purges: host -> (path prefix, marks).
    pub prefixes: HashMap<String, Vec<(String, Marks)>>,
    /// Tag purges.
    pub tags: HashMap<String, Marks>,
    /// Folded URL marks, by bucket of the cache key.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub url_buckets: HashMap<u16, Marks>,
    /// Folded tag marks, by bucket of the tag.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub tag_buckets: HashMap<u16, Marks>,
    /// Folded prefix marks: everything of the host.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub hosts: HashMap<String, Marks>,
}

/// The bucket of a cache key (its low bits: the key is a hash already).
fn key_bucket(key: &CacheKey) -> u16 {
    (key.0 % u128::from(BUCKETS)) as u16
}

/// The bucket of a tag: FNV-1a, stable across processes and versions (folded marks are
/// persisted by bucket).
fn tag_bucket(tag: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % BUCKETS) as u16
}

impl GenState {
    /// Folds the older half of the tag marks into buckets.
    fn fold_tags(&mut self) {
        let mut by_age: Vec<(u64, String)> = self
            .tags
            .iter()
            .map(|(t, m)| (m.newest(), t.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, t) in by_age.into_iter().take(self.tags.len() / 2) {
            if let Some(m) = self.tags.remove(&t) {
                self.tag_buckets
                    .entry(tag_bucket(&t))
                    .or_default()
                    .merge(&m);
            }
        }
    }

    /// Folds the older half of `host`'s prefix marks into one mark for the host.
    fn fold_prefixes(&mut self, host: &str) {
        let Some(list) = self.prefixes.get_mut(host) else {
            return;
        };
        list.sort_by_key(|(_, m)| m.newest());
        let older: Vec<_> = list.drain(..list.len() / 2).collect();
        let whole = self.hosts.entry(host.to_string()).or_default();
        for (_, m) in older {
            whole.merge(&m);
        }
    }
}

/// The shared, lock-protected purge marks of a process.
#[derive(Debug, Default)]
pub struct PurgeMarks {
    state: RwLock<GenState>,
    url_index: RwLock<HashMap<CacheKey, Marks>>,
    applied: AtomicU64,
    any: AtomicBool,
}

impl PurgeMarks {
    /// Marks restored from a snapshot.
    pub(crate) fn from_state(state: GenState) -> Self {
        let urls = state
            .urls
            .iter()
            .filter_map(|(k, m)| u128::from_str_radix(k, 16).ok().map(|k| (CacheKey(k), *m)))
            .collect();
        PurgeMarks {
            applied: AtomicU64::new(state.applied),
            any: AtomicBool::new(state.applied > 0),
            state: RwLock::new(state),
            url_index: RwLock::new(urls),
        }
    }

    /// A copy of the marks, for persistence.
    pub(crate) fn snapshot(&self) -> GenState {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The newest purge version applied.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Waits until version `v` is applied here, for at most `limit`; returns whether it is.
    pub async fn wait_applied(&self, v: u64, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.applied() < v {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        true
    }

    /// Records a purge of everything.
    pub fn record_all(&self, m: Mark) {
        self.with_state(|s| s.all.record(m));
    }

    /// Records a purge of the objects carrying `tag`.
    pub fn record_tag(&self, tag: &str, m: Mark) {
        self.with_state(|s| {
            s.tags.entry(tag.to_string()).or_default().record(m);
            if s.tags.len() > MAX_TAG_MARKS {
                s.fold_tags();
            }
        });
    }

    /// Records a purge of the paths of `host` starting with `prefix`.
    pub fn record_prefix(&self, host: &str, prefix: &str, m: Mark) {
        self.with_state(|s| {
            let list = s.prefixes.entry(host.to_string()).or_default();
            match list.iter_mut().find(|(p, _)| p == prefix) {
                Some((_, marks)) => marks.record(m),
                None => {
                    let mut marks = Marks::default();
                    marks.record(m);
                    list.push((prefix.to_string(), marks));
                }
            }
            if list.len() > MAX_PREFIX_MARKS {
                s.fold_prefixes(host);
            }
        });
    }

    /// Records a purge of one cache key (all its variants).
    pub fn record_url(&self, key: CacheKey, m: Mark) {
        if let Ok(mut idx) = self.url_index.write() {
            let marks = idx.entry(key).or_default();
            marks.record(m);
            let marks = *marks;
            let fold = idx.len() > MAX_URL_MARKS;
            self.with_state(|s| {
                s.urls.insert(format!("{:032x}", key.0), marks);
            });
            if fold {
                self.fold_urls(&mut idx);
            }
        }
    }

    /// Folds the older half of the URL marks into buckets (`idx` is the locked index).
    fn fold_urls(&self, idx: &mut HashMap<CacheKey, Marks>) {
        let mut by_age: Vec<(u64, CacheKey)> = idx.iter().map(|(k, m)| (m.newest(), *k)).collect();
        by_age.sort_unstable();
        let older: Vec<(CacheKey, Marks)> = by_age
            .into_iter()
            .take(idx.len() / 2)
            .filter_map(|(_, k)| idx.remove(&k).map(|m| (k, m)))
            .collect();
        self.with_state(|s| {
            for (k, m) in &older {
                s.urls.remove(&format!("{:032x}", k.0));
                s.url_buckets.entry(key_bucket(k)).or_default().merge(m);
            }
        });
    }

    /// Publishes `version` as applied, once every part of that purge is recorded: objects
    /// fetched from now on carry it and are not covered by it.
    pub fn applied_up_to(&self, version: u64) {
        self.with_state(|s| s.applied = s.applied.max(version));
        self.applied.fetch_max(version, Ordering::SeqCst);
    }

    fn with_state(&self, f: impl FnOnce(&mut GenState)) {
        if let Ok(mut s) = self.state.write() {
            f(&mut s);
        }
        self.any.store(true, Ordering::SeqCst);
    }

    /// The verdict for an object under `key` (request `host` and `path`), carrying `tags`,
    /// fetched under purge version `stored`.
    pub fn verdict(
        &self,
        key: &CacheKey,
        host: &str,
        path: &str,
        tags: &[Box<str>],
        stored: u64,
    ) -> Purged {
        if !self.any.load(Ordering::Relaxed) || stored >= self.applied.load(Ordering::Relaxed) {
            return Purged::Keep;
        }
        let mut v = match self.url_index.read() {
            Ok(idx) => idx.get(key).map_or(Purged::Keep, |m| m.verdict(stored)),
            Err(_) => Purged::Keep,
        };
        let Ok(s) = self.state.read() else { return v };
        v = v.worst(s.all.verdict(stored));
        if !s.url_buckets.is_empty() {
            if let Some(m) = s.url_buckets.get(&key_bucket(key)) {
                v = v.worst(m.verdict(stored));
            }
        }
        if !s.hosts.is_empty() {
            if let Some(m) = s.hosts.get(host) {
                v = v.worst(m.verdict(stored));
            }
        }
        if let Some(list) = s.prefixes.get(host) {
            for (prefix, m) in list {
                if path.starts_with(prefix.as_str()) {
                    v = v.worst(m.verdict(stored));
                }
            }
        }
        for t in tags {
            if let Some(m) = s.tags.get(&**t) {
                v = v.worst(m.verdict(stored));
            }
            if !s.tag_buckets.is_empty() {
                if let Some(m) = s.tag_buckets.get(&tag_bucket(t)) {
                    v = v.worst(m.verdict(stored));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(version: u64, soft: bool) -> Mark {
        Mark {
            version,
            soft,
            at_ms: version * 1000,
        }
    }

    #[test]
    fn marks_follow_versions() {
        let g = PurgeMarks::default();
        let key = CacheKey(42);
        let tags: Vec<Box<str>> = vec!["product-7".into()];
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 0),
            Purged::Keep
        );
        g.record_tag("product-7", mark(1, false));
        g.applied_up_to(1);
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 0),
            Purged::Gone
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 1),
            Purged::Keep,
            "fetched after the purge"
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &[], 0),
            Purged::Keep,
            "other tags untouched"
        );
        g.record_prefix("a.test", "/img/", mark(2, true));
        g.applied_up_to(2);
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &[], 1),
            Purged::StaleSince(2000)
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/css/x.css", &[], 1),
            Purged::Keep
        );
        assert_eq!(
            g.verdict(&key, "b.test", "/img/x.png", &[], 1),
            Purged::Keep
        );
        g.record_url(key, mark(3, false));
        g.applied_up_to(3);
        assert_eq!(g.verdict(&key, "z.test", "/", &[], 2), Purged::Gone);
        assert_eq!(
            g.verdict(&CacheKey(43), "z.test", "/", &[], 2),
            Purged::Keep
        );
        g.record_all(mark(4, true));
        g.applied_up_to(4);
        assert_eq!(
            g.verdict(&CacheKey(43), "z.test", "/", &[], 3),
            Purged::StaleSince(4000)
        );
        assert_eq!(g.applied(), 4);

        let restored = PurgeMarks::from_state(g.snapshot());
        assert_eq!(restored.applied(), 4);
        assert_eq!(restored.verdict(&key, "z.test", "/", &[], 2), Purged::Gone);
        assert_eq!(
            restored.verdict(&CacheKey(9), "a.test", "/img/1", &[], 1),
            Purged::StaleSince(2000)
        );
    }

    #[test]
    fn url_marks_stay_bounded_and_folding_never_purges_less() {
        let g = PurgeMarks::default();
        let n = MAX_URL_MARKS as u64 + 1;
        for v in 1..=n {
            // Keys spread like hashes: distinct low bits, so buckets differ.
            g.record_url(
                CacheKey(u128::from(v) * 0x9e37_79b9_7f4a_7c15),
                mark(v, v % 3 == 0),
            );
            g.applied_up_to(v);
        }
        let idx = g.url_index.read().unwrap().len();
        let snap = g.snapshot();
        assert!(idx <= MAX_URL_MARKS / 2 + 1, "{idx} URL marks held");
        assert_eq!(snap.urls.len(), idx, "the persisted copy folds alike");
        assert!(!snap.url_buckets.is_empty());
        for g in [&g, &PurgeMarks::from_state(snap)] {
            for v in 1..=n {
                let key = CacheKey(u128::from(v) * 0x9e37_79b9_7f4a_7c15);
                let want = if v % 3 == 0 {
                    Purged::StaleSince(v * 1000)
                } else {
                    Purged::Gone
                };
                let got = g.verdict(&key, "h", "/", &[], v - 1);
                // A folded soft mark may have become hard (another key of its bucket), or
                // stale from an earlier time; it is never Keep.
                assert!(
                    got == want
                        || got == Purged::Gone
                        || matches!(got, Purged::StaleSince(t) if t <= v * 1000),
                    "key {v}: {got:?}"
                );
                assert_eq!(
                    g.verdict(&key, "h", "/", &[], v),
                    Purged::Keep,
                    "fetched after"
                );
            }
        }
    }

    #[test]
    fn tag_and_prefix_marks_stay_bounded() {
        let g = PurgeMarks::default();
        let n = MAX_TAG_MARKS as u64 + 1;
        for v in 1..=n {
            g.record_tag(&format!("tag-{v}"), mark(v, false));
        }
        let p = MAX_PREFIX_MARKS as u64 + 1;
        for v in n + 1..=n + p {
            g.record_prefix("a.test", &format!("/p{v}/"), mark(v, false));
        }
        g.applied_up_to(n + p);
        let s = g.snapshot();
        assert!(s.tags.len() <= MAX_TAG_MARKS / 2 + 1, "{}", s.tags.len());
        assert!(s.prefixes["a.test"].len() <= MAX_PREFIX_MARKS / 2 + 1);
        for v in 1..=n {
            let tags: Vec<Box<str>> = vec![format!("tag-{v}").into()];
            assert_eq!(
                g.verdict(&CacheKey(1), "b.test", "/", &tags, v - 1),
                Purged::Gone
            );
            // Folded tags share buckets, so only an object fetched after them all is kept.
            assert_eq!(
                g.verdict(&CacheKey(1), "b.test", "/", &tags, n + p),
                Purged::Keep
            );
        }
        for v in n + 1..=n + p {
            let path = format!("/p{v}/x");
            assert_eq!(
                g.verdict(&CacheKey(1), "a.test", &path, &[], v - 1),
                Purged::Gone
            );
            assert_eq!(
                g.verdict(&CacheKey(1), "a.test", &path, &[], n + p),
                Purged::Keep
            );
        }
        // Another host is untouched by a.test's folded prefixes.
        assert_eq!(
            g.verdict(&CacheKey(1), "b.test", "/p1/x", &[], 0),
            Purged::Keep
        );
    }

    #[test]
    fn merged_marks_cover_both() {
        let mut a = Marks::default();
        a.record(mark(5, true));
        let mut b = Marks::default();
        b.record(mark(3, true));
        b.record(mark(2, false));
        a.merge(&b);
        assert_eq!((a.hard, a.soft, a.soft_at_ms), (2, 5, 3000));
        assert_eq!(a.verdict(1), Purged::Gone);
        assert_eq!(a.verdict(4), Purged::StaleSince(3000));
        assert_eq!(a.verdict(5), Purged::Keep);
    }

    #[test]
    fn recording_a_tag_is_independent_of_how_many_objects_carry_it() {
        // The cost of a purge is the marks it writes: one per tag named, never a cache scan.
        let g = PurgeMarks::default();
        g.record_tag("t", mark(1, false));
        assert_eq!(g.snapshot().tags.len(), 1);
    }
}

//! Purge generations: every purge is recorded as a mark (the purge version, and for soft purges
//! the time), and a stored object is purged when a mark that matches it is newer than the purge
//! version the object was fetched under. Recording is O(1) per purged item, whatever the number
//! of objects it covers; the check runs at lookup: one map probe for the URL, one per tag of the
//! object, a scan of the purged prefixes of the request's host, and the global mark.

use super::event::{PurgeEvent, PurgeTarget};
use crate::cache::key::CacheKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

/// The newest hard and soft purge of one item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// Version of the newest hard purge (0: none).
    pub hard: u64,
    /// Version of the newest soft purge (0: none).
    pub soft: u64,
    /// When that soft purge was accepted (ms since the epoch).
    pub soft_at_ms: u64,
}

/// What the purges say about one stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not purged.
    Keep,
    /// Soft-purged: stale since this time (ms since the epoch).
    StaleSince(u64),
    /// Hard-purged: never serve it.
    Gone,
}

impl Verdict {
    fn worst(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Gone, _) | (_, Verdict::Gone) => Verdict::Gone,
            (Verdict::StaleSince(a), Verdict::StaleSince(b)) => Verdict::StaleSince(a.min(b)),
            (Verdict::StaleSince(a), _) | (_, Verdict::StaleSince(a)) => Verdict::StaleSince(a),
            _ => Verdict::Keep,
        }
    }
}

impl Marks {
    fn record(&mut self, ev: &PurgeEvent) {
        if ev.soft {
            if ev.version > self.soft {
                self.soft = ev.version;
                self.soft_at_ms = ev.at_ms;
            }
        } else {
            self.hard = self.hard.max(ev.version);
        }
    }

    /// The verdict for an object fetched under purge version `stored`.
    pub fn verdict(&self, stored: u64) -> Verdict {
        if self.hard > stored {
            Verdict::Gone
        } else if self.soft > stored {
            Verdict::StaleSince(self.soft_at_ms)
        } else {
            Verdict::Keep
        }
    }
}

/// All purge marks of a node, and the purge version it has applied.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct GenState {
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
}

/// The shared, lock-protected purge marks of a process.
#[derive(Debug, Default)]
pub struct Generations {
    state: RwLock<GenState>,
    url_index: RwLock<HashMap<CacheKey, Marks>>,
    applied: AtomicU64,
    any: AtomicBool,
}

impl Generations {
    /// Marks restored from a snapshot.
    pub fn from_state(state: GenState) -> Self {
        let urls = state
            .urls
            .iter()
            .filter_map(|(k, m)| u128::from_str_radix(k, 16).ok().map(|k| (CacheKey(k), *m)))
            .collect();
        Generations {
            applied: AtomicU64::new(state.applied),
            any: AtomicBool::new(state.applied > 0),
            state: RwLock::new(state),
            url_index: RwLock::new(urls),
        }
    }

    /// A copy of the marks, for persistence.
    pub fn snapshot(&self) -> GenState {
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

    /// Records `ev` for everything but URLs (whose keys depend on each site's query rules):
    /// the caller records those with `record_url` first, then calls this, which publishes the
    /// new applied version.
    pub fn record(&self, ev: &PurgeEvent) {
        let Ok(mut s) = self.state.write() else {
            return;
        };
        match &ev.target {
            PurgeTarget::All => s.all.record(ev),
            PurgeTarget::Tags(tags) => {
                for t in tags {
                    s.tags.entry(t.clone()).or_default().record(ev);
                }
            }
            PurgeTarget::Prefixes(ps) => {
                for p in ps {
                    let list = s.prefixes.entry(p.host.clone()).or_default();
                    match list.iter_mut().find(|(prefix, _)| *prefix == p.path) {
                        Some((_, m)) => m.record(ev),
                        None => {
                            let mut m = Marks::default();
                            m.record(ev);
                            list.push((p.path.clone(), m));
                        }
                    }
                }
            }
            PurgeTarget::Urls(_) => {}
        }
        s.applied = s.applied.max(ev.version);
        self.any.store(true, Ordering::SeqCst);
        self.applied.fetch_max(ev.version, Ordering::SeqCst);
    }

    /// Records a URL purge of `ev` for one cache key.
    pub fn record_url(&self, key: CacheKey, ev: &PurgeEvent) {
        if let Ok(mut idx) = self.url_index.write() {
            idx.entry(key).or_default().record(ev);
            let m = idx[&key];
            if let Ok(mut s) = self.state.write() {
                s.urls.insert(format!("{:032x}", key.0), m);
            }
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
    ) -> Verdict {
        if !self.any.load(Ordering::Relaxed) || stored >= self.applied.load(Ordering::Relaxed) {
            return Verdict::Keep;
        }
        let mut v = match self.url_index.read() {
            Ok(idx) => idx.get(key).map_or(Verdict::Keep, |m| m.verdict(stored)),
            Err(_) => Verdict::Keep,
        };
        let Ok(s) = self.state.read() else { return v };
        v = v.worst(s.all.verdict(stored));
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
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::event::UrlTarget;

    fn ev(version: u64, soft: bool, target: PurgeTarget) -> PurgeEvent {
        PurgeEvent {
            version,
            at_ms: version * 1000,
            soft,
            target,
        }
    }

    #[test]
    fn marks_follow_versions() {
        let g = Generations::default();
        let key = CacheKey(42);
        let tags: Vec<Box<str>> = vec!["product-7".into()];
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 0),
            Verdict::Keep
        );
        g.record(&ev(1, false, PurgeTarget::Tags(vec!["product-7".into()])));
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 0),
            Verdict::Gone
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &tags, 1),
            Verdict::Keep,
            "fetched after the purge"
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &[], 0),
            Verdict::Keep,
            "other tags untouched"
        );
        g.record(&ev(
            2,
            true,
            PurgeTarget::Prefixes(vec![UrlTarget {
                host: "a.test".into(),
                path: "/img/".into(),
            }]),
        ));
        assert_eq!(
            g.verdict(&key, "a.test", "/img/x.png", &[], 1),
            Verdict::StaleSince(2000)
        );
        assert_eq!(
            g.verdict(&key, "a.test", "/css/x.css", &[], 1),
            Verdict::Keep
        );
        assert_eq!(
            g.verdict(&key, "b.test", "/img/x.png", &[], 1),
            Verdict::Keep
        );
        let e3 = ev(3, false, PurgeTarget::Urls(vec![]));
        g.record_url(key, &e3);
        g.record(&e3);
        assert_eq!(g.verdict(&key, "z.test", "/", &[], 2), Verdict::Gone);
        assert_eq!(
            g.verdict(&CacheKey(43), "z.test", "/", &[], 2),
            Verdict::Keep
        );
        g.record(&ev(4, true, PurgeTarget::All));
        assert_eq!(
            g.verdict(&CacheKey(43), "z.test", "/", &[], 3),
            Verdict::StaleSince(4000)
        );
        assert_eq!(g.applied(), 4);

        let restored = Generations::from_state(g.snapshot());
        assert_eq!(restored.applied(), 4);
        assert_eq!(restored.verdict(&key, "z.test", "/", &[], 2), Verdict::Gone);
        assert_eq!(
            restored.verdict(&CacheKey(9), "a.test", "/img/1", &[], 1),
            Verdict::StaleSince(2000)
        );
    }

    #[test]
    fn recording_a_tag_is_independent_of_how_many_objects_carry_it() {
        // The cost of a purge is the marks it writes: one per tag named, never a cache scan.
        let g = Generations::default();
        g.record(&ev(1, false, PurgeTarget::Tags(vec!["t".into()])));
        assert_eq!(g.snapshot().tags.len(), 1);
    }
}

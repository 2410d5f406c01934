//! Inspecting what the cache holds for a URL ([`Cache::inspect`], the admin API's
//! `GET /cache?url=`): every stored variant in every tier, with its Vary values, timings, size,
//! headers, tags and what the purge marks say about it.
//!
//! Inspection changes nothing it looks at: the memory tier is read without counting as an
//! access, the disk tier's index without a recency bump, nothing is promoted, expired entries
//! are reported rather than dropped, and the lookup path is untouched.

use super::headers::StoredHeaders;
use super::key::CacheKey;
use super::marks::Purged;
use super::object::Object;
use super::policy::{Freshness, Usability};
use super::vary::VarySpec;
use super::Cache;
use bytes::Bytes;
use serde::Serialize;
use std::collections::BTreeMap;

/// One stored variant of a URL in one tier, as [`Cache::inspect`] reports it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// The URL's cache key (32 hex digits).
    pub key: String,
    /// The tier holding it: `memory` or `disk`.
    pub tier: &'static str,
    /// The request fields the URL's responses vary on (lower-case; empty without `Vary`).
    pub vary: Vec<String>,
    /// This variant's secondary key: the normalised request value of each `vary` field it was
    /// stored for (`null`: the field was absent).
    pub variant: BTreeMap<String, Option<String>>,
    /// The stored status.
    pub status: u16,
    /// What it is now, purge marks included: `fresh`, `stale-while-revalidate` (served while
    /// refreshed in the background), `stale-if-error` (revalidated first, served if the
    /// upstream fails), `stale` (revalidated first), `expired` (past its keep time, dropped
    /// at the next lookup) or `purged` (a hard purge covers it: never served).
    pub state: &'static str,
    /// `Age` it would be served with, in seconds.
    pub age_secs: u64,
    /// Freshness left, in seconds (0 when stale).
    pub ttl_secs: u64,
    /// Its freshness lifetime as stored, in seconds (the `Age` it arrived with included).
    pub lifetime_secs: u64,
    /// Stale-while-revalidate window after its freshness, in seconds.
    pub stale_while_revalidate_secs: u64,
    /// Stale-if-error window after its freshness, in seconds.
    pub stale_if_error_secs: u64,
    /// Window after its freshness in which it is served when the next tier cannot be
    /// reached, in seconds.
    pub stale_if_unreachable_secs: u64,
    /// Time left before the entry is no longer worth keeping, in seconds.
    pub keep_secs: u64,
    /// Whether it has a validator (`ETag`, `Last-Modified`) for revalidation.
    pub has_validator: bool,
    /// When it was received (ms since the Unix epoch).
    pub stored_at_ms: u64,
    /// Bytes of body.
    pub body_bytes: u64,
    /// Bytes it costs in its tier (memory: its charge against `memory_bytes`; disk: its file).
    pub stored_bytes: u64,
    /// Compressed forms the node made of it (memory only): `gzip`, `br`.
    pub encodings: Vec<&'static str>,
    /// Too large for memory: kept on disk only and streamed from there.
    pub large: bool,
    /// The stored response fields, in order (`[name, value]`).
    pub headers: Vec<(String, String)>,
    /// Its purge tags (`Surrogate-Key`, `Cache-Tag`).
    pub tags: Vec<String>,
    /// The purge version applied when its fetch started: purges after it cover it.
    pub purge_version: u64,
    /// What the purge marks say: `none`, `soft` (stale from `purged_at_ms`) or `hard` (gone).
    pub purge: &'static str,
    /// When a soft purge made it stale (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged_at_ms: Option<u64>,
}

/// What a stored response looks like to the report, whichever tier holds it.
struct Stored<'a> {
    status: http::StatusCode,
    fresh: Freshness,
    headers: &'a StoredHeaders,
    tags: &'a [Box<str>],
    purge_version: u64,
    body_bytes: u64,
    stored_bytes: u64,
    encodings: Vec<&'static str>,
    large: bool,
}

impl<'a> Stored<'a> {
    fn memory(o: &'a Object) -> Self {
        Stored {
            status: o.status,
            fresh: o.fresh,
            headers: &o.headers,
            tags: o.tags(),
            purge_version: o.purge_version,
            body_bytes: o.body.len() as u64,
            stored_bytes: o.weight() as u64,
            encodings: o.encoded().iter().map(|(c, _)| c.token()).collect(),
            large: false,
        }
    }
}

/// Where the object is being looked at from: the URL's host and path (for prefix marks).
struct At<'a> {
    host: &'a str,
    path: &'a str,
    now_ms: u64,
}

impl Cache {
    /// Whether the cache has a disk tier (`None`: memory only), and whether its index is
    /// rebuilt (until then inspection, like lookups, sees nothing on disk).
    pub fn disk_ready(&self) -> Option<bool> {
        self.disk.as_ref().map(|d| d.is_ready())
    }

    /// What every tier holds under each of `keys` (the keys of one URL, as the purge of that
    /// URL computes them), `host` and `path` being the URL's (prefix purges match them).
    /// Changes nothing: no access is counted, nothing is promoted or dropped.
    pub async fn inspect(&self, keys: &[CacheKey], host: &str, path: &str) -> Vec<EntryView> {
        let at = At {
            host,
            path,
            now_ms: super::clock::now_ms(),
        };
        let mut out = Vec::new();
        for key in keys {
            if let Some(entry) = self.memory.load().peek(key) {
                for (values, object) in entry.variants() {
                    let s = Stored::memory(object);
                    out.push(self.view(key, "memory", entry.vary(), values, s, &at));
                }
            }
            let Some(disk) = &self.disk else { continue };
            for p in disk.peek(*key).await {
                let m = &p.meta;
                let s = Stored {
                    status: m.status,
                    fresh: m.fresh,
                    headers: &m.headers,
                    tags: &m.tags,
                    purge_version: m.purge_version,
                    body_bytes: p.body_len,
                    stored_bytes: p.file_len,
                    encodings: Vec::new(),
                    large: p.body_len > self.max_object(),
                };
                out.push(self.view(key, "disk", m.vary.as_ref(), &m.values, s, &at));
            }
        }
        out
    }

    fn view(
        &self,
        key: &CacheKey,
        tier: &'static str,
        vary: Option<&VarySpec>,
        values: &[Option<Bytes>],
        s: Stored<'_>,
        at: &At<'_>,
    ) -> EntryView {
        let names: Vec<String> = vary
            .map(|v| v.0.iter().map(|n| n.as_str().to_string()).collect())
            .unwrap_or_default();
        let variant = names
            .iter()
            .zip(values.iter())
            .map(|(n, v)| {
                let v = v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                (n.clone(), v)
            })
            .collect();
        let verdict = self
            .marks
            .verdict(key, at.host, at.path, s.tags, s.purge_version);
        // A soft purge makes it stale from that moment, exactly as a lookup sees it.
        let mut fresh = s.fresh;
        let (purge, purged_at_ms) = match verdict {
            Purged::Keep => ("none", None),
            Purged::StaleSince(t) => {
                fresh.fresh_until_ms = fresh.fresh_until_ms.min(t);
                ("soft", Some(t))
            }
            Purged::Gone => ("hard", None),
        };
        let now = at.now_ms;
        let state = if verdict == Purged::Gone {
            "purged"
        } else if fresh.keep_until_ms <= now {
            "expired"
        } else {
            match fresh.usability(now) {
                Usability::Fresh => "fresh",
                Usability::StaleWhileRevalidate => "stale-while-revalidate",
                Usability::Stale {
                    serve_on_error: true,
                } => "stale-if-error",
                Usability::Stale { .. } => "stale",
            }
        };
        let orig = s.fresh;
        let secs = |ms: u64| ms / 1000;
        EntryView {
            key: format!("{:032x}", key.0),
            tier,
            vary: names,
            variant,
            status: s.status.as_u16(),
            state,
            age_secs: fresh.age_secs(now),
            ttl_secs: secs(fresh.fresh_until_ms.saturating_sub(now)),
            // Rounded: its parts were stored in whole milliseconds each.
            lifetime_secs: secs(
                (orig.fresh_until_ms + u64::from(orig.initial_age_ms) + 500)
                    .saturating_sub(orig.response_time_ms),
            ),
            stale_while_revalidate_secs: secs(u64::from(orig.swr_ms)),
            stale_if_error_secs: secs(u64::from(orig.sie_ms)),
            stale_if_unreachable_secs: secs(u64::from(orig.unreachable_ms)),
            keep_secs: fresh.time_to_keep(now).as_secs(),
            has_validator: s.headers.has_validator(),
            stored_at_ms: orig.response_time_ms,
            body_bytes: s.body_bytes,
            stored_bytes: s.stored_bytes,
            encodings: s.encodings,
            large: s.large,
            headers: s
                .headers
                .to_map()
                .iter()
                .map(|(n, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_string(), v)
                })
                .collect(),
            tags: s.tags.iter().map(|t| t.to_string()).collect(),
            purge_version: s.purge_version,
            purge,
            purged_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cache::marks::{Mark, PurgeMarks};
    use crate::cache::CacheOptions;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};
    use std::sync::Arc;

    fn object(body: &'static str, now: u64) -> Arc<Object> {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        Arc::new(Object {
            status: http::StatusCode::OK,
            headers: StoredHeaders::from_map(&h, |_| true),
            body: Bytes::from_static(body.as_bytes()),
            fresh: Freshness {
                response_time_ms: now - 5_000,
                initial_age_ms: 1_000,
                fresh_until_ms: now + 55_000,
                swr_ms: 10_000,
                sie_ms: 20_000,
                unreachable_ms: 0,
                keep_until_ms: now + 75_000,
            },
            extras: crate::cache::Extras::new(Box::default(), vec!["t1".into()].into_boxed_slice()),
            purge_version: 0,
        })
    }

    #[tokio::test]
    async fn reports_each_variant_and_the_purge_marks() {
        let marks = Arc::new(PurgeMarks::default());
        let opts = CacheOptions {
            memory_bytes: 1 << 20,
            max_variants: 4,
            max_object_bytes: 1 << 16,
            disk: None,
        };
        let cache = Cache::new(&opts, marks.clone());
        let key = CacheKey::new("http", "a.test", "/x", None);
        let mut vary_h = HeaderMap::new();
        vary_h.insert("vary", HeaderValue::from_static("Accept-Language"));
        let spec = VarySpec::from_response(&vary_h).unwrap();
        let now = crate::cache::clock::now_ms();
        for lang in ["de", "fr"] {
            let mut req = HeaderMap::new();
            req.insert("accept-language", HeaderValue::from_static(lang));
            cache.insert(
                key,
                Some(spec.clone()),
                spec.values(&req),
                object(lang, now),
            );
        }
        let seen = cache.inspect(&[key], "a.test", "/x").await;
        assert_eq!(seen.len(), 2);
        let langs: Vec<_> = seen
            .iter()
            .map(|e| e.variant["accept-language"].clone().unwrap())
            .collect();
        assert_eq!(langs, ["fr", "de"], "most recent first");
        let e = &seen[0];
        assert_eq!((e.tier, e.state, e.status), ("memory", "fresh", 200));
        assert_eq!((e.age_secs, e.lifetime_secs), (6, 61));
        assert!((54..=55).contains(&e.ttl_secs), "{}", e.ttl_secs);
        assert_eq!(e.headers, [("content-type".into(), "text/plain".into())]);
        assert_eq!(e.purge, "none");
        // A soft tag purge makes both stale from its time; a hard URL purge makes them purged.
        marks.record_tag(
            "t1",
            Mark {
                version: 1,
                soft: true,
                at_ms: now,
            },
        );
        marks.applied_up_to(1);
        let seen = cache.inspect(&[key], "a.test", "/x").await;
        assert!(seen
            .iter()
            .all(|e| e.purge == "soft" && e.state == "stale-while-revalidate" && e.ttl_secs == 0));
        marks.record_url(
            key,
            Mark {
                version: 2,
                soft: false,
                at_ms: now,
            },
        );
        marks.applied_up_to(2);
        let seen = cache.inspect(&[key], "a.test", "/x").await;
        assert!(seen
            .iter()
            .all(|e| e.purge == "hard" && e.state == "purged"));
        assert!(cache
            .inspect(
                &[CacheKey::new("https", "a.test", "/x", None)],
                "a.test",
                "/x"
            )
            .await
            .is_empty());
    }
}

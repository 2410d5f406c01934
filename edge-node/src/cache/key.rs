//! Cache keys: scheme, host, path and normalised query hashed to a fixed-size key. Pure.
//!
//! The key is xxh3-128 of the parts with separators, so a lookup hashes once and compares 16
//! bytes. Vary is not part of this primary key: variants of one URL live under one entry (see
//! `vary.rs`), which is what lets a purge by URL remove all of them.

use std::borrow::Cow;
use xxhash_rust::xxh3::Xxh3;

/// How the query string enters the cache key (a site's `query` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryMode {
    /// Keep the query exactly as sent (minus dropped parameters).
    #[default]
    Keep,
    /// Sort parameters so `?a=1&b=2` and `?b=2&a=1` share one entry.
    Sort,
    /// Leave the query out of the key and the upstream request entirely.
    Ignore,
}

/// A primary cache key: one per URL (scheme, host, path, normalised query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub u128);

impl CacheKey {
    /// Hashes the parts of a URL; `host` must already be lower-case without a port.
    pub fn new(scheme: &str, host: &str, path: &str, query: Option<&str>) -> Self {
        let mut h = Xxh3::new();
        h.update(scheme.as_bytes());
        h.update(b"\0");
        h.update(host.as_bytes());
        h.update(b"\0");
        h.update(path.as_bytes());
        if let Some(q) = query {
            h.update(b"\0?");
            h.update(q.as_bytes());
        }
        CacheKey(h.digest128())
    }

    /// Short hex form for logs and headers.
    pub fn short(&self) -> String {
        format!("{:016x}", (self.0 >> 64) as u64)
    }
}

/// Normalises a query string for the key and the upstream request: drops parameters matching
/// `drop` (exact names, or prefixes ending in `*`), and sorts parameters when asked to.
/// Returns `None` when nothing is left.
pub(crate) fn normalize_query<'a>(
    query: Option<&'a str>,
    mode: QueryMode,
    drop: &[String],
) -> Option<Cow<'a, str>> {
    let q = query?;
    if mode == QueryMode::Ignore {
        return None;
    }
    if q.is_empty() {
        return None;
    }
    if drop.is_empty() && mode == QueryMode::Keep {
        return Some(Cow::Borrowed(q));
    }
    let mut params: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !drop.iter().any(|d| match d.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == d,
            })
        })
        .collect();
    if params.is_empty() {
        return None;
    }
    if mode == QueryMode::Sort {
        // Stable sort by the whole `name=value` so repeated names keep a deterministic order.
        params.sort_unstable();
    }
    Some(Cow::Owned(params.join("&")))
}

/// Lower-cases a Host value and strips its port; `None` if it is not a plausible host.
pub(crate) fn normalize_host(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        let end = rest.find(']')?;
        &rest[..end]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
    {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_modes() {
        let drop = vec!["utm_*".to_string(), "fbclid".to_string()];
        type Case<'a> = (Option<&'a str>, QueryMode, &'a [String], Option<&'a str>);
        let cases: &[Case] = &[
            (None, QueryMode::Keep, &[], None),
            (Some(""), QueryMode::Keep, &[], None),
            (Some("b=2&a=1"), QueryMode::Keep, &[], Some("b=2&a=1")),
            (Some("b=2&a=1"), QueryMode::Sort, &[], Some("a=1&b=2")),
            (Some("b=2&a=1"), QueryMode::Ignore, &[], None),
            (
                Some("a=1&utm_source=x&fbclid=y"),
                QueryMode::Keep,
                &drop,
                Some("a=1"),
            ),
            (Some("utm_medium=x"), QueryMode::Keep, &drop, None),
            (Some("fbclid2=1"), QueryMode::Keep, &drop, Some("fbclid2=1")),
        ];
        for (q, mode, drop, want) in cases {
            assert_eq!(
                normalize_query(*q, *mode, drop).as_deref(),
                *want,
                "{q:?} {mode:?}"
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            normalize_host("WWW.Example.test:8080").as_deref(),
            Some("www.example.test")
        );
        assert_eq!(
            normalize_host("example.test.").as_deref(),
            Some("example.test")
        );
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(normalize_host("evil.test/path"), None);
        assert_eq!(normalize_host("a:b:c"), None);
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn keys_differ_by_each_part() {
        let base = CacheKey::new("http", "a.test", "/x", Some("q=1"));
        assert_ne!(base, CacheKey::new("https", "a.test", "/x", Some("q=1")));
        assert_ne!(base, CacheKey::new("http", "b.test", "/x", Some("q=1")));
        assert_ne!(base, CacheKey::new("http", "a.test", "/y", Some("q=1")));
        assert_ne!(base, CacheKey::new("http", "a.test", "/x", None));
        // Separators keep "/x?" + "q" apart from "/x" + "?q".
        assert_ne!(CacheKey::new("http", "a.test", "/x?q", None), base);
        assert_eq!(base, CacheKey::new("http", "a.test", "/x", Some("q=1")));
    }
}

//! [`PurgeHandle`]: purges of a layer's cache by URL (every variant), URL prefix, tag
//! (`Surrogate-Key`, `Cache-Tag`) or everything, hard (removed) or soft (stale from now, so
//! `stale-if-error` still applies). Prefix, tag and full purges are O(1): the cache's purge
//! marks are checked at lookup.

use super::key;
use super::state::Shared;
use crate::cache::policy::unix_ms;
use crate::cache::Mark;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// What to purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge<'a> {
    /// Every variant of one absolute URL (`http://host/path?query`; both schemes).
    Url(&'a str),
    /// Every URL of a host whose path starts with the prefix (`http://host/img/`).
    Prefix(&'a str),
    /// Every response that carried this tag in `Surrogate-Key` or `Cache-Tag`.
    Tag(&'a str),
    /// Everything.
    All,
}

/// A purge naming something that is not an absolute `http(s)://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an absolute http(s) URL: {0}")]
pub struct PurgeError(pub String);

/// Purges the cache of a [`CacheLayer`](super::CacheLayer); cheap to clone, usable from any
/// thread (a purge endpoint of the application, a message consumer).
///
/// ```
/// use edge_node::layer::{CacheConfig, CacheLayer, Purge};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let layer = CacheLayer::new(CacheConfig::default());
/// let purge = layer.purge_handle();
/// let v1 = purge.url("http://localhost/users/7")?;
/// let v2 = purge.purge(Purge::Tag("users"), true)?; // soft
/// assert!(v2 > v1);
/// # Ok::<(), edge_node::layer::PurgeError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct PurgeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl PurgeHandle {
    /// Applies `what`, soft (stale from now) or hard (gone); returns the purge's version
    /// (increasing).
    pub fn purge(&self, what: Purge<'_>, soft: bool) -> Result<u64, PurgeError> {
        let mode = self.shared.config.query;
        // Checked before a version is taken: a refused purge records nothing.
        let url = match what {
            Purge::Url(u) | Purge::Prefix(u) => {
                Some(key::of_url(u, mode).ok_or_else(|| PurgeError(u.to_string()))?)
            }
            _ => None,
        };
        let cache = &self.shared.cache;
        let version = self
            .shared
            .purge_version
            .fetch_add(1, Ordering::SeqCst)
            .max(cache.purge_version())
            + 1;
        let m = Mark {
            version,
            soft,
            at_ms: unix_ms(SystemTime::now()),
        };
        match (what, url) {
            (Purge::Url(_), Some((_, _, keys))) => cache.purge_keys(&keys, m),
            (Purge::Prefix(_), Some((host, path, _))) => {
                cache.purge_prefixes([(host.as_str(), path.as_str())], m)
            }
            (Purge::Tag(t), _) => cache.purge_tags([t], m),
            _ => cache.purge_all(m),
        }
        cache.purged_up_to(version);
        Ok(version)
    }

    /// A hard purge of every variant of an absolute URL.
    pub fn url(&self, url: &str) -> Result<u64, PurgeError> {
        self.purge(Purge::Url(url), false)
    }

    /// A hard purge of a URL prefix (`http://host/img/`).
    pub fn prefix(&self, prefix: &str) -> Result<u64, PurgeError> {
        self.purge(Purge::Prefix(prefix), false)
    }

    /// A hard purge of a tag.
    pub fn tag(&self, tag: &str) -> u64 {
        self.purge(Purge::Tag(tag), false).unwrap_or_default()
    }

    /// A hard purge of everything.
    pub fn all(&self) -> u64 {
        self.purge(Purge::All, false).unwrap_or_default()
    }
}

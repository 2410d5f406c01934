//! [`CacheConfig`]: the shape of a [`CacheLayer`](super::CacheLayer)'s cache (tier sizes, the
//! disk tier, how long collapsed requests wait, the `Cache-Status` name, the query in the key).

use crate::cache::{CacheOptions, QueryMode};
use std::path::PathBuf;
use std::time::Duration;

/// How a [`CacheLayer`](super::CacheLayer) caches: built from [`CacheConfig::default`] and
/// changed by its methods.
///
/// ```
/// use edge_node::layer::CacheConfig;
/// use std::time::Duration;
///
/// let config = CacheConfig::default()
///     .memory_bytes(32 << 20)
///     .collapse_timeout(Duration::from_secs(5))
///     .name("my-app");
/// assert_eq!(config.cache_name(), "my-app");
/// ```
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub(crate) memory_bytes: u64,
    pub(crate) max_variants: usize,
    pub(crate) max_object_bytes: u64,
    pub(crate) disk: Option<(PathBuf, u64)>,
    pub(crate) collapse_timeout: Duration,
    pub(crate) name: String,
    pub(crate) query: QueryMode,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
}

impl Default for CacheConfig {
    /// 64 MiB of memory, no disk tier, objects up to 8 MiB, 8 variants per URL, collapsed
    /// requests waiting up to 10 s, `Cache-Status` name `outpost`, the query kept as sent,
    /// no default stale windows (a response's own `stale-while-revalidate` and
    /// `stale-if-error` apply).
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            max_variants: 8,
            max_object_bytes: 8 << 20,
            disk: None,
            collapse_timeout: Duration::from_secs(10),
            name: "outpost".into(),
            query: QueryMode::Keep,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        }
    }
}

impl CacheConfig {
    /// Bytes the memory tier may hold.
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// A persistent disk tier in `dir`, bounded by `bytes` (it survives a restart; its index
    /// is rebuilt in the background, so the layer must be built inside a Tokio runtime).
    pub fn disk(mut self, dir: impl Into<PathBuf>, bytes: u64) -> Self {
        self.disk = Some((dir.into(), bytes));
        self
    }

    /// The largest response stored; larger ones pass through unstored.
    pub fn max_object_bytes(mut self, bytes: u64) -> Self {
        self.max_object_bytes = bytes;
        self
    }

    /// Most `Vary` variants kept per URL.
    pub fn max_variants(mut self, n: usize) -> Self {
        self.max_variants = n.max(1);
        self
    }

    /// How long a request waits for the response another request is already fetching for
    /// the same key, before it calls the inner service itself.
    pub fn collapse_timeout(mut self, d: Duration) -> Self {
        self.collapse_timeout = d;
        self
    }

    /// The cache's name in `Cache-Status` (RFC 9211).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How the query string enters the cache key.
    pub fn query(mut self, mode: QueryMode) -> Self {
        self.query = mode;
        self
    }

    /// `stale-while-revalidate` for responses that do not say (RFC 5861).
    pub fn stale_while_revalidate(mut self, d: Duration) -> Self {
        self.stale_while_revalidate = d;
        self
    }

    /// `stale-if-error` for responses that do not say (RFC 5861).
    pub fn stale_if_error(mut self, d: Duration) -> Self {
        self.stale_if_error = d;
        self
    }

    /// The cache's name in `Cache-Status`.
    pub fn cache_name(&self) -> &str {
        &self.name
    }

    /// The tiers of the [`Cache`](crate::cache::Cache) this config describes.
    pub(crate) fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            memory_bytes: self.memory_bytes,
            max_variants: self.max_variants,
            max_object_bytes: self.max_object_bytes,
            disk: self.disk.clone(),
        }
    }
}

//! What the layer, its services (one per clone) and its purge handles share: the cache, the
//! fills under way, the config and the next purge version.

use super::collapse::Inflight;
use super::config::CacheConfig;
use crate::cache::policy::PolicyOptions;
use crate::cache::Cache;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The shared state of one [`CacheLayer`](super::CacheLayer).
#[derive(Debug)]
pub(crate) struct Shared {
    pub cache: Arc<Cache>,
    pub inflight: Arc<Inflight>,
    pub config: CacheConfig,
    pub policy: PolicyOptions,
    /// The last purge version handed out by a purge handle.
    pub purge_version: AtomicU64,
}

impl Shared {
    pub(crate) fn new(cache: Arc<Cache>, config: CacheConfig) -> Self {
        let policy = PolicyOptions {
            default_swr: config.stale_while_revalidate,
            default_sie: config.stale_if_error,
            ..PolicyOptions::default()
        };
        Self {
            purge_version: AtomicU64::new(cache.purge_version()),
            cache,
            inflight: Arc::default(),
            config,
            policy,
        }
    }
}

//! What this node's cache holds for a URL (the admin API's `GET /cache?url=`): the URL maps to
//! keys exactly as a purge of it does (its site's query rules, both schemes), and the cache
//! reports every tier's variants under them without changing anything.

use super::Proxy;
use crate::cache::inspect::EntryView;
use crate::purge::UrlTarget;
use serde::Serialize;

/// One caching node's view of a URL.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// `edge` or `shield`.
    pub tier: &'static str,
    /// The site serving the URL's host.
    pub site: String,
    /// The newest purge version this node's cache has applied.
    pub purge_applied: u64,
    /// Whether the node has a disk tier (and whether its index is ready to be read).
    pub disk: Option<bool>,
    /// The URL's cache keys, one per scheme.
    pub keys: Vec<SchemeKey>,
    /// Every stored variant under those keys, in every tier (empty: not cached).
    pub entries: Vec<SchemeEntry>,
}

/// A URL's cache key for one scheme.
#[derive(Debug, Clone, Serialize)]
pub struct SchemeKey {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The key (32 hex digits).
    pub key: String,
}

/// A stored variant, with the scheme of the key it is under.
#[derive(Debug, Clone, Serialize)]
pub struct SchemeEntry {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The variant.
    #[serde(flatten)]
    pub entry: EntryView,
}

impl Proxy {
    /// Whether a site of this node serves `host` (lower-case, without port).
    pub fn serves_host(&self, host: &str) -> bool {
        self.sites.find(host).is_some()
    }

    /// What this node holds for `url`; `None` when no site of it serves the URL's host.
    pub async fn inspect(&self, url: &UrlTarget) -> Option<NodeView> {
        let site = self.sites.find(&url.host)?.name.clone();
        let keys = self.sites.keys_for(&url.host, &url.path);
        // The order `keys_for` gives them in.
        let schemes = ["http", "https"];
        let path = url.path.split('?').next().unwrap_or("/");
        let entries = self
            .cache
            .inspect(&keys, &url.host, path)
            .await
            .into_iter()
            .map(|entry| {
                let scheme = keys
                    .iter()
                    .zip(schemes)
                    .find(|(k, _)| format!("{:032x}", k.0) == entry.key)
                    .map_or("http", |(_, s)| s);
                SchemeEntry { scheme, entry }
            })
            .collect();
        Some(NodeView {
            tier: self.tier(),
            site,
            purge_applied: self.cache.purge_version(),
            disk: self.cache.disk_ready(),
            keys: keys
                .iter()
                .zip(schemes)
                .map(|(k, scheme)| SchemeKey {
                    scheme,
                    key: format!("{:032x}", k.0),
                })
                .collect(),
            entries,
        })
    }
}

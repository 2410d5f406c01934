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
    /// The site's rules a plain GET of the URL matches, in order (conditions on headers,
    /// cookies and the client are judged as for a request with none, from an unknown
    /// address), for HTTP and HTTPS.
    pub rules: Vec<RuleMatch>,
}

/// A rule a URL matches.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMatch {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The rule's name (or `rules[N]`).
    pub rule: String,
    /// Its position in the site's rules.
    pub index: usize,
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
    pub(crate) fn serves_host(&self, host: &str) -> bool {
        self.sites.find(host).is_some()
    }

    /// What this node holds for `url`; `None` when no site of it serves the URL's host.
    pub async fn inspect(&self, url: &UrlTarget) -> Option<NodeView> {
        let found = self.sites.find(&url.host)?;
        let site = found.name.clone();
        let rules = rule_matches(found, &url.host, &url.path);
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
            rules,
        })
    }
}

/// The rules of `site` a plain GET of `host` and `path_and_query` matches, per scheme.
fn rule_matches(site: &super::sites::Site, host: &str, path_and_query: &str) -> Vec<RuleMatch> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = crate::cache::url::normalize_path(path);
    let headers = http::HeaderMap::new();
    let subject = crate::rules::matcher::Subject {
        method: &http::Method::GET,
        host,
        path: &path,
        query,
        headers: &headers,
        client: std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        geo: None,
    };
    let mut out = Vec::new();
    for (scheme, https) in [("http", false), ("https", true)] {
        let m = site.rules.evaluate(&subject, https);
        for index in m.indexes() {
            if let Some(r) = site.rules.rules().get(index) {
                out.push(RuleMatch {
                    scheme,
                    rule: r.name.clone(),
                    index,
                });
            }
        }
    }
    out
}

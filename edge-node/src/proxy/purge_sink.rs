//! Applying a purge event to this node's cache: URLs become the keys this node's sites give
//! them (query rules, both schemes); prefixes, tags and everything are recorded as marks.

use super::Proxy;
use crate::cache::marks::Mark;
use crate::purge::event::{PurgeEvent, PurgeTarget};
use crate::purge::service::PurgeSink;

impl PurgeSink for Proxy {
    fn apply_purge(&self, ev: &PurgeEvent) {
        let m = Mark {
            version: ev.version,
            soft: ev.soft,
            // A soft purge makes objects stale from when it was accepted, but never later
            // than now on this node's clock: the accepting node's clock may be ahead (skew, a
            // step of its wall clock), and the purge must apply here at once whatever it says.
            at_ms: ev.at_ms.min(crate::cache::clock::now_ms()),
        };
        match &ev.target {
            PurgeTarget::Urls(urls) => {
                let keys: Vec<_> = urls
                    .iter()
                    .flat_map(|u| self.sites.keys_for(&u.host, &u.path))
                    .collect();
                self.cache.purge_keys(&keys, m);
            }
            PurgeTarget::Prefixes(ps) => self
                .cache
                .purge_prefixes(ps.iter().map(|p| (p.host.as_str(), p.path.as_str())), m),
            PurgeTarget::Tags(tags) => self.cache.purge_tags(tags.iter().map(String::as_str), m),
            PurgeTarget::All => self.cache.purge_all(m),
        }
    }

    fn purged_up_to(&self, version: u64) {
        self.cache.purged_up_to(version);
    }
}

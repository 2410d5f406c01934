//! Routing by Host: which configured site (if any) answers a request. Unknown hosts are
//! refused, so the edge is never an open proxy.

use crate::cache::key::{normalize_query, CacheKey, QueryMode};
use crate::config::SiteConfig;
use crate::rules::geo::GeoIp;
use crate::rules::RuleSet;
use crate::upstream::addr::OriginAddr;
use crate::upstream::origins::{HealthCheck, OriginPool};
use crate::upstream::Upstream;
use std::collections::HashMap;
use std::sync::Arc;

/// A configured site, ready to serve.
#[derive(Debug)]
pub(crate) struct Site {
    /// Its name (`name` in config, else its first host): the `cdn.site` of its metrics.
    pub name: String,
    /// Its position in the config (indexes its metrics).
    pub index: usize,
    /// Origins, load balanced and health checked.
    pub origins: Arc<OriginPool>,
    /// Query handling in the key.
    pub query: QueryMode,
    /// Parameters dropped from key and upstream request.
    pub drop_params: Vec<String>,
    /// Its own window for serving stale when unreachable, if set.
    pub stale_if_unreachable: Option<std::time::Duration>,
    /// Client networks whose `PURGE` requests are accepted (empty: none).
    pub purge_from: Vec<ipnet::IpNet>,
    /// The rate limiters its requests pass.
    pub limits: Vec<Arc<crate::limits::Limiter>>,
    /// Largest request body it takes.
    pub max_body: Option<u64>,
    /// Its rules, in order.
    pub rules: RuleSet,
}

/// Host name -> site.
#[derive(Debug, Default)]
pub(crate) struct Sites {
    exact: HashMap<String, Arc<Site>>,
    wildcard: Vec<(String, Arc<Site>)>,
}

impl Site {
    /// Every origin pool of the site: its own, then its rules'.
    pub(crate) fn pools(&self) -> impl Iterator<Item = &Arc<OriginPool>> {
        std::iter::once(&self.origins).chain(
            self.rules
                .rules()
                .iter()
                .filter_map(|r| r.actions.origins.as_ref()),
        )
    }
}

impl Sites {
    /// Builds the table, each site's origins reached through `upstream` (with a client of
    /// their own when the site's TLS settings ask for one); the config must have passed
    /// `validate()`.
    pub(crate) fn new(
        cfg: &[SiteConfig],
        upstream: &Upstream,
        limiters: &HashMap<String, Arc<crate::limits::Limiter>>,
        geo: Option<Arc<GeoIp>>,
    ) -> Result<Self, String> {
        let mut out = Sites::default();
        for (index, s) in cfg.iter().enumerate() {
            let mut origins = origin_pool(s, &s.origins, index)?;
            let tls = s.origin_tls();
            if !tls.is_default() {
                origins.client = Some(
                    upstream
                        .client_for(&tls)
                        .map_err(|e| format!("sites[{index}]: {e}"))?,
                );
                if tls.insecure {
                    tracing::warn!(
                        site = s.display_name(),
                        "origin certificates are NOT verified (origin_insecure_skip_verify): \
                         the connection is encrypted, but anyone on the path can pose as the origin"
                    );
                }
            }
            let find_limiter = |n: &String| {
                limiters
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("sites[{index}]: no limiter {n:?}"))
            };
            let rules = RuleSet::new(&s.rules, geo.clone(), |_, rc, actions| {
                if !rc.origins.is_empty() {
                    let mut pool = origin_pool(s, &rc.origins, index)?;
                    pool.client = origins.client.clone();
                    actions.origins = Some(Arc::new(pool));
                }
                actions.limits = rc
                    .limits
                    .iter()
                    .map(find_limiter)
                    .collect::<Result<_, _>>()?;
                Ok(())
            })
            .map_err(|e| format!("sites[{index}]: {e}"))?;
            let site = Arc::new(Site {
                name: s.display_name().to_string(),
                index,
                origins: Arc::new(origins),
                rules,
                query: s.query,
                drop_params: s.drop_params.clone(),
                stale_if_unreachable: s.stale_if_unreachable.map(|d| d.0),
                purge_from: s
                    .purge_from
                    .iter()
                    .map(|n| crate::config::parse_network(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("sites[{index}].purge_from: {e}"))?,
                limits: s
                    .limits
                    .iter()
                    .map(find_limiter)
                    .collect::<Result<_, _>>()?,
                max_body: s.max_body_bytes.map(|b| b.0),
            });
            for h in &s.hosts {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix("*.") {
                    Some(suffix) => out.wildcard.push((format!(".{suffix}"), site.clone())),
                    None => {
                        out.exact.insert(h, site.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every site, once.
    pub(crate) fn all(&self) -> Vec<Arc<Site>> {
        let mut out: Vec<Arc<Site>> = Vec::new();
        for s in self
            .exact
            .values()
            .chain(self.wildcard.iter().map(|(_, s)| s))
        {
            if !out.iter().any(|o| Arc::ptr_eq(o, s)) {
                out.push(s.clone());
            }
        }
        out
    }

    /// The names of the sites, by index (the `cdn.site` values of the metrics).
    pub(crate) fn names(cfg: &[SiteConfig]) -> Vec<String> {
        cfg.iter().map(|s| s.display_name().to_string()).collect()
    }

    /// The cache keys a purged URL (`host`, `path?query`) has on this node: its query
    /// normalised by its site's rules, for both schemes.
    pub(crate) fn keys_for(&self, host: &str, path_and_query: &str) -> [CacheKey; 2] {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let q = match self.find(host) {
            Some(site) => normalize_query(query, site.query, &site.drop_params),
            None => query.map(std::borrow::Cow::Borrowed),
        };
        ["http", "https"].map(|scheme| CacheKey::new(scheme, host, path, q.as_deref()))
    }

    /// The site for a normalised host name.
    pub(crate) fn find(&self, host: &str) -> Option<&Arc<Site>> {
        if let Some(s) = self.exact.get(host) {
            return Some(s);
        }
        self.wildcard.iter().find_map(|(suffix, s)| {
            let label = host.strip_suffix(suffix.as_str())?;
            (!label.is_empty() && !label.contains('.')).then_some(s)
        })
    }
}

/// The pool of `urls` for site `s` (the site's own origins, or a rule's): health checks by
/// the site's settings, and the site's `origin_host`; the caller adds the upstream client.
fn origin_pool(s: &SiteConfig, urls: &[String], index: usize) -> Result<OriginPool, String> {
    let origins = urls
        .iter()
        .map(|o| OriginAddr::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pool = OriginPool::new(
        origins,
        s.health_path.as_ref().map(|path| HealthCheck {
            path: path.clone(),
            host: s.hosts.first().cloned().unwrap_or_default(),
            interval: s.health_interval.0,
            timeout: s.health_timeout.0,
            healthy_after: s.healthy_after,
            unhealthy_after: s.unhealthy_after,
        }),
    );
    pool.site = index;
    pool.host = match &s.origin_host {
        Some(h) => Some(
            http::HeaderValue::from_str(h)
                .map_err(|_| format!("sites[{index}].origin_host: {h:?} is not a host"))?,
        ),
        None => None,
    };
    Ok(pool)
}

//! Routing by Host: which configured site (if any) answers a request. Unknown hosts are
//! refused, so the edge is never an open proxy.

use super::upstream::OriginAddr;
use crate::config::{QueryMode, SiteConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// A configured site, ready to serve.
#[derive(Debug)]
pub struct Site {
    /// The host names it answers for (for logs).
    pub hosts: Vec<String>,
    /// Origins, load balanced and health checked.
    pub origins: Arc<super::origins::OriginPool>,
    /// Query handling in the key.
    pub query: QueryMode,
    /// Parameters dropped from key and upstream request.
    pub drop_params: Vec<String>,
}

/// Host name -> site.
#[derive(Debug, Default)]
pub struct Sites {
    exact: HashMap<String, Arc<Site>>,
    wildcard: Vec<(String, Arc<Site>)>,
}

impl Sites {
    /// Builds the table; the config must have passed `validate()`.
    pub fn new(cfg: &[SiteConfig]) -> Result<Self, String> {
        let mut out = Sites::default();
        for s in cfg {
            let origins = s
                .origins
                .iter()
                .map(|o| OriginAddr::parse(o))
                .collect::<Result<Vec<_>, _>>()?;
            let site = Arc::new(Site {
                hosts: s.hosts.clone(),
                origins: Arc::new(super::origins::OriginPool::new(
                    origins,
                    s.health_path
                        .as_ref()
                        .map(|path| super::origins::HealthCheck {
                            path: path.clone(),
                            host: s.hosts.first().cloned().unwrap_or_default(),
                            interval: s.health_interval.0,
                            timeout: s.health_timeout.0,
                            healthy_after: s.healthy_after,
                            unhealthy_after: s.unhealthy_after,
                        }),
                )),
                query: s.query,
                drop_params: s.drop_params.clone(),
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
    pub fn all(&self) -> Vec<Arc<Site>> {
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

    /// The site for a normalised host name.
    pub fn find(&self, host: &str) -> Option<&Arc<Site>> {
        if let Some(s) = self.exact.get(host) {
            return Some(s);
        }
        self.wildcard.iter().find_map(|(suffix, s)| {
            let label = host.strip_suffix(suffix.as_str())?;
            (!label.is_empty() && !label.contains('.')).then_some(s)
        })
    }
}

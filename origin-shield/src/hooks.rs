//! What makes a caching node a shield, as request-phase hooks:
//!
//! - admission: every request carries the shared secret (`Outpost-Shield-Secret`), compared in
//!   constant time; others get 403. Only edges are served. (mTLS between tiers will be a
//!   second way in.)
//! - fresh answers only: an edge asks its shield when its own copy is missing or stale, so a
//!   stale copy at the shield is revalidated with the origin first, never served to the edge
//!   within stale-while-revalidate (the edge's own stale-while-revalidate hides the wait;
//!   stale-if-error still applies).
//! - the purge-version gate: an edge says which purge version it has applied
//!   (`Outpost-Purge-Version`); a shield that is behind waits briefly (up to
//!   [`PURGE_WAIT`]) for it, and otherwise answers that request from upstream without its
//!   cache, so an edge is never handed an object older than a purge it has applied.

use edge_node::cache::PurgeMarks;
use edge_node::hooks::{Hooks, Proceed, Refusal, RequestInfo};
use edge_node::upstream::{PURGE_VERSION, SHIELD_SECRET};
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Longest wait for this shield to apply a purge an edge has already applied.
pub const PURGE_WAIT: Duration = Duration::from_millis(500);

/// The shield's hooks.
pub struct ShieldHooks {
    /// None: edges were authenticated by their certificates in the TLS handshake.
    secret: Option<Box<[u8]>>,
    marks: Arc<PurgeMarks>,
}

impl std::fmt::Debug for ShieldHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShieldHooks").finish_non_exhaustive()
    }
}

impl ShieldHooks {
    /// Hooks admitting requests that carry `secret` (every request, when there is none: the
    /// listeners admit only edges with a fleet certificate), gating on the purge version
    /// `marks` have applied (the marks of the shield's cache).
    pub fn new(secret: Option<&str>, marks: Arc<PurgeMarks>) -> Result<Self, String> {
        if let Some(secret) = secret {
            if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("must be visible ASCII".into());
            }
        }
        Ok(Self {
            secret: secret.map(|s| s.as_bytes().into()),
            marks,
        })
    }
}

impl Hooks for ShieldHooks {
    fn admit(&self, req: &RequestInfo<'_>) -> Result<(), Refusal> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let ok = req
            .headers
            .get(&SHIELD_SECRET)
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(secret)));
        if ok {
            return Ok(());
        }
        Err(Refusal {
            status: StatusCode::FORBIDDEN,
            detail: "not-an-edge",
            message: "outpost: this shield serves edges only",
        })
    }

    fn before_lookup(&self, req: &RequestInfo<'_>) -> Proceed {
        let wanted = req
            .headers
            .get(&PURGE_VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match wanted {
            Some(v) if v > self.marks.applied() => {
                let marks = self.marks.clone();
                Proceed::Wait(Box::pin(async move {
                    if marks.wait_applied(v, PURGE_WAIT).await {
                        Proceed::CacheFresh
                    } else {
                        Proceed::Bypass("purge-behind")
                    }
                }))
            }
            _ => Proceed::CacheFresh,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use edge_node::cache::Mark;
    use http::{HeaderMap, HeaderValue, Method, Uri};

    fn info<'a>(h: &'a HeaderMap, uri: &'a Uri) -> RequestInfo<'a> {
        RequestInfo {
            method: &Method::GET,
            uri,
            headers: h,
            host: "a.test",
            site: "a.test",
            client: "127.0.0.1:1".parse().unwrap(),
        }
    }

    #[test]
    fn only_the_secret_is_admitted() {
        let hooks = ShieldHooks::new(Some("s3cret-s3cret"), Arc::default()).unwrap();
        let uri = Uri::from_static("/x");
        let mut h = HeaderMap::new();
        assert_eq!(hooks.admit(&info(&h, &uri)).unwrap_err().status, 403);
        h.insert(&SHIELD_SECRET, HeaderValue::from_static("s3cret-s3creT"));
        assert!(hooks.admit(&info(&h, &uri)).is_err());
        h.insert(&SHIELD_SECRET, HeaderValue::from_static("s3cret-s3cret"));
        assert!(hooks.admit(&info(&h, &uri)).is_ok());
        assert!(ShieldHooks::new(Some(""), Arc::default()).is_err());
    }

    #[tokio::test]
    async fn a_shield_behind_the_edge_waits_then_bypasses_its_cache() {
        let marks = Arc::new(PurgeMarks::default());
        let hooks = ShieldHooks::new(Some("s3cret-s3cret"), marks.clone()).unwrap();
        let uri = Uri::from_static("/x");
        let mut h = HeaderMap::new();
        assert!(matches!(
            hooks.before_lookup(&info(&h, &uri)),
            Proceed::CacheFresh
        ));
        h.insert(&PURGE_VERSION, HeaderValue::from_static("garbage"));
        assert!(matches!(
            hooks.before_lookup(&info(&h, &uri)),
            Proceed::CacheFresh
        ));
        h.insert(&PURGE_VERSION, HeaderValue::from_static("2"));
        let Proceed::Wait(w) = hooks.before_lookup(&info(&h, &uri)) else {
            panic!("behind: must wait")
        };
        assert!(matches!(w.await, Proceed::Bypass("purge-behind")));
        // Caught up while waiting: the cache is used.
        let Proceed::Wait(w) = hooks.before_lookup(&info(&h, &uri)) else {
            panic!("behind: must wait")
        };
        let m = Mark {
            version: 2,
            soft: false,
            at_ms: 0,
        };
        marks.record_all(m);
        marks.applied_up_to(2);
        assert!(matches!(w.await, Proceed::CacheFresh));
        assert!(matches!(
            hooks.before_lookup(&info(&h, &uri)),
            Proceed::CacheFresh
        ));
    }
}

//! A revalidation answered 304: the new fields are merged into the stored response (RFC 9111
//! section 4.3.4), freshness is computed anew, and the refreshed object replaces the old one in
//! every tier (or, no longer storable, the old one is removed).

use super::fetch::FillJob;
use super::headers;
use super::Proxy;
use crate::cache::headers::StoredHeaders;
use crate::cache::object::Object;
use crate::cache::policy::{decide, unix_ms, Decision};
use crate::cache::vary::VarySpec;
use http::header::{self, HeaderMap};
use http::Response;
use std::sync::Arc;
use std::time::SystemTime;

/// Fields of a 304 that never replace the stored ones (RFC 9111 section 3.2).
const NOT_UPDATED_BY_304: &[header::HeaderName] = &[
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
];

impl Proxy {
    /// Merges a 304's fields into `old`, stores the result, and publishes it to the fill.
    pub(super) fn refresh(
        &self,
        job: &FillJob,
        old: &Arc<Object>,
        fresh_headers: &HeaderMap,
        now: SystemTime,
    ) {
        let mut res = Response::new(()).into_parts().0;
        res.status = old.status;
        res.headers = merged(old, fresh_headers);
        let refreshed = |fresh| {
            Arc::new(Object {
                status: old.status,
                headers: StoredHeaders::from_map(&res.headers, headers::stored),
                body: old.body.clone(),
                fresh,
                extras: old.extras.clone(),
                purge_version: job.purge_version,
            })
        };
        let obj = match decide(&job.client, &res, now, &job.policy) {
            Decision::Store(fresh) => {
                let obj = refreshed(fresh);
                let vary = VarySpec::adding(VarySpec::from_response(&res.headers), &job.key_vary);
                let values = vary
                    .as_ref()
                    .map(|s| s.values(&job.client.headers))
                    .unwrap_or_default();
                self.cache.insert(job.key, vary, values, obj.clone());
                obj
            }
            Decision::Pass(_) => {
                // No longer storable: the old copy goes from every tier; this client still
                // gets the refreshed response, stale from now.
                self.cache.remove(&job.key);
                let mut fresh = old.fresh;
                fresh.fresh_until_ms = unix_ms(now);
                refreshed(fresh)
            }
        };
        self.metrics.revalidated();
        job.fill.set_head(super::collapse::FillHead::Refreshed(obj));
    }
}

/// The stored fields of `old` updated by those a 304 carries.
fn merged(old: &Object, fresh_headers: &HeaderMap) -> HeaderMap {
    let mut merged = old.headers.to_map();
    let mut update = fresh_headers.clone();
    headers::strip_hop_by_hop(&mut update);
    for name in update.keys() {
        if NOT_UPDATED_BY_304.contains(name) || !headers::stored(name) {
            continue;
        }
        merged.remove(name);
        for v in update.get_all(name) {
            merged.append(name.clone(), v.clone());
        }
    }
    merged
}

//! The HTTP `PURGE` method (a Varnish habit): `PURGE /path` from a client network listed in
//! the site's `purge_from` purges that URL (every variant, both schemes) through the purge
//! service, so it gets a version and reaches every node like an admin purge. From anywhere
//! else it is refused with 405. Either way it is answered here: never forwarded, never stored.

use super::ctx::Ctx;
use super::respond::{plain, CACHE_STATUS};
use super::{Answer, Proxy};
use crate::body::ProxyBody;
use crate::metrics::Outcome;
use crate::purge::{PurgeError, PurgeRequest, PurgeSubmitter};
use http::{header, HeaderValue, StatusCode};
use std::sync::Arc;

impl Proxy {
    /// Hands this node's purge service to the `PURGE` method (the service is built after the
    /// proxies, and holds them: it is kept here weakly). The first one set stays.
    pub(crate) fn set_purge_submitter(&self, purge: &Arc<dyn PurgeSubmitter>) {
        let _ = self.purge.set(Arc::downgrade(purge));
    }

    /// Answers a `PURGE` request.
    pub(super) async fn purge_method(&self, ctx: &Ctx) -> Answer {
        let client = ctx.client.addr.ip().to_canonical();
        if !ctx.site.purge_from.iter().any(|n| n.contains(&client)) {
            let st = self.status_value("fwd=method");
            let mut res = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                st,
                "outpost: PURGE is not allowed from this address",
            );
            res.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
            );
            return Answer::new(res, Outcome::Error, None);
        }
        let Some(purge) = self.purge.get().and_then(|w| w.upgrade()) else {
            return self.purge_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "purge is not enabled on this node" }),
            );
        };
        let host = if ctx.host.contains(':') {
            format!("[{}]", ctx.host)
        } else {
            ctx.host.clone()
        };
        let url = format!("{}://{host}{}", ctx.client.scheme, ctx.upstream_pq);
        let req = PurgeRequest {
            urls: vec![url.clone()],
            ..PurgeRequest::default()
        };
        let (status, body) = match purge.submit_purge(&req).await {
            Ok(version) => (
                StatusCode::OK,
                serde_json::json!({ "purged": url, "version": version }),
            ),
            Err(e) => {
                let status = match e {
                    PurgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
                    PurgeError::Log(_) => StatusCode::SERVICE_UNAVAILABLE,
                    PurgeError::Hub(_) => StatusCode::BAD_GATEWAY,
                };
                (status, serde_json::json!({ "error": e.to_string() }))
            }
        };
        self.purge_answer(status, body)
    }

    fn purge_answer(&self, status: StatusCode, body: serde_json::Value) -> Answer {
        let text = format!("{body}\n");
        let len = text.len() as u64;
        let outcome = if status.is_success() {
            Outcome::Pass
        } else {
            Outcome::Error
        };
        let mut res = http::Response::new(ProxyBody::full(text));
        *res.status_mut() = status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            CACHE_STATUS.clone(),
            self.status_value("fwd=request; detail=purge"),
        );
        Answer::new(res, outcome, Some(len))
    }
}

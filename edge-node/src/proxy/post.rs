//! A response to POST that may answer later GETs (RFC 9110 section 9.3.3, RFC 9111 section 3):
//! one with explicit freshness whose `Content-Location` is the request's own URI is stored
//! under that URI, as if a GET had fetched it. Only bodies of known length up to the memory
//! tier's largest object are kept: the body is read whole (`buffered.rs`), then sent to the
//! client from memory.

use super::buffered::{Buffered, Read};
use super::ctx::Ctx;
use super::headers;
use super::{Answer, Proxy};
use crate::body::ProxyBody;
use crate::metrics::Outcome;
use http::header;
use http::{Method, Response};
use hyper::body::Incoming;

/// What became of a POST response.
pub(super) enum Posted {
    /// Stored, and answered from the stored copy.
    Stored(Answer),
    /// Not storable: relay it as it is.
    Relay(Response<Incoming>),
}

impl Proxy {
    /// Stores `res`, the response to the POST in `ctx`, when RFC 9111 allows it and its body
    /// is small enough; else hands it back to be relayed.
    pub(super) async fn store_post_response(&self, ctx: &Ctx, res: Response<Incoming>) -> Posted {
        if ctx.parts.method != Method::POST || !self.names_itself(ctx, &res) {
            return Posted::Relay(res);
        }
        let version = self.cache.purge_version();
        let b = match self.read_storable(ctx, res, version).await {
            Read::Stored(b) => b,
            Read::Relay(res) => return Posted::Relay(res),
            // The body failed: the client gets the error, nothing stored.
            Read::Failed => return Posted::Stored(self.body_failed("fwd=method")),
        };
        let Buffered {
            mut head,
            object,
            vary,
            values,
        } = b;
        let body = object.body.clone();
        self.cache.insert(ctx.key, vary, values, object);
        self.metrics.stored();
        headers::for_client(&mut head.headers);
        let st = format!("fwd=method; fwd-status={}; stored", head.status.as_u16());
        head.headers
            .append(super::respond::CACHE_STATUS.clone(), self.status_value(&st));
        headers::append_via(&mut head.headers, &self.via);
        let n = body.len() as u64;
        Posted::Stored(Answer::new(
            Response::from_parts(head, ProxyBody::full(body)),
            Outcome::Pass,
            Some(n),
        ))
    }

    /// Whether the response's `Content-Location` is the request's own URI.
    fn names_itself(&self, ctx: &Ctx, res: &Response<Incoming>) -> bool {
        res.headers()
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| ctx.key_for_reference(v))
            .is_some_and(|k| k == ctx.key)
    }
}

//! A response to POST that may answer later GETs (RFC 9110 section 9.3.3, RFC 9111 section 3):
//! one with explicit freshness whose `Content-Location` is the request's own URI is stored
//! under that URI, as if a GET had fetched it. Only bodies of known length up to the memory
//! tier's largest object are kept: the body is read whole (bounded by the idle timeout), then
//! sent to the client from memory.

use super::ctx::Ctx;
use super::headers;
use super::{Answer, Proxy};
use crate::body::ProxyBody;
use crate::cache::headers::StoredHeaders;
use crate::cache::object::Object;
use crate::cache::policy::{decide, Decision};
use crate::cache::vary::VarySpec;
use crate::metrics::Outcome;
use http::header;
use http::{Method, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::SystemTime;

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
        let len = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if len.is_none_or(|l| l > self.cache.max_object()) {
            return Posted::Relay(res);
        }
        let (mut parts, body) = res.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let now = SystemTime::now();
        let Decision::Store(fresh) = decide(&ctx.parts, &parts, now, &self.settings.policy) else {
            return Posted::Relay(Response::from_parts(parts, body));
        };
        let idle = self.upstream.timeouts.body_idle;
        let body = match tokio::time::timeout(idle, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            // The body failed: the client gets the error as a cut response, nothing stored.
            _ => return Posted::Stored(self.post_failed()),
        };
        if Some(body.len() as u64) != len {
            return Posted::Stored(self.post_failed());
        }
        let vary = VarySpec::from_response(&parts.headers);
        let values = vary
            .as_ref()
            .map(|s| s.values(&ctx.parts.headers))
            .unwrap_or_default();
        let tags = crate::purge::event::response_tags(&parts.headers)
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let obj = Arc::new(Object {
            status: parts.status,
            headers: StoredHeaders::from_map(&parts.headers, headers::stored),
            body: body.clone(),
            fresh,
            encoded: Box::default(),
            tags,
            purge_version: self.cache.purge_version(),
        });
        self.cache.insert(ctx.key, vary, values, obj);
        self.metrics.stored();
        headers::for_client(&mut parts.headers);
        let st = format!("fwd=method; fwd-status={}; stored", parts.status.as_u16());
        parts
            .headers
            .append(super::respond::CACHE_STATUS.clone(), self.status_value(&st));
        headers::append_via(&mut parts.headers, &self.via);
        let n = body.len() as u64;
        Posted::Stored(Answer::new(
            Response::from_parts(parts, ProxyBody::full(body)),
            Outcome::Pass,
            Some(n),
        ))
    }

    /// Whether the response's `Content-Location` is the request's own URI.
    fn names_itself(&self, ctx: &Ctx, res: &Response<Incoming>) -> bool {
        res.headers()
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::pass::key_for_reference(ctx, v))
            .is_some_and(|k| k == ctx.key)
    }

    /// The answer when a POST response's body failed while it was read to be stored.
    fn post_failed(&self) -> Answer {
        let st = self.status_value("fwd=method; detail=upstream-truncated");
        Answer::new(
            super::respond::plain(
                http::StatusCode::BAD_GATEWAY,
                st,
                "outpost: the origin's response ended early",
            ),
            Outcome::Error,
            None,
        )
    }
}

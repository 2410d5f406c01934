//! Responses read whole into memory before they are answered: the response to a POST that
//! names its own URI (`post.rs`) and range fetches (`partial.rs`). Only a storable response
//! of known length up to the memory tier's largest object is read; anything else is handed
//! back to be relayed as it streams. Large storable GETs never come here: fills stream them
//! (`fetch.rs`).

use super::ctx::Ctx;
use super::headers;
use super::{Answer, Proxy};
use crate::cache::object::Object;
use crate::cache::parts::Span;
use crate::cache::policy::{decide, Decision};
use crate::cache::vary::{VarySpec, VaryValues};
use crate::metrics::Outcome;
use http::header::{self, HeaderMap};
use http::{response, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;

/// A storable response, read whole; not inserted yet.
pub(super) struct Buffered {
    /// Its head, hop-by-hop fields removed (a whole-span 206 already turned into a 200).
    pub head: response::Parts,
    /// The object to store.
    pub object: Arc<Object>,
    /// Its Vary, and the request's values for it.
    pub vary: Option<VarySpec>,
    pub values: VaryValues,
}

/// What became of a response offered for buffering.
pub(super) enum Read {
    /// Storable, and read whole.
    Stored(Buffered),
    /// Not storable here: relay it as it is.
    Relay(Response<Incoming>),
    /// Storable, but its body failed or ended early: nothing is stored.
    Failed,
}

/// A 206 whose one span is the whole representation is that representation: a 200 without
/// `Content-Range` (RFC 9110 15.3.7), stored and answered like any complete response.
pub(super) fn complete_if_whole(parts: &mut response::Parts) {
    if parts.status == StatusCode::PARTIAL_CONTENT
        && Span::of(&parts.headers).is_some_and(|s| s.is_whole())
    {
        parts.status = StatusCode::OK;
        parts.headers.remove(header::CONTENT_RANGE);
    }
}

/// The body length a response declares: its span's for a 206 (which a `Content-Length` must
/// agree with), else `Content-Length`.
fn declared_len(parts: &response::Parts) -> Option<u64> {
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if parts.status != StatusCode::PARTIAL_CONTENT {
        return content_length;
    }
    let span = Span::of(&parts.headers)?.len();
    content_length.is_none_or(|l| l == span).then_some(span)
}

impl Proxy {
    /// Reads `res`, the response to the request in `ctx`, whole when the site's policy lets
    /// it be stored and it fits in memory; `purge_version` is the version its fetch started
    /// under.
    pub(super) async fn read_storable(
        &self,
        ctx: &Ctx,
        res: Response<Incoming>,
        purge_version: u64,
    ) -> Read {
        let (mut parts, body) = res.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        complete_if_whole(&mut parts);
        let Some(len) = declared_len(&parts).filter(|l| *l <= self.cache.max_object()) else {
            return Read::Relay(Response::from_parts(parts, body));
        };
        let policy = self.policy(ctx);
        let Decision::Store(fresh) =
            decide(&ctx.parts, &parts, crate::cache::clock::now(), &policy)
        else {
            return Read::Relay(Response::from_parts(parts, body));
        };
        let idle = self.upstream.timeouts.body_idle;
        let body = match tokio::time::timeout(idle, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => return Read::Failed,
        };
        if body.len() as u64 != len {
            return Read::Failed;
        }
        let (vary, values) = vary_of(&parts.headers, &ctx.parts.headers, &ctx.key_vary());
        let object = Arc::new(Object {
            purge_version,
            ..Object::new(parts.status, &parts.headers, body, fresh)
        });
        Read::Stored(Buffered {
            head: parts,
            object,
            vary,
            values,
        })
    }

    /// The answer when a response's body failed while it was read to be stored: the client
    /// gets a 502 naming the truncation, and nothing is stored.
    pub(super) fn body_failed(&self, fwd: &str) -> Answer {
        let st = self.status_value(&format!("{fwd}; detail=upstream-truncated"));
        Answer::new(
            super::respond::plain(
                StatusCode::BAD_GATEWAY,
                st,
                "outpost: the origin's response ended early",
            ),
            Outcome::Error,
            None,
        )
    }
}

/// A response's Vary and the request's values for it.
fn vary_of(
    response: &HeaderMap,
    request: &HeaderMap,
    added: &[http::HeaderName],
) -> (Option<VarySpec>, VaryValues) {
    let vary = VarySpec::adding(VarySpec::from_response(response), added);
    let values = vary.as_ref().map(|s| s.values(request)).unwrap_or_default();
    (vary, values)
}

//! Range requests answered from stored parts (RFC 9111 sections 3.3 and 3.4).
//!
//! - A range miss (`Range: bytes=` for a URL with nothing stored and no fill under way, other
//!   than `bytes=0-`, which is the whole) asks the next tier for that range. A 206 for one span
//!   of known length is stored as a part; a 200 (an origin that ignores Range) becomes an
//!   ordinary fill (`miss.rs`), stored whole (on disk when large) and the range served from it.
//! - A stored part answers every range wholly inside it, as a hit.
//! - A request the part does not hold is completed: the next tier is asked, with `If-Range`
//!   on the part's strong `ETag`, for just the missing bytes, and the two spans combine into
//!   one (a complete 200 once they cover everything). Completion is bounded per object: the
//!   representation must fit the memory tier's largest object, and the part must have a
//!   strong `ETag` (3.4 combines only responses sharing one). Otherwise the request is
//!   fetched as if nothing were stored, and what comes back replaces the part.
//! - A part never answers a request for the whole representation.
//!
//! Range fetches are read whole (`buffered.rs`) and are not collapsed: two different ranges
//! cannot share one fetch. A range request that finds a whole-object fill under way joins it.

use super::buffered::{Buffered, Read};
use super::conditional::if_range_matches;
use super::ctx::{Ctx, Purpose};
use super::miss::Recollapse;
use super::range::{ByteRange, RangeOutcome};
use super::respond::BodySrc;
use super::{Answer, Proxy};
use crate::cache::headers::StoredHeaders;
use crate::cache::object::{Extras, Object};
use crate::cache::parts::{combine, strong_etag, Span};
use crate::metrics::Outcome;
use crate::upstream::error::UpstreamError;
use crate::upstream::Retry;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;

/// The range a request asks of the next tier on a miss, when it is one: a single satisfiable
/// `bytes` range of a GET or HEAD that is not the whole representation (`bytes=0-`).
pub(super) fn forwardable_range(ctx: &Ctx) -> Option<ByteRange> {
    let r = ctx.parts.headers.get(header::RANGE)?.to_str().ok()?;
    match ByteRange::parse(r)? {
        ByteRange::From(0) | ByteRange::Suffix(0) => None,
        r => Some(r),
    }
}

impl Proxy {
    /// A range miss: the client's `Range` (and `If-Range`) asked of the next tier; the answer
    /// stored when it may be, and served.
    pub(super) async fn range_miss(self: &Arc<Self>, ctx: Ctx, variant: u64, fwd: &str) -> Answer {
        let version = self.cache.purge_version();
        let fields: Vec<(HeaderName, HeaderValue)> = [header::RANGE, header::IF_RANGE]
            .into_iter()
            .filter_map(|name| Some((name.clone(), ctx.parts.headers.get(&name)?.clone())))
            .collect();
        let res = match self.send_range(&ctx, version, fields).await {
            Ok(r) => r,
            Err(e) => return self.upstream_failed(&ctx, fwd, &e),
        };
        if res.status() != StatusCode::PARTIAL_CONTENT {
            // The whole representation (an origin that ignores Range), or no content at all:
            // a fill like any other, which the client's range is then served from.
            return self.miss_with(ctx, variant, res).await;
        }
        let status = res.status().as_u16();
        match self.read_storable(&ctx, res, version).await {
            Read::Relay(res) => self.relay(res, &ctx, &format!("{fwd}; fwd-status={status}")),
            Read::Failed => self.body_failed(fwd),
            Read::Stored(b) => {
                let obj = b.object.clone();
                self.cache.insert(ctx.key, b.vary, b.values, b.object);
                self.metrics.stored();
                let params = format!("{fwd}; fwd-status={status}; stored");
                self.answer_stored(ctx, &obj, &params).await
            }
        }
    }

    /// A fresh stored part: the range it holds is a hit; anything else is completed.
    pub(super) async fn partial_hit(
        self: &Arc<Self>,
        ctx: Ctx,
        part: Arc<Object>,
        variant: u64,
    ) -> Answer {
        let Some(span) = part.span() else {
            // Not a part this cache could have stored: fetch afresh (what comes back replaces it).
            return self.miss(ctx, None, variant, Recollapse::Allowed).await;
        };
        let want = self.wanted(&ctx, &part, span);
        if let RangeOutcome::Partial { start, end } = want {
            if span.holds(start, end) {
                let now = crate::cache::clock::now_ms();
                let ttl = part.fresh.fresh_until_ms.saturating_sub(now) / 1000;
                let status = self.status_hit(ttl, "");
                return self.serve_part(&ctx, &part, span, (start, end), status, Outcome::Hit);
            }
        }
        self.complete_part(ctx, part, span, want, variant).await
    }

    /// What the client asks of the representation a part belongs to: a range, or the whole
    /// (no Range, one to ignore, or an `If-Range` the part does not satisfy).
    fn wanted(&self, ctx: &Ctx, part: &Object, span: Span) -> RangeOutcome {
        let h = &ctx.parts.headers;
        let range = h.get(header::RANGE).and_then(|v| v.to_str().ok());
        match range.and_then(ByteRange::parse) {
            Some(r)
                if if_range_matches(h, part.etag().as_deref(), part.last_modified().as_deref()) =>
            {
                r.resolve(span.complete)
            }
            _ => RangeOutcome::Full,
        }
    }

    /// Completes `part` for a request it does not hold: the missing bytes fetched with
    /// `If-Range` and combined, within the per-object bound; otherwise an ordinary fetch.
    async fn complete_part(
        self: &Arc<Self>,
        ctx: Ctx,
        part: Arc<Object>,
        span: Span,
        want: RangeOutcome,
        variant: u64,
    ) -> Answer {
        let (start, end) = match want {
            RangeOutcome::Partial { start, end } => (start, end),
            RangeOutcome::Full => (0, span.complete - 1),
            RangeOutcome::Unsatisfiable => {
                return self.range_miss(ctx, variant, "fwd=partial").await
            }
        };
        let etag = strong_etag(&part.headers.to_map()).map(str::to_owned);
        let gap = span.missing(start, end);
        let (Some(etag), Some((a, b))) = (etag, gap) else {
            return self.refetch(ctx, want, variant).await;
        };
        if span.complete > self.cache.max_object() {
            return self.refetch(ctx, want, variant).await;
        }
        let version = self.cache.purge_version();
        let (Ok(range), Ok(if_range)) = (
            HeaderValue::from_str(&format!("bytes={a}-{b}")),
            HeaderValue::from_str(&etag),
        ) else {
            return self.refetch(ctx, want, variant).await;
        };
        let fields = [(header::RANGE, range), (header::IF_RANGE, if_range)];
        let res = match self.send_range(&ctx, version, fields).await {
            Ok(r) => r,
            Err(e) => return self.upstream_failed(&ctx, "fwd=partial", &e),
        };
        if res.status() != StatusCode::PARTIAL_CONTENT {
            // `If-Range` failed (a new representation, sent whole) or no content: a fill.
            return self.miss_with(ctx, variant, res).await;
        }
        let status = res.status().as_u16();
        let b = match self.read_storable(&ctx, res, version).await {
            Read::Stored(b) => b,
            Read::Relay(res) if want == RangeOutcome::Full => {
                // A range answer the client did not ask for: never relayed to it.
                drop(res);
                return self.refetch(ctx, want, variant).await;
            }
            Read::Relay(res) => {
                return self.relay(res, &ctx, &format!("fwd=partial; fwd-status={status}"))
            }
            Read::Failed => return self.body_failed("fwd=partial"),
        };
        let obj = self.combined(&ctx, &part, span, &etag, b);
        self.metrics.stored();
        let params = format!("fwd=partial; fwd-status={status}; stored");
        self.answer_stored(ctx, &obj, &params).await
    }

    /// Sends the fill request of `ctx` with `fields` (`Range`, `If-Range`) to the next tier.
    async fn send_range(
        &self,
        ctx: &Ctx,
        version: u64,
        fields: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut up = self.upstream_parts_relaying(ctx, Purpose::Fill).await;
        for (name, value) in fields {
            up.headers.insert(name, value);
        }
        self.upstream
            .send(
                ctx.origins(),
                ctx.key.0,
                up,
                crate::body::ProxyBody::empty(),
                Retry::Idempotent,
                version,
            )
            .await
    }

    /// Stores what a completion fetch brought: the part and the new span combined when both
    /// carry `etag` and they touch, else the new response alone (it replaces the part).
    fn combined(
        &self,
        ctx: &Ctx,
        part: &Object,
        span: Span,
        etag: &str,
        b: Buffered,
    ) -> Arc<Object> {
        let Buffered {
            mut head,
            object,
            vary,
            values,
        } = b;
        let joined = object
            .span()
            .filter(|_| strong_etag(&head.headers) == Some(etag))
            .and_then(|new| combine(span, &part.body, new, &object.body));
        let obj = match joined {
            Some((whole, body)) => {
                // The new response's fields, but for the span it now holds (RFC 9111 3.4).
                let status = if whole.is_whole() {
                    head.headers.remove(header::CONTENT_RANGE);
                    StatusCode::OK
                } else {
                    if let Ok(v) =
                        HeaderValue::from_str(&whole.content_range(whole.start, whole.end))
                    {
                        head.headers.insert(header::CONTENT_RANGE, v);
                    }
                    StatusCode::PARTIAL_CONTENT
                };
                head.headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64));
                Arc::new(Object {
                    status,
                    headers: StoredHeaders::from_map(&head.headers, super::headers::stored),
                    body,
                    fresh: object.fresh,
                    extras: Extras::new(Box::default(), object.tags().into()),
                    purge_version: part.purge_version.min(object.purge_version),
                })
            }
            None => object,
        };
        self.cache.insert(ctx.key, vary, values, obj.clone());
        obj
    }

    /// The request fetched as if nothing were stored: a range miss for a range, else an
    /// ordinary fill of the whole (which replaces the part).
    async fn refetch(self: &Arc<Self>, ctx: Ctx, want: RangeOutcome, variant: u64) -> Answer {
        match want {
            RangeOutcome::Partial { .. } if forwardable_range(&ctx).is_some() => {
                self.range_miss(ctx, variant, "fwd=partial").await
            }
            _ => self.miss(ctx, None, variant, Recollapse::Allowed).await,
        }
    }

    /// Answers the client from `obj`, just stored: a complete response through the usual
    /// shaping (which serves the client's range), a part when it holds what the client asked
    /// for. A part that does not (the next tier sent another range than asked) is sent as
    /// the next tier sent it, to a range request only; a request for the whole is passed.
    async fn answer_stored(&self, ctx: Ctx, obj: &Object, params: &str) -> Answer {
        let now = crate::cache::clock::now_ms();
        let Some(span) = obj.span() else {
            let (res, n) = self
                .reply(&ctx, params)
                .object(obj, obj.fresh.age_secs(now));
            return Answer::new(res, Outcome::Miss, n);
        };
        let status = self.status_value(params);
        match self.wanted(&ctx, obj, span) {
            RangeOutcome::Partial { start, end } if span.holds(start, end) => {
                self.serve_part(&ctx, obj, span, (start, end), status, Outcome::Miss)
            }
            RangeOutcome::Full => self.pass(ctx, "fwd=partial").await,
            _ => {
                let all = (span.start, span.end);
                self.serve_part(&ctx, obj, span, all, status, Outcome::Miss)
            }
        }
    }

    /// The 206 for bytes `start..=end` of the part `obj` (holding `span`).
    fn serve_part(
        &self,
        ctx: &Ctx,
        obj: &Object,
        span: Span,
        (start, end): (u64, u64),
        cache_status: HeaderValue,
        outcome: Outcome,
    ) -> Answer {
        let mut headers = obj.headers.to_map();
        if let Ok(v) = HeaderValue::from_str(&span.content_range(start, end)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        let to = ((end - span.start + 1) as usize).min(obj.body.len());
        let from = ((start - span.start) as usize).min(to);
        let body = obj.body.slice(from..to);
        let n = body.len() as u64;
        let now = crate::cache::clock::now_ms();
        let (res, sent) = self.reply_with(ctx, cache_status).serve(
            StatusCode::PARTIAL_CONTENT,
            headers,
            BodySrc::Bytes(body),
            Some(n),
            obj.fresh.age_secs(now),
        );
        Answer::new(res, outcome, sent)
    }
}

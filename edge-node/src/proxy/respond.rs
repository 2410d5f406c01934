//! Turning a stored object or a fill into the client's response: `Age`, `Cache-Status`,
//! `Via`, conditional requests (304), Range (206/416) and HEAD, in one place; and the answers
//! the node makes itself: refusals, and the one answer to an upstream failure (stale where
//! stale-if-error allows, else 502 or 504 by the error's kind).

use super::collapse::Fill;
use super::conditional::{if_range_matches, not_modified};
use super::ctx::Ctx;
use super::headers::append_via;
use super::range::{evaluate, RangeOutcome};
use super::{Answer, Proxy};
use crate::body::{BoxError, ProxyBody};
use crate::cache::disk::LargeEntry;
use crate::cache::object::Object;
use crate::cache::policy::Usability;
use crate::metrics::Outcome;
use crate::upstream::error::UpstreamError;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;

/// RFC 9211 `Cache-Status`.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
/// The request id on error answers (the same id is in the log and the access log).
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Fields a 304 carries (RFC 9110 section 15.4.5), plus this edge's own.
const NOT_MODIFIED_FIELDS: &[HeaderName] = &[
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
    header::AGE,
    header::VIA,
];

/// Adds `Accept-Encoding` to `Vary` unless it is there already.
pub(crate) fn ensure_vary_accept_encoding(h: &mut HeaderMap) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Where the body bytes come from.
pub(crate) enum BodySrc {
    /// A stored body.
    Bytes(Bytes),
    /// A fill in progress (or finished).
    Fill(Arc<Fill>),
    /// A large stored response read from the disk tier, block by block.
    Disk(Arc<LargeEntry>),
}

impl BodySrc {
    fn body(self, start: u64, end: Option<u64>) -> ProxyBody {
        match self {
            BodySrc::Bytes(b) => {
                let len = b.len() as u64;
                let end = end.unwrap_or(len).min(len);
                ProxyBody::full(b.slice(start.min(end) as usize..end as usize))
            }
            BodySrc::Disk(entry) => {
                let end = end
                    .unwrap_or(entry.header.body_len)
                    .min(entry.header.body_len);
                let step = u64::from(entry.header.block_size);
                let stream = futures_util::stream::unfold(start, move |pos| {
                    let entry = entry.clone();
                    async move {
                        if pos >= end {
                            return None;
                        }
                        let hi = ((pos / step + 1) * step).min(end);
                        let e2 = entry.clone();
                        let read =
                            tokio::task::spawn_blocking(move || e2.read_range(pos, hi)).await;
                        match read {
                            Ok(Ok(b)) => Some((Ok(http_body::Frame::data(b)), hi)),
                            Ok(Err(e)) => {
                                // Never send a damaged block: drop the entry and cut the response.
                                entry.drop_damaged();
                                tracing::warn!(error = %e, "damaged block in a disk cache entry; response cut");
                                Some((Err(Box::new(e) as BoxError), end))
                            }
                            Err(e) => Some((Err(Box::new(e) as BoxError), end)),
                        }
                    }
                });
                ProxyBody::Stream(http_body_util::StreamBody::new(stream).boxed())
            }
            BodySrc::Fill(f) => {
                let Some(reader) = f.reader(start, end) else {
                    let e: BoxError =
                        "the shared fetch no longer holds the start of the body".into();
                    let failed = futures_util::stream::once(async move {
                        Err::<http_body::Frame<Bytes>, BoxError>(e)
                    });
                    return ProxyBody::Stream(http_body_util::StreamBody::new(failed).boxed());
                };
                let stream = futures_util::stream::unfold(reader, |mut r| async move {
                    match r.next_chunk().await {
                        Ok(Some(c)) => Some((Ok(http_body::Frame::data(c)), r)),
                        Ok(None) => None,
                        Err(e) => Some((Err(Box::new(e) as BoxError), r)),
                    }
                });
                ProxyBody::Stream(http_body_util::StreamBody::new(stream).boxed())
            }
        }
    }
}

/// What every response from the cache needs to know about its request.
pub(crate) struct Reply<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request's fields (validators, Range).
    pub req: &'a HeaderMap,
    /// This edge's Cache-Status member.
    pub cache_status: HeaderValue,
    /// This edge's Via value.
    pub via: &'a HeaderValue,
    /// Served uncompressed whatever the client accepts (a site rule's `compress = false`).
    pub identity: bool,
}

impl Reply<'_> {
    /// Serves a stored object with `age` seconds, compressed when the object has an encoding
    /// the client accepts (and the request is not for a range).
    pub(crate) fn object(&self, obj: &Object, age: u64) -> (Response<ProxyBody>, Option<u64>) {
        let mut headers = obj.headers.to_map();
        if !obj.encoded().is_empty() && !self.identity {
            ensure_vary_accept_encoding(&mut headers);
            let accepted = crate::cache::vary::normalized_accept_encoding(self.req);
            if !self.req.contains_key(header::RANGE) {
                if let Some(i) = crate::cache::compress::choose(accepted, obj.encoded()) {
                    let (coding, body) = &obj.encoded()[i];
                    headers.insert(
                        header::CONTENT_ENCODING,
                        HeaderValue::from_static(coding.token()),
                    );
                    // A different representation: its validator can only be weak.
                    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
                        if !etag.starts_with("W/") {
                            if let Ok(v) = HeaderValue::from_str(&format!("W/{etag}")) {
                                headers.insert(header::ETAG, v);
                            }
                        }
                    }
                    return self.serve(
                        obj.status,
                        headers,
                        BodySrc::Bytes(body.clone()),
                        Some(body.len() as u64),
                        age,
                    );
                }
            }
        }
        self.serve(
            obj.status,
            headers,
            BodySrc::Bytes(obj.body.clone()),
            Some(obj.body.len() as u64),
            age,
        )
    }

    /// Serves `status` and `headers` with `body` of `len` bytes (if known). Returns the
    /// response and the number of body bytes it will carry, when known.
    pub(crate) fn serve(
        &self,
        status: StatusCode,
        mut headers: HeaderMap,
        body: BodySrc,
        len: Option<u64>,
        age: u64,
    ) -> (Response<ProxyBody>, Option<u64>) {
        headers.insert(header::AGE, age_value(age));
        headers.append(CACHE_STATUS.clone(), self.cache_status.clone());
        append_via(&mut headers, self.via);
        let head_only = *self.method == Method::HEAD;

        if status == StatusCode::OK {
            let Conditions {
                conditional,
                ranged,
            } = Conditions::of(self.req);
            // The validators, for a request that has a condition to compare them with.
            let validator = |n| conditional.then(|| headers.get(n).cloned()).flatten();
            let etag_v = validator(header::ETAG);
            let lm_v = validator(header::LAST_MODIFIED);
            let etag = etag_v.as_ref().and_then(|v| v.to_str().ok());
            let lm = lm_v.as_ref().and_then(|v| v.to_str().ok());
            // Without Last-Modified, If-Modified-Since compares with the Date (RFC 9111 4.3.2).
            let date_v =
                (conditional && lm_v.is_none() && self.req.contains_key(header::IF_MODIFIED_SINCE))
                    .then(|| headers.get(header::DATE).cloned())
                    .flatten();
            let since = lm.or_else(|| date_v.as_ref().and_then(|v| v.to_str().ok()));
            if conditional && not_modified(self.req, etag, since) {
                return (not_modified_response(&headers), Some(0));
            }
            if let Some(len) = len {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                let range = ranged
                    .then(|| self.req.get(header::RANGE).and_then(|v| v.to_str().ok()))
                    .flatten();
                if range.is_some()
                    && *self.method == Method::GET
                    && if_range_matches(self.req, etag, lm)
                {
                    match evaluate(range, len) {
                        RangeOutcome::Full => {}
                        RangeOutcome::Partial { start, end } => {
                            return partial(start, end, len, headers, body)
                        }
                        RangeOutcome::Unsatisfiable => return unsatisfiable(len, headers),
                    }
                }
            }
        }
        if let Some(len) = len {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        if head_only {
            return (build(status, headers, ProxyBody::empty()), Some(0));
        }
        (build(status, headers, body.body(0, None)), len)
    }
}

/// Which of the request fields that change an answer from the store a request carries.
struct Conditions {
    /// If-None-Match, If-Modified-Since or If-Range.
    conditional: bool,
    /// Range.
    ranged: bool,
}

impl Conditions {
    /// One pass over the request's field names (most requests have none of these, and a
    /// few names to look at), instead of a lookup for each.
    fn of(req: &HeaderMap) -> Self {
        let mut c = Conditions {
            conditional: false,
            ranged: false,
        };
        for n in req.keys() {
            if n == header::IF_NONE_MATCH || n == header::IF_MODIFIED_SINCE || n == header::IF_RANGE
            {
                c.conditional = true;
            } else if n == header::RANGE {
                c.ranged = true;
            }
        }
        c
    }
}

/// The digits of 0 to 999, right-aligned in three bytes: the `Age` of most answers, as
/// static values (no allocation, nothing to free).
static SMALL_AGES: [[u8; 3]; 1000] = {
    let mut t = [[0u8; 3]; 1000];
    let mut i = 0;
    while i < 1000 {
        t[i] = [
            b'0' + (i / 100) as u8,
            b'0' + (i / 10 % 10) as u8,
            b'0' + (i % 10) as u8,
        ];
        i += 1;
    }
    t
};

/// `age` as an `Age` value.
fn age_value(age: u64) -> HeaderValue {
    if let Some(d) = usize::try_from(age).ok().and_then(|i| SMALL_AGES.get(i)) {
        let digits = match age {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        let s: &'static [u8] = &d[3 - digits..];
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from_static(s)) {
            return v;
        }
    }
    HeaderValue::from(age)
}

/// The 304 for a conditional request the stored response satisfies: the fields a 304
/// carries (RFC 9110 section 15.4.5) and this node's.
fn not_modified_response(headers: &HeaderMap) -> Response<ProxyBody> {
    let mut h = HeaderMap::with_capacity(NOT_MODIFIED_FIELDS.len() + 1);
    for n in NOT_MODIFIED_FIELDS {
        for v in headers.get_all(n) {
            h.append(n.clone(), v.clone());
        }
    }
    for v in headers.get_all(&CACHE_STATUS) {
        h.append(CACHE_STATUS.clone(), v.clone());
    }
    build(StatusCode::NOT_MODIFIED, h, ProxyBody::empty())
}

/// The 206 for bytes `start..=end` of a body of `len` bytes.
fn partial(
    start: u64,
    end: u64,
    len: u64,
    mut headers: HeaderMap,
    body: BodySrc,
) -> (Response<ProxyBody>, Option<u64>) {
    let n = end - start + 1;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    let body = body.body(start, Some(end + 1));
    (build(StatusCode::PARTIAL_CONTENT, headers, body), Some(n))
}

/// The 416 for a Range request no part of a body of `len` bytes satisfies.
fn unsatisfiable(len: u64, mut headers: HeaderMap) -> (Response<ProxyBody>, Option<u64>) {
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    (
        build(
            StatusCode::RANGE_NOT_SATISFIABLE,
            headers,
            ProxyBody::empty(),
        ),
        Some(0),
    )
}

fn build(status: StatusCode, headers: HeaderMap, body: ProxyBody) -> Response<ProxyBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A short plain-text response made by the edge itself (errors, refusals).
pub(crate) fn plain(
    status: StatusCode,
    cache_status: HeaderValue,
    msg: &str,
) -> Response<ProxyBody> {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(CACHE_STATUS.clone(), cache_status);
    build(status, h, ProxyBody::full(format!("{msg}\n")))
}

impl Proxy {
    /// This node's `Cache-Status` member with `params`.
    pub(super) fn status_value(&self, params: &str) -> HeaderValue {
        self.status_from(&[params])
    }

    /// This node's `Cache-Status` member for a fresh hit with `ttl` seconds left. Built
    /// without the formatting machinery: it is on every hit.
    pub(super) fn status_hit(&self, ttl: u64, detail: &str) -> HeaderValue {
        let mut n = itoa::Buffer::new();
        self.status_from(&["hit; ttl=", n.format(ttl), detail])
    }

    /// `cache_name; ` followed by `parts`, in one allocation.
    fn status_from(&self, parts: &[&str]) -> HeaderValue {
        let name = &self.settings.cache_name;
        let len = name.len() + 2 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut v = String::with_capacity(len);
        v.push_str(name);
        v.push_str("; ");
        for p in parts {
            v.push_str(p);
        }
        HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
            .unwrap_or_else(|_| HeaderValue::from_static("outpost"))
    }

    /// The shaping of a cached answer to `ctx` with `Cache-Status` parameters `params`.
    pub(super) fn reply<'a>(&'a self, ctx: &'a Ctx, params: &str) -> Reply<'a> {
        self.reply_with(ctx, self.status_value(params))
    }

    /// The shaping of a cached answer to `ctx` with this `Cache-Status` member.
    pub(super) fn reply_with<'a>(&'a self, ctx: &'a Ctx, cache_status: HeaderValue) -> Reply<'a> {
        Reply {
            method: &ctx.parts.method,
            req: &ctx.parts.headers,
            cache_status,
            via: &self.via,
            identity: ctx.compress() == Some(false),
        }
    }

    /// Serves `stale` if stale-if-error still covers it; `why` says what failed.
    pub(super) fn stale_on_error(
        &self,
        ctx: &Ctx,
        stale: Option<&Object>,
        why: &str,
    ) -> Option<Answer> {
        let obj = stale?;
        let now = crate::cache::clock::now_ms();
        if let Usability::Stale {
            serve_on_error: false,
        } = obj.fresh.usability(now)
        {
            return None;
        }
        let reply = self.reply(ctx, &format!("fwd=stale; {why}; detail=stale-if-error"));
        let (res, n) = reply.object(obj, obj.fresh.age_secs(now));
        Some(Answer::new(res, Outcome::Stale, n))
    }

    /// Serves `stale` because the next tier cannot be reached (RFC 9111 4.2.4): within
    /// stale-if-error or the unreachable window, unless its directives forbid stale use.
    pub(super) fn stale_when_unreachable(
        &self,
        ctx: &Ctx,
        stale: Option<&Object>,
        e: &UpstreamError,
    ) -> Option<Answer> {
        let obj = stale?;
        let now = crate::cache::clock::now_ms();
        if !obj.fresh.usable_when_unreachable(now) {
            return None;
        }
        let params = format!("fwd=stale; detail=upstream-unreachable-{}", e.kind());
        let (res, n) = self
            .reply(ctx, &params)
            .object(obj, obj.fresh.age_secs(now));
        Some(Answer::new(res, Outcome::Stale, n))
    }

    /// The answer when the upstream could not be used and nothing stale may stand in: 502 or
    /// 504 by the kind of failure, with `fwd` and the kind in `Cache-Status`. The client sees a
    /// short message and the request id, never an internal address; the detail goes to the
    /// log under the same id.
    pub(super) fn upstream_failed(&self, ctx: &Ctx, fwd: &str, e: &UpstreamError) -> Answer {
        let st = self.status_value(&format!("{fwd}; detail=upstream-{}", e.kind()));
        let id = format!("{:016x}", ctx.client.request_id);
        tracing::warn!(request_id = %id, site = %ctx.site.name, error = %e, "answered {}", e.response_status().as_u16());
        let mut res = plain(
            e.response_status(),
            st,
            &format!("outpost: {} (request id {id})", e.client_message()),
        );
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID.clone(), v);
        }
        Answer::new(res, Outcome::Error, None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ages_are_written_in_decimal_at_every_length() {
        for age in [0, 7, 10, 99, 100, 459, 999, 1000, 86_400, u64::MAX] {
            assert_eq!(age_value(age).to_str().unwrap(), age.to_string(), "{age}");
        }
    }

    #[test]
    fn conditions_are_found_among_other_fields() {
        let mut req = HeaderMap::new();
        req.insert(header::HOST, HeaderValue::from_static("a.test"));
        req.insert("x-custom", HeaderValue::from_static("1"));
        let c = Conditions::of(&req);
        assert!(!c.conditional && !c.ranged);
        for (name, conditional, ranged) in [
            (header::IF_NONE_MATCH, true, false),
            (header::IF_MODIFIED_SINCE, true, false),
            (header::IF_RANGE, true, false),
            (header::RANGE, false, true),
        ] {
            let mut r = req.clone();
            r.insert(name.clone(), HeaderValue::from_static("x"));
            let c = Conditions::of(&r);
            assert_eq!((c.conditional, c.ranged), (conditional, ranged), "{name}");
        }
    }
}

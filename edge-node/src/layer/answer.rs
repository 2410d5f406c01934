//! Responses of the layer: a stored object answered (200, 304 to a matching conditional,
//! HEAD without a body), the inner service's response passed on, and the `Cache-Status`
//! member (RFC 9211) each carries.

use super::body::CacheBody;
use crate::cache::Object;
use crate::proxy::conditional::not_modified;
use crate::proxy::headers::for_client;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, AGE, CONTENT_LENGTH, IF_MODIFIED_SINCE};
use http::{Method, Response, StatusCode};
use http_body::Body;

/// The `Cache-Status` field name.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// `name; params` as a field value (parameters are ours: always visible ASCII).
pub(crate) fn status_value(name: &str, params: &str) -> HeaderValue {
    let mut v = String::with_capacity(name.len() + 2 + params.len());
    v.push_str(name);
    v.push_str("; ");
    v.push_str(params);
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("outpost"))
}

/// `object` answered to a request with `method` and `req` fields, `age` seconds old.
pub(crate) fn object(
    obj: &Object,
    method: &Method,
    req: &HeaderMap,
    age: u64,
    cache_status: HeaderValue,
) -> Response<CacheBody> {
    // Without Last-Modified, If-Modified-Since compares with the Date (RFC 9111 4.3.2).
    let since = req
        .contains_key(IF_MODIFIED_SINCE)
        .then(|| obj.last_modified().or_else(|| obj.headers.get_str("date")))
        .flatten();
    let fresh_match =
        obj.status == StatusCode::OK && not_modified(req, obj.etag().as_deref(), since.as_deref());
    let (status, body) = if fresh_match {
        (StatusCode::NOT_MODIFIED, CacheBody::empty())
    } else if method == Method::HEAD {
        (obj.status, CacheBody::empty())
    } else {
        (obj.status, CacheBody::full(obj.body.clone()))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = obj.headers.to_map();
    let h = res.headers_mut();
    if status == StatusCode::NOT_MODIFIED {
        h.remove(CONTENT_LENGTH);
    } else {
        h.insert(CONTENT_LENGTH, HeaderValue::from(obj.body.len()));
    }
    h.insert(AGE, HeaderValue::from(age));
    h.append(CACHE_STATUS.clone(), cache_status);
    res
}

/// The inner service's response passed on: hop-by-hop and cache-only fields removed, our
/// `Cache-Status` member appended after the inner service's own.
pub(crate) fn passed<B>(res: Response<B>, cache_status: HeaderValue) -> Response<CacheBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<crate::body::BoxError>,
{
    let (mut parts, body) = res.into_parts();
    for_client(&mut parts.headers);
    parts.headers.append(CACHE_STATUS.clone(), cache_status);
    Response::from_parts(parts, CacheBody::prefixed(Default::default(), body))
}

/// A response of ours (the fill task died): `status` with a short text.
pub(crate) fn own(
    status: StatusCode,
    text: &'static str,
    cache_status: HeaderValue,
) -> Response<CacheBody> {
    let mut res = Response::new(CacheBody::full(text));
    *res.status_mut() = status;
    res.headers_mut().append(CACHE_STATUS.clone(), cache_status);
    res
}

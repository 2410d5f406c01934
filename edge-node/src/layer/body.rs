//! [`CacheBody`]: the response body of a [`CacheService`](super::CacheService): a stored
//! body (a hit, or a response just stored) or the inner service's own body passed through.

use crate::body::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of every response a [`CacheService`](super::CacheService) returns.
pub struct CacheBody(Inner);

enum Inner {
    /// A whole buffer (or nothing): answers from the cache, no allocation beyond the `Bytes`.
    Full(Option<Bytes>),
    /// Chunks already read, then the rest of the inner body (a response that outgrew
    /// `max_object_bytes` while it was read for storing).
    Prefixed(VecDeque<Bytes>, UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for CacheBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Full(b) => write!(
                f,
                "CacheBody::Full({} bytes)",
                b.as_ref().map_or(0, Bytes::len)
            ),
            Inner::Prefixed(..) => f.write_str("CacheBody::Stream"),
        }
    }
}

impl CacheBody {
    /// An empty body.
    pub fn empty() -> Self {
        CacheBody(Inner::Full(None))
    }

    /// A body of one buffer.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        CacheBody(Inner::Full((!b.is_empty()).then_some(b)))
    }

    /// `prefix`, then what is left of `rest`.
    pub(crate) fn prefixed<B>(prefix: VecDeque<Bytes>, rest: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::prefixed_boxed(prefix, rest.map_err(Into::into).boxed_unsync())
    }

    /// `prefix`, then what is left of `rest`, boxed already.
    pub(crate) fn prefixed_boxed(
        prefix: VecDeque<Bytes>,
        rest: UnsyncBoxBody<Bytes, BoxError>,
    ) -> Self {
        CacheBody(Inner::Prefixed(prefix, rest))
    }
}

impl Body for CacheBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Prefixed(prefix, rest) => match prefix.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(b) => b.is_none(),
            Inner::Prefixed(prefix, rest) => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Prefixed(prefix, rest) => {
                let had: u64 = prefix.iter().map(|b| b.len() as u64).sum();
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + had);
                if let Some(u) = r.upper() {
                    h.set_upper(u + had);
                }
                h
            }
        }
    }
}

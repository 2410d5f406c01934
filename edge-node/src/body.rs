//! The response body type of the proxy: a whole buffer (hits), a fill reader (misses, streamed
//! while the cache fills) or an upstream body passed through.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body of one of the shapes the proxy produces.
pub enum ProxyBody {
    /// A whole buffer (or nothing).
    Full(Option<Bytes>),
    /// A stream (fill readers).
    Stream(BoxBody<Bytes, BoxError>),
    /// An upstream body passed through untouched.
    Incoming(hyper::body::Incoming),
}

impl ProxyBody {
    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    /// A whole-buffer body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        ProxyBody::Full(if b.is_empty() { None } else { Some(b) })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Stream(s) => Pin::new(s).poll_frame(cx),
            ProxyBody::Incoming(i) => Pin::new(i)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Stream(s) => s.is_end_stream(),
            ProxyBody::Incoming(i) => i.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Stream(s) => s.size_hint(),
            ProxyBody::Incoming(i) => i.size_hint(),
        }
    }
}

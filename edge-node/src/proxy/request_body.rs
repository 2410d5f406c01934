//! The body of a request the node forwards (every method but GET and HEAD). One with a
//! declared length up to [`BUFFERED`] is read whole before anything goes upstream, as nginx does
//! with `proxy_request_buffering`: a body that breaks or disagrees with its declared length (an
//! HTTP/2 request whose DATA adds up to more or less than its `content-length`, a connection
//! cut short) is then refused before the origin sees a byte, however fast the origin would have
//! answered, and a slow client never holds an upstream connection. Longer bodies, and bodies
//! without a declared length, stream; one that breaks on the way sets a flag, so the answer is
//! still the client's fault (400), not the upstream's.

use super::ctx::Ctx;
use crate::body::{BoxError, ProxyBody};
use http::header;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest declared body read whole before it goes upstream.
pub(super) const BUFFERED: u64 = 64 * 1024;

/// The body to send upstream and the flag its failure sets, or `None` when the client's body
/// broke while it was read whole.
pub(super) async fn prepare<B>(ctx: &Ctx, body: B) -> Option<(ProxyBody, Arc<AtomicBool>)>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let broke = Arc::new(AtomicBool::new(false));
    let declared = ctx
        .parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n <= BUFFERED) {
        // The server connection checks the body against its declared length and fails it
        // when they differ; checked here too, whatever the protocol.
        let whole = body.collect().await.ok()?.to_bytes();
        return (whole.len() as u64 == n).then(|| (ProxyBody::Full(Some(whole)), broke));
    }
    let flag = broke.clone();
    let body = body.map_err(move |e| {
        flag.store(true, Ordering::Relaxed);
        e.into()
    });
    let body = match ctx.site.max_body {
        // A body without a declared length is cut where it passes the bound: the upstream
        // never receives more.
        Some(max) => ProxyBody::Stream(
            http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))
                .map_err(Into::into)
                .boxed(),
        ),
        None => ProxyBody::Stream(body.boxed()),
    };
    Some((body, broke))
}

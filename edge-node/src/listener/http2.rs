//! The node's HTTP/2 server, on the h2 crate directly: hyper's server gives a request no way to
//! send 1xx interim responses (RFC 9110 15.2), which HTTP/2 carries as HEADERS frames ahead of
//! the final response's on the same stream (RFC 9113 8.1). Here each stream's response handle
//! is shared with the request path ([`crate::interim::Interim::http2`]) until the final
//! response takes it.
//!
//! One task drives a connection: it accepts streams, and while it waits in `accept` h2 does the
//! connection's reads and writes; the writes are gathered and sent once per poll
//! (`listener/coalesce.rs`). A stream is first polled right there (a cache hit is
//! answered at once, without a task); one that has to wait runs on in a task of its own: the
//! proxy answers the request, then the answer's body goes out: a whole buffer (a hit) is
//! handed to h2 at once, which sends it as the stream's flow-control window opens; a streamed
//! body is pulled only as the window allows. A stream the client resets stops its request. On shutdown the connection sends GOAWAY and ends once
//! its streams have finished.

use super::limits::ConnLimits;
use crate::body::ProxyBody;
use crate::interim::{Http2Slot, Interim};
use crate::proxy::{ClientInfo, Proxy};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{header, HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

/// What an HTTP/2 client sends first (RFC 9113 3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams reset by the client before the node took them, at most, before GOAWAY.
const MAX_PENDING_RESETS: usize = 20;

/// Streams one client may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Serves one HTTP/2 connection (after its TLS handshake, or with the client's preface next on
/// a plain one) until the client leaves or `shutdown` flips and its streams are done. The
/// connection holds `_alive` while it runs, so the listener can wait for it to drain.
pub(crate) async fn serve_connection<T>(
    io: T,
    node: Arc<dyn super::generation::Source>,
    client: ClientInfo,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (io, sender) = super::coalesce::split(io);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // Rapid reset (CVE-2023-44487): a client resetting streams it just opened has the
        // connection closed (GOAWAY, ENHANCE_YOUR_CALM) once 20 such resets are pending.
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let handshake = sender.drive(builder.handshake::<_, Bytes>(io));
    let mut conn = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, client = %client.addr, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let mut closing = false;
    let mut streams: u64 = 0;
    loop {
        let next = tokio::select! {
            next = sender.drive(conn.accept()) => next,
            _ = shutdown.wait_for(|s| *s), if !closing => {
                conn.graceful_shutdown();
                closing = true;
                continue;
            }
        };
        match next {
            Some(Ok((req, respond))) => {
                streams += 1;
                // Past the connection's share of requests: this one is served, then GOAWAY.
                if limits.max_requests_per_connection != 0
                    && streams >= limits.max_requests_per_connection
                    && !closing
                {
                    conn.graceful_shutdown();
                    closing = true;
                }
                // Most answers (cache hits) are ready at once: try here first, and spawn a
                // task only for a stream that has to wait (a miss, a slow client window).
                let mut stream = Box::pin(serve_stream(req, respond, node.proxy(), client.clone()));
                if futures_util::FutureExt::now_or_never(&mut stream).is_none() {
                    tokio::spawn(stream);
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, client = %client.addr, "HTTP/2 connection ended");
                break;
            }
            None => break,
        }
    }
    // h2 shuts the I/O down when the connection closes cleanly, which sends the buffer; after
    // an error, what is left (a GOAWAY) is sent here, briefly.
    let _ = tokio::time::timeout(limits.header_read_timeout, sender.finish()).await;
}

/// Answers one stream: the proxy's answer, with the 1xx responses it relays first.
async fn serve_stream(
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    proxy: Arc<Proxy>,
    mut client: ClientInfo,
) {
    let slot: Http2Slot = Arc::new(Mutex::new(Some(respond)));
    client.interim = Some(Interim::http2(slot.clone()));
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let req = req.map(|stream| RequestBody { stream, length });
    // Boxed: the request path's future is large, and a spawned task is moved whole; this one
    // stays small.
    let answer = Box::pin(proxy.handle(req, client));
    let reset = poll_fn(|cx| match slot.lock() {
        Ok(mut s) => match s.as_mut() {
            Some(respond) => respond.poll_reset(cx).map(|_| ()),
            None => Poll::Pending,
        },
        Err(_) => Poll::Ready(()),
    });
    let res = tokio::select! {
        // The answer first: a hit is ready at once, and never looks at the stream's state.
        biased;
        res = answer => res,
        // The client gave up on the stream: so does its request.
        _ = reset => return,
    };
    let respond = match slot.lock() {
        Ok(mut s) => s.take(),
        Err(_) => None,
    };
    if let Some(respond) = respond {
        send_response(respond, res).await;
    }
}

/// Sends the final response, its body within the stream's flow-control window, then its
/// trailers if any.
async fn send_response(mut respond: SendResponse<Bytes>, res: Response<ProxyBody>) {
    let (mut head, body) = res.into_parts();
    // Connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2): the same list
    // that never crosses a hop.
    for name in crate::proxy::headers::HOP_BY_HOP {
        head.headers.remove(*name);
    }
    super::date::ensure(&mut head.headers);
    let empty = body.is_end_stream();
    let mut stream = match respond.send_response(Response::from_parts(head, ()), empty) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 response head not sent");
            return;
        }
    };
    if empty {
        return;
    }
    let mut body = match body {
        // A whole buffer (a hit) goes to h2 at once: h2 queues what the client's window does
        // not take yet and sends it as the window opens. That holds no more memory than the
        // buffer itself, which is already held (shared with the cache: a queued hit is a
        // reference, not a copy), and it saves each stream a capacity request and wait.
        // Streamed bodies (fills, passes, large objects read from disk) are pulled only as
        // the window allows, below.
        ProxyBody::Full(Some(data)) => {
            let _ = stream.send_data(data, true);
            return;
        }
        streamed => streamed,
    };
    loop {
        let frame = match body.frame().await {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                // The body broke off (an upstream that went away mid-body): the client must
                // not take what it got for the whole.
                tracing::debug!(error = %e, "HTTP/2 response body failed");
                stream.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        };
        match frame.into_data() {
            Ok(data) => {
                let last = body.is_end_stream();
                if !send_data(&mut stream, data, last).await || last {
                    return;
                }
            }
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap_or_else(|_| HeaderMap::new());
                let _ = stream.send_trailers(trailers);
                return;
            }
        }
    }
}

/// Sends `data` as the window allows; false when the stream is gone.
async fn send_data(stream: &mut SendStream<Bytes>, mut data: Bytes, last: bool) -> bool {
    if data.is_empty() {
        return !last || stream.send_data(data, true).is_ok();
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(0)) => continue,
            Some(Ok(n)) => n,
            Some(Err(_)) | None => return false,
        };
        let chunk = data.split_to(granted.min(data.len()));
        if stream.send_data(chunk, last && data.is_empty()).is_err() {
            return false;
        }
    }
    true
}

/// A request's body as it arrives on its stream; what is read is given back to the client's
/// flow-control window.
pub(crate) struct RequestBody {
    stream: RecvStream,
    /// The request's Content-Length, if it gave one.
    length: Option<u64>,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let me = self.get_mut();
        match ready!(me.stream.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = me.stream.flow_control().release_capacity(data.len());
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            None => {}
        }
        match ready!(me.stream.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

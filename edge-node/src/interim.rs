//! 1xx interim responses relayed to HTTP/1.1 clients (RFC 9110 section 15.2).
//!
//! hyper's server has no way to send an informational response, so the connection's I/O is
//! wrapped (`InterimIo`): the request path queues the serialised head of a 1xx received from
//! upstream (`Interim::send`), and the wrapper writes it to the socket itself, at a point
//! where hyper has nothing of its own waiting to go out, so it can never land inside another
//! response:
//!
//! - hyper's last call on the I/O was a completed flush (so every byte hyper produced is out),
//!   and the request the 1xx belongs to has not been answered yet. The request path wakes the
//!   connection's task, and hyper's next read poll (it polls for EOF while a request is being
//!   served) writes it;
//! - or, at the latest, just before hyper writes the final response's head.
//!
//! When neither holds (pipelined requests with a response still being written), the 1xx is
//! dropped: interim responses are advisory, and a late one would be worse than none. A 1xx
//! queued for a request that has since been answered is dropped too ([`Interim::end_request`]
//! starts a new generation).
//!
//! HTTP/2 needs none of this: each stream is a channel of its own, and the node's HTTP/2
//! server (`listener/http2.rs`) gives the request path the stream's response handle
//! (`Interim::http2`), on which a 1xx is a HEADERS frame sent before the final response's.
//! HTTP/1.0 clients never get a 1xx (RFC 9110 15.2).

use bytes::{BufMut, BytesMut};
use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode, Version};
use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

/// What the connection's I/O wrapper and the request path share.
#[derive(Debug, Default)]
struct Shared {
    /// Serialised 1xx heads not yet handed to the socket.
    pending: Mutex<BytesMut>,
    /// Whether `pending` holds anything (read without the lock on every poll).
    has_pending: AtomicBool,
    /// The request being served; a sender from an earlier one is ignored.
    generation: AtomicU64,
    /// The connection task, woken when a 1xx is queued.
    task: AtomicWaker,
}

/// One HTTP/2 stream's response handle, until its final response takes it out.
pub(crate) type Http2Slot = Arc<Mutex<Option<h2::server::SendResponse<bytes::Bytes>>>>;

/// A connection's (HTTP/1.1) or a stream's (HTTP/2) 1xx channel, held by the request path
/// (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Interim(Channel);

#[derive(Debug, Clone)]
enum Channel {
    Http1(Arc<Shared>),
    Http2(Http2Slot),
}

impl Default for Interim {
    /// An HTTP/1.1 connection's channel; its I/O goes through `InterimIo`.
    fn default() -> Self {
        Interim(Channel::Http1(Arc::default()))
    }
}

/// A channel bound to one request: sends after that request is answered are dropped.
#[derive(Debug, Clone)]
pub(crate) struct InterimSender(Target, Arc<AtomicU32>);

/// Most 1xx responses relayed for one request: an upstream sending them without end must not
/// make the edge buffer without end for a client that does not read.
const MAX_PER_REQUEST: u32 = 16;

#[derive(Debug, Clone)]
enum Target {
    Http1 {
        shared: Arc<Shared>,
        generation: u64,
    },
    Http2(Http2Slot),
}

impl Interim {
    /// An HTTP/2 stream's channel: 1xx responses go out on `slot` while it holds the stream's
    /// response handle (the server takes it for the final response).
    pub(crate) fn http2(slot: Http2Slot) -> Self {
        Interim(Channel::Http2(slot))
    }

    /// A sender for the request being served, whose 1xx responses reach the client, if the
    /// request's version allows them (HTTP/1.1). Registers the connection's task (the caller
    /// runs inside it: hyper polls an HTTP/1 service on the connection's task) so a queued
    /// 1xx gets written while the request is still being served.
    pub(crate) async fn sender(&self, version: Version) -> Option<InterimSender> {
        let shared = match &self.0 {
            Channel::Http2(slot) => {
                return Some(InterimSender(Target::Http2(slot.clone()), Arc::default()))
            }
            Channel::Http1(shared) => shared,
        };
        if version != Version::HTTP_11 {
            return None;
        }
        std::future::poll_fn(|cx| {
            shared.task.register(cx.waker());
            Poll::Ready(())
        })
        .await;
        Some(InterimSender(
            Target::Http1 {
                shared: shared.clone(),
                generation: shared.generation.load(Ordering::Acquire),
            },
            Arc::default(),
        ))
    }

    /// The request being served has its final response: later sends for it are dropped.
    pub(crate) fn end_request(&self) {
        match &self.0 {
            Channel::Http1(shared) => {
                shared.generation.fetch_add(1, Ordering::AcqRel);
            }
            Channel::Http2(slot) => {
                if let Ok(mut s) = slot.lock() {
                    s.take();
                }
            }
        }
    }
}

impl InterimSender {
    /// Queues a 1xx for the client: 102 Processing, 103 Early Hints and the like. Never 100
    /// (hyper answers `Expect: 100-continue` itself) nor 101 (no upgrades are relayed).
    /// Hop-by-hop fields are not relayed.
    pub(crate) fn send(&self, status: StatusCode, headers: &HeaderMap) {
        if !status.is_informational()
            || status == StatusCode::CONTINUE
            || status == StatusCode::SWITCHING_PROTOCOLS
        {
            return;
        }
        if self.1.fetch_add(1, Ordering::AcqRel) >= MAX_PER_REQUEST {
            tracing::debug!(%status, "a 1xx response dropped: too many for one request");
            return;
        }
        match &self.0 {
            Target::Http1 { shared, generation } => {
                if shared.generation.load(Ordering::Acquire) != *generation {
                    return;
                }
                let Ok(mut pending) = shared.pending.lock() else {
                    return;
                };
                write_head(&mut pending, status, headers);
                shared.has_pending.store(true, Ordering::Release);
                drop(pending);
                shared.task.wake();
            }
            Target::Http2(slot) => {
                let Ok(mut slot) = slot.lock() else {
                    return;
                };
                // Taken: the final response is out, and a late 1xx has no place.
                let Some(respond) = slot.as_mut() else {
                    return;
                };
                let mut res = http::Response::new(());
                *res.status_mut() = status;
                for (name, value) in headers {
                    if !crate::proxy::headers::HOP_BY_HOP.contains(&name.as_str()) {
                        res.headers_mut().append(name.clone(), value.clone());
                    }
                }
                if let Err(e) = respond.send_informational(res) {
                    tracing::debug!(error = %e, "a 1xx response could not be sent on HTTP/2");
                }
            }
        }
    }
}

/// Appends `HTTP/1.1 <status> <reason>`, the fields and the empty line.
fn write_head(out: &mut BytesMut, status: StatusCode, headers: &HeaderMap) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        if crate::proxy::headers::HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// A connection's I/O with 1xx heads written in (see the module docs).
#[derive(Debug)]
pub(crate) struct InterimIo<T> {
    inner: T,
    shared: Arc<Shared>,
    /// hyper's last call was a completed flush: nothing of its own is waiting to go out.
    clean: bool,
    /// Interim bytes being written, and how many went out. Once started, they finish before
    /// any byte of hyper's.
    out: BytesMut,
}

impl<T> InterimIo<T> {
    /// Wraps `inner`; `interim` is the channel the connection's requests send on.
    pub(crate) fn new(inner: T, interim: &Interim) -> Self {
        let shared = match &interim.0 {
            Channel::Http1(shared) => shared.clone(),
            // Not an HTTP/1 channel: the wrapper writes nothing.
            Channel::Http2(_) => Arc::default(),
        };
        InterimIo {
            inner,
            shared,
            clean: true,
            out: BytesMut::new(),
        }
    }
}

impl<T: Write + Unpin> InterimIo<T> {
    /// Writes queued 1xx bytes if it is safe to (`clean`). With `before_hyper` (hyper is
    /// about to write), queued bytes that cannot go first are dropped.
    fn poll_interim(&mut self, cx: &mut Context<'_>, before_hyper: bool) -> Poll<io::Result<()>> {
        if self.out.is_empty() {
            if !self.shared.has_pending.load(Ordering::Acquire) || !(self.clean || before_hyper) {
                return Poll::Ready(Ok(()));
            }
            let Ok(mut pending) = self.shared.pending.lock() else {
                return Poll::Ready(Ok(()));
            };
            self.shared.has_pending.store(false, Ordering::Release);
            let queued = pending.split();
            drop(pending);
            if !self.clean {
                // hyper is about to write and part of another response may be ahead of it:
                // never interleave.
                tracing::debug!("a 1xx response dropped: another response was being written");
                return Poll::Ready(Ok(()));
            }
            self.out = queued;
        }
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.out.split_to(n);
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<T: Read + Write + Unpin> Read for InterimIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.clean || !me.out.is_empty() {
            // A write that cannot finish now resumes on a later poll (this task is woken).
            if let Poll::Ready(Err(e)) = me.poll_interim(cx, false) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for InterimIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        ready!(me.poll_interim(cx, true))?;
        me.clean = false;
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        ready!(me.poll_interim(cx, true))?;
        me.clean = false;
        Pin::new(&mut me.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(Pin::new(&mut me.inner).poll_flush(cx))?;
        me.clean = true;
        // hyper has nothing left: a 1xx queued meanwhile can go now.
        me.poll_interim(cx, false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1xx_head_is_serialised_without_hop_by_hop_fields() {
        let mut h = HeaderMap::new();
        h.append("link", "</app.css>; rel=preload".parse().unwrap());
        h.append("link", "</app.js>; rel=preload".parse().unwrap());
        h.append("connection", "close".parse().unwrap());
        let mut out = BytesMut::new();
        write_head(&mut out, StatusCode::from_u16(103).unwrap(), &h);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\
              link: </app.js>; rel=preload\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn only_relayable_statuses_of_the_current_request_are_queued() {
        let i = Interim::default();
        assert!(i.sender(Version::HTTP_10).await.is_none());
        assert!(i.sender(Version::HTTP_2).await.is_none());
        let s = i.sender(Version::HTTP_11).await.unwrap();
        for code in [100, 101, 200, 404] {
            s.send(StatusCode::from_u16(code).unwrap(), &HeaderMap::new());
        }
        let Channel::Http1(shared) = &i.0 else {
            unreachable!()
        };
        assert!(!shared.has_pending.load(Ordering::Acquire));
        s.send(StatusCode::from_u16(102).unwrap(), &HeaderMap::new());
        assert!(shared.has_pending.load(Ordering::Acquire));
        shared.pending.lock().unwrap().clear();
        shared.has_pending.store(false, Ordering::Release);
        i.end_request();
        s.send(StatusCode::from_u16(103).unwrap(), &HeaderMap::new());
        assert!(
            !shared.has_pending.load(Ordering::Acquire),
            "a sender of an answered request is ignored"
        );
    }

    #[tokio::test]
    async fn at_most_sixteen_interim_responses_per_request() {
        let i = Interim::default();
        let s = i.sender(Version::HTTP_11).await.unwrap();
        for _ in 0..40 {
            s.send(StatusCode::from_u16(102).unwrap(), &HeaderMap::new());
        }
        let Channel::Http1(shared) = &i.0 else {
            unreachable!()
        };
        let pending = shared.pending.lock().unwrap();
        let heads = pending.windows(12).filter(|w| w == b"HTTP/1.1 102").count();
        assert_eq!(heads, MAX_PER_REQUEST as usize);
    }
}

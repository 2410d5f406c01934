//! A plain HTTP/1.1 connection that sends large stored bodies with `sendfile`.
//!
//! hyper writes a response as one vectored write of its head and the body's `Bytes` (its
//! queued write strategy, chosen because this I/O says it writes vectored). When a slice of
//! that write lies inside a mapped body (`cache/mapped.rs`), the slices before it go out with
//! `MSG_MORE` (the kernel holds them to share a segment with what follows) and the body's
//! slice with `sendfile` from its memory file: the kernel takes the pages by reference instead
//! of copying the bytes. Everything else, and every write on a connection made without
//! `sendfile`, is the socket's own vectored write.
//!
//! Only plain HTTP/1.1 connections use it: TLS must encrypt the bytes in user space, and
//! HTTP/2 sends a body in frames of 16 KiB, each a write of its own.

use crate::cache::mapped;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Slices of mapped bodies at least this long are sent from their file; a shorter one (a
/// small range of a large body) costs more in the extra system call than its copy.
const MIN_SEND: usize = 4 * 1024;

/// Bytes sent from mapped bodies' files since the process started.
static SENT_FROM_FILES: AtomicU64 = AtomicU64::new(0);

/// Bytes sent from mapped bodies' files since the process started.
pub(crate) fn sent_from_files() -> u64 {
    SENT_FROM_FILES.load(Relaxed)
}

/// A plain connection's socket.
pub(crate) struct Plain {
    stream: TcpStream,
    /// Whether mapped bodies are sent with `sendfile` (HTTP/1.1), or copied like any write.
    sendfile: bool,
}

impl Plain {
    pub(crate) fn new(stream: TcpStream, sendfile: bool) -> Plain {
        Plain { stream, sendfile }
    }

    /// Runs `op` on the socket once it can take a write; `op` failing with `WouldBlock`
    /// clears the readiness and waits again.
    fn poll_op(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_io(Interest::WRITABLE, || op(&self.stream)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

/// The first slice of `bufs` worth sending from a mapped body's file, and that file.
fn first_mapped(bufs: &[IoSlice<'_>]) -> Option<(usize, mapped::Source)> {
    bufs.iter().enumerate().find_map(|(i, b)| {
        if b.len() < MIN_SEND {
            return None;
        }
        mapped::source(b).map(|s| (i, s))
    })
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let found = if me.sendfile {
            first_mapped(bufs)
        } else {
            None
        };
        match found {
            None => Pin::new(&mut me.stream).poll_write_vectored(cx, bufs),
            // Nothing to send ahead of it: the body's slice goes now.
            // `sendfile` takes no MSG_NOSIGNAL: a closed peer is EPIPE because the process
            // ignores SIGPIPE (Rust's runtime does so before main; tokio's own writes rely
            // on it too).
            Some((k, src)) if bufs[..k].iter().all(|b| b.is_empty()) => {
                let len = bufs[k].len();
                me.poll_op(cx, |s| {
                    let mut offset = src.offset;
                    let n = rustix::fs::sendfile(s, &*src.file, Some(&mut offset), len)?;
                    SENT_FROM_FILES.fetch_add(n as u64, Relaxed);
                    Ok(n)
                })
            }
            Some((k, _)) => me.poll_op(cx, |s| {
                let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
                let mut control = SendAncillaryBuffer::default();
                Ok(rustix::net::sendmsg(s, &bufs[..k], &mut control, flags)?)
            }),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(sendfile: bool) -> (Plain, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Plain::new(server, sendfile), client)
    }

    fn body(len: usize) -> Bytes {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 253) as u8).collect();
        mapped::from_chunks(&[Bytes::from(data)], len).unwrap()
    }

    /// Writes `parts` through `w` as hyper does (vectored, advancing over what each write
    /// took) while `r` reads everything, and returns what was read.
    async fn send_all(mut w: Plain, mut r: TcpStream, parts: Vec<Bytes>) -> Vec<u8> {
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut parts: Vec<Bytes> = parts;
        while !parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let mut n = w.write_vectored(&slices).await.unwrap();
            assert!(n > 0);
            while n > 0 {
                let take = n.min(parts[0].len());
                let _ = parts[0].split_to(take);
                n -= take;
                if parts[0].is_empty() {
                    parts.remove(0);
                }
            }
        }
        w.shutdown().await.unwrap();
        drop(w);
        reader.await.unwrap()
    }

    #[tokio::test]
    async fn a_head_and_a_mapped_body_arrive_whole_and_in_order() {
        let (w, r) = pair(true).await;
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n");
        let b = body(1 << 20);
        let tail = Bytes::from_static(b"and after");
        let before = sent_from_files();
        let got = send_all(w, r, vec![head.clone(), b.clone(), tail.clone()]).await;
        assert_eq!(got, [&head[..], &b[..], &tail[..]].concat());
        assert!(
            sent_from_files() - before >= 1 << 20,
            "the body went by sendfile"
        );
    }

    #[tokio::test]
    async fn empty_slices_ahead_of_a_mapped_body_are_not_a_zero_write() {
        let (mut w, mut r) = pair(true).await;
        let b = body(64 * 1024);
        let n = w
            .write_vectored(&[IoSlice::new(&[]), IoSlice::new(&b)])
            .await
            .unwrap();
        assert!(n > 0);
        let mut got = vec![0u8; n];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..], &b[..n]);
    }

    #[tokio::test]
    async fn ranges_of_a_mapped_body_are_sent_from_their_offset() {
        let (w, r) = pair(true).await;
        let b = body(256 * 1024);
        let parts = vec![b.slice(100_000..180_000), b.slice(10..20), b.slice(5000..)];
        let want: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
        assert_eq!(send_all(w, r, parts).await, want);
    }

    #[tokio::test]
    async fn the_body_is_intact_when_dropped_while_the_socket_still_holds_it() {
        // A small send buffer and a reader that waits: most of the body is still in flight
        // (or not yet sent) when the stored copy is dropped.
        let (w, mut r) = pair(true).await;
        rustix::net::sockopt::set_socket_send_buffer_size(&w.stream, 64 * 1024).unwrap();
        let b = body(4 << 20);
        let want = b.to_vec();
        let writer = tokio::spawn(async move {
            let mut w = w;
            let mut rest = b;
            // The first write goes out, then the only copy left is the one being sent.
            let n = w.write(&rest).await.unwrap();
            let _ = rest.split_to(n);
            w.write_all(&rest).await.unwrap();
            drop(rest);
            w.shutdown().await.unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "the bytes sent changed after the body was dropped"
        );
    }

    #[tokio::test]
    async fn without_sendfile_and_for_heap_bodies_writes_are_ordinary() {
        for sendfile in [false, true] {
            let (w, r) = pair(sendfile).await;
            let heap = Bytes::from(vec![7u8; 200_000]);
            let b = body(100_000);
            let got = send_all(w, r, vec![heap.clone(), b.clone()]).await;
            assert_eq!(got, [&heap[..], &b[..]].concat());
        }
    }

    #[tokio::test]
    async fn a_closed_peer_is_an_error_not_a_hang() {
        let (mut w, r) = pair(true).await;
        drop(r);
        let b = body(8 << 20);
        let res = tokio::time::timeout(std::time::Duration::from_secs(10), w.write_all(&b)).await;
        assert!(matches!(res, Ok(Err(_))), "{res:?}");
    }
}

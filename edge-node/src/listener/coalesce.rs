//! Write coalescing for an HTTP/2 connection. h2 writes every DATA frame of 256 bytes or more
//! as a write of its own and flushes it before it encodes the next frame, so a connection
//! answering ten streams at once makes ten writes; over TLS each is a record of its own and a
//! system call. Here h2's small writes land in a buffer instead ([`Coalescing`]), and the
//! connection's task sends the buffer in one write once h2 has done all it can for now
//! ([`Sender::drive`]): ten answers, one record train, one system call, as nginx does with its
//! 16 KiB TLS buffer.
//!
//! h2's flushes are deferred, not dropped: every write h2 makes happens while the connection's
//! task polls the connection, and `drive` sends the buffer whenever that poll returns
//! `Pending`, before the task sleeps; a write too large for the buffer sends it first. Large
//! writes (a large body's 16 KiB DATA frames) go straight through, behind what is buffered,
//! without a copy.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes at least this large skip the buffer.
const DIRECT: usize = 8 * 1024;
/// What the buffer holds at most before a write sends it.
const LIMIT: usize = 32 * 1024;

/// The connection's I/O as h2 sees it.
pub(crate) struct Coalescing<T> {
    shared: Arc<Mutex<State<T>>>,
}

/// The connection task's handle on the same I/O: sends what h2 left buffered.
pub(crate) struct Sender<T> {
    shared: Arc<Mutex<State<T>>>,
}

struct State<T> {
    io: T,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written.
    sent: usize,
    /// A deferred send failed: the connection's next read or write fails the same way, so h2
    /// ends it instead of waiting on a socket that is gone.
    failed: Option<io::ErrorKind>,
}

/// Wraps `io`: the first half goes to h2, the second stays with the connection's task.
pub(crate) fn split<T>(io: T) -> (Coalescing<T>, Sender<T>) {
    let shared = Arc::new(Mutex::new(State {
        io,
        // Allocated on first use: an idle connection holds nothing here, a busy one up to
        // `LIMIT`, kept for its next writes.
        buf: Vec::new(),
        sent: 0,
        failed: None,
    }));
    (
        Coalescing {
            shared: shared.clone(),
        },
        Sender { shared },
    )
}

fn lock<T>(shared: &Mutex<State<T>>) -> io::Result<MutexGuard<'_, State<T>>> {
    // Only the connection's task ever takes the lock, so it is never contended; a panic while
    // holding it ends the connection.
    let s = shared
        .lock()
        .map_err(|_| io::Error::other("connection state poisoned"))?;
    match s.failed {
        Some(kind) => Err(kind.into()),
        None => Ok(s),
    }
}

impl<T: AsyncWrite + Unpin> State<T> {
    /// Writes out everything buffered, then flushes the I/O.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Writes `bufs` straight to the I/O, in one vectored write with what is still buffered
    /// ahead of them.
    fn poll_direct(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            let ours = self.buf.len() - self.sent;
            if ours == 0 {
                self.buf.clear();
                self.sent = 0;
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&self.buf[self.sent..]));
            all.extend_from_slice(bufs);
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &all))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n.min(ours);
            if n > ours {
                self.buf.clear();
                self.sent = 0;
                return Poll::Ready(Ok(n - ours));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> Sender<T> {
    /// Polls `fut` (the connection's next event); whenever it has to wait, first sends what
    /// h2 wrote during the poll. An error sending is kept for h2 to meet on its next read or
    /// write, and h2 is polled again at once to meet it.
    pub(crate) async fn drive<F: std::future::Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let r = fut.as_mut().poll(cx);
            if r.is_pending() {
                if let Ok(mut s) = lock(&self.shared) {
                    if let Poll::Ready(Err(e)) = s.poll_send(cx) {
                        s.failed = Some(e.kind());
                        cx.waker().wake_by_ref();
                    }
                }
            }
            r
        })
        .await
    }

    /// Sends what is buffered: the last frames (GOAWAY) of a connection that is ending.
    pub(crate) async fn finish(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| lock(&self.shared)?.poll_send(cx)).await
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared)?.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
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
        let mut s = lock(&self.shared)?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total >= DIRECT {
            return s.poll_direct(cx, bufs);
        }
        if s.buf.len() + total > LIMIT {
            ready!(s.poll_send(cx))?;
        }
        for b in bufs {
            s.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Deferred: [`Sender::drive`] sends the buffer once the connection's poll is done.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.shared)?;
        ready!(s.poll_send(cx))?;
        Pin::new(&mut s.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    /// A sink that records each write it takes; `room` bytes at most before it would block.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        room: Option<usize>,
        flushes: usize,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(room) = self.room {
                if room == 0 {
                    return Poll::Pending;
                }
                all.truncate(room);
                self.room = Some(room - all.len());
            }
            let n = all.len();
            self.writes.push(all);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A socket whose writes fail.
    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            // A peer that is gone but never says so on the read side.
            Poll::Pending
        }
    }

    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recorded(sender: &Sender<Recorder>) -> Vec<Vec<u8>> {
        lock(&sender.shared)
            .map(|s| s.io.writes.clone())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn small_writes_go_out_together_once_the_poll_waits() {
        let (mut io, sender) = split(Recorder::default());
        let mut polls = 0;
        // A "connection" whose first poll writes three frames, flushing after each (as h2
        // does with a DATA frame), then waits; its second poll ends it.
        sender
            .drive(poll_fn(|outer| {
                polls += 1;
                if polls > 1 {
                    return Poll::Ready(());
                }
                for i in 0..3u8 {
                    let frame = vec![b'a' + i; 300];
                    let mut w = Pin::new(&mut io);
                    assert!(matches!(
                        w.as_mut().poll_write(outer, &frame),
                        Poll::Ready(Ok(300))
                    ));
                    assert!(w.poll_flush(outer).is_ready());
                }
                // Nothing has reached the socket while the connection is still busy.
                assert!(recorded(&sender).is_empty());
                outer.waker().wake_by_ref();
                Poll::Pending
            }))
            .await;
        let writes = recorded(&sender);
        assert_eq!(writes.len(), 1, "one write for the three frames");
        assert_eq!(writes[0].len(), 900);
        assert!(writes[0][..300].iter().all(|b| *b == b'a'));
        assert!(writes[0][600..].iter().all(|b| *b == b'c'));
        assert_eq!(lock(&sender.shared).map(|s| s.io.flushes).ok(), Some(1));
    }

    #[tokio::test]
    async fn a_large_write_goes_straight_through_behind_what_is_buffered() {
        let (mut io, sender) = split(Recorder::default());
        io.write_all(b"head").await.unwrap();
        let body = vec![7u8; DIRECT];
        io.write_all(&body).await.unwrap();
        let writes = recorded(&sender);
        assert_eq!(writes.len(), 1, "one vectored write");
        assert_eq!(&writes[0][..4], b"head");
        assert_eq!(writes[0].len(), 4 + DIRECT);
        sender.finish().await.unwrap();
        assert_eq!(recorded(&sender).len(), 1, "nothing left to send");
    }

    #[tokio::test]
    async fn a_full_buffer_is_sent_before_it_takes_more() {
        let (mut io, sender) = split(Recorder::default());
        let frame = vec![1u8; 4096];
        for _ in 0..(LIMIT / frame.len() + 1) {
            io.write_all(&frame).await.unwrap();
        }
        let writes = recorded(&sender);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].len(), LIMIT);
        sender.finish().await.unwrap();
        let writes = recorded(&sender);
        assert_eq!(
            writes.iter().map(Vec::len).sum::<usize>(),
            LIMIT + frame.len()
        );
    }

    #[tokio::test]
    async fn a_blocked_socket_holds_writes_back_and_loses_nothing() {
        let (mut io, sender) = split(Recorder {
            room: Some(100),
            ..Recorder::default()
        });
        let cx = &mut Context::from_waker(std::task::Waker::noop());
        let frame = [9u8; 1000];
        let mut taken = 0;
        // The socket takes 100 bytes, then blocks: the buffer fills to its limit and then
        // refuses more (Pending) instead of growing.
        for _ in 0..100 {
            match Pin::new(&mut io).poll_write(cx, &frame) {
                Poll::Ready(Ok(n)) => taken += n,
                Poll::Ready(Err(e)) => panic!("{e}"),
                Poll::Pending => break,
            }
        }
        assert!(taken <= LIMIT + 100, "took {taken}");
        assert!(matches!(
            std::future::Future::poll(std::pin::pin!(sender.finish()), cx),
            Poll::Pending
        ));
        // The socket opens: everything taken arrives, in order.
        if let Ok(mut s) = lock(&sender.shared) {
            s.io.room = None;
        }
        sender.finish().await.unwrap();
        let sent: usize = recorded(&sender).iter().map(Vec::len).sum();
        assert_eq!(sent, taken);
    }

    #[tokio::test]
    async fn a_failed_send_fails_the_connections_next_read() {
        use tokio::io::AsyncReadExt;
        let (mut io, sender) = split(Broken);
        io.write_all(b"settings").await.unwrap();
        // The "connection": waits on a read, as h2 does; the deferred send fails, and the
        // read it is polled again for reports the failure instead of waiting for ever.
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            sender.drive(async { io.read(&mut [0u8; 16]).await }).await
        })
        .await
        .expect("the read ends instead of hanging");
        assert_eq!(read.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}

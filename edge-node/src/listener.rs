//! Accept loops: plain and TLS listeners, HTTP/1.1 and HTTP/2 on each, header read timeout and
//! size limit, graceful drain on shutdown. Each connection's I/O carries its 1xx channel
//! (`interim.rs`).

use crate::interim::{Interim, InterimIo};
use crate::proxy::{ClientInfo, Proxy};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time allowed for a request head.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

fn builder(limits: ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    b
}

/// Accepts connections on `listener` until `shutdown` flips, then drains them.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let b = builder(limits);
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = wait_true(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let interim = Interim::default();
        let client = ClientInfo {
            addr,
            scheme,
            interim: Some(interim.clone()),
        };
        let p = proxy.clone();
        let svc = service_fn(move |req| {
            let p = p.clone();
            let client = client.clone();
            async move {
                let interim = client.interim.clone();
                let res = p.handle(req, client).await;
                // Answered: a late 1xx for it is dropped.
                if let Some(i) = interim {
                    i.end_request();
                }
                Ok::<_, Infallible>(res)
            }
        });
        match &tls {
            None => {
                let b = b.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A connection must start its request within the header timeout; hyper's own
                    // timer only starts at the first byte.
                    let mut probe = [0u8; 1];
                    match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut probe))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    let io = InterimIo::new(TokioIo::new(stream), &interim);
                    let conn = b.serve_connection(io, svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let b = b.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(
                        limits.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let io = InterimIo::new(TokioIo::new(tls), &interim);
                    let conn = b.serve_connection(io, svc).into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

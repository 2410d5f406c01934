//! Accept loops: plain and TLS listeners, HTTP/1.1 and HTTP/2 on each, header read timeout and
//! size limit, graceful drain on shutdown. HTTP/1.1 is hyper's, its I/O carrying the
//! connection's 1xx channel (`interim.rs`); HTTP/2 (ALPN `h2`, or the client's preface on a
//! plain connection) is the node's own server (`listener/http2.rs`), which can send 1xx responses.
//! With `proxy_protocol = true`, every connection starts with a PROXY header from a trusted
//! balancer (`listener/proxy_protocol.rs`), whose source is the connection's client.

mod coalesce;
mod conns;
pub(crate) mod date;
mod generation;
mod http2;
mod limits;
pub(crate) mod proxy_protocol;
mod sendfile;

pub(crate) use conns::Conns;
pub(crate) use generation::{Generation, Source};
pub(crate) use limits::ConnLimits;
pub(crate) use sendfile::sent_from_files;

use crate::interim::{Interim, InterimIo};
use crate::proxy::ClientInfo;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use proxy_protocol::Refused;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

/// Failed accepts on `listener` (out of file descriptors and the like), said once per
/// interval.
pub(crate) fn accept_warning(listener: &TcpListener) -> agent::throttle::RepeatedWarning {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "a listener".to_string(), |a| a.to_string());
    agent::throttle::RepeatedWarning::new(
        format!("cannot accept connections on {addr}"),
        format!("accepting connections on {addr} again"),
    )
}

/// Accepts connections on `listener` until `shutdown` flips, then drains them for up to
/// `drain`. Each connection takes the node's generation current when it is accepted (TLS,
/// limits, PROXY protocol); each request on it the request path current when the request
/// arrives.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: bool,
    node: Arc<dyn Source>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    // Every HTTP/2 connection holds a sender: once all are dropped, they have drained.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    let scheme = if tls { "https" } else { "http" };
    let accept_failed = accept_warning(&listener);
    let proxy_refused = Arc::new(proxy_refused_warning(&listener));
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    agent::log_report!(accept_failed.succeeded());
                    c
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    agent::log_report!(accept_failed.failed(e));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = wait_true(&mut shutdown) => break,
        };
        let generation = node.generation();
        let limits = generation.limits;
        let behind_proxy = generation.proxy_protocol.as_ref();
        if behind_proxy.is_some_and(|trusted| !trusted.contains(addr.ip())) {
            refuse(node.conns(), &proxy_refused, addr, &Refused::Untrusted);
            continue;
        }
        // Behind a balancer, the client is known once its PROXY header is read: then it is
        // held to its share (`connection`); the balancer's own address is not.
        let per_client = if behind_proxy.is_some() {
            0
        } else {
            limits.max_connections_per_client
        };
        let Some(held) = node
            .conns()
            .admit(addr.ip(), limits.max_connections, per_client)
        else {
            // Over a bound: closed at once (counted in `outpost.connections.refused`).
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = match (tls, &generation.acceptor) {
            (false, _) => None,
            (true, Some(a)) => Some(a.clone()),
            // A TLS listener with no certificates configured any more: it is being stopped.
            (true, None) => continue,
        };
        let accepted = Accepted {
            node: node.clone(),
            generation,
            scheme,
            shutdown: shutdown.clone(),
            alive: alive.clone(),
            watcher: graceful.watcher(),
            proxy_refused: proxy_refused.clone(),
        };
        tokio::spawn(accepted.serve(stream, addr, held, acceptor));
    }
    drop(listener);
    drop(alive);
    let drain_all = async {
        graceful.shutdown().await;
        let _ = drained.recv().await;
    };
    let _ = tokio::time::timeout(drain, drain_all).await;
}

/// Connections refused on `listener` for their PROXY header (or its absence), said once per
/// interval.
fn proxy_refused_warning(listener: &TcpListener) -> agent::throttle::RepeatedWarning {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "a listener".to_string(), |a| a.to_string());
    agent::throttle::RepeatedWarning::new(
        format!("closed connections to {addr} (proxy_protocol = true)"),
        format!("connections to {addr} carry PROXY headers again"),
    )
}

/// Closes a connection from `peer` for `why`: counted (`outpost.connections.proxy_refused`)
/// and logged once per interval.
fn refuse(
    conns: &Conns,
    warning: &agent::throttle::RepeatedWarning,
    peer: std::net::SocketAddr,
    why: &Refused,
) {
    conns
        .proxy_refused
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    agent::log_report!(warning.failed(format_args!("from {peer}: {why}")));
}

/// A connection accepted, and what serving it takes.
struct Accepted {
    node: Arc<dyn Source>,
    generation: Arc<Generation>,
    scheme: &'static str,
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    watcher: hyper_util::server::graceful::Watcher,
    proxy_refused: Arc<agent::throttle::RepeatedWarning>,
}

impl Accepted {
    /// Reads the PROXY header (when the listener expects one), then serves HTTP on the
    /// connection from `peer` until it ends.
    async fn serve(
        self,
        mut stream: TcpStream,
        peer: std::net::SocketAddr,
        held: conns::Held,
        acceptor: Option<TlsAcceptor>,
    ) {
        let limits = self.generation.limits;
        let mut addr = peer;
        let mut held = held;
        if self.generation.proxy_protocol.is_some() {
            match proxy_protocol::read_header(&mut stream, peer, limits.header_read_timeout).await {
                Ok(source) => addr = source,
                Err(why) => {
                    refuse(self.node.conns(), &self.proxy_refused, peer, &why);
                    return;
                }
            }
            // The client's share of connections is counted by its own address.
            let Some(h) = held.moved_to(addr.ip(), limits.max_connections_per_client) else {
                return;
            };
            held = h;
        }
        let _held = held;
        let client = ClientInfo {
            peer,
            ..ClientInfo::new(addr, self.scheme)
        };
        let Some((io, is_h2)) = open(stream, acceptor, limits.header_read_timeout).await else {
            return;
        };
        if is_h2 {
            http2::serve_connection(io, self.node, client, limits, self.shutdown, self.alive).await;
            return;
        }
        let interim = Interim::default();
        let client = ClientInfo {
            interim: Some(interim.clone()),
            ..client
        };
        let n = self.node;
        let served = std::sync::atomic::AtomicU64::new(0);
        let svc = service_fn(move |req| {
            let p = n.proxy();
            let client = client.clone();
            // The last request a connection may carry says so, and hyper closes after it.
            let last = limits.max_requests_per_connection != 0
                && served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
                    >= limits.max_requests_per_connection;
            async move {
                let interim = client.interim.clone();
                let mut res = p.handle(req, client).await;
                date::ensure(res.headers_mut());
                if last {
                    res.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                // Answered: a late 1xx for it is dropped.
                if let Some(i) = interim {
                    i.end_request();
                }
                Ok::<_, Infallible>(res)
            }
        });
        let io = InterimIo::new(TokioIo::new(io), &interim);
        let conn = self.generation.http.serve_connection(io, svc).into_owned();
        let _ = self.watcher.watch(conn).await;
    }
}

/// A client connection: plain (sending large stored bodies with `sendfile` when it speaks
/// HTTP/1.1), or TLS.
type Conn = Either<sendfile::Plain, TlsStream<TcpStream>>;

/// A connection ready for HTTP, and whether it speaks HTTP/2: after its TLS handshake (ALPN
/// says), or once a plain one's first bytes are in (the preface says). `None` when the client
/// leaves or takes longer than `timeout` (hyper's own header timer only starts at the first
/// byte).
async fn open(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
) -> Option<(Conn, bool)> {
    match tls {
        None => {
            let is_h2 = tokio::time::timeout(timeout, sends_preface(&stream))
                .await
                .ok()??;
            Some((Either::Left(sendfile::Plain::new(stream, !is_h2)), is_h2))
        }
        Some(acceptor) => {
            let tls = tokio::time::timeout(timeout, acceptor.accept(stream))
                .await
                .ok()?
                .ok()?;
            let alpn = tls.get_ref().1.alpn_protocol();
            if alpn == Some(crate::acme::certs::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the answer; no HTTP follows.
                return None;
            }
            let is_h2 = alpn == Some(b"h2");
            Some((Either::Right(tls), is_h2))
        }
    }
}

/// Waits for a plain connection's first bytes: `Some(true)` when they are the HTTP/2 preface
/// (prior knowledge, RFC 9113 3.3), `Some(false)` for anything else, `None` when the client
/// closes first. A preface split across segments is waited for (the caller bounds the wait).
async fn sends_preface(stream: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != http2::PREFACE[..n] {
            return Some(false);
        }
        if n == buf.len() {
            return Some(true);
        }
        // A prefix of the preface: the rest is on its way.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

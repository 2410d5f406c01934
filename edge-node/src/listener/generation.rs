//! What a listener serves with: the generation of a node's config current for a connection
//! (TLS, limits, hyper's settings, PROXY protocol) and for a request (the request path).

use super::limits::ConnLimits;
use crate::client_addr::Networks;
use crate::proxy::Proxy;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// What one config makes of a node's connections: the request path, TLS, limits.
pub(crate) struct Generation {
    /// The request path.
    pub proxy: Arc<Proxy>,
    /// TLS for the TLS listeners (`None` without any).
    pub acceptor: Option<TlsAcceptor>,
    /// What one connection may take.
    pub limits: ConnLimits,
    /// hyper's server settings under `limits`.
    pub http: auto::Builder<TokioExecutor>,
    /// With `proxy_protocol = true`: the peers whose PROXY header is taken (every connection
    /// must start with one).
    pub proxy_protocol: Option<Networks>,
}

impl Generation {
    pub(crate) fn new(
        proxy: Arc<Proxy>,
        acceptor: Option<TlsAcceptor>,
        limits: ConnLimits,
        proxy_protocol: Option<Networks>,
    ) -> Self {
        Self {
            proxy,
            acceptor,
            limits,
            http: builder(limits),
            proxy_protocol,
        }
    }
}

/// Where a listener takes the generation current for a connection, and the request path
/// current for a request (a node whose config a reload replaces).
pub(crate) trait Source: Send + Sync + 'static {
    /// The generation for a connection accepted now.
    fn generation(&self) -> Arc<Generation>;
    /// The request path for a request arriving now.
    fn proxy(&self) -> Arc<Proxy>;
    /// The node's open connections.
    fn conns(&self) -> &Arc<super::conns::Conns>;
}

/// hyper's server for one connection under `limits`.
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

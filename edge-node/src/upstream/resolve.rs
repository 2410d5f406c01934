//! Resolving origin host names with hickory-resolver (the maintained successor of
//! trust-dns-resolver): answers are cached by their TTL, the hosts file is honoured, and a
//! failure names the host and the reason. IP literals never reach the resolver.

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A DNS resolver for the upstream connector.
#[derive(Clone)]
pub(crate) struct OriginResolver {
    inner: Arc<TokioResolver>,
}

impl std::fmt::Debug for OriginResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OriginResolver")
    }
}

impl OriginResolver {
    /// A resolver using `servers` (UDP, then TCP), or the system's configuration when empty.
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Self, String> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
        } else {
            let ns = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
                    tcp.port = s.port();
                    let mut c = NameServerConfig::udp_and_tcp(s.ip());
                    c.connections = vec![udp, tcp];
                    c
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(ns),
                TokioRuntimeProvider::default(),
            )
        };
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let r = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Self { inner: Arc::new(r) })
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for OriginResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let r = self.inner.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = r
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| std::io::Error::other(format!("cannot resolve {host}: {e}")))?;
            let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(format!(
                    "cannot resolve {host}: no addresses"
                )));
            }
            Ok(addrs.into_iter())
        })
    }
}

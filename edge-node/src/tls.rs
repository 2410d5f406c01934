//! TLS: certificates loaded from PEM files and chosen by SNI (exact names, then those ACME
//! issued, then `*.` wildcards, then the first certificate), with ALPN offering HTTP/2 and HTTP/1.1; optionally client
//! certificates required (mutual TLS between nodes).

use crate::acme::certs::{LiveCerts, ACME_TLS_ALPN};
use crate::config::CertConfig;
use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
    /// Certificates from ACME, swapped in while serving.
    live: Arc<LiveCerts>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(|n| n.to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            // A CA validating TLS-ALPN-01 (RFC 8737): the challenge certificate or nothing.
            return self.live.challenge(&name);
        }
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        if let Some(k) = self.live.get(&name) {
            return Some(k);
        }
        for (suffix, k) in &self.wildcard {
            if let Some(label) = name.strip_suffix(suffix.as_str()) {
                if !label.is_empty() && !label.contains('.') {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

fn load_key(cfg: &CertConfig) -> Result<Arc<CertifiedKey>, String> {
    let certs = crate::pem::certs(&cfg.cert)?;
    let key = crate::pem::private_key(&cfg.key)?;
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", cfg.key.display()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// A rustls server config serving `certs` by SNI; with `client_ca`, clients must present a
/// certificate signed by one of its CAs (mutual TLS), or the handshake fails.
pub(crate) fn server_config(
    certs: &[CertConfig],
    client_ca: Option<&std::path::Path>,
    live: Arc<LiveCerts>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut r = SniResolver {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        default: None,
        live,
    };
    for c in certs {
        let k = load_key(c)?;
        if r.default.is_none() {
            r.default = Some(k.clone());
        }
        for h in &c.hosts {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(s) => r.wildcard.push((format!(".{s}"), k.clone())),
                None => {
                    r.exact.insert(h, k.clone());
                }
            }
        }
    }
    let provider = Arc::new(default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let builder = match client_ca {
        Some(path) => {
            let roots = Arc::new(crate::pem::roots(path)?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(r));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// A TLS listener for axum (the admin API): handshakes run in tasks of their own, bounded by
/// `timeout`, so a slow or broken client never holds up the others.
pub(crate) struct TlsListener {
    addr: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp`, completing handshakes with `acceptor`.
    pub(crate) fn new(
        tcp: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        timeout: std::time::Duration,
    ) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accept_failed = crate::listener::accept_warning(&tcp);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => {
                        agent::log_report!(accept_failed.succeeded());
                        c
                    }
                    Err(e) => {
                        agent::log_report!(accept_failed.failed(e));
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, client = %peer, "admin: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %peer, "admin: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            addr,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends with the listener: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

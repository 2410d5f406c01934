//! An HTTPS origin for tests: rustls with ALPN h2 and http/1.1, answering every request with
//! what it saw (protocol, Host, SNI), and counting its TLS connections.

use super::pki::Leaf;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct SeenTls {
    pub version: http::Version,
    pub host: String,
    pub sni: Option<String>,
}

pub struct TlsOrigin {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<SeenTls>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsOrigin {
    /// Serves on 127.0.0.1 with `leaf`. Paths under `/pass` are `no-store`, others cacheable.
    pub async fn start(leaf: &Leaf) -> TlsOrigin {
        let certs = vec![rustls::pki_types::CertificateDer::from(
            leaf.cert_der.clone(),
        )];
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (connections.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, c, s) = (acceptor.clone(), c.clone(), s.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    c.fetch_add(1, Ordering::SeqCst);
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .or(req.uri().authority().map(|a| a.as_str()))
                            .unwrap_or("")
                            .to_string();
                        let seen = SeenTls {
                            version: req.version(),
                            host,
                            sni: sni.clone(),
                        };
                        s.lock().unwrap().push(seen.clone());
                        let cc = if req.uri().path().starts_with("/pass") {
                            "no-store"
                        } else {
                            "max-age=60"
                        };
                        let body = format!("tls {:?} host={}", seen.version, seen.host);
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("cache-control", cc)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsOrigin {
            addr,
            connections,
            seen,
            task,
        }
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<SeenTls> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

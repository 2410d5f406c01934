//! TLS to upstreams: whom to trust (the system's roots, or a CA file: a site's own, the
//! fleet's for shields), the name checked on the certificate and sent as SNI (the URL's host,
//! or a site's override), the client certificate shown to shields that ask (mutual TLS), ALPN
//! offering HTTP/2 and HTTP/1.1 (HTTP/1.1 only to shields), and the pooled client built on it. Skipping verification is
//! a site's explicit choice (`OriginTls::insecure`), warned about when the node starts.

use super::resolve::OriginResolver;
use crate::body::ProxyBody;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring::default_provider;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The connector every upstream client uses: plain or TLS by the URL's scheme.
pub(crate) type Connector = HttpsConnector<HttpConnector<OriginResolver>>;

/// A pooled upstream client (HTTP/1.1, or HTTP/2 where the TLS handshake agrees on it).
pub(crate) type UpstreamClient = Client<Connector, ProxyBody>;

/// How one set of upstreams is reached over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OriginTls {
    /// PEM file of the CAs to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name checked on the certificate and sent as SNI, instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any certificate (the connection is encrypted but not authenticated).
    pub insecure: bool,
    /// A certificate (PEM, with its chain) and key to present when the server asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Offer only HTTP/1.1 by ALPN.
    pub http1_only: bool,
}

impl OriginTls {
    /// Whether these are the defaults (system roots, the URL's host, verification on).
    pub(crate) fn is_default(&self) -> bool {
        *self == OriginTls::default()
    }
}

/// A pooled client for `tls`, resolving names with `resolver`.
pub(crate) fn client(
    tls: &OriginTls,
    resolver: OriginResolver,
    connect_timeout: Duration,
) -> Result<UpstreamClient, String> {
    let connector = connector(
        tls,
        HttpConnector::new_with_resolver(resolver),
        connect_timeout,
    )?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector))
}

/// A client for `tls` with the system's resolver, for the node's own calls between nodes (a
/// follower to its purge hub).
pub(crate) fn system_client<B>(
    tls: &OriginTls,
    connect_timeout: Duration,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let connector = connector(tls, HttpConnector::new(), connect_timeout)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// A client for a node's admin API (the purge CLI, scripts): https:// URLs verified with `ca`
/// (the fleet CA), else the system's roots; http:// as it is.
pub fn admin_client<B>(
    ca: Option<&std::path::Path>,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let tls = OriginTls {
        ca_file: ca.map(|p| p.to_path_buf()),
        http1_only: true,
        ..Default::default()
    };
    system_client(&tls, Duration::from_secs(5))
}

/// `http` with TLS for https:// URLs as `tls` says.
fn connector<R>(
    tls: &OriginTls,
    mut http: HttpConnector<R>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector<R>>, String> {
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The scheme decides: https goes through the TLS layer, http straight through.
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(tls)?)
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("{name:?} is not a server name: {e}"))?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(if tls.http1_only {
        builder.enable_http1().wrap_connector(http)
    } else {
        builder.enable_all_versions().wrap_connector(http)
    })
}

/// The rustls settings for `tls`.
fn client_config(tls: &OriginTls) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let roots = match &tls.ca_file {
            Some(path) => Arc::new(crate::pem::roots(path)?),
            None => system_roots(),
        };
        builder.with_root_certificates(roots)
    };
    match &tls.client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(crate::pem::certs(cert)?, crate::pem::private_key(key)?)
            .map_err(|e| format!("{}: {e}", key.display())),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The system's trusted roots, read once per process. Unreadable ones are skipped with a
/// warning; none at all means every verified TLS upstream fails (and says so when it does).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system CA certificate could not be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found: https:// upstreams need origin_ca"
                );
            } else if ignored > 0 {
                tracing::debug!(added, ignored, "system CA certificates loaded");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Accepts any certificate, but still checks that the server holds its key (the handshake
/// signatures): what `origin_insecure_skip_verify` asks for, and nothing more.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! TLS: certificates loaded from PEM files and chosen by SNI (exact names, then `*.` wildcards,
//! then the first certificate), with ALPN offering HTTP/2 and HTTP/1.1.

use crate::config::CertConfig;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;

#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(|n| n.to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
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
    let open = |p: &std::path::Path| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| format!("cannot open {}: {e}", p.display()))
    };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(&cfg.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", cfg.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cfg.cert.display()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut open(&cfg.key)?)
        .map_err(|e| format!("{}: bad PEM: {e}", cfg.key.display()))?
        .ok_or_else(|| format!("{}: no private key found", cfg.key.display()))?;
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", cfg.key.display()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// A rustls server config serving `certs` by SNI.
pub(crate) fn server_config(certs: &[CertConfig]) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut r = SniResolver {
        exact: HashMap::new(),
        wildcard: Vec::new(),
        default: None,
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
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(r));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

//! The certificates ACME gave this node, by host name, read by the TLS handshake (a new one is
//! used from the next handshake on: no restart, no connection dropped), with when each expires.

use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// The validity of the first certificate of a PEM chain.
    pub(crate) fn of_chain(chain_pem: &str) -> Result<Validity, String> {
        let der = rustls_pemfile::certs(&mut chain_pem.as_bytes())
            .next()
            .ok_or("no certificate in the chain")?
            .map_err(|e| format!("bad PEM: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("not a certificate: {e}"))?;
        let at = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
        Ok(Validity {
            not_before: at(cert.validity().not_before.timestamp()),
            not_after: at(cert.validity().not_after.timestamp()),
        })
    }

    /// When to renew: two thirds into the lifetime, moved by up to `jitter` of it (0 to 1) so a
    /// fleet's certificates do not all renew in the same minute; earlier when less than
    /// `before` is then left.
    pub(crate) fn renew_at(&self, jitter: f64, before: Option<Duration>) -> SystemTime {
        let at = self.two_thirds(jitter);
        match before {
            Some(b) => {
                let by_rest = self
                    .not_after
                    .checked_sub(b)
                    .unwrap_or(UNIX_EPOCH)
                    .max(self.not_before);
                at.min(by_rest)
            }
            None => at,
        }
    }

    fn two_thirds(&self, jitter: f64) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        let base = life.mul_f64(2.0 / 3.0);
        let spread = life.mul_f64(jitter.clamp(0.0, 1.0) / 20.0);
        self.not_before + base.saturating_sub(spread)
    }
}

#[derive(Debug, Clone)]
struct Live {
    key: Arc<CertifiedKey>,
    validity: Validity,
}

/// Host name -> the certificate to present; and, while a TLS-ALPN-01 validation is under way
/// (RFC 8737), host name -> the challenge certificate shown to clients asking for
/// `acme-tls/1`.
#[derive(Debug, Default)]
pub(crate) struct LiveCerts(
    RwLock<HashMap<String, Live>>,
    RwLock<HashMap<String, Arc<CertifiedKey>>>,
);

/// The ALPN protocol of TLS-ALPN-01 validation.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl LiveCerts {
    /// Presents `chain_pem` / `key_pem` for `names` from the next handshake on.
    pub(crate) fn install(
        &self,
        names: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<Validity, String> {
        let validity = Validity::of_chain(chain_pem)?;
        let certs = rustls_pemfile::certs(&mut chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad certificate PEM: {e}"))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| format!("bad key PEM: {e}"))?
            .ok_or("no private key")?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("unusable private key: {e}"))?;
        let live = Live {
            key: Arc::new(CertifiedKey::new(certs, signing)),
            validity,
        };
        let mut m = self.0.write().map_err(|_| "certificate map poisoned")?;
        for n in names {
            // `*.example.com` is kept as `.example.com`: a handshake for `a.example.com` then
            // finds it by the name's own suffix, with no allocation.
            let n = n.to_ascii_lowercase();
            let key = n.strip_prefix('*').map(str::to_string).unwrap_or(n);
            m.insert(key, live.clone());
        }
        Ok(validity)
    }

    /// Shows a TLS-ALPN-01 challenge certificate for `name` to `acme-tls/1` clients: self-signed
    /// for `name` with the critical acmeIdentifier extension holding `digest` (the SHA-256 of
    /// the key authorization).
    pub(crate) fn put_challenge(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        if digest.len() != 32 {
            return Err("a key authorization digest is 32 bytes".into());
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(digest));
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| e.to_string())?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| e.to_string())?;
        let ck = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing));
        self.1
            .write()
            .map_err(|_| "challenge map poisoned")?
            .insert(name.to_ascii_lowercase(), ck);
        Ok(())
    }

    /// Stops showing the challenge certificate for `name`.
    pub(crate) fn remove_challenge(&self, name: &str) {
        if let Ok(mut m) = self.1.write() {
            m.remove(&name.to_ascii_lowercase());
        }
    }

    /// The TLS-ALPN-01 challenge certificate for `name`, if a validation is under way.
    pub(crate) fn challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.1.read().ok()?.get(name).cloned()
    }

    /// The certificate for `name` (lower case), if ACME gave one for it or for the wildcard
    /// one label above it.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let m = self.0.read().ok()?;
        let live = match m.get(name) {
            Some(l) => l,
            None => m.get(&name[name.find('.')?..])?,
        };
        Some(live.key.clone())
    }

    /// Every name with the time left until its certificate expires (negative when expired).
    pub(crate) fn expiries(&self) -> Vec<(String, f64)> {
        let now = SystemTime::now();
        let Ok(m) = self.0.read() else {
            return Vec::new();
        };
        m.iter()
            .map(|(n, l)| {
                let left = match l.validity.not_after.duration_since(now) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                };
                let name = if n.starts_with('.') {
                    format!("*{n}")
                } else {
                    n.clone()
                };
                (name, left)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime_less_a_little_jitter() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = Validity {
            not_before: start,
            not_after: start + Duration::from_secs(90 * 86400),
        };
        assert_eq!(
            v.renew_at(0.0, None),
            start + Duration::from_secs(60 * 86400)
        );
        // Thirty days before the end is earlier than two thirds: that wins.
        assert_eq!(
            v.renew_at(0.0, Some(Duration::from_secs(40 * 86400))),
            start + Duration::from_secs(50 * 86400)
        );
        assert_eq!(
            v.renew_at(0.0, Some(Duration::from_secs(1000 * 86400))),
            start
        );
        let late = v.renew_at(1.0, None);
        assert!(late < start + Duration::from_secs(60 * 86400));
        assert!(late > start + Duration::from_secs(55 * 86400));
    }

    #[test]
    fn bad_pem_is_an_error_not_a_panic() {
        let c = LiveCerts::default();
        assert!(c.install(&["a.test".into()], "junk", "junk").is_err());
        assert!(Validity::of_chain("").is_err());
        assert!(c.get("a.test").is_none());
        assert!(c.put_challenge("a.test", &[0; 31]).is_err());
        c.put_challenge("a.test", &[7; 32]).unwrap();
        assert!(c.challenge("a.test").is_some());
        c.remove_challenge("A.test");
        assert!(c.challenge("a.test").is_none());
    }
}

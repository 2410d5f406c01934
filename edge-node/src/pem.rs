//! PEM files: certificate chains, private keys and CA bundles, read with errors that name the
//! file and what is wrong with it.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::io::BufReader;
use std::path::Path;

fn open(p: &Path) -> Result<BufReader<std::fs::File>, String> {
    std::fs::File::open(p)
        .map(BufReader::new)
        .map_err(|e| format!("cannot open {}: {e}", p.display()))
}

/// Every certificate in `path`, in order (a leaf and its chain); at least one.
pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The private key in `path`.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?
        .ok_or_else(|| format!("{}: no private key found", path.display()))
}

/// The CAs in `path`, as a trust store.
pub(crate) fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_empty_or_broken_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("outpost-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = roots(&dir.join("missing.pem")).unwrap_err();
        assert!(
            e.contains("cannot open") && e.contains("missing.pem"),
            "{e}"
        );
        let e = roots(&empty).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = roots(&junk).unwrap_err();
        assert!(e.contains("junk.pem"), "{e}");
        let e = private_key(&empty).unwrap_err();
        assert!(e.contains("no private key"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

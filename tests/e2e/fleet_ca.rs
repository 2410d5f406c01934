//! `outpost ca` as a process: `init` and `issue` write a CA and node certificates that rustls
//! accepts for both ends of mutual TLS (checked by its verifiers and by a real handshake on
//! loopback); bad input is refused with exit code 2, one clear line, and no files touched.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// Runs `outpost ca ARGS`.
fn ca(args: &[&str]) -> Output {
    Command::new(BIN).arg("ca").args(args).output().unwrap()
}

/// Runs `outpost ca ARGS`, which must succeed; returns its stdout.
fn ca_ok(args: &[&str]) -> String {
    let out = ca(args);
    assert!(
        out.status.success(),
        "ca {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `outpost ca ARGS`, which must exit 2 with `want` on its one line of stderr.
fn ca_refused(args: &[&str], want: &str) {
    let out = ca(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "ca {args:?}: {err}");
    assert!(err.contains(want), "ca {args:?}: want {want:?} in\n{err}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn certs(p: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(p)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The key of `p`, which must be PKCS#8 PEM.
fn key(p: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from_pem_file(p).unwrap())
}

fn roots(ca_pem: &Path) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in certs(ca_pem) {
        r.add(c).unwrap();
    }
    Arc::new(r)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fleet CA in `dir`, and node certificates for `nodes` (each with --ip 127.0.0.1).
fn fleet(dir: &Path, nodes: &[&str]) {
    let d = dir.to_str().unwrap();
    ca_ok(&["init", "--dir", d]);
    for n in nodes {
        ca_ok(&["issue", n, "--dir", d, "--ip", "127.0.0.1"]);
    }
}

#[test]
fn issued_certificates_chain_to_the_ca_for_server_and_client_auth() {
    let tmp = crate::support::temp_dir("fleet-ca");
    let dir = tmp.join("pki");
    let d = dir.to_str().unwrap();

    let out = ca_ok(&["init", "--dir", d]);
    assert!(out.contains(&format!("wrote {d}/ca.pem")), "{out}");
    assert!(out.contains(&format!("wrote {d}/ca.key")), "{out}");
    assert!(out.contains("\"Outpost fleet CA\""), "{out}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);

    let out = ca_ok(&[
        "issue",
        "shield-1",
        "--dir",
        d,
        "--dns",
        "shield-1.example",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(out.contains(&format!("wrote {d}/shield-1.pem")), "{out}");
    assert!(out.contains(&format!("wrote {d}/shield-1.key")), "{out}");
    assert!(
        out.contains("names: DNS:shield-1, DNS:shield-1.example, IP:127.0.0.1"),
        "{out}"
    );
    assert_eq!(mode(&dir.join("shield-1.key")), 0o600);

    // NODE.pem: the leaf, then the CA certificate.
    let ca_cert = certs(&dir.join("ca.pem"));
    let chain = certs(&dir.join("shield-1.pem"));
    assert_eq!(ca_cert.len(), 1);
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], ca_cert[0]);
    let leaf = &chain[0];
    // Both keys are PKCS#8 PEM.
    key(&dir.join("shield-1.key"));
    key(&dir.join("ca.key"));

    let trusted = roots(&dir.join("ca.pem"));
    let now = UnixTime::now();
    let server = WebPkiServerVerifier::builder_with_provider(trusted.clone(), provider())
        .build()
        .unwrap();
    let verify = |name: &str| {
        let name = ServerName::try_from(name).unwrap();
        server.verify_server_cert(leaf, &[], &name, &[], now)
    };
    for name in ["shield-1", "shield-1.example", "127.0.0.1"] {
        let r = verify(name);
        assert!(r.is_ok(), "{name}: {r:?}");
    }
    for name in ["other.example", "shield-2", "127.0.0.2"] {
        assert!(verify(name).is_err(), "{name}");
    }

    // The same certificate is a client certificate.
    let client = WebPkiClientVerifier::builder_with_provider(trusted, provider())
        .build()
        .unwrap();
    client.verify_client_cert(leaf, &[], now).unwrap();

    // Trusted by this CA only.
    let other = crate::support::temp_dir("fleet-ca-other");
    fleet(&other, &[]);
    let foreign =
        WebPkiServerVerifier::builder_with_provider(roots(&other.join("ca.pem")), provider())
            .build()
            .unwrap();
    let name = ServerName::try_from("shield-1.example").unwrap();
    assert!(foreign
        .verify_server_cert(leaf, &[], &name, &[], now)
        .is_err());
}

/// A server with shield-1's certificate on 127.0.0.1:0, requiring client certificates signed
/// by the fleet CA; answers "ping" with "pong". Returns its address and, per connection, the
/// client's certificate (DER) or the handshake error.
async fn mtls_server(
    dir: &Path,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<Vec<u8>, String>>,
) {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&dir.join("ca.pem")), provider())
            .build()
            .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&dir.join("shield-1.pem")),
            key(&dir.join("shield-1.key")),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                let mut ping = [0u8; 4];
                tls.read_exact(&mut ping).await.unwrap();
                assert_eq!(&ping, b"ping");
                tls.write_all(b"pong").await.unwrap();
                tls.shutdown().await.unwrap();
                let _ = tx.send(Ok(peer));
            });
        }
    });
    (addr, rx)
}

/// Connects to `addr` as 127.0.0.1 trusting `ca_pem`, presenting `client` (cert, key) if any;
/// sends "ping" and returns what came back.
async fn mtls_client(
    addr: std::net::SocketAddr,
    ca_pem: &Path,
    client: Option<(&Path, &Path)>,
) -> std::io::Result<Vec<u8>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let cfg = match client {
        Some((cert, k)) => builder.with_client_auth_cert(certs(cert), key(k)).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(b"ping").await?;
    let mut back = Vec::new();
    tls.read_to_end(&mut back).await?;
    Ok(back)
}

fn within<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(10), f)
}

#[tokio::test]
async fn two_issued_nodes_complete_a_mutual_tls_handshake() {
    let tmp = crate::support::temp_dir("fleet-ca-mtls");
    fleet(&tmp, &["shield-1", "edge-1"]);
    let (addr, mut accepted) = mtls_server(&tmp).await;
    let ca_pem = tmp.join("ca.pem");
    let edge = (tmp.join("edge-1.pem"), tmp.join("edge-1.key"));
    let back = within(mtls_client(
        addr,
        &ca_pem,
        Some((edge.0.as_path(), edge.1.as_path())),
    ))
    .await
    .unwrap()
    .unwrap();
    assert_eq!(back, b"pong");
    let peer = accepted.recv().await.unwrap().unwrap();
    assert_eq!(peer, certs(&edge.0)[0].to_vec(), "the server saw edge-1");

    // No client certificate: refused in the handshake.
    let r = within(mtls_client(addr, &ca_pem, None)).await.unwrap();
    assert!(r.as_ref().map_or(true, |b| b.is_empty()), "{r:?}");
    let e = accepted.recv().await.unwrap().unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // A certificate from another CA: refused too.
    let other = crate::support::temp_dir("fleet-ca-mtls-other");
    fleet(&other, &["edge-1"]);
    let r = within(mtls_client(
        addr,
        &ca_pem,
        Some((&other.join("edge-1.pem"), &other.join("edge-1.key"))),
    ))
    .await
    .unwrap();
    assert!(r.as_ref().map_or(true, |b| b.is_empty()), "{r:?}");
    // (Same CA name, other key: BadSignature; another name would be UnknownIssuer.)
    let e = accepted.recv().await.unwrap().unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[test]
fn init_twice_refuses_and_leaves_the_ca_alone() {
    let tmp = crate::support::temp_dir("fleet-ca-twice");
    let d = tmp.to_str().unwrap();
    ca_ok(&["init", "--dir", d, "--name", "Test fleet"]);
    let before = (
        std::fs::read(tmp.join("ca.pem")).unwrap(),
        std::fs::read(tmp.join("ca.key")).unwrap(),
    );
    ca_refused(
        &["init", "--dir", d],
        &format!("outpost: {d}/ca.pem already exists: refusing to overwrite the fleet CA"),
    );
    // Only the key left (a half-finished CA): refused too, naming it.
    std::fs::rename(tmp.join("ca.pem"), tmp.join("kept.pem")).unwrap();
    ca_refused(&["init", "--dir", d], &format!("{d}/ca.key already exists"));
    assert!(!tmp.join("ca.pem").exists());
    std::fs::rename(tmp.join("kept.pem"), tmp.join("ca.pem")).unwrap();
    let after = (
        std::fs::read(tmp.join("ca.pem")).unwrap(),
        std::fs::read(tmp.join("ca.key")).unwrap(),
    );
    assert!(before == after, "the CA files changed");
    assert_eq!(mode(&tmp.join("ca.key")), 0o600);
}

#[test]
fn issue_refuses_bad_input_with_exit_2() {
    let tmp = crate::support::temp_dir("fleet-ca-bad");
    let d = tmp.to_str().unwrap();

    // No CA yet.
    ca_refused(
        &["issue", "edge-1", "--dir", d],
        &format!("outpost: cannot read {d}/ca.pem"),
    );
    ca_refused(&["issue", "edge-1", "--dir", d], "outpost ca init");

    ca_ok(&["init", "--dir", d]);
    for bad in ["../x", "", "a b", "Edge", "a/b", ".hidden"] {
        ca_refused(
            &["issue", bad, "--dir", d],
            &format!("invalid NODE {bad:?}"),
        );
    }
    ca_refused(
        &["issue", "ca", "--dir", d],
        "invalid NODE \"ca\": ca.pem and ca.key are the CA's own files",
    );
    ca_refused(
        &["issue", "edge-1", "--dir", d, "--ip", "300.1.1.1"],
        "invalid value '300.1.1.1' for '--ip <ADDR>'",
    );
    ca_refused(
        &["issue", "edge-1", "--dir", d, "--ip", "edge.example"],
        "invalid value 'edge.example' for '--ip <ADDR>'",
    );
    ca_refused(
        &["issue", "edge-1", "--dir", d, "--dns", "bad name"],
        "--dns \"bad name\": not a valid DNS name",
    );
    ca_refused(
        &["issue", "edge-1", "--dir", d, "--days", "0"],
        "--days 0: must be between 1 and 3652",
    );
    let mut left: Vec<_> = std::fs::read_dir(&*tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["ca.key", "ca.pem"], "bad input wrote nothing");

    // An existing node pair: refused, then replaced with --force (its key still 0600).
    ca_ok(&["issue", "edge-1", "--dir", d]);
    let first = std::fs::read(tmp.join("edge-1.key")).unwrap();
    ca_refused(
        &["issue", "edge-1", "--dir", d],
        &format!("outpost: {d}/edge-1.pem already exists: use --force to replace it"),
    );
    assert_eq!(std::fs::read(tmp.join("edge-1.key")).unwrap(), first);
    std::fs::set_permissions(
        tmp.join("edge-1.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    ca_ok(&["issue", "edge-1", "--dir", d, "--force"]);
    assert_ne!(std::fs::read(tmp.join("edge-1.key")).unwrap(), first);
    assert_eq!(mode(&tmp.join("edge-1.key")), 0o600);

    // A key that is not the certificate's.
    let other = crate::support::temp_dir("fleet-ca-bad-other");
    fleet(&other, &[]);
    std::fs::copy(other.join("ca.key"), tmp.join("ca.key")).unwrap();
    ca_refused(
        &["issue", "edge-2", "--dir", d],
        &format!("outpost: {d}/ca.key is not the key of the certificate in {d}/ca.pem"),
    );
    assert!(!tmp.join("edge-2.pem").exists());
}

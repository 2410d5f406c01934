//! `outpost ca`: the fleet certificate authority's files. `init` writes the CA (`ca.pem`,
//! `ca.key`); `issue` signs one certificate per node, good for TLS as a server and as a client
//! (mutual TLS between edges, shields, the purge hub and admin APIs).
//!
//! Keys are ECDSA P-256, PKCS#8 PEM, created with mode 0600 (never readable by others, not even
//! between creation and a chmod). Nothing is ever overwritten silently: `init` refuses an existing
//! CA, `issue` an existing node pair unless `--force`, and `--force` replaces the pair by rename.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);
/// Ten years, leap days included.
const CA_DAYS: u32 = 3652;
/// A leaf outliving the CA could never verify.
const MAX_DAYS: u32 = CA_DAYS;
/// Certificates start an hour in the past, so a node whose clock is a little behind accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

/// `outpost ca` subcommands.
#[derive(clap::Subcommand)]
pub enum CaCmd {
    /// Create the fleet CA: DIR/ca.pem (certificate), DIR/ca.key (private key, mode 0600).
    Init(InitArgs),
    /// Issue a node's certificate (server and client auth), signed by the fleet CA.
    ///
    /// Writes DIR/NODE.pem (the certificate, then the CA's) and DIR/NODE.key (mode 0600).
    Issue(IssueArgs),
}

/// `outpost ca init`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Directory of the CA files (created with mode 0700 if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The CA's common name.
    #[arg(long, default_value = "Outpost fleet CA")]
    pub name: String,
}

/// `outpost ca issue`.
#[derive(clap::Args)]
pub struct IssueArgs {
    /// The node's name (`[a-z0-9][a-z0-9.-]*`): the certificate's CN, its files' names, and a
    /// DNS name on it when it is a host name.
    pub node: String,
    /// Directory holding ca.pem and ca.key; the node's files are written there too.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Another DNS name for the certificate (`*.example.com` allowed); repeatable.
    #[arg(long = "dns", value_name = "NAME")]
    pub dns: Vec<String>,
    /// An IP address for the certificate; repeatable.
    #[arg(long = "ip", value_name = "ADDR")]
    pub ips: Vec<IpAddr>,
    /// Days the certificate is valid (at most 3652, the CA's own lifetime).
    #[arg(long, default_value_t = 397)]
    pub days: u32,
    /// Replace an existing NODE.pem and NODE.key.
    #[arg(long)]
    pub force: bool,
}

/// Runs one subcommand; returns the lines to print, or one line saying what went wrong.
pub fn run(cmd: CaCmd) -> Result<Vec<String>, String> {
    match cmd {
        CaCmd::Init(a) => init(&a),
        CaCmd::Issue(a) => issue(&a),
    }
}

fn init(a: &InitArgs) -> Result<Vec<String>, String> {
    if a.name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    let (cert_path, key_path) = (a.dir.join("ca.pem"), a.dir.join("ca.key"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(format!(
                "{} already exists: refusing to overwrite the fleet CA",
                p.display()
            ));
        }
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&a.dir)
        .map_err(|e| format!("cannot create {}: {e}", a.dir.display()))?;

    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, a.name.as_str());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let until = set_validity(&mut params, SystemTime::now(), CA_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot make the CA certificate: {e}"))?;

    write_pair(
        &key_path,
        &key.serialize_pem(),
        &cert_path,
        &cert.pem(),
        false,
    )?;
    Ok(vec![
        format!(
            "wrote {}: CA certificate {:?}, valid until {}",
            cert_path.display(),
            a.name,
            httpdate::fmt_http_date(until)
        ),
        format!(
            "wrote {}: CA private key (mode 0600; keep it off the nodes)",
            key_path.display()
        ),
    ])
}

fn issue(a: &IssueArgs) -> Result<Vec<String>, String> {
    check_node_name(&a.node)?;
    if a.days == 0 || a.days > MAX_DAYS {
        return Err(format!(
            "--days {}: must be between 1 and {MAX_DAYS}",
            a.days
        ));
    }
    let sans = subject_alt_names(&a.node, &a.dns, &a.ips)?;
    let (ca_cert, ca_key) = load_ca(&a.dir)?;

    let (cert_path, key_path) = (
        a.dir.join(format!("{}.pem", a.node)),
        a.dir.join(format!("{}.key", a.node)),
    );
    if !a.force {
        for p in [&cert_path, &key_path] {
            if p.exists() {
                return Err(format!(
                    "{} already exists: use --force to replace it",
                    p.display()
                ));
            }
        }
    }

    let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_key).map_err(|e| {
        format!(
            "{}: not a usable CA certificate: {e}",
            a.dir.join("ca.pem").display()
        )
    })?;
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, a.node.as_str());
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let until = set_validity(&mut params, SystemTime::now(), a.days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("cannot sign the certificate of {}: {e}", a.node))?;

    let chain = format!("{}{}", cert.pem(), ca_cert);
    write_pair(&key_path, &key.serialize_pem(), &cert_path, &chain, a.force)?;
    let names: Vec<String> = sans.iter().map(San::to_string).collect();
    Ok(vec![
        format!(
            "wrote {}: certificate of {} (server and client auth), then the CA's; valid until {}",
            cert_path.display(),
            a.node,
            httpdate::fmt_http_date(until)
        ),
        format!("wrote {}: private key (mode 0600)", key_path.display()),
        format!("names: {}", names.join(", ")),
    ])
}

/// A fresh ECDSA P-256 key.
fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate a key: {e}"))
}

/// Valid from an hour ago for `days`; returns the end.
fn set_validity(params: &mut CertificateParams, now: SystemTime, days: u32) -> SystemTime {
    let until = now + DAY * days;
    // rcgen takes `time` dates; the epoch plus a std duration avoids depending on `time`.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    params.not_before = epoch + since(now - BACKDATE);
    params.not_after = epoch + since(until);
    until
}

/// Reads DIR/ca.pem and DIR/ca.key; returns the CA certificate (one PEM block) and its key,
/// after checking that the key is the certificate's.
fn load_ca(dir: &Path) -> Result<(String, KeyPair), String> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "cannot read {}: {e}; create the CA first with `outpost ca init --dir {}`",
                p.display(),
                dir.display()
            ),
            _ => format!("cannot read {}: {e}", p.display()),
        })
    };
    let (cert_text, key_text) = (read(&cert_path)?, read(&key_path)?);
    let key = KeyPair::from_pem(&key_text)
        .map_err(|e| format!("{}: not a usable private key: {e}", key_path.display()))?;
    let der = rustls_pemfile::certs(&mut cert_text.as_bytes())
        .next()
        .ok_or_else(|| format!("{}: no PEM certificate found", cert_path.display()))?
        .map_err(|e| format!("{}: bad PEM: {e}", cert_path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("{}: not a valid certificate: {e}", cert_path.display()))?;
    // rcgen reads a CA certificate but does not show its public key: x509-parser does, and
    // that is what tells whether ca.key belongs to ca.pem.
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(format!(
            "{} is not the key of the certificate in {}",
            key_path.display(),
            cert_path.display()
        ));
    }
    Ok((format!("{}\n", cert_text.trim_end()), key))
}

/// Writes a private key (mode 0600) and then its certificate; a failure leaves neither new
/// file behind. Without `replace`, an existing file is an error; with it, each file is written
/// beside its target and renamed over it.
fn write_pair(
    key_path: &Path,
    key_pem: &str,
    cert_path: &Path,
    cert_pem: &str,
    replace: bool,
) -> Result<(), String> {
    if !replace {
        write_new(key_path, key_pem, 0o600)?;
        if let Err(e) = write_new(cert_path, cert_pem, 0o644) {
            let _ = std::fs::remove_file(key_path);
            return Err(e);
        }
        return Ok(());
    }
    let tmp = |p: &Path| {
        let mut s = p.as_os_str().to_owned();
        s.push(format!(".tmp-{}", std::process::id()));
        PathBuf::from(s)
    };
    let (key_tmp, cert_tmp) = (tmp(key_path), tmp(cert_path));
    let written = write_new(&key_tmp, key_pem, 0o600)
        .and_then(|()| write_new(&cert_tmp, cert_pem, 0o644))
        .and_then(|()| rename(&key_tmp, key_path))
        .and_then(|()| rename(&cert_tmp, cert_path));
    if written.is_err() {
        let _ = std::fs::remove_file(&key_tmp);
        let _ = std::fs::remove_file(&cert_tmp);
    }
    written
}

/// Creates `path` (it must not exist) with `mode` from the start, and writes `text` to it; on
/// a failure after creating it, removes it.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!("{} already exists", path.display()),
            _ => err(e),
        })?;
    // The umask can only take bits away; this makes the mode exact.
    let written = f
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(err(e));
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::rename(from, to).map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// A name on a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    fn to_rcgen(&self) -> Result<SanType, String> {
        match self {
            San::Dns(n) => n
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("--dns {n:?}: {e}")),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        }
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(n) => write!(f, "DNS:{n}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// NODE names files and a certificate: `[a-z0-9][a-z0-9.-]*`, at most 253 bytes, not `ca`
/// (whose files are the CA's).
fn check_node_name(node: &str) -> Result<(), String> {
    let ok = node.len() <= 253
        && node
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !ok {
        return Err(format!(
            "invalid NODE {node:?}: use lower-case letters, digits, '.' and '-', starting with a letter or digit, at most 253 characters"
        ));
    }
    if node == "ca" {
        return Err("invalid NODE \"ca\": ca.pem and ca.key are the CA's own files".into());
    }
    Ok(())
}

/// A DNS host name: dot-separated labels of letters, digits and '-' (not at either end), 1 to
/// 63 bytes each, at most 253 in all, and not an IPv4 address (its last label not all digits).
fn is_host_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253
        && name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// The certificate's names: NODE when it is a host name, then every --dns (lower-cased, a
/// leading `*.` allowed) and --ip, without repeats.
fn subject_alt_names(node: &str, dns: &[String], ips: &[IpAddr]) -> Result<Vec<San>, String> {
    let mut names = Vec::new();
    if is_host_name(node) {
        names.push(San::Dns(node.to_string()));
    }
    for name in dns {
        if name.parse::<IpAddr>().is_ok() {
            return Err(format!("--dns {name:?}: an IP address; use --ip"));
        }
        let lower = name.to_ascii_lowercase();
        if !is_host_name(lower.strip_prefix("*.").unwrap_or(&lower)) {
            return Err(format!("--dns {name:?}: not a valid DNS name"));
        }
        names.push(San::Dns(lower));
    }
    names.extend(ips.iter().copied().map(San::Ip));
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.is_empty() {
        return Err(format!(
            "NODE {node:?} is not a host name: give the certificate a name with --dns or --ip"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in [
            "shield-1",
            "edge.eu-1",
            "0",
            "a..b",
            "x".repeat(253).as_str(),
        ] {
            assert!(check_node_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "../x",
            "a b",
            "-a",
            ".a",
            "Shield",
            "a/b",
            "a_b",
            "ca",
            "x".repeat(254).as_str(),
        ] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_names() {
        for ok in ["shield-1", "a.example", "xn--bcher-kva.example", "a1.b2"] {
            assert!(is_host_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            "a..b",
            "a.",
            "-a.example",
            "a-.example",
            "1.2.3.4",
            "a b",
            "a_b.example",
            &format!("{}.example", "x".repeat(64)),
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_on_the_certificate() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let sans = subject_alt_names(
            "shield-1",
            &[
                "Shield-1.Example".into(),
                "shield-1".into(),
                "*.s.example".into(),
            ],
            &[ip, ip],
        )
        .unwrap();
        let shown: Vec<String> = sans.iter().map(San::to_string).collect();
        assert_eq!(
            shown,
            [
                "DNS:shield-1",
                "DNS:shield-1.example",
                "DNS:*.s.example",
                "IP:127.0.0.1"
            ]
        );
        // A NODE that is not a host name is only the CN.
        let sans = subject_alt_names("10.0.0.1", &[], &[ip]).unwrap();
        assert_eq!(sans, [San::Ip(ip)]);
        assert!(subject_alt_names("10.0.0.1", &[], &[])
            .unwrap_err()
            .contains("--dns or --ip"));
        for bad in ["a b", "10.0.0.1", "*.*.x", "a..b"] {
            assert!(
                subject_alt_names("n", &[bad.into()], &[]).is_err(),
                "{bad:?}"
            );
        }
    }
}

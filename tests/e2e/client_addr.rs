//! The real client address (issue 15, points 4 and 5): PROXY protocol v1 and v2 from a
//! trusted load balancer, `X-Forwarded-For` and `Forwarded` from trusted proxies only, and
//! the admin API's allow and deny lists. Real `outpost run` processes; clients come from
//! distinct loopback addresses (127.0.0.x), bound before connecting.

use crate::support::process::{check_config, Process};
use crate::support::*;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// An edge process for site `a.test` on `origin`, with an access log at `log`, a limiter of
/// one request a minute per client on `/limited`, and `extra` keys in `[edge]`.
fn config(admin: u16, edge: u16, origin: &Origin, log: &Path, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n\n\
         [edge]\nlisten = [\"127.0.0.1:{edge}\"]\nheader_read_timeout = \"1s\"\n\
         access_log = {{ path = \"{}\", format = \"combined\" }}\n{extra}\n\n\
         [[edge.limits]]\nname = \"per-client\"\nrate = \"1/m\"\nburst = 1\nkey = \"client\"\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\n\n\
         [[edge.sites]]\nname = \"limited\"\nhosts = [\"limited.test\"]\norigins = [\"{}\"]\n\
         limits = [\"per-client\"]\n",
        log.display(),
        origin.url(),
        origin.url(),
    )
}

fn no_store() -> Reply {
    Reply::ok("x", &[("cache-control", "no-store")])
}

/// A connection to `to` from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends `prefix`, then a GET of `path` for `host` (with `Connection: close` and the extra
/// `headers`), and reads until the node closes: the answer, or empty when it closed without
/// one.
async fn ask(s: &mut TcpStream, prefix: &[u8], host: &str, path: &str, headers: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n");
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(req.as_bytes());
    if s.write_all(&bytes).await.is_err() {
        return String::new();
    }
    read_all(s).await
}

/// What the node sends until it closes (at most 5 s).
async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the node closes `s` without a byte (EOF or reset) within `limit`.
async fn closed_silently(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn v1(src: &str, dst: SocketAddr) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    let dst_ip = if src.is_ipv4() {
        dst.ip().to_string()
    } else {
        "::1".to_string()
    };
    format!(
        "PROXY {family} {} {dst_ip} {} {}\r\n",
        src.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header; `local`: the LOCAL command (no addresses).
fn v2(src: &str, dst: SocketAddr, local: bool) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    if local {
        h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        return h;
    }
    let src: SocketAddr = src.parse().unwrap();
    let mut a = Vec::new();
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            a.extend_from_slice(&s.octets());
            a.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), _) => {
            a.extend_from_slice(&s.octets());
            a.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            0x21
        }
        _ => unreachable!(),
    };
    a.extend_from_slice(&src.port().to_be_bytes());
    a.extend_from_slice(&dst.port().to_be_bytes());
    // A TLV (NOOP) as balancers add them.
    a.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
    h.extend_from_slice(&[0x21, family]);
    h.extend_from_slice(&u16::try_from(a.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&a);
    h
}

/// The `X-Forwarded-For` the origin saw on the request for `path`.
fn forwarded_for(origin: &Origin, path: &str) -> String {
    let seen = origin.seen.lock().unwrap();
    let s = seen
        .iter()
        .rev()
        .find(|s| s.uri == path)
        .unwrap_or_else(|| panic!("the origin saw no {path}"));
    s.headers
        .get("x-forwarded-for")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The client field of the access log line for `path`, once it is written.
async fn logged_client(log: &Path, path: &str) -> String {
    let needle = format!("\"GET {path} HTTP/1.1\"");
    let mut found = None;
    let ok = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text
            .lines()
            .find(|l| l.contains(&needle))
            .map(|l| l.split(' ').next().unwrap_or("").to_string());
        found.is_some()
    })
    .await;
    assert!(ok, "no access log line for {path}");
    found.unwrap()
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_name_the_client_for_logs_limits_and_the_origin() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-pp");
    let log = dir.join("access.log");
    let (admin, port) = (free_port(), free_port());
    let extra = "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]";
    let node = Process::start(&dir, "edge", &config(admin, port, &origin, &log, extra), 2);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let cases = [
        ("/v1", v1("203.0.113.1:4711", to), "203.0.113.1"),
        ("/v2", v2("203.0.113.2:4712", to, false), "203.0.113.2"),
        ("/v1-6", v1("[2001:db8::7]:4713", to), "2001:db8::7"),
        ("/v2-6", v2("[2001:db8::8]:4714", to, false), "2001:db8::8"),
        // LOCAL: the balancer's own connection (a health check) is the balancer.
        ("/local", v2("", to, true), "127.0.0.1"),
        ("/unknown", b"PROXY UNKNOWN\r\n".to_vec(), "127.0.0.1"),
    ];
    for (path, header, client) in &cases {
        let mut s = connect_from("127.0.0.1", to).await;
        // A client's own X-Forwarded-For is not believed: it is not a trusted proxy. (The
        // balancer speaking for itself is one: its X-Forwarded-For would be.)
        let xff = if client.starts_with("127.") {
            ""
        } else {
            "X-Forwarded-For: 192.0.2.66\r\n"
        };
        let got = ask(&mut s, header, "a.test", path, xff).await;
        assert_eq!(status(&got), 200, "{path}: {got}");
        assert_eq!(forwarded_for(&origin, path), *client, "{path}");
        assert_eq!(logged_client(&log, path).await, *client, "{path}");
    }

    // The limiter keyed by client sees two clients behind one balancer.
    let mut answers = Vec::new();
    for (i, src) in ["203.0.113.1:1", "203.0.113.2:1", "203.0.113.1:2"]
        .iter()
        .enumerate()
    {
        let mut s = connect_from("127.0.0.1", to).await;
        let header = if i % 2 == 0 {
            v1(src, to)
        } else {
            v2(src, to, false)
        };
        answers.push(status(
            &ask(&mut s, &header, "limited.test", "/l", "").await,
        ));
    }
    assert_eq!(answers, [200, 200, 429], "per client, not per balancer");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_listener_closes_connections_without_a_trusted_header() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-pp-refused");
    let log = dir.join("access.log");
    let (admin, port) = (free_port(), free_port());
    let extra = "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1/32\"]";
    let node = Process::start(&dir, "edge", &config(admin, port, &origin, &log, extra), 2);
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // No header: a client talking to the listener directly.
    let mut s = connect_from("127.0.0.1", to).await;
    assert_eq!(ask(&mut s, b"", "a.test", "/none", "").await, "");
    // A valid header from a peer that is not a trusted proxy.
    let mut s = connect_from("127.0.0.2", to).await;
    let header = v1("203.0.113.1:1", to);
    assert_eq!(ask(&mut s, &header, "a.test", "/untrusted", "").await, "");
    // Malformed headers of each kind.
    let mut bad_v2 = v2("203.0.113.1:1", to, false);
    bad_v2[12] = 0x31;
    let mut huge_v2 = V2_SIGNATURE.to_vec();
    huge_v2.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
    for bad in [
        b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n".to_vec(),
        b"PROXY TCP9 x\r\n".to_vec(),
        bad_v2,
        huge_v2,
        [b"PROXY TCP4 ".as_slice(), &[b'1'; 300], b"\r\n"].concat(),
    ] {
        let mut s = connect_from("127.0.0.1", to).await;
        let got = ask(&mut s, &bad, "a.test", "/bad", "").await;
        assert_eq!(got, "", "{:?}", String::from_utf8_lossy(&bad));
    }
    // Half a header, then nothing: closed at the header read timeout, not held.
    let mut s = connect_from("127.0.0.1", to).await;
    s.write_all(b"PROXY TCP4 203.0.113.1").await.unwrap();
    let started = std::time::Instant::now();
    assert!(closed_silently(&mut s, Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(4));
    // A silent connection too.
    let mut s = connect_from("127.0.0.1", to).await;
    assert!(closed_silently(&mut s, Duration::from_secs(5)).await);
    assert_eq!(origin.requests(), 0, "nothing refused reached the origin");

    // The node still serves good connections, and counted the refusals.
    let mut s = connect_from("127.0.0.1", to).await;
    let got = ask(&mut s, &v1("203.0.113.9:1", to), "a.test", "/ok", "").await;
    assert_eq!(status(&got), 200, "{got}");
    let metrics = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metric_sum(
        &metrics,
        "outpost_connections_proxy_refused_total",
        &[("cdn_tier", "edge")],
    );
    assert_eq!(refused, Some(9.0), "{metrics}");
    // Said once, then summarised: not a line per connection.
    let said = node.log().matches("(proxy_protocol = true)").count();
    assert!((1..=2).contains(&said), "{}", node.log());
}

/// A client whose connections come from `from` (an address of 127.0.0.0/8).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn get_from(from: &str, url: &str, host: &str, headers: &[(&str, &str)]) -> u16 {
    let mut h = vec![("host", host)];
    h.extend_from_slice(headers);
    send(&client_from(from), "GET", url, &h).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_from_trusted_proxies_only() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-xff");
    let log = dir.join("access.log");
    let (admin, port) = (free_port(), free_port());
    let extra = "trusted_proxies = [\"127.0.0.2\", \"10.0.0.0/8\"]";
    let _node = Process::start(&dir, "edge", &config(admin, port, &origin, &log, extra), 2);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    // Spoofing from an untrusted peer does nothing.
    let xff = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(
        get_from("127.0.0.1", &url("/spoof"), "a.test", &xff).await,
        200
    );
    assert_eq!(forwarded_for(&origin, "/spoof"), "127.0.0.1");
    assert_eq!(logged_client(&log, "/spoof").await, "127.0.0.1");
    // From a trusted proxy: the rightmost address that is not a trusted proxy.
    let chain = [("x-forwarded-for", "192.0.2.1, 198.51.100.9, 10.1.1.1")];
    assert_eq!(
        get_from("127.0.0.2", &url("/chain"), "a.test", &chain).await,
        200
    );
    assert_eq!(forwarded_for(&origin, "/chain"), "198.51.100.9");
    assert_eq!(logged_client(&log, "/chain").await, "198.51.100.9");
    // Bad input from a trusted proxy names nobody: the proxy stays the client.
    for (i, bad) in [
        "garbage",
        "unknown",
        "",
        "198.51.100.9, _hidden",
        "1.2.3.4:99999",
    ]
    .iter()
    .enumerate()
    {
        let path = format!("/bad{i}");
        let h = [("x-forwarded-for", *bad)];
        assert_eq!(get_from("127.0.0.2", &url(&path), "a.test", &h).await, 200);
        assert_eq!(forwarded_for(&origin, &path), "127.0.0.2", "{bad:?}");
    }
    // A limiter keyed by client counts the clients behind the proxy apart.
    let mut answers = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2", "198.51.100.1"] {
        let h = [("x-forwarded-for", client)];
        answers.push(get_from("127.0.0.2", &url("/l"), "limited.test", &h).await);
    }
    assert_eq!(answers, [200, 200, 429]);
    // And an untrusted peer cannot escape its own count by naming others.
    let mut answers = Vec::new();
    for client in ["198.51.100.3", "198.51.100.4"] {
        let h = [("x-forwarded-for", client)];
        answers.push(get_from("127.0.0.3", &url("/l"), "limited.test", &h).await);
    }
    assert_eq!(answers, [200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_is_believed_from_trusted_proxies_when_configured() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-fwd");
    let log = dir.join("access.log");
    let (admin, port) = (free_port(), free_port());
    let extra = "trusted_proxies = [\"127.0.0.2\"]\nreal_ip_header = \"forwarded\"";
    let _node = Process::start(&dir, "edge", &config(admin, port, &origin, &log, extra), 2);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    let cases = [
        ("/f1", "127.0.0.1", "for=198.51.100.9", "127.0.0.1"),
        (
            "/f2",
            "127.0.0.2",
            "for=192.0.2.1, for=198.51.100.9",
            "198.51.100.9",
        ),
        (
            "/f3",
            "127.0.0.2",
            "for=\"[2001:db8:cafe::17]:4711\";proto=https",
            "2001:db8:cafe::17",
        ),
        ("/f4", "127.0.0.2", "for=unknown", "127.0.0.2"),
        ("/f5", "127.0.0.2", "for=\"_hidden\"", "127.0.0.2"),
        ("/f6", "127.0.0.2", "for=\"198.51.100.9", "127.0.0.2"),
        ("/f7", "127.0.0.2", "proto=https", "127.0.0.2"),
    ];
    for (path, from, value, client) in cases {
        let h = [("forwarded", value)];
        assert_eq!(
            get_from(from, &url(path), "a.test", &h).await,
            200,
            "{path}"
        );
        assert_eq!(forwarded_for(&origin, path), client, "{path}: {value}");
        assert_eq!(logged_client(&log, path).await, client, "{path}");
    }
    // X-Forwarded-For is not the configured header: not believed even from the proxy.
    let h = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(get_from("127.0.0.2", &url("/x"), "a.test", &h).await, 200);
    assert_eq!(forwarded_for(&origin, "/x"), "127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_peers_its_lists_refuse_before_the_token() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-admin");
    let (admin, port) = (free_port(), free_port());
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n\
         allow = [\"127.0.0.0/30\"]\ndeny = [\"127.0.0.2\"]\n\n\
         [edge]\nlisten = [\"127.0.0.1:{port}\"]\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\n",
        origin.url()
    );
    let _node = Process::start(&dir, "edge", &toml, 2);
    let stats = format!("http://127.0.0.1:{admin}/stats");
    let call = |from: &'static str, token: Option<&'static str>, url: String| async move {
        let mut req = client_from(from).get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    // Allowed: the token decides.
    assert_eq!(call("127.0.0.1", Some("t"), stats.clone()).await.0, 200);
    assert_eq!(call("127.0.0.1", None, stats.clone()).await.0, 401);
    assert_eq!(call("127.0.0.1", Some("wrong"), stats.clone()).await.0, 403);
    // Denied (deny wins over allow), and outside allow: 403 with the reason, token or not.
    for (from, why) in [
        ("127.0.0.2", "127.0.0.2 is refused by [admin] deny"),
        ("127.0.0.9", "127.0.0.9 is not in [admin] allow"),
    ] {
        for token in [Some("t"), None] {
            let (status, body) = call(from, token, stats.clone()).await;
            assert_eq!(status, 403, "{from}");
            assert!(body.contains(why), "{from}: {body}");
        }
        let purge = client_from(from)
            .post(format!("http://127.0.0.1:{admin}/purge"))
            .bearer_auth("t")
            .body("{\"all\": true}")
            .send()
            .await
            .unwrap();
        assert_eq!(purge.status(), 403, "{from}: POST /purge");
        // The web console is the API in a browser: refused alike, sign-in page included.
        for page in ["/ui", "/ui/login"] {
            let url = format!("http://127.0.0.1:{admin}{page}");
            assert_eq!(call(from, None, url).await.0, 403, "{from} {page}");
        }
        // The probes stay open to load balancers and geo-DNS.
        for probe in ["/healthz", "/livez"] {
            let url = format!("http://127.0.0.1:{admin}{probe}");
            assert_eq!(call(from, None, url).await.0, 200, "{from} {probe}");
        }
    }
}

#[test]
fn check_config_names_bad_networks_and_proxy_protocol_without_trusted_proxies() {
    let dir = temp_dir("client-addr-check");
    let (code, err) = check_config(
        &dir,
        "[admin]\nlisten = \"127.0.0.1:9901\"\ntoken = \"t\"\n\
         allow = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\ndeny = [\"nonsense\"]\n\n\
         [edge]\nlisten = [\"127.0.0.1:0\"]\nproxy_protocol = true\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:9\"]\n\n\
         [shield]\nsecret = \"0123456789\"\nlisten = [\"127.0.0.1:0\"]\n\
         trusted_proxies = [\"127.0.0.1\", \"1.2.3.4/\"]\n\n\
         [[shield.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:9\"]\n",
    );
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "admin.allow[1]: \"10.0.0.0/99\" is not a network",
        "admin.deny[0]: \"nonsense\" is not a network",
        "edge.trusted_proxies: proxy_protocol = true needs",
        "shield.trusted_proxies[1]: \"1.2.3.4/\" is not a network",
    ] {
        assert!(err.contains(want), "{want:?} in\n{err}");
    }
    let (code, err) = check_config(
        &dir,
        "[edge]\nlisten = [\"127.0.0.1:0\"]\nreal_ip_header = \"x-real-ip\"\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:9\"]\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("real_ip_header"), "{err}");
}

/// TLS to `to` over `tcp` (which already carried a PROXY header), trusting `ca_pem`, for SNI
/// `a.test`; ALPN `http/1.1`.
async fn tls_over(
    tcp: TcpStream,
    ca_pem: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    connector.connect(name, tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_http2_listeners_take_the_proxy_header_first_and_limit_per_real_client() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-pp-tls");
    let ca = crate::support::pki::TestCa::new("client-addr");
    let leaf = ca.leaf("a", &["a.test"]);
    let log = dir.join("access.log");
    let (admin, port, tls_port) = (free_port(), free_port(), free_port());
    let extra = format!(
        "proxy_protocol = true\ntrusted_proxies = [\"127.0.0.1\"]\n\
         max_connections_per_client = 1\ntls_listen = [\"127.0.0.1:{tls_port}\"]\n\n\
         [[edge.certificates]]\nhosts = [\"a.test\"]\ncert = \"{}\"\nkey = \"{}\"",
        leaf.cert_pem.display(),
        leaf.key_pem.display()
    );
    let toml = config(admin, port, &origin, &log, &extra);
    let _node = Process::start(&dir, "edge", &toml, 3);
    let plain: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();

    // TLS: the header, then the handshake, then HTTP.
    let mut tcp = connect_from("127.0.0.1", tls).await;
    tcp.write_all(&v2("203.0.113.21:1", tls, false))
        .await
        .unwrap();
    let mut s = tls_over(tcp, &ca.ca_pem).await.unwrap();
    s.write_all(b"GET /tls HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert_eq!(status(&got), 200, "{got}");
    assert_eq!(forwarded_for(&origin, "/tls"), "203.0.113.21");
    assert_eq!(logged_client(&log, "/tls").await, "203.0.113.21");
    // A TLS hello with no header first: closed.
    let tcp = connect_from("127.0.0.1", tls).await;
    assert!(tls_over(tcp, &ca.ca_pem).await.is_err());

    // HTTP/2 with prior knowledge after the header.
    let mut tcp = connect_from("127.0.0.1", plain).await;
    tcp.write_all(&v1("203.0.113.22:1", plain)).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://a.test/h2").body(()).unwrap();
    // `send` stays: the connection (and its place) is held until the end of the test.
    let (res, _) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(req, true)
        .unwrap();
    assert_eq!(res.await.unwrap().status(), 200);
    assert_eq!(forwarded_for(&origin, "/h2"), "203.0.113.22");

    // max_connections_per_client = 1 holds for the client the header names, not for the
    // balancer: a second connection of 203.0.113.22 is closed, other clients are served.
    let mut second = connect_from("127.0.0.1", plain).await;
    let header = v1("203.0.113.22:2", plain);
    assert_eq!(ask(&mut second, &header, "a.test", "/again", "").await, "");
    for i in 0..3 {
        let mut s = connect_from("127.0.0.1", plain).await;
        let header = v1(&format!("203.0.113.{}:1", 30 + i), plain);
        let got = ask(&mut s, &header, "a.test", "/other", "").await;
        assert_eq!(status(&got), 200, "client {i}: {got}");
    }
    drop(send);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shield_that_trusts_its_edges_sees_the_clients() {
    let origin = Origin::start(|_, _| no_store()).await;
    let dir = temp_dir("client-addr-shield");
    let log = dir.join("shield-access.log");
    let (admin, edge_port, shield_port) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n\n\
         [shield]\nsecret = \"{SHIELD_SECRET}\"\nlisten = [\"127.0.0.1:{shield_port}\"]\n\
         trusted_proxies = [\"127.0.0.1\"]\n\
         access_log = {{ path = \"{}\", format = \"combined\" }}\n\n\
         [[shield.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\n\n\
         [edge]\nlisten = [\"127.0.0.1:{edge_port}\"]\n\
         shields = [\"http://127.0.0.1:{shield_port}\"]\nshield_secret = \"{SHIELD_SECRET}\"\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\n",
        log.display(),
        origin.url(),
        origin.url()
    );
    let _node = Process::start(&dir, "tiers", &toml, 3);
    let url = format!("http://127.0.0.1:{edge_port}/via-shield");
    // The client at 127.0.0.5 reaches the edge, which reaches the shield from 127.0.0.1.
    let spoof = [("x-forwarded-for", "198.51.100.9")];
    assert_eq!(get_from("127.0.0.5", &url, "a.test", &spoof).await, 200);
    assert_eq!(logged_client(&log, "/via-shield").await, "127.0.0.5");
    assert_eq!(forwarded_for(&origin, "/via-shield"), "127.0.0.5");
}

//! HTTP/2 (h2c prior knowledge and over TLS with ALPN) and TLS certificates chosen by SNI.

use crate::support::*;
use edge_node::config::CertConfig;

/// Writes `bytes` on a new connection and reads until the edge closes it (a reset counts as
/// closed); panics if that takes more than 5 s.
async fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered or closed, not left hanging");
    out
}

/// A client speaking HTTP/2 with prior knowledge (no upgrade, no TLS).
fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

#[tokio::test]
async fn http2_prior_knowledge_on_the_plain_listener() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("h2 {n}"), &[("cache-control", "max-age=60")]))
            .await;
    let edge = edge(&origin, |_| {}).await;
    let c = h2c_client();
    let a = c.get(edge.url("/x")).send().await.unwrap();
    assert_eq!(a.version(), reqwest::Version::HTTP_2);
    assert_eq!(a.text().await.unwrap(), "h2 1");
    let b = c.get(edge.url("/x")).send().await.unwrap();
    assert!(b.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(origin.requests(), 1);
}

/// HTTP/2 flow control both ways: a request body and a response body each many times the
/// 64 KiB initial window go through whole (the edge gives back the window of what it reads
/// and sends only what the client's window allows).
#[tokio::test]
async fn http2_bodies_larger_than_the_flow_control_window() {
    const BIG: usize = 1 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/up",
            axum::routing::post(|body: axum::body::Bytes| async move {
                let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
                format!("{} {sum}", body.len())
            }),
        )
        .route(
            "/big",
            axum::routing::get(|| async {
                (
                    [("cache-control", "max-age=60")],
                    "0123456789abcdef".repeat(BIG / 16),
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let edge = start_edge(edge_config(&format!("http://{origin}"))).await;
    let c = h2c_client();
    let upload: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    let sum: u64 = upload.iter().map(|b| u64::from(*b)).sum();
    let r = c.post(edge.url("/up")).body(upload).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().await.unwrap(), format!("{BIG} {sum}"));
    for _ in 0..2 {
        let r = c.get(edge.url("/big")).send().await.unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), BIG);
        assert!(body.starts_with(b"0123456789abcdef0123"));
    }
}

/// A plain connection whose HTTP/2 preface arrives in two segments is still HTTP/2 (the
/// server's first frame is its SETTINGS); one whose first bytes only look like the preface is
/// HTTP/1 and gets an error response or a close, and the listener keeps serving.
#[tokio::test]
async fn a_split_preface_is_http2_and_a_false_one_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(|_, _| Reply::ok("ok", &[("cache-control", "max-age=60")])).await;
    let edge = edge(&origin, |_| {}).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&preface[..10]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.write_all(&preface[10..]).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(std::time::Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("the server answers")
        .unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame first: {head:?}");

    let out = send_raw(edge.addr, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
        "{text}"
    );
    let r = reqwest::get(edge.url("/after")).await.unwrap();
    assert_eq!(r.status(), 200);
}

struct Certs {
    dir: crate::support::TempDir,
    a_der: Vec<u8>,
    b_der: Vec<u8>,
}

fn make_certs() -> Certs {
    let dir = crate::support::temp_dir("tls");
    let mut ders = Vec::new();
    for (name, hosts) in [
        ("a", vec!["a.test".to_string()]),
        ("b", vec!["b.test".to_string(), "*.wild.test".to_string()]),
    ] {
        let ck = rcgen::generate_simple_self_signed(hosts).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), ck.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            ck.signing_key.serialize_pem(),
        )
        .unwrap();
        ders.push(ck.cert.der().to_vec());
    }
    let b_der = ders.pop().unwrap();
    let a_der = ders.pop().unwrap();
    Certs { dir, a_der, b_der }
}

#[tokio::test]
async fn tls_picks_the_certificate_by_sni_and_speaks_h2_and_http1() {
    let certs = make_certs();
    let origin = Origin::start(|seen, _| {
        Reply::ok(
            &format!("tls host={}", seen.headers["host"].to_str().unwrap()),
            &[("cache-control", "max-age=60")],
        )
    })
    .await;
    let mut cfg = edge_config(&origin.url());
    cfg.sites[0].hosts = vec!["a.test".into(), "b.test".into(), "x.wild.test".into()];
    cfg.listen = vec![];
    cfg.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.certificates = vec![
        CertConfig {
            hosts: vec!["a.test".into()],
            cert: certs.dir.join("a.pem"),
            key: certs.dir.join("a.key"),
        },
        CertConfig {
            hosts: vec!["b.test".into(), "*.wild.test".into()],
            cert: certs.dir.join("b.pem"),
            key: certs.dir.join("b.key"),
        },
    ];
    let e = edge_node::Edge::bind(&cfg).await.unwrap();
    let addr = e.tls_local_addrs()[0];
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(e.serve(rx));

    for (host, der) in [
        ("a.test", &certs.a_der),
        ("b.test", &certs.b_der),
        ("x.wild.test", &certs.b_der),
    ] {
        for h2 in [false, true] {
            let mut b = reqwest::Client::builder()
                .no_proxy()
                .use_rustls_tls()
                .tls_info(true)
                .resolve(host, addr)
                .add_root_certificate(reqwest::Certificate::from_der(&certs.a_der).unwrap())
                .add_root_certificate(reqwest::Certificate::from_der(&certs.b_der).unwrap());
            if !h2 {
                b = b.http1_only();
            }
            let c = b.build().unwrap();
            let r = c
                .get(format!("https://{host}:{}/page", addr.port()))
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.version(),
                if h2 {
                    reqwest::Version::HTTP_2
                } else {
                    reqwest::Version::HTTP_11
                },
                "{host} ALPN"
            );
            let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
            assert_eq!(
                info.peer_certificate().unwrap(),
                der.as_slice(),
                "{host} got the wrong certificate"
            );
            assert_eq!(r.text().await.unwrap(), format!("tls host={host}"));
        }
    }
    // The scheme is part of the key: https objects are separate from http ones, and cached.
    assert_eq!(origin.requests(), 3);
    let _ = stop.send(true);
}

#[tokio::test]
async fn a_broken_tls_handshake_does_not_hurt_the_listener() {
    let certs = make_certs();
    let origin = Origin::start(|_, _| Reply::ok("fine", &[])).await;
    let mut cfg = edge_config(&origin.url());
    cfg.sites[0].hosts = vec!["a.test".into()];
    cfg.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.certificates = vec![CertConfig {
        hosts: vec!["a.test".into()],
        cert: certs.dir.join("a.pem"),
        key: certs.dir.join("a.key"),
    }];
    cfg.header_read_timeout = edge_node::config::Dur(std::time::Duration::from_millis(500));
    let e = edge_node::Edge::bind(&cfg).await.unwrap();
    let addr = e.tls_local_addrs()[0];
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(e.serve(rx));
    let _ = send_raw(addr, b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n").await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .resolve("a.test", addr)
        .add_root_certificate(reqwest::Certificate::from_der(&certs.a_der).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        c.get(format!("https://a.test:{}/", addr.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "fine"
    );
    let _ = stop.send(true);
}

/// Shutdown with an HTTP/2 request in flight: the listener closes, the request still gets its
/// whole answer, and the edge's serve future ends once that connection has drained.
#[tokio::test]
async fn shutdown_drains_http2_streams_in_flight() {
    let origin = Origin::start(|_, _| {
        let mut r = Reply::ok("slow", &[("cache-control", "max-age=60")]);
        r.delay = std::time::Duration::from_millis(500);
        r
    })
    .await;
    let e = edge_node::Edge::bind(&edge_config(&origin.url()))
        .await
        .unwrap();
    let addr = e.local_addrs()[0];
    let (stop, rx) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(e.serve(rx));
    let c = h2c_client();
    let pending = tokio::spawn(async move {
        let r = c.get(format!("http://{addr}/slow")).send().await?;
        r.text().await
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop.send(true).unwrap();
    let body = tokio::time::timeout(std::time::Duration::from_secs(5), pending)
        .await
        .expect("the request in flight finishes")
        .unwrap()
        .expect("and is answered");
    assert_eq!(body, "slow");
    tokio::time::timeout(std::time::Duration::from_secs(5), served)
        .await
        .expect("the edge stops once drained")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// The future answering a request stays small: hyper keeps one per connection and moves each
/// request's into it, so its size is copied on every request and held by every idle
/// keep-alive connection. Everything past a lookup but a hit is boxed (`proxy/lookup.rs`); it
/// was 14,144 bytes with the miss path inline.
#[tokio::test]
async fn the_request_future_stays_small() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let e = edge(&origin, |_| {}).await;
    let req = http::Request::get("/small")
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let client = edge_node::proxy::ClientInfo::new("127.0.0.1:1".parse().unwrap(), "http");
    let fut = e.proxy.clone().handle(req, client);
    let size = std::mem::size_of_val(&fut);
    assert!(size <= 6 * 1024, "the request future is {size} bytes");
}

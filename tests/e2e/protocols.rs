//! HTTP/2 (h2c prior knowledge and over TLS with ALPN) and TLS certificates chosen by SNI.

use crate::support::*;
use edge_node::config::CertConfig;

#[tokio::test]
async fn http2_prior_knowledge_on_the_plain_listener() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("h2 {n}"), &[("cache-control", "max-age=60")]))
            .await;
    let edge = edge(&origin, |_| {}).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("plain text on a TLS port is dropped");
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

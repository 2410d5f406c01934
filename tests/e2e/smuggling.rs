//! Request smuggling and desync (issue 17, point 2), end to end: client -> edge -> shield ->
//! origin, each request framed ambiguously and followed on the same connection by a request
//! for `/smuggled`. Every one is refused (400 or 501, connection closed) or normalised: the
//! origin never sees `/smuggled` nor a body it should not, and nothing is stored from it.

use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The chain, with an origin that records what reaches it.
async fn chain() -> (Origin, TestEdge, TestEdge) {
    let origin = Origin::start(|_, _| Reply::ok("ok", &[("cache-control", "max-age=60")])).await;
    let shield = start_shield(shield_config(&origin.url())).await;
    let url = format!("http://{}", shield.addr);
    let edge = edge(&origin, move |c| {
        c.shields = vec![url];
        c.shield_secret = Some(SHIELD_SECRET.into());
    })
    .await;
    (origin, shield, edge)
}

/// Sends `bytes` on one connection and reads what comes back until the edge closes it (or
/// two seconds pass).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// (name, request head and body, then the smuggled request follows)
fn cases() -> Vec<(&'static str, String)> {
    let h = "Host: 127.0.0.1\r\n";
    vec![
        (
            "CL.TE",
            format!("POST /a HTTP/1.1\r\n{h}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "TE.CL",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
        ),
        (
            "two differing Content-Length",
            format!("POST /a HTTP/1.1\r\n{h}Content-Length: 0\r\nContent-Length: 44\r\n\r\n"),
        ),
        (
            "Content-Length list",
            format!("POST /a HTTP/1.1\r\n{h}Content-Length: 0, 44\r\n\r\n"),
        ),
        (
            "chunked, identity",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ),
        (
            "xchunked",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Chunked in odd case, then identity",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: ChUnKeD\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        ),
        (
            "space before the colon",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "tab in the value",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding:\tchunked\t\r\nContent-Length: 44\r\n\r\n0\r\n\r\n"),
        ),
        (
            "obs-fold",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: identity\r\n chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\n"),
        ),
        (
            "bad chunk size",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk size with a negative sign",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "chunk extension with a bare LF",
            format!("POST /a HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n5;ext\nhello\r\n0\r\n\r\n"),
        ),
        (
            "GET with a body by Content-Length and a bad Host",
            "GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.test\r\nContent-Length: 44\r\n\r\n".to_string(),
        ),
        (
            "request line with a bare LF and a space in the target",
            format!("GET /a b HTTP/1.1\n{h}\n"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_or_normalised_and_nothing_is_smuggled() {
    let (origin, shield, edge) = chain().await;
    let mut report = Vec::new();
    for (name, req) in cases() {
        let before = origin.seen.lock().unwrap().len();
        let got = exchange(edge.addr, format!("{req}{SMUGGLED}").as_bytes()).await;
        let status = got.get(9..12).unwrap_or("---").to_string();
        let seen: Vec<Seen> = origin.seen.lock().unwrap()[before..].to_vec();
        report.push(format!(
            "{name}: {status}, origin saw {:?}",
            seen.iter().map(|s| s.uri.clone()).collect::<Vec<_>>()
        ));
        assert!(
            !seen.iter().any(|s| s.uri.contains("smuggled")),
            "{name}: the origin saw the smuggled request\n{got}"
        );
        // Refused, or forwarded as one request whose body is what the edge framed.
        assert!(
            ["400", "501", "200", "413", "431"].contains(&status.as_str()) || got.is_empty(),
            "{name}: {got}"
        );
        if status != "200" {
            assert!(
                seen.is_empty(),
                "{name}: refused, yet the origin saw {seen:?}"
            );
            // Refused: the connection is closed, so the smuggled request is never read.
            assert_eq!(got.matches("HTTP/1.1").count(), 1, "{name}: {got}");
        }
    }
    // Nothing was stored from any of them, on either tier.
    assert_eq!(edge.proxy.gauges().objects, 0, "{report:#?}");
    assert_eq!(shield.proxy.gauges().objects, 0, "{report:#?}");
    println!("{}", report.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_request_after_an_error_is_never_answered() {
    let (origin, _shield, edge) = chain().await;
    // A malformed request, then a valid one on the same connection.
    let got = exchange(
        edge.addr,
        format!("GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n{SMUGGLED}")
            .as_bytes(),
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert_eq!(
        got.matches("HTTP/1.1").count(),
        1,
        "answered after an error: {got}"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_content_length_that_disagrees_with_the_data_is_refused() {
    let (origin, _shield, edge) = chain().await;
    let tcp = TcpStream::connect(edge.addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    // Declares 100 bytes, sends 5.
    let mut s = send.clone().ready().await.unwrap();
    let req = http::Request::post("http://127.0.0.1/short")
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (res, mut body) = s.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"hello"), true)
        .unwrap();
    let short = tokio::time::timeout(Duration::from_secs(5), res)
        .await
        .unwrap();
    assert!(
        short.is_err() || short.as_ref().is_ok_and(|r| r.status().is_client_error()),
        "{short:?}"
    );
    // Declares 1 byte, sends 5.
    let mut s = send.ready().await.unwrap();
    let req = http::Request::post("http://127.0.0.1/long")
        .header("content-length", "1")
        .body(())
        .unwrap();
    let (res, mut body) = s.send_request(req, false).unwrap();
    let _ = body.send_data(bytes::Bytes::from_static(b"hello"), true);
    let long = tokio::time::timeout(Duration::from_secs(5), res)
        .await
        .unwrap();
    assert!(
        long.is_err() || long.as_ref().is_ok_and(|r| r.status().is_client_error()),
        "{long:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Whatever reached the origin carried no more than what was declared and sent.
    for s in origin.seen.lock().unwrap().iter() {
        assert!(
            !s.uri.contains("long"),
            "the over-long body went upstream: {s:?}"
        );
    }
}

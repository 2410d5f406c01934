//! Bad input from clients and origins: a clear error or a clean drop, never a crash, a hang
//! or a poisoned cache entry.

use crate::support::*;
use bytes::Bytes;
use edge_node::config::Dur;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes and reads until the edge closes or `limit` passes.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

async fn plain_edge() -> (Origin, TestEdge) {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("ok {n}"), &[("cache-control", "max-age=60")]))
            .await;
    let edge = edge(&origin, |c| {
        c.header_read_timeout = Dur(Duration::from_millis(500))
    })
    .await;
    (origin, edge)
}

#[tokio::test]
async fn oversized_request_headers_get_431() {
    let (origin, edge) = plain_edge().await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (resp, _) = raw(edge.addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.80}");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (resp, _) = raw(
        edge.addr,
        format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp:.80}");
    assert_eq!(origin.requests(), 0);
    assert_eq!(
        get(&edge.url("/"), &[]).await.status,
        200,
        "the edge keeps serving"
    );
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let (origin, edge) = plain_edge().await;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let (resp, _) = raw(edge.addr, bad, Duration::from_secs(5)).await;
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 400") || resp.starts_with("HTTP/1.1 505"),
            "{bad:?} -> {resp:.80}"
        );
    }
    let (resp, _) = raw(edge.addr, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert!(
        resp.starts_with("HTTP/1.0 400") || resp.starts_with("HTTP/1.1 400"),
        "no Host: {resp:.80}"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn unknown_host_is_refused_not_proxied() {
    let (origin, edge) = plain_edge().await;
    let r = get(&edge.url("/"), &[("host", "evil.example")]).await;
    assert_eq!(r.status, 421);
    assert!(r
        .text()
        .contains("no site is configured for host evil.example"));
    let (resp, _) = raw(
        edge.addr,
        b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 421"), "{resp:.80}");
    let r = send(&client(), "CONNECT", &edge.url("/"), &[]).await;
    assert!(r.status == 405 || r.status == 400, "CONNECT: {}", r.status);
    assert_eq!(origin.requests(), 0, "nothing reached an origin");
}

#[tokio::test]
async fn slow_clients_are_cut_off_by_the_header_timeout() {
    let (origin, edge) = plain_edge().await;
    let (resp, took) = raw(
        edge.addr,
        b"GET / HTTP/1.1\r\nHost: 127.0",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        took < Duration::from_secs(5),
        "connection held for {took:?}"
    );
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 408"),
        "{resp:.80}"
    );
    // An idle connection that never sends anything is closed too.
    let (_, took) = raw(edge.addr, b"", Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "idle connection held for {took:?}"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn origin_closing_mid_body_is_not_cached() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok("", &[("cache-control", "max-age=60")]);
        if n == 1 {
            r.body(Body::CutAfter(Bytes::from_static(b"partial")))
        } else {
            r.body(Body::Full(Bytes::from_static(b"complete")))
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let res = client().get(edge.url("/cut")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.bytes().await.is_err(),
        "the client must see the truncation, not a short body"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = get(&edge.url("/cut"), &[]).await;
    assert_eq!(b.text(), "complete");
    assert!(!b.is_hit());
    assert_eq!(origin.requests(), 2);
    let stats = edge.proxy.stats_json();
    assert_eq!(stats["upstream"]["truncated"], 1);
}

#[tokio::test]
async fn origin_body_stalling_is_not_cached() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok(
            "",
            &[("cache-control", "max-age=60"), ("content-length", "10")],
        );
        if n == 1 {
            r.body(Body::Chunks(vec![
                (Bytes::from_static(b"12345"), Duration::ZERO),
                (Bytes::from_static(b"67890"), Duration::from_secs(5)),
            ]))
        } else {
            r.body(Body::Full(Bytes::from_static(b"abcdefghij")))
        }
    })
    .await;
    let edge = edge(&origin, |c| {
        c.body_idle_timeout = Dur(Duration::from_millis(300))
    })
    .await;
    let res = client().get(edge.url("/stall")).send().await.unwrap();
    assert!(res.bytes().await.is_err());
    let b = get(&edge.url("/stall"), &[]).await;
    assert_eq!(b.text(), "abcdefghij");
}

#[tokio::test]
async fn malformed_cache_control_is_handled_conservatively() {
    for cc in [
        "max-age=abc",
        "max-age=",
        "max-age=-1",
        ",,,=,",
        "max-age=\"",
        "s-maxage=1e9",
        "no-cache=\"unterminated",
    ] {
        let cc = cc.to_string();
        let origin =
            Origin::start(move |_, n| Reply::ok(&format!("{n}"), &[("cache-control", &cc)])).await;
        let edge = edge(&origin, |_| {}).await;
        assert_eq!(get(&edge.url("/m"), &[]).await.status, 200);
        let b = get(&edge.url("/m"), &[]).await;
        assert_eq!(b.status, 200);
        assert!(
            !b.is_hit(),
            "a malformed Cache-Control must not make a response fresh"
        );
    }
    // Enormous values are capped, not overflowed.
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("{n}"),
            &[("cache-control", "max-age=99999999999999999999999")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/m"), &[]).await;
    assert!(get(&edge.url("/m"), &[]).await.is_hit());
}

#[tokio::test]
async fn unkeyed_forwarding_headers_cannot_poison_the_cache() {
    let origin = Origin::start(|seen, _| {
        let xfh = seen
            .headers
            .get("x-forwarded-host")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| "none".into());
        let host = seen
            .headers
            .get("host")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        Reply::ok(
            &format!("<script src=//{xfh}/a.js> host={host}"),
            &[("cache-control", "max-age=60")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let attack = get(
        &edge.url("/page"),
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
        ],
    )
    .await;
    assert!(!attack.text().contains("evil"), "{}", attack.text());
    assert!(
        attack.text().ends_with("host=127.0.0.1"),
        "Host is sent without the unkeyed port: {}",
        attack.text()
    );
    let victim = get(&edge.url("/page"), &[]).await;
    assert!(victim.is_hit());
    assert!(!victim.text().contains("evil"));
    assert_eq!(origin.last().uri, "/page");
}

//! Connection limits (issue 15, point 3, in part): connections per client address and in
//! total, and requests per connection; clients come from distinct loopback addresses.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `to` from `from` (an address of 127.0.0.0/8).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends one GET on `s` and reads its answer (head and body), or what came before the
/// connection closed; empty when the node closed it at once.
async fn ask(s: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let n = match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the node closed `s` (EOF or reset) within a second.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn one_client_address_holds_at_most_its_share_of_connections() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let e = edge(&origin, |c| c.max_connections_per_client = 2).await;
    let mut a1 = connect_from("127.0.0.1", e.addr).await;
    let mut a2 = connect_from("127.0.0.1", e.addr).await;
    assert!(ask(&mut a1, "/x").await.starts_with("HTTP/1.1 200"));
    assert!(ask(&mut a2, "/x").await.starts_with("HTTP/1.1 200"));
    // A third from the same address: closed at once, never answered.
    let mut a3 = connect_from("127.0.0.1", e.addr).await;
    assert!(
        closed(&mut a3).await,
        "a third connection from 127.0.0.1 was kept"
    );
    // Another address is not held to 127.0.0.1's share.
    let mut b1 = connect_from("127.0.0.2", e.addr).await;
    assert!(ask(&mut b1, "/x").await.starts_with("HTTP/1.1 200"));
    // A place given back is a place again.
    drop(a1);
    let mut ok = false;
    for _ in 0..50 {
        let mut a4 = connect_from("127.0.0.1", e.addr).await;
        if ask(&mut a4, "/x").await.starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "127.0.0.1 got no connection after closing one");
    let text = e.proxy.registry().render();
    let refused = metric_sum(
        &text,
        "outpost_connections_refused_total",
        &[("cdn_tier", "edge")],
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(origin.requests(), 1, "refused connections reach nothing");
}

#[tokio::test]
async fn the_node_holds_at_most_max_connections() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let e = edge(&origin, |c| c.max_connections = 3).await;
    let mut held = Vec::new();
    for i in 2..5 {
        let mut s = connect_from(&format!("127.0.0.{i}"), e.addr).await;
        assert!(
            ask(&mut s, "/x").await.starts_with("HTTP/1.1 200"),
            "client {i}"
        );
        held.push(s);
    }
    let mut over = connect_from("127.0.0.5", e.addr).await;
    assert!(closed(&mut over).await, "a fourth connection was kept");
    drop(held);
}

#[tokio::test]
async fn a_connection_carries_at_most_max_requests_per_connection() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let e = edge(&origin, |c| c.max_requests_per_connection = 3).await;
    let mut s = connect_from("127.0.0.1", e.addr).await;
    for i in 1..=3 {
        let got = ask(&mut s, "/x").await;
        assert!(got.starts_with("HTTP/1.1 200"), "request {i}: {got}");
        assert_eq!(
            got.to_ascii_lowercase().contains("connection: close"),
            i == 3,
            "request {i}: {got}"
        );
    }
    assert!(
        closed(&mut s).await,
        "the connection stayed open after its last request"
    );
}

#[tokio::test]
async fn an_http2_connection_gets_a_goaway_after_its_last_request() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let e = edge(&origin, |c| c.max_requests_per_connection = 3).await;
    let tcp = connect_from("127.0.0.1", e.addr).await;
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    for i in 1..=3 {
        let req = http::Request::get(format!("http://127.0.0.1:{}/x", e.addr.port()))
            .body(())
            .unwrap();
        let mut s = send.clone().ready().await.unwrap();
        let (res, _) = s.send_request(req, true).unwrap();
        let res = res.await.unwrap();
        assert_eq!(res.status(), 200, "stream {i}");
    }
    // The node said GOAWAY after the third stream: the connection ends, and no fourth stream
    // is taken on it.
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(ended.is_ok(), "the connection stayed open");
    let req = http::Request::get("http://127.0.0.1/x").body(()).unwrap();
    let fourth = match send.clone().ready().await {
        Ok(mut s) => match s.send_request(req, true) {
            Ok((res, _)) => res.await.is_ok(),
            Err(_) => false,
        },
        Err(_) => false,
    };
    assert!(!fourth, "a fourth stream was answered");
}

/// A client whose connections come from `from` (an address of 127.0.0.0/8).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn limiter(name: &str, rate: &str, burst: u32, key: &str) -> edge_node::limits::LimitConfig {
    edge_node::limits::LimitConfig {
        name: name.into(),
        rate: rate.into(),
        burst: Some(burst),
        key: key.into(),
        block: None,
        upstream_only: false,
    }
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_and_the_origin_never_sees_it() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "no-store")])).await;
    let e = edge(&origin, |c| {
        c.limits = vec![limiter("per-client", "1/m", 3, "client")];
        c.sites[0].limits = vec!["per-client".into()];
    })
    .await;
    let a = client_from("127.0.0.1");
    for i in 0..3 {
        assert_eq!(
            send(&a, "GET", &e.url("/login"), &[]).await.status,
            200,
            "request {i}"
        );
    }
    let over = send(&a, "GET", &e.url("/login"), &[]).await;
    assert_eq!(over.status, 429);
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        over.cache_status().contains("detail=rate-limit"),
        "{}",
        over.cache_status()
    );
    // POST counts too, and is refused before it is forwarded.
    assert_eq!(send(&a, "POST", &e.url("/login"), &[]).await.status, 429);
    // Another address has its own budget.
    let b = client_from("127.0.0.2");
    assert_eq!(send(&b, "GET", &e.url("/login"), &[]).await.status, 200);
    assert_eq!(origin.requests(), 4, "refused requests reach the origin");
}

#[tokio::test]
async fn an_upstream_only_limiter_never_limits_hits() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let e = edge(&origin, |c| {
        let mut l = limiter("origin", "1/m", 2, "site");
        l.upstream_only = true;
        c.limits = vec![l];
        c.sites[0].limits = vec!["origin".into()];
    })
    .await;
    let c = client();
    assert_eq!(send(&c, "GET", &e.url("/a"), &[]).await.status, 200);
    // Hits of /a are not counted, however many.
    for _ in 0..20 {
        assert!(send(&c, "GET", &e.url("/a"), &[]).await.is_hit());
    }
    assert_eq!(send(&c, "GET", &e.url("/b"), &[]).await.status, 200);
    // A third miss would be the origin's third request within the burst of 2: refused.
    assert_eq!(send(&c, "GET", &e.url("/c"), &[]).await.status, 429);
    assert!(send(&c, "GET", &e.url("/a"), &[]).await.is_hit());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn a_header_keyed_limiter_counts_each_value_and_a_block_holds() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "no-store")])).await;
    let e = edge(&origin, |c| {
        let mut l = limiter("api", "1/m", 1, "header:x-api-key");
        l.block = Some(agent::units::Dur(Duration::from_secs(3600)));
        c.limits = vec![l];
        c.sites[0].limits = vec!["api".into()];
    })
    .await;
    let c = client();
    assert_eq!(
        send(&c, "GET", &e.url("/x"), &[("x-api-key", "k1")])
            .await
            .status,
        200
    );
    assert_eq!(
        send(&c, "GET", &e.url("/x"), &[("x-api-key", "k2")])
            .await
            .status,
        200
    );
    let over = send(&c, "GET", &e.url("/x"), &[("x-api-key", "k1")]).await;
    assert_eq!(over.status, 429);
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry > 3000,
        "the block period, not the rate's wait: {retry}"
    );
}

#[test]
fn check_config_names_a_bad_limiter_and_a_missing_one() {
    let dir = temp_dir("limits-bad");
    let (code, err) = crate::support::process::check_config(
        &dir,
        "[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.limits]]\nname = \"login\"\nrate = \"10/d\"\nkey = \"cookie\"\n\n[[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:9\"]\nlimits = [\"login\", \"nope\"]\n",
    );
    assert_eq!(code, Some(2));
    for want in [
        "edge.limits[0].rate: \"10/d\": \"d\" is not s, m or h",
        "edge.limits[0].key: \"cookie\" is not a key",
        "edge.sites[0].limits[1]: \"nope\" is not a limiter",
    ] {
        assert!(err.contains(want), "{want:?} in\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_the_connection_and_bounds_the_work() {
    // Every URL is a slow miss: the work of a reset stream goes on after the reset.
    let origin = Origin::start(|s, _| {
        if s.uri.starts_with("/slow") {
            Reply::ok("slow", &[("cache-control", "no-store")]).delay(Duration::from_secs(2))
        } else {
            Reply::ok("x", &[("cache-control", "max-age=60")])
        }
    })
    .await;
    let e = edge(&origin, |_| {}).await;
    let tcp = connect_from("127.0.0.1", e.addr).await;
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    // Far more than the server lets pass: on a busy machine the client may queue thousands
    // before the server reads them, so the bound is loose; the connection's end is the test.
    for i in 0..20_000 {
        let Ok(mut s) = send.clone().ready().await else {
            break;
        };
        let req = http::Request::get(format!("http://127.0.0.1/slow{i}"))
            .body(())
            .unwrap();
        match s.send_request(req, true) {
            // Asked, then dropped at once: the client resets the stream.
            Ok((res, _)) => drop(res),
            Err(_) => break,
        }
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(
        ended.is_ok(),
        "the connection survived {sent} reset streams"
    );
    assert!(sent < 20_000, "every one of 20000 resets was taken");
    // The work it started is bounded by the connection's share, not by what it sent.
    assert!(
        origin.requests() <= 2 * 256 + 64,
        "{} origin requests",
        origin.requests()
    );
    // Other clients are still served.
    let got = send_req_from("127.0.0.2", &e.url("/x")).await;
    assert_eq!(got, 200);
}

async fn send_req_from(from: &str, url: &str) -> u16 {
    client_from(from)
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_body_over_the_sites_bound_is_refused_or_cut() {
    let origin = Origin::start(|_, _| Reply::ok("ok", &[])).await;
    let e = edge(&origin, |c| {
        c.sites[0].max_body_bytes = Some(agent::units::ByteSize(1024));
    })
    .await;
    let c = client();
    // Declared too large: 413 at once.
    let res = c
        .post(e.url("/upload"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(origin.requests(), 0, "a refused body reached the origin");
    // Within the bound: forwarded.
    let res = c
        .post(e.url("/upload"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(origin.requests(), 1);
    // No declared length: cut at the bound, so the origin never gets it whole and the client
    // gets an error.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let res = c.post(e.url("/upload")).body(body).send().await.unwrap();
    assert!(res.status().as_u16() >= 400, "{}", res.status());
}

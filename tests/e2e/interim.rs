//! 1xx interim responses (RFC 9110 15.2): relayed to HTTP/1.1 clients ahead of the final
//! response, on misses and passes; never stored, never mixed into the final response, never
//! sent to HTTP/1.0 clients; a keep-alive connection stays well framed around them. The origin
//! here writes raw bytes (no HTTP library sends 1xx), and the client reads the raw wire.

use crate::support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An origin answering each request with `script(path)`: raw bytes, 1xx heads included.
/// Returns its address and a request counter.
async fn raw_origin(script: fn(&str) -> String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = c2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                        count.fetch_add(1, Ordering::SeqCst);
                        if s.write_all(script(&path).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

/// The origin's answers: 103 then a cacheable 200 (`/hinted`), 102 and 103 then an uncacheable
/// 200 (`/pass`), an unsolicited 100 (`/continue`), a malformed 103 (`/bad`).
fn script(path: &str) -> String {
    let ok = |cc: &str, body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncache-control: {cc}\r\ncontent-type: text/plain\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let hints = "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n";
    match path {
        "/hinted" => format!("{hints}{}", ok("max-age=60", "final")),
        "/pass" => format!(
            "HTTP/1.1 102 Processing\r\n\r\n{hints}{}",
            ok("no-store", "passed")
        ),
        "/continue" => format!("HTTP/1.1 100 Continue\r\n\r\n{}", ok("max-age=60", "c")),
        "/bad" => format!(
            "HTTP/1.1 103 Early Hints\r\nnot a header line\r\n\r\n{}",
            ok("max-age=60", "b")
        ),
        _ => ok("max-age=60", "plain"),
    }
}

async fn interim_edge() -> (TestEdge, Arc<AtomicUsize>) {
    let (origin, count) = raw_origin(script).await;
    let edge = start_edge(edge_config(&format!("http://{origin}"))).await;
    (edge, count)
}

/// Sends `requests` on one connection and reads until `responses` final responses (each with
/// a `content-length` body) have arrived; returns the raw bytes.
async fn exchange(addr: SocketAddr, requests: &str, responses: usize) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(requests.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while finals(&String::from_utf8_lossy(&out)) < responses {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the responses arrive");
    String::from_utf8_lossy(&out).into_owned()
}

/// How many complete final responses `wire` holds (1xx heads skipped, bodies by length).
fn finals(wire: &str) -> usize {
    let mut n = 0;
    let mut rest = wire;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        let after = &rest[end + 4..];
        if head.starts_with("HTTP/1.1 1") {
            rest = after;
            continue;
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if after.len() < len {
            break;
        }
        n += 1;
        rest = &after[len..];
    }
    n
}

fn get_req(path: &str, version: &str) -> String {
    format!("GET {path} {version}\r\nHost: 127.0.0.1\r\n\r\n")
}

/// 103 Early Hints on a miss reaches the client first; its `Link` is not in the final
/// response; the stored response answers the next request without any 1xx.
#[tokio::test]
async fn early_hints_precede_the_final_response_and_are_never_stored() {
    let (edge, count) = interim_edge().await;
    let miss = exchange(edge.addr, &get_req("/hinted", "HTTP/1.1"), 1).await;
    assert!(
        miss.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n"),
        "{miss}"
    );
    let final_head = &miss[miss.find("HTTP/1.1 200").expect("a final 200")..];
    assert!(
        !final_head.to_ascii_lowercase().contains("link:"),
        "the 103's fields are not reused: {final_head}"
    );
    assert!(final_head.ends_with("final"), "{final_head}");
    let hit = exchange(edge.addr, &get_req("/hinted", "HTTP/1.1"), 1).await;
    assert!(
        hit.starts_with("HTTP/1.1 200"),
        "no 1xx from the cache: {hit}"
    );
    assert!(hit.contains("hit"), "{hit}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// On a pass, every 1xx (102, then 103) is relayed in order.
#[tokio::test]
async fn a_pass_relays_every_interim_response_in_order() {
    let (edge, _) = interim_edge().await;
    let wire = exchange(edge.addr, &get_req("/pass", "HTTP/1.1"), 1).await;
    let p102 = wire.find("HTTP/1.1 102 Processing\r\n").expect("102");
    let p103 = wire.find("HTTP/1.1 103 Early Hints\r\n").expect("103");
    let p200 = wire.find("HTTP/1.1 200 OK\r\n").expect("200");
    assert!(p102 < p103 && p103 < p200, "{wire}");
    assert!(wire.ends_with("passed"));
}

/// RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
#[tokio::test]
async fn an_http10_client_gets_no_interim_response() {
    let (edge, _) = interim_edge().await;
    let wire = exchange(edge.addr, &get_req("/pass", "HTTP/1.0"), 1).await;
    assert!(wire.starts_with("HTTP/1.0 200"), "{wire}");
    assert!(!wire.contains(" 102 ") && !wire.contains(" 103 "), "{wire}");
}

/// Keep-alive: a second request on the connection gets its own, well-framed response after the
/// first one's 1xx and final response; pipelined requests too.
#[tokio::test]
async fn a_keep_alive_connection_stays_framed_around_interim_responses() {
    let (edge, _) = interim_edge().await;
    let two = format!(
        "{}{}",
        get_req("/pass", "HTTP/1.1"),
        get_req("/other", "HTTP/1.1")
    );
    let wire = exchange(edge.addr, &two, 2).await;
    assert_eq!(finals(&wire), 2, "{wire}");
    let passed = wire.find("passed").expect("the first body");
    let second = wire.find("\r\n\r\nplain").expect("the second body");
    assert!(passed < second, "{wire}");
    assert!(
        !wire[passed..].contains("HTTP/1.1 1"),
        "no 1xx after the first final response: {wire}"
    );
}

/// An unsolicited 100 from upstream is not relayed (the edge did not ask for it, and hyper
/// answers a client's `Expect` itself); a malformed 1xx fails the upstream response cleanly.
#[tokio::test]
async fn a_stray_100_is_dropped_and_a_malformed_1xx_is_a_bad_gateway() {
    let (edge, _) = interim_edge().await;
    let wire = exchange(edge.addr, &get_req("/continue", "HTTP/1.1"), 1).await;
    assert!(wire.starts_with("HTTP/1.1 200"), "{wire}");
    let bad = exchange(edge.addr, &get_req("/bad", "HTTP/1.1"), 1).await;
    let final_at = bad.find("HTTP/1.1 502").expect("a 502");
    assert!(!bad[..final_at].contains("not a header line"), "{bad}");
    // The edge still serves.
    let after = exchange(edge.addr, &get_req("/other", "HTTP/1.1"), 1).await;
    assert!(after.starts_with("HTTP/1.1 200"), "{after}");
}

/// The 103 goes out while the origin is still working on the final response, not with it: the
/// origin here sends its 200 only after the client has read the 103 through the edge.
#[tokio::test]
async fn early_hints_go_out_before_the_final_response_exists() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    let g2 = gate.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let hints = "HTTP/1.1 103 Early Hints\r\nlink: </app.js>; rel=preload\r\n\r\n";
        s.write_all(hints.as_bytes()).await.unwrap();
        g2.notified().await;
        let ok = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\n\r\nok";
        let _ = s.write_all(ok.as_bytes()).await;
        let _ = s.read(&mut buf).await;
    });
    let edge = start_edge(edge_config(&format!("http://{origin}"))).await;
    let mut c = TcpStream::connect(edge.addr).await.unwrap();
    c.write_all(get_req("/slow", "HTTP/1.1").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let early = async {
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = c.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), early)
        .await
        .expect("the 103 arrives while the origin holds its final response");
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
    gate.notify_one();
    let rest = exchange_rest(&mut c, &mut got).await;
    assert!(
        rest.contains("HTTP/1.1 200 OK") && rest.ends_with("ok"),
        "{rest}"
    );
}

/// Reads on until one final response is complete; returns everything read.
async fn exchange_rest(c: &mut TcpStream, got: &mut Vec<u8>) -> String {
    let mut chunk = [0u8; 1024];
    let read = async {
        while finals(&String::from_utf8_lossy(got)) < 1 {
            let n = c.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the final response arrives");
    String::from_utf8_lossy(got).into_owned()
}

/// A shield in front of `origin` and an edge behind the shield.
async fn behind_a_shield(origin: SocketAddr) -> (TestEdge, TestEdge) {
    let shield = start_shield(shield_config(&format!("http://{origin}"))).await;
    let mut cfg = edge_config(&format!("http://{origin}"));
    cfg.shields = vec![format!("http://{}", shield.addr)];
    cfg.shield_secret = Some(SHIELD_SECRET.into());
    let edge = start_edge(cfg).await;
    (shield, edge)
}

/// Through the tiers: the origin's 103 crosses the shield and the edge to the client.
#[tokio::test]
async fn early_hints_cross_the_shield() {
    let (origin, count) = raw_origin(script).await;
    let (_shield, edge) = behind_a_shield(origin).await;
    let wire = exchange(edge.addr, &get_req("/hinted", "HTTP/1.1"), 1).await;
    assert!(
        wire.starts_with("HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n"),
        "{wire}"
    );
    assert!(wire.ends_with("final"), "{wire}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one origin request, via the shield"
    );
}

/// An HTTP/2 client over a plain connection (prior knowledge); returns the request sender.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One GET on `send`: the 1xx responses that came first (status and `link` values), then the
/// final response's head and body.
async fn h2_get(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (Vec<(u16, Vec<String>)>, http::response::Parts, String) {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    let mut send = send.clone().ready().await.unwrap();
    let (mut res, _) = send.send_request(req, true).unwrap();
    let exchange = async {
        let mut interim = Vec::new();
        while let Some(i) = std::future::poll_fn(|cx| res.poll_informational(cx)).await {
            let i = i.unwrap();
            let links = i
                .headers()
                .get_all("link")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            interim.push((i.status().as_u16(), links));
        }
        let (head, mut body) = res.await.unwrap().into_parts();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        (interim, head, String::from_utf8(text).unwrap())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the HTTP/2 exchange completes")
}

/// HTTP/2: the 103 arrives on the request's stream before its final response, whose fields
/// do not include the 103's; the stored response answers the next request with no 1xx.
#[tokio::test]
async fn an_http2_client_gets_early_hints_on_its_stream() {
    let (edge, count) = interim_edge().await;
    let mut c = h2_client(edge.addr).await;
    let (interim, head, body) = h2_get(&mut c, edge.addr, "/hinted").await;
    assert_eq!(
        interim,
        vec![(103, vec!["</app.css>; rel=preload".to_string()])]
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.version, http::Version::HTTP_2);
    assert!(!head.headers.contains_key("link"), "{:?}", head.headers);
    assert_eq!(body, "final");
    let (interim, head, body) = h2_get(&mut c, edge.addr, "/hinted").await;
    assert!(interim.is_empty(), "no 1xx from the cache: {interim:?}");
    assert!(head.headers["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(body, "final");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// HTTP/2, on a pass: 102 then 103, in order, then the final response; a stray 100 is not
/// relayed; streams of the same connection keep their own 1xx.
#[tokio::test]
async fn http2_streams_get_their_own_interim_responses_in_order() {
    let (edge, _) = interim_edge().await;
    let mut c = h2_client(edge.addr).await;
    let (mut a, mut b, mut d) = (c.clone(), c.clone(), c.clone());
    let (pass, plain, cont) = tokio::join!(
        h2_get(&mut a, edge.addr, "/pass"),
        h2_get(&mut b, edge.addr, "/other"),
        h2_get(&mut d, edge.addr, "/continue"),
    );
    let codes: Vec<u16> = pass.0.iter().map(|(s, _)| *s).collect();
    assert_eq!(codes, vec![102, 103]);
    assert_eq!((pass.1.status.as_u16(), pass.2.as_str()), (200, "passed"));
    assert!(plain.0.is_empty(), "{:?}", plain.0);
    assert_eq!(plain.2, "plain");
    assert!(cont.0.is_empty(), "a 100 is never relayed: {:?}", cont.0);
    // The connection still serves.
    let (_, head, _) = h2_get(&mut c, edge.addr, "/other").await;
    assert_eq!(head.status, 200);
}

/// HTTP/2 through the tiers: the origin's 103 crosses the shield and the edge.
#[tokio::test]
async fn http2_early_hints_cross_the_shield() {
    let (origin, _) = raw_origin(script).await;
    let (_shield, edge) = behind_a_shield(origin).await;
    let mut c = h2_client(edge.addr).await;
    let (interim, head, body) = h2_get(&mut c, edge.addr, "/hinted").await;
    assert_eq!(
        interim,
        vec![(103, vec!["</app.css>; rel=preload".to_string()])]
    );
    assert_eq!((head.status.as_u16(), body.as_str()), (200, "final"));
}

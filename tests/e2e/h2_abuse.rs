//! HTTP/2 abuse (issue 17, point 3) with a raw frame client: a CONTINUATION flood, SETTINGS
//! and PING floods, and zero-window stalls. The abusive connection is closed (floods) or
//! holds only its own share (stalls), and other clients are served all along. Rapid reset is
//! in `limits.rs`.

use crate::support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// A HEADERS block for `GET http://127.0.0.1/path` (HPACK: indexed :method GET, :scheme
/// http, literal :authority and :path without indexing).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86];
    for (idx, v) in [(1u8, "127.0.0.1"), (4u8, path)] {
        b.push(idx); // literal without indexing, indexed name
        b.push(v.len() as u8);
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// A raw connection with the preface and an empty SETTINGS sent.
async fn open(addr: std::net::SocketAddr, settings: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, settings)).await.unwrap();
    s
}

/// Writes `frames` while the server takes them; returns how many bytes went and whether the
/// server ended the connection (a write failed, or reading finds its end) within `limit`.
async fn flood(s: &mut TcpStream, one: &[u8], count: usize, limit: Duration) -> (usize, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut sent = 0;
    for _ in 0..count {
        match tokio::time::timeout_at(deadline, s.write_all(one)).await {
            Ok(Ok(())) => sent += one.len(),
            Ok(Err(_)) => return (sent, true),
            Err(_) => break,
        }
    }
    // Drain what the server sent until it closes (or the time is up).
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (sent, true),
            Ok(Ok(_)) => {}
            Err(_) => return (sent, false),
        }
    }
}

/// Whether an ordinary client is served a hit right now.
async fn others_served(e: &TestEdge) -> bool {
    get(&e.url("/ok"), &[]).await.status == 200
}

async fn target() -> (Origin, TestEdge) {
    let big = "x".repeat(4 << 20);
    let origin = Origin::start(move |s, _| {
        let body = if s.uri.starts_with("/big") {
            big.as_str()
        } else {
            "ok"
        };
        Reply::ok(body, &[("cache-control", "max-age=600")])
    })
    .await;
    let e = edge(&origin, |_| {}).await;
    assert!(others_served(&e).await);
    (origin, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off() {
    let (_origin, e) = target().await;
    let mut s = open(e.addr, &[]).await;
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs of
    // 16 KiB each (literal headers with new names), up to 64 MiB.
    s.write_all(&frame(HEADERS, END_STREAM, 1, &get_block("/c")))
        .await
        .unwrap();
    let mut junk = Vec::new();
    while junk.len() < 16_000 {
        junk.extend_from_slice(&[0x00, 10]);
        junk.extend_from_slice(b"x-junk-hdr");
        junk.extend_from_slice(&[20]);
        junk.extend_from_slice(b"aaaaaaaaaaaaaaaaaaaa");
    }
    let one = frame(CONTINUATION, 0, 1, &junk);
    let (sent, closed) = flood(&mut s, &one, 4096, Duration::from_secs(10)).await;
    assert!(
        closed,
        "the connection survived {sent} bytes of CONTINUATION"
    );
    assert!(
        sent < 4096 * one.len(),
        "every CONTINUATION frame was taken"
    );
    assert!(others_served(&e).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_hold_no_more_than_a_bound() {
    let (_origin, e) = target().await;
    for (name, one) in [
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0])),
        ("PING", frame(PING, 0, 0, &[7; 8])),
    ] {
        let mut s = open(e.addr, &[]).await;
        // Two million frames (30 MB), never reading an answer: far more than the sockets'
        // buffers hold, so a server that answered every one without reading slower would
        // have to queue megabytes of answers itself.
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let (sent, closed) = flood(&mut s, &batch, 2000, Duration::from_secs(5)).await;
        // Either the server stopped reading (TCP pushes back: our writes stall) or it ended
        // the connection; both bound what it holds. It must not have taken everything while
        // buffering every answer, which this machine's socket buffers cannot hold.
        assert!(
            closed || sent < batch.len() * 2000,
            "{name}: all {sent} bytes taken and the connection kept"
        );
        assert!(others_served(&e).await, "{name}: others not served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_stalls_hold_only_their_share() {
    let (_origin, e) = target().await;
    // Fill the cache with the 4 MiB object first.
    assert_eq!(get(&e.url("/big"), &[]).await.body.len(), 4 << 20);
    // Twenty connections that ask for it with a window of zero (SETTINGS_INITIAL_WINDOW_SIZE
    // = 0) and never open it: the edge can send nothing.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = open(e.addr, &[0, 4, 0, 0, 0, 0]).await;
        for id in (1..200).step_by(2) {
            let f = frame(HEADERS, END_STREAM | END_HEADERS, id, &get_block("/big"));
            s.write_all(&f).await.unwrap();
        }
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Everyone else is served, quickly, while they sit there.
    for _ in 0..20 {
        assert!(others_served(&e).await);
    }
    let got = tokio::time::timeout(Duration::from_secs(10), get(&e.url("/big"), &[])).await;
    assert_eq!(got.expect("a big hit in time").body.len(), 4 << 20);
    drop(stalled);
}

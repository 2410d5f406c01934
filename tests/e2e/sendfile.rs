//! Large bodies kept in sealed memory files (`cache/mapped.rs`) and sent with `sendfile` on
//! plain HTTP/1.1: whole and ranged hits arrive byte for byte on every protocol, the bytes come
//! from the files (the node's counter says so), and a body replaced while a slow client is
//! still reading the old one reaches that client as it was.

use crate::support::*;
use bytes::Bytes;
use edge_node::admin::{router, AdminState};
use edge_node::config::ByteSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEN: usize = 1 << 20;

/// Generation `n`'s body: `len` bytes no other generation shares.
fn generation(n: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i * 31 + n * 17) % 253) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// An origin answering GET with generation n (the n-th GET) of `len` bytes, and anything else
/// with a small 200 (which invalidates what is stored).
async fn origin(len: usize) -> Origin {
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Origin::start(move |seen, _| {
        if seen.method != "GET" {
            return Reply::ok("done", &[]);
        }
        let n = gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Reply::ok("", &[("cache-control", "max-age=600")]).body(Body::Full(generation(n, len)))
    })
    .await
}

/// A metric's value from the node's Prometheus text (0 when absent).
async fn metric(edge: &TestEdge, name: &str) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let state = AdminState::new("s3cret", vec![edge.node.clone()])
        .with_metrics(edge.proxy.registry().clone());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let m = get(
        &format!("http://{admin}/metrics"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    server.abort();
    m.text()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains("cdn_tier=\"edge\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn large_hits_arrive_whole_on_every_protocol_and_plain_http1_sends_them_from_files() {
    let origin = origin(LEN).await;
    let e = edge(&origin, |c| c.memory_bytes = ByteSize(64 << 20)).await;
    let want = generation(1, LEN);
    let first = get(&e.url("/big"), &[]).await;
    assert_eq!(first.body, want, "the miss");
    // For the whole process: other tests running beside this one may hold some too.
    assert!(
        metric(&e, "outpost_cache_memory_mapped").await >= 1.0,
        "the stored body is in a memory file"
    );

    let before = metric(&e, "outpost_http_sendfile_bytes_total").await;
    let hit = get(&e.url("/big"), &[]).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert!(hit.body == want, "the hit's bytes differ");
    let ranged = get(&e.url("/big"), &[("range", "bytes=100000-299999")]).await;
    assert_eq!(ranged.status, 206);
    assert!(
        ranged.body == want[100_000..300_000],
        "the range's bytes differ"
    );
    let sent = metric(&e, "outpost_http_sendfile_bytes_total").await - before;
    assert!(
        sent >= (LEN + 200_000) as f64,
        "only {sent} bytes went by sendfile"
    );

    // HTTP/2 (prior knowledge) reads the same mapping.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2.get(e.url("/big")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert!(
        r.bytes().await.unwrap() == want,
        "the HTTP/2 hit's bytes differ"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_body_replaced_while_a_slow_client_reads_it_reaches_that_client_as_it_was() {
    const BIG: usize = 24 << 20;
    let origin = origin(BIG).await;
    let e = edge(&origin, |c| c.memory_bytes = ByteSize(512 << 20)).await;
    let v1 = generation(1, BIG);
    assert!(get(&e.url("/big"), &[]).await.body == v1);

    // A client asks for the hit and reads only its first bytes: the rest waits in socket
    // buffers or has not been sent yet.
    let mut slow = tokio::net::TcpStream::connect(e.addr).await.unwrap();
    slow.write_all(b"GET /big HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    slow.read_exact(&mut first).await.unwrap();

    // Meanwhile the stored copy is invalidated and replaced by the next generation.
    let post = send(&client(), "POST", &e.url("/big"), &[]).await;
    assert_eq!(post.status, 200);
    let v2 = generation(2, BIG);
    assert!(get(&e.url("/big"), &[]).await.body == v2, "the refill");
    let again = get(&e.url("/big"), &[]).await;
    assert!(
        again.is_hit() && again.body == v2,
        "{}",
        again.cache_status()
    );

    // The slow client's answer is the first generation, whole.
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        slow.read_to_end(&mut rest),
    )
    .await
    .expect("the slow client's answer ends")
    .unwrap();
    let all = [first, rest].concat();
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, body) = all.split_at(head_end);
    let head = String::from_utf8_lossy(head).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("outpost-edge; hit"), "{head}");
    assert_eq!(body.len(), BIG);
    assert!(
        body == &v1[..],
        "bytes of the old body changed under the slow client"
    );
}

//! Range requests answered from cached full objects (RFC 9110 section 14), HEAD, and bodies
//! streamed to the client while the cache fills.

use crate::support::*;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

async fn setup() -> (Origin, TestEdge) {
    let origin = Origin::start(|_, _| {
        Reply::ok(BODY, &[("cache-control", "max-age=60"), ("etag", "\"r1\"")])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    (origin, edge)
}

#[tokio::test]
async fn ranges_from_a_cached_object() {
    let (origin, edge) = setup().await;
    get(&edge.url("/r"), &[]).await;
    let r = get(&edge.url("/r"), &[("range", "bytes=10-15")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "abcdef");
    assert_eq!(r.header("content-range"), Some("bytes 10-15/36"));
    assert_eq!(r.header("content-length"), Some("6"));
    assert!(r.is_hit());
    let suffix = get(&edge.url("/r"), &[("range", "bytes=-4")]).await;
    assert_eq!(suffix.text(), "wxyz");
    let open = get(&edge.url("/r"), &[("range", "bytes=30-")]).await;
    assert_eq!(open.text(), "uvwxyz");
    let bad = get(&edge.url("/r"), &[("range", "bytes=99-")]).await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */36"));
    let multi = get(&edge.url("/r"), &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(multi.status, 200, "multi-range: the whole body");
    assert_eq!(multi.text(), BODY);
    let garbage = get(&edge.url("/r"), &[("range", "bytes=zz-top")]).await;
    assert_eq!(garbage.status, 200);
    let if_range_ok = get(
        &edge.url("/r"),
        &[("range", "bytes=0-1"), ("if-range", "\"r1\"")],
    )
    .await;
    assert_eq!(if_range_ok.status, 206);
    let if_range_old = get(
        &edge.url("/r"),
        &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(if_range_old.status, 200);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn a_range_miss_asks_for_the_range_and_stores_a_whole_answer() {
    let (origin, edge) = setup().await;
    let r = get(&edge.url("/m"), &[("range", "bytes=0-3")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "0123");
    assert_eq!(
        origin
            .last()
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok()),
        Some("bytes=0-3"),
        "the range is asked of the origin"
    );
    // This origin ignores Range and sends the whole: stored, and the range served from it.
    let full = get(&edge.url("/m"), &[]).await;
    assert!(full.is_hit());
    assert_eq!(full.text(), BODY);
}

#[tokio::test]
async fn head_is_answered_without_a_body() {
    let (origin, edge) = setup().await;
    let c = client();
    let h = send(&c, "HEAD", &edge.url("/h"), &[]).await;
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("36"));
    assert_eq!(
        origin.last().method,
        "GET",
        "a HEAD miss fills the cache with a GET"
    );
    let g = get(&edge.url("/h"), &[]).await;
    assert!(g.is_hit());
    assert_eq!(g.text(), BODY);
    let h2 = send(&c, "HEAD", &edge.url("/h"), &[]).await;
    assert!(h2.is_hit() && h2.body.is_empty());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn body_streams_to_the_client_while_the_cache_fills() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let g2 = gate.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(
            "",
            &[("cache-control", "max-age=60"), ("content-length", "11")],
        )
        .body(Body::Gated(
            Bytes::from_static(b"first "),
            g2.clone(),
            Bytes::from_static(b"rest!"),
        ))
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let mut res = client().get(edge.url("/stream")).send().await.unwrap();
    // The first chunk must reach us while the origin is still holding the rest back.
    let first = tokio::time::timeout(Duration::from_secs(5), res.chunk())
        .await
        .expect("first chunk streamed before the body finished")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first ");
    gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"rest!");
    let hit = get(&edge.url("/stream"), &[]).await;
    assert!(hit.is_hit());
    assert_eq!(hit.text(), "first rest!");
}

#[tokio::test]
async fn objects_over_the_size_limit_pass_through() {
    let big = "b".repeat(100_000);
    let origin =
        Origin::start(move |_, _| Reply::ok(&big, &[("cache-control", "max-age=60")])).await;
    let edge = edge(&origin, |c| {
        c.max_object_bytes = Some(edge_node::config::ByteSize(10_000))
    })
    .await;
    assert_eq!(get(&edge.url("/big"), &[]).await.body.len(), 100_000);
    assert_eq!(get(&edge.url("/big"), &[]).await.body.len(), 100_000);
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn unknown_length_bodies_over_the_limit_stream_through_unstored() {
    let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
    let origin = Origin::start(move |_, _| {
        let chunks = (0..200).map(|_| (chunk.clone(), Duration::ZERO)).collect();
        Reply::ok("", &[("cache-control", "max-age=60")]).body(Body::Chunks(chunks))
    })
    .await;
    let edge = edge(&origin, |c| {
        c.max_object_bytes = Some(edge_node::config::ByteSize(1 << 20))
    })
    .await;
    let c = client();
    let url = edge.url("/huge");
    let (a, b) = tokio::join!(send(&c, "GET", &url, &[]), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        send(&c, "GET", &url, &[]).await
    });
    assert_eq!(a.body.len(), 200 * 64 * 1024);
    assert_eq!(b.body.len(), 200 * 64 * 1024);
    let after = get(&edge.url("/huge"), &[]).await;
    assert!(!after.is_hit());
    assert_eq!(after.body.len(), 200 * 64 * 1024);
    assert!(origin.requests() >= 2);
}

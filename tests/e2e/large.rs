//! Large objects: a response too large for memory streams to its first client while it is
//! written to disk, a second client during the fill is served from the same fill, and Range
//! requests are answered from disk reading only the blocks they need.

use crate::support::*;
use bytes::Bytes;
use edge_node::config::ByteSize;
use std::sync::Arc;

const LEN: usize = 48 << 20;

fn pattern() -> Bytes {
    Bytes::from((0..LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

async fn read_all(mut r: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    out
}

#[tokio::test]
async fn a_large_object_streams_to_disk_and_is_shared_and_ranged() {
    let body = pattern();
    let gate = Arc::new(tokio::sync::Notify::new());
    let (b2, g2) = (body.clone(), gate.clone());
    let origin = Origin::start(move |_, _| {
        Reply::ok(
            "",
            &[
                ("cache-control", "max-age=600"),
                ("content-length", &LEN.to_string()),
                ("content-type", "video/mp4"),
            ],
        )
        .body(Body::Gated(
            b2.slice(..1 << 20),
            g2.clone(),
            b2.slice(1 << 20..),
        ))
    })
    .await;
    let dir = temp_dir("large");
    let e = edge(&origin, |c| {
        c.memory_bytes = ByteSize(8 << 20);
        c.disk_path = Some(dir.to_path_buf());
        c.disk_bytes = ByteSize(512 << 20);
    })
    .await;
    disk_ready(&e).await;
    let c = client();
    let mut first = c.get(e.url("/movie.mp4")).send().await.unwrap();
    assert_eq!(first.headers()["content-length"], LEN.to_string().as_str());
    let head = first.chunk().await.unwrap().unwrap();
    assert_eq!(&head[..], &body[..head.len()]);
    // A second client arrives during the fill.
    let second = c.get(e.url("/movie.mp4")).send().await.unwrap();
    assert!(second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("collapsed"));
    gate.notify_one();
    let (rest, all2) = tokio::join!(read_all(first), read_all(second));
    let mut all1 = head.to_vec();
    all1.extend_from_slice(&rest);
    assert!(all1 == body[..], "first client got the whole body");
    assert!(
        all2 == body[..],
        "second client got the whole body from the same fill"
    );
    assert_eq!(origin.requests(), 1);
    assert!(
        e.proxy.gauges().memory_bytes < 4 << 20,
        "the body never went to the memory tier"
    );

    // Now stored on disk: a range from the middle is read from disk.
    disk_writes(&e, 1).await;
    let r = get(
        &e.url("/movie.mp4"),
        &[("range", "bytes=30000000-30000099")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(
        r.cache_status().contains("hit") && r.cache_status().contains("detail=disk"),
        "{}",
        r.cache_status()
    );
    assert_eq!(r.body, body.slice(30_000_000..30_000_100));
    let full = get(&e.url("/movie.mp4"), &[]).await;
    assert!(full.body == body, "whole body from disk");
    assert_eq!(origin.requests(), 1);

    // A damaged block is never sent: the response is cut and the entry dropped.
    let file = std::fs::read_dir(dir.join("objects"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .next()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let res = client().get(e.url("/movie.mp4")).send().await.unwrap();
    assert!(
        res.bytes().await.is_err(),
        "a body with a damaged block must not complete"
    );
    assert!(e.proxy.gauges().disk.unwrap().corrupt >= 1);
    let again = get(&e.url("/movie.mp4"), &[("range", "bytes=0-9")]).await;
    assert_eq!(again.body, body.slice(0..10));
    assert_eq!(
        origin.requests(),
        2,
        "refetched after the damaged entry was dropped"
    );
    let _ = std::fs::remove_dir_all(dir);
}

//! Compression for clients: stored uncompressed responses are served gzip or br by the
//! client's Accept-Encoding, with Vary and a weak ETag; what must not be transformed is not.

use crate::support::*;
use edge_node::config::Coding;
use std::io::Read;

fn css() -> String {
    ".rule { color: red; margin: 0 auto; }\n".repeat(300)
}

async fn setup() -> (Origin, TestEdge) {
    let origin = Origin::start(|seen, _| {
        let body = css();
        match seen.uri.as_str() {
            "/png" => Reply::ok(
                &body,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-type", "image/png"),
                ],
            ),
            "/nt" => Reply::ok(
                &body,
                &[
                    ("cache-control", "max-age=60, no-transform"),
                    ("content-type", "text/css"),
                ],
            ),
            "/tiny" => Reply::ok(
                "a{}",
                &[
                    ("cache-control", "max-age=60"),
                    ("content-type", "text/css"),
                ],
            ),
            _ => Reply::ok(
                &body,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-type", "text/css"),
                    ("etag", "\"c1\""),
                ],
            ),
        }
    })
    .await;
    let edge = edge(&origin, |c| c.compress = vec![Coding::Gzip, Coding::Br]).await;
    (origin, edge)
}

#[tokio::test]
async fn hits_are_compressed_by_accept_encoding() {
    let (origin, edge) = setup().await;
    let miss = get(&edge.url("/site.css"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        miss.header("content-encoding"),
        None,
        "the first answer streams what the origin sent"
    );
    assert_eq!(miss.header("vary"), Some("Accept-Encoding"));
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(5), || edge
            .proxy
            .gauges()
            .objects
            == 1)
        .await
    );

    let gz = get(
        &edge.url("/site.css"),
        &[("accept-encoding", "gzip, deflate")],
    )
    .await;
    assert!(gz.is_hit());
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("etag"), Some("W/\"c1\""));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        gz.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        gz.body.len()
    );
    let mut out = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, css());
    assert!(gz.body.len() < css().len() / 5);

    let br = get(&edge.url("/site.css"), &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut out = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, css().as_bytes());

    let plain = get(&edge.url("/site.css"), &[]).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text(), css());
    assert_eq!(plain.header("etag"), Some("\"c1\""));

    let range = get(
        &edge.url("/site.css"),
        &[("accept-encoding", "gzip"), ("range", "bytes=0-4")],
    )
    .await;
    assert_eq!(range.status, 206);
    assert_eq!(range.text(), ".rule");
    assert_eq!(range.header("content-encoding"), None);

    let cond = get(
        &edge.url("/site.css"),
        &[("accept-encoding", "gzip"), ("if-none-match", "W/\"c1\"")],
    )
    .await;
    assert_eq!(cond.status, 304);
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn what_must_not_be_compressed_is_not() {
    let (_origin, edge) = setup().await;
    for path in ["/png", "/nt", "/tiny"] {
        get(&edge.url(path), &[]).await;
        let r = get(&edge.url(path), &[("accept-encoding", "gzip, br")]).await;
        assert!(r.is_hit(), "{path}");
        assert_eq!(r.header("content-encoding"), None, "{path}");
    }
}

#[tokio::test]
async fn compression_is_off_unless_configured() {
    let origin = Origin::start(|_, _| {
        Reply::ok(
            &css(),
            &[
                ("cache-control", "max-age=60"),
                ("content-type", "text/css"),
            ],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/a.css"), &[]).await;
    let r = get(&edge.url("/a.css"), &[("accept-encoding", "gzip")]).await;
    assert!(r.is_hit());
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), None);
}

//! Conditional revalidation with ETag and Last-Modified, 304s updating stored headers, and
//! client conditional requests answered from cache (RFC 9111 section 4.3, RFC 9110 section 13).

use crate::support::*;
use std::time::Duration;

#[tokio::test]
async fn stale_object_is_revalidated_with_etag_and_304_updates_headers() {
    let origin = Origin::start(|seen, n| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            Reply::ok(
                "",
                &[
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=60"),
                    ("x-version", &format!("refreshed-{n}")),
                ],
            )
            .status(304)
        } else {
            Reply::ok(
                "the body",
                &[
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=1"),
                    ("x-version", "original"),
                    ("content-type", "text/plain"),
                ],
            )
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    assert_eq!(
        get(&edge.url("/r"), &[]).await.header("x-version"),
        Some("original")
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/r"), &[]).await;
    assert_eq!(origin.requests(), 2);
    assert_eq!(b.status, 200);
    assert_eq!(b.text(), "the body", "the stored body is reused");
    assert_eq!(
        b.header("x-version"),
        Some("refreshed-2"),
        "304 fields replace stored ones"
    );
    assert_eq!(
        b.header("content-type"),
        Some("text/plain"),
        "fields the 304 lacks are kept"
    );
    // The 304's max-age=60 now applies: a hit without another origin request.
    let c = get(&edge.url("/r"), &[]).await;
    assert!(c.is_hit(), "{}", c.cache_status());
    assert_eq!(c.header("x-version"), Some("refreshed-2"));
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn stale_object_is_revalidated_with_last_modified() {
    let lm = http_date(-3600);
    let lm2 = lm.clone();
    let origin = Origin::start(move |seen, _| {
        if seen
            .headers
            .get("if-modified-since")
            .is_some_and(|v| v.to_str().unwrap() == lm2)
        {
            Reply::ok("", &[("cache-control", "max-age=60")]).status(304)
        } else {
            Reply::ok(
                "lm body",
                &[("last-modified", &lm2), ("cache-control", "max-age=1")],
            )
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/lm"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/lm"), &[]).await;
    assert_eq!(b.text(), "lm body");
    assert_eq!(
        origin
            .last()
            .headers
            .get("if-modified-since")
            .unwrap()
            .to_str()
            .unwrap(),
        lm
    );
    assert!(b.cache_status().contains("fwd-status=304"));
}

#[tokio::test]
async fn changed_object_replaces_the_stored_one() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("version {n}"),
            &[
                ("etag", &format!("\"v{n}\"")),
                // The first copy goes stale at once; the second stays fresh long enough for
                // the hit below whatever the origin's whole-second `Date` adds to its age.
                (
                    "cache-control",
                    if n == 1 { "max-age=1" } else { "max-age=60" },
                ),
            ],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/c"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/c"), &[]).await;
    assert_eq!(b.text(), "version 2");
    assert_eq!(
        origin.last().headers.get("if-none-match").unwrap(),
        "\"v1\""
    );
    let c = get(&edge.url("/c"), &[]).await;
    assert!(c.is_hit());
    assert_eq!(c.text(), "version 2");
}

#[tokio::test]
async fn client_conditionals_are_answered_from_cache() {
    let lm = http_date(-3600);
    let lm2 = lm.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok(
            "cond",
            &[
                ("etag", "\"abc\""),
                ("last-modified", &lm2),
                ("cache-control", "max-age=60"),
            ],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/k"), &[]).await;
    let inm = get(&edge.url("/k"), &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(inm.status, 304);
    assert!(inm.body.is_empty());
    assert_eq!(inm.header("etag"), Some("\"abc\""));
    assert!(inm.header("cache-status").is_some() && inm.header("age").is_some());
    let weak = get(&edge.url("/k"), &[("if-none-match", "W/\"abc\"")]).await;
    assert_eq!(weak.status, 304, "If-None-Match uses weak comparison");
    let other = get(&edge.url("/k"), &[("if-none-match", "\"zzz\"")]).await;
    assert_eq!(other.status, 200);
    let ims = get(&edge.url("/k"), &[("if-modified-since", &lm)]).await;
    assert_eq!(ims.status, 304);
    let older = get(&edge.url("/k"), &[("if-modified-since", &http_date(-7200))]).await;
    assert_eq!(older.status, 200);
    assert_eq!(origin.requests(), 1, "all answered from cache");
    // Client validators are not sent upstream on a fill.
    let first = origin.seen.lock().unwrap()[0].clone();
    assert!(first.headers.get("if-none-match").is_none());
}

#[tokio::test]
async fn conditional_miss_fetches_whole_object_then_answers_304() {
    let origin = Origin::start(|_, _| {
        Reply::ok(
            "whole",
            &[("etag", "\"e\""), ("cache-control", "max-age=60")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let r = get(&edge.url("/m"), &[("if-none-match", "\"e\"")]).await;
    assert_eq!(r.status, 304);
    assert!(
        origin.last().headers.get("if-none-match").is_none(),
        "the fill fetches the whole object"
    );
    let full = get(&edge.url("/m"), &[]).await;
    assert!(full.is_hit());
    assert_eq!(full.text(), "whole");
}

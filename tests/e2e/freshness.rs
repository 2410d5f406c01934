//! Freshness and storability, one test per directive and rule (RFC 9111 sections 3, 4.2, 5.2,
//! RFC 9213), against a real origin and a real edge on loopback.

use crate::support::*;
use std::time::Duration;

async fn twice(
    origin_headers: &'static [(&'static str, &'static str)],
    req: &'static [(&'static str, &'static str)],
) -> (Origin, Got, Got) {
    let origin = Origin::start(move |_, n| Reply::ok(&format!("body {n}"), origin_headers)).await;
    let edge = edge(&origin, |_| {}).await;
    let a = get(&edge.url("/x"), req).await;
    let b = get(&edge.url("/x"), req).await;
    drop(edge);
    (origin, a, b)
}

#[tokio::test]
async fn max_age_is_served_from_cache() {
    let (origin, a, b) = twice(&[("cache-control", "max-age=60")], &[]).await;
    assert_eq!(origin.requests(), 1);
    assert!(
        a.cache_status().contains("fwd=miss") && a.cache_status().contains("stored"),
        "{}",
        a.cache_status()
    );
    assert!(b.is_hit(), "{}", b.cache_status());
    assert_eq!(b.text(), "body 1");
    assert!(b.cache_status().contains("ttl="));
}

#[tokio::test]
async fn s_maxage_overrides_max_age_for_the_shared_cache() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("v{n}"),
            &[("cache-control", "max-age=0, s-maxage=60")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/s"), &[]).await;
    let b = get(&edge.url("/s"), &[]).await;
    assert!(b.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn expires_gives_freshness_without_max_age() {
    let exp = http_date(120);
    let date = http_date(0);
    let origin = Origin::start(move |_, n| {
        Reply::ok(&format!("v{n}"), &[("expires", &exp), ("date", &date)])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/e"), &[]).await;
    assert!(get(&edge.url("/e"), &[]).await.is_hit());
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn expires_in_the_past_or_invalid_is_stale() {
    for exp in ["0", "Thu, 01 Jan 1970 00:00:00 GMT", "not a date"] {
        let exp = exp.to_string();
        let origin =
            Origin::start(move |_, n| Reply::ok(&format!("v{n}"), &[("expires", &exp)])).await;
        let edge = edge(&origin, |_| {}).await;
        get(&edge.url("/e"), &[]).await;
        let b = get(&edge.url("/e"), &[]).await;
        assert!(!b.is_hit(), "{}", b.cache_status());
        assert_eq!(origin.requests(), 2);
    }
}

#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    let lm = http_date(-100_000);
    let date = http_date(0);
    let origin = Origin::start(move |_, n| {
        Reply::ok(&format!("v{n}"), &[("last-modified", &lm), ("date", &date)])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/h"), &[]).await;
    let b = get(&edge.url("/h"), &[]).await;
    assert!(b.is_hit(), "{}", b.cache_status());
    // 10% of 100000 s.
    let ttl: i64 = b
        .cache_status()
        .split("ttl=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((9990..=10_000).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn age_counts_upstream_age_and_time_in_cache() {
    let origin =
        Origin::start(|_, _| Reply::ok("aged", &[("cache-control", "max-age=100"), ("age", "30")]))
            .await;
    let edge = edge(&origin, |_| {}).await;
    let a = get(&edge.url("/a"), &[]).await;
    assert_eq!(
        a.header("age"),
        Some("30"),
        "a miss passes on the upstream Age"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/a"), &[]).await;
    let age: u64 = b.header("age").unwrap().parse().unwrap();
    assert!((31..=33).contains(&age), "age {age}");
    let ttl: i64 = b
        .cache_status()
        .split("ttl=")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((67..=69).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn no_store_is_never_stored() {
    let (origin, a, b) = twice(&[("cache-control", "no-store, max-age=60")], &[]).await;
    assert_eq!(origin.requests(), 2);
    assert!(!a.cache_status().contains("stored") && !b.is_hit());
}

#[tokio::test]
async fn request_no_store_is_honoured() {
    let (origin, _, b) = twice(
        &[("cache-control", "max-age=60")],
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(origin.requests(), 2);
    assert!(!b.is_hit());
}

#[tokio::test]
async fn private_is_not_stored_by_a_shared_cache() {
    let (origin, _, b) = twice(&[("cache-control", "private, max-age=60")], &[]).await;
    assert_eq!(origin.requests(), 2);
    assert!(!b.is_hit());
}

#[tokio::test]
async fn no_cache_is_revalidated_on_every_request() {
    let origin = Origin::start(|seen, _| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"e1\"")
        {
            Reply::ok("", &[("etag", "\"e1\""), ("cache-control", "no-cache")]).status(304)
        } else {
            Reply::ok(
                "full body",
                &[("etag", "\"e1\""), ("cache-control", "no-cache")],
            )
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let a = get(&edge.url("/n"), &[]).await;
    assert_eq!(a.text(), "full body");
    let b = get(&edge.url("/n"), &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.text(), "full body");
    assert_eq!(
        origin.requests(),
        2,
        "no-cache must go to the origin each time"
    );
    assert_eq!(
        origin.last().headers.get("if-none-match").unwrap(),
        "\"e1\""
    );
    assert!(
        b.cache_status().contains("fwd=stale; fwd-status=304"),
        "{}",
        b.cache_status()
    );
}

#[tokio::test]
async fn must_revalidate_forbids_stale_on_error() {
    let origin = Origin::start(|_, _| {
        Reply::ok(
            "mr",
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=600",
            )],
        )
    })
    .await;
    let edge = edge(&origin, |c| {
        c.stale_if_error = edge_node::config::Dur(Duration::from_secs(600))
    })
    .await;
    get(&edge.url("/m"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(|_, _| Reply::ok("down", &[]).status(503));
    let b = get(&edge.url("/m"), &[]).await;
    assert_eq!(b.status, 503, "must-revalidate: stale must not be served");
}

#[tokio::test]
async fn proxy_revalidate_forbids_stale_but_keeps_freshness() {
    let origin =
        Origin::start(|_, _| Reply::ok("pr", &[("cache-control", "max-age=1, proxy-revalidate")]))
            .await;
    let edge = edge(&origin, |c| {
        c.stale_if_error = edge_node::config::Dur(Duration::from_secs(600))
    })
    .await;
    get(&edge.url("/p"), &[]).await;
    assert!(
        get(&edge.url("/p"), &[]).await.is_hit(),
        "fresh until max-age"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(|_, _| Reply::ok("down", &[]).status(500));
    assert_eq!(get(&edge.url("/p"), &[]).await.status, 500);
}

#[tokio::test]
async fn authorization_requests_are_not_stored_unless_allowed() {
    let (origin, _, b) = twice(
        &[("cache-control", "max-age=60")],
        &[("authorization", "Bearer a")],
    )
    .await;
    assert_eq!(origin.requests(), 2);
    assert!(!b.is_hit());
    let (origin, _, b) = twice(
        &[("cache-control", "public, max-age=60")],
        &[("authorization", "Bearer a")],
    )
    .await;
    assert_eq!(origin.requests(), 1);
    assert!(b.is_hit());
}

#[tokio::test]
async fn cdn_cache_control_governs_the_edge_and_is_forwarded() {
    let (origin, a, b) = twice(
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ],
        &[],
    )
    .await;
    assert_eq!(
        origin.requests(),
        1,
        "CDN-Cache-Control beats Cache-Control"
    );
    assert!(b.is_hit());
    for r in [&a, &b] {
        // RFC 9213: it targets every CDN on the path, so it goes downstream (other CDNs,
        // and our own edges behind a shield, need it), from the fill and from the store.
        assert_eq!(
            r.header("cdn-cache-control"),
            Some("max-age=60"),
            "targeted field not forwarded"
        );
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "Cache-Control goes to the client untouched"
        );
    }
    let (origin, _, b) = twice(
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store"),
        ],
        &[],
    )
    .await;
    assert_eq!(origin.requests(), 2);
    assert!(!b.is_hit());
}

#[tokio::test]
async fn surrogate_control_governs_the_edge_and_is_stripped() {
    let (origin, _, b) = twice(
        &[
            ("cache-control", "private"),
            ("surrogate-control", "max-age=60"),
        ],
        &[],
    )
    .await;
    assert_eq!(origin.requests(), 1);
    assert!(b.is_hit());
    assert!(b.header("surrogate-control").is_none());
}

#[tokio::test]
async fn set_cookie_responses_are_not_stored() {
    let (origin, _, b) = twice(
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=abc"),
        ],
        &[],
    )
    .await;
    assert_eq!(origin.requests(), 2);
    assert!(!b.is_hit());
}

/// RFC 9111 section 3: any final status may be stored with explicit freshness; heuristic
/// freshness (4.2.2) only for the heuristically cacheable statuses (RFC 9110 15.1).
#[tokio::test]
async fn explicit_freshness_stores_any_status_heuristics_only_the_cacheable_ones() {
    let lm = http_date(-3600);
    let origin = Origin::start(move |seen, n| {
        let explicit = Reply::ok(&format!("n{n}"), &[("cache-control", "max-age=60")]);
        match seen.uri.as_str() {
            "/err" => explicit.status(500),
            "/odd" => explicit.status(599),
            "/heuristic-500" => Reply::ok(&format!("n{n}"), &[("last-modified", &lm)]).status(500),
            _ => explicit.status(404),
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    for p in ["/err", "/odd", "/missing"] {
        let a = get(&edge.url(p), &[]).await;
        let b = get(&edge.url(p), &[]).await;
        assert!(b.is_hit(), "{p}: {}", b.cache_status());
        assert_eq!(a.status, b.status);
        assert_eq!(a.text(), b.text());
    }
    assert_eq!(origin.requests(), 3);
    get(&edge.url("/heuristic-500"), &[]).await;
    let b = get(&edge.url("/heuristic-500"), &[]).await;
    assert!(!b.is_hit(), "a 500 is not heuristically cacheable");
    assert_eq!(origin.requests(), 5);
}

#[tokio::test]
async fn query_options_shape_the_key() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} #{n}", seen.uri),
            &[("cache-control", "max-age=60")],
        )
    })
    .await;
    let edge = edge(&origin, |c| {
        c.sites[0].query = edge_node::config::QueryMode::Sort;
        c.sites[0].drop_params = vec!["utm_*".into()];
    })
    .await;
    let a = get(&edge.url("/q?b=2&a=1&utm_source=x"), &[]).await;
    assert_eq!(
        origin.last().uri,
        "/q?a=1&b=2",
        "dropped params never reach the origin"
    );
    let b = get(&edge.url("/q?a=1&b=2"), &[]).await;
    assert!(b.is_hit());
    assert_eq!(a.text(), b.text());
    get(&edge.url("/q?a=1&b=3"), &[]).await;
    assert_eq!(origin.requests(), 2);
}

//! stale-while-revalidate and stale-if-error (RFC 5861), and the configured grace.

use crate::support::*;
use edge_node::config::Dur;
use std::time::Duration;

#[tokio::test]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("gen {n}"),
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
        )
        .delay(if n > 1 {
            Duration::from_millis(200)
        } else {
            Duration::ZERO
        })
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/swr"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = client();
    let url = edge.url("/swr");
    let futs: Vec<_> = (0..10).map(|_| send(&c, "GET", &url, &[])).collect();
    let got = futures_util::future::join_all(futs).await;
    for g in &got {
        assert_eq!(g.text(), "gen 1", "stale served at once");
        assert!(
            g.cache_status().contains("stale-while-revalidate"),
            "{}",
            g.cache_status()
        );
        assert!(g.cache_status().contains("ttl=-"));
    }
    assert!(eventually(Duration::from_secs(5), || origin.requests() == 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.requests(), 2, "exactly one background refresh");
    let fresh = get(&edge.url("/swr"), &[]).await;
    assert_eq!(fresh.text(), "gen 2");
    assert!(fresh.is_hit());
}

#[tokio::test]
async fn configured_grace_applies_when_origin_names_none() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("gen {n}"), &[("cache-control", "max-age=1")]))
            .await;
    let edge = edge(&origin, |c| {
        c.stale_while_revalidate = Dur(Duration::from_secs(30))
    })
    .await;
    get(&edge.url("/g"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/g"), &[]).await;
    assert_eq!(b.text(), "gen 1");
    assert!(b.cache_status().contains("stale-while-revalidate"));
}

#[tokio::test]
async fn stale_if_error_covers_5xx_and_a_dead_origin() {
    let origin = Origin::start(|_, _| {
        Reply::ok("good", &[("cache-control", "max-age=1, stale-if-error=60")])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/sie"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.set(|_, _| Reply::ok("broken", &[]).status(503));
    let b = get(&edge.url("/sie"), &[]).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.text(), "good");
    assert!(
        b.cache_status().contains("stale-if-error") && b.cache_status().contains("fwd-status=503"),
        "{}",
        b.cache_status()
    );
    origin.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = get(&edge.url("/sie"), &[]).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.text(), "good");
    assert!(
        c.cache_status()
            .contains("fwd=stale; detail=upstream-unreachable"),
        "{}",
        c.cache_status()
    );
}

/// RFC 9111 4.2.4: with the origin unreachable (connection refused), the stored stale
/// response is served, within the configured window, unless a directive forbids stale use;
/// with the window at 0 or a forbidding directive, the error reaches the client.
#[tokio::test]
async fn stale_is_served_when_the_origin_cannot_be_reached() {
    for (cc, window, served) in [
        ("max-age=1", None, true),
        ("max-age=1", Some(0), false),
        ("max-age=1, must-revalidate", None, false),
        ("max-age=1, proxy-revalidate", None, false),
        ("s-maxage=1", None, false),
        ("max-age=1, no-cache", None, false),
    ] {
        let origin = Origin::start(move |_, _| {
            Reply::ok("good", &[("cache-control", cc), ("etag", "\"g\"")])
        })
        .await;
        let edge = edge(&origin, |c| {
            if let Some(w) = window {
                c.stale_if_unreachable = Dur(Duration::from_secs(w));
            }
        })
        .await;
        get(&edge.url("/x"), &[]).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        origin.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = get(&edge.url("/x"), &[]).await;
        if served {
            assert_eq!(b.status, 200, "{cc}");
            assert_eq!(b.text(), "good");
            assert!(
                b.cache_status()
                    .contains("fwd=stale; detail=upstream-unreachable"),
                "{cc}: {}",
                b.cache_status()
            );
        } else {
            assert_eq!(
                b.status,
                502,
                "{cc} window {window:?}: {}",
                b.cache_status()
            );
            assert!(b.text().contains("cannot connect"), "{}", b.text());
        }
    }
}

#[tokio::test]
async fn stale_if_error_window_ends() {
    let origin = Origin::start(|_, _| {
        Reply::ok("good", &[("cache-control", "max-age=1, stale-if-error=1")])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/w"), &[]).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    origin.set(|_, _| Reply::ok("broken", &[]).status(500));
    assert_eq!(get(&edge.url("/w"), &[]).await.status, 500);
}

#[tokio::test]
async fn origin_timeout_gives_504_or_stale() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok("t", &[("cache-control", "max-age=1, stale-if-error=60")]);
        if n > 1 {
            r.delay(Duration::from_secs(5))
        } else {
            r
        }
    })
    .await;
    let edge = edge(&origin, |c| {
        c.first_byte_timeout = Dur(Duration::from_millis(300))
    })
    .await;
    get(&edge.url("/t"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get(&edge.url("/t"), &[]).await;
    assert_eq!(b.status, 200, "stale-if-error covers a timeout");
    assert!(
        b.cache_status().contains("detail=timeout"),
        "{}",
        b.cache_status()
    );
    let fresh_url = get(&edge.url("/other"), &[]).await;
    assert_eq!(fresh_url.status, 504);
}

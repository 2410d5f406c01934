//! Request collapsing: N concurrent misses make one upstream request; waiters are bounded by a
//! timeout; a client that goes away does not strand the others (pingora #931).

use crate::support::*;
use edge_node::config::Dur;
use std::time::{Duration, Instant};

#[tokio::test]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("one fetch {n}"),
            &[("cache-control", "max-age=60")],
        )
        .delay(Duration::from_millis(300))
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let start = Instant::now();
    let futs: Vec<_> = (0..200)
        .map(|_| {
            let c = c.clone();
            let url = edge.url("/hot");
            tokio::spawn(async move {
                let g = send(&c, "GET", &url, &[]).await;
                (g, start.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    for f in futs {
        let (g, t) = f.await.unwrap();
        assert_eq!(g.status, 200);
        assert_eq!(g.text(), "one fetch 1");
        times.push(t);
    }
    assert_eq!(
        origin.requests(),
        1,
        "exactly one origin request for 200 concurrent misses"
    );
    let stats = edge.proxy.stats_json();
    let (collapsed, hits) = (
        stats["collapsed"].as_u64().unwrap(),
        stats["hits"].as_u64().unwrap(),
    );
    assert_eq!(
        collapsed + hits,
        199,
        "every other request joined the fetch or hit its result"
    );
    times.sort();
    eprintln!(
        "collapse: first answer {:?}, last answer {:?}, spread {:?}",
        times[0],
        times[199],
        times[199] - times[0]
    );
}

#[tokio::test]
async fn waiters_give_up_on_a_stuck_fetch_after_the_timeout() {
    let origin = Origin::start(|_, n| {
        let r = Reply::ok(&format!("n{n}"), &[("cache-control", "max-age=60")]);
        if n == 1 {
            r.delay(Duration::from_secs(10))
        } else {
            r
        }
    })
    .await;
    let edge = edge(&origin, |c| {
        c.collapse_timeout = Dur(Duration::from_millis(300))
    })
    .await;
    let c = client();
    let leader = tokio::spawn({
        let (c, url) = (c.clone(), edge.url("/stuck"));
        async move { send(&c, "GET", &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let follower = send(&c, "GET", &edge.url("/stuck"), &[]).await;
    assert_eq!(follower.status, 200);
    assert!(
        follower.cache_status().contains("collapse-timeout"),
        "{}",
        follower.cache_status()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    leader.abort();
}

#[tokio::test]
async fn a_cancelled_first_client_does_not_strand_the_waiters() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("fill {n}"), &[("cache-control", "max-age=60")])
            .delay(Duration::from_millis(500))
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let c = client();
    let first = tokio::spawn({
        let (c, url) = (c.clone(), edge.url("/cancel"));
        async move { send(&c, "GET", &url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (c, url) = (c.clone(), edge.url("/cancel"));
            tokio::spawn(async move { send(&c, "GET", &url, &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    for w in waiters {
        let g = w.await.unwrap();
        assert_eq!(g.text(), "fill 1");
    }
    assert_eq!(origin.requests(), 1);
    assert!(
        get(&edge.url("/cancel"), &[]).await.is_hit(),
        "the fill completed and was stored"
    );
}

#[tokio::test]
async fn uncacheable_responses_release_waiters_to_fetch_themselves() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("private {n}"), &[("cache-control", "private")])
            .delay(Duration::from_millis(200))
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let c = client();
    let url = edge.url("/p");
    let futs: Vec<_> = (0..5).map(|_| send(&c, "GET", &url, &[])).collect();
    let got = futures_util::future::join_all(futs).await;
    let mut bodies: Vec<_> = got.iter().map(|g| g.text()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        5,
        "each client got its own private response: {bodies:?}"
    );
}

//! The origin-shield tier: edges send misses to their home shield (rendezvous hashing), the
//! shield alone talks to the origin, only edges are served, dead shields are routed around, and
//! a shield never answers with something older than a purge the edge has applied.

use crate::support::*;
use edge_node::config::EdgeConfig;
use std::time::{Duration, Instant};

const SECRET: &str = SHIELD_SECRET;

async fn shield(origin: &Origin) -> TestEdge {
    start_shield(shield_config(&origin.url())).await
}

fn behind(shields: &[&TestEdge]) -> impl FnOnce(&mut EdgeConfig) {
    let urls: Vec<String> = shields
        .iter()
        .map(|s| format!("http://{}", s.addr))
        .collect();
    move |c: &mut EdgeConfig| {
        c.shields = urls;
        c.shield_secret = Some(SECRET.into());
    }
}

#[tokio::test]
async fn edge_to_shield_to_origin_with_headers_of_each_tier() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let sh = shield(&origin).await;
    let e1 = edge(&origin, behind(&[&sh])).await;
    let e2 = edge(&origin, behind(&[&sh])).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let a = get(&e1.url("/x"), &[("traceparent", tp)]).await;
    assert_eq!(a.cache_status(), "outpost-shield; fwd=miss; fwd-status=200; stored, outpost-edge; fwd=miss; fwd-status=200; stored");
    let via: Vec<_> = a
        .headers
        .get_all("via")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(via, ["1.1 outpost-shield", "1.1 outpost-edge"]);
    let seen = origin.last();
    assert_eq!(
        seen.headers["traceparent"], tp,
        "traceparent reaches the origin"
    );
    assert_eq!(
        seen.headers.get_all("via").iter().count(),
        2,
        "the origin sees both tiers in Via"
    );
    assert!(
        seen.headers.get("outpost-shield-secret").is_none(),
        "the secret never leaves the tiers"
    );
    assert!(seen.headers.get("outpost-purge-version").is_none());
    let b = get(&e2.url("/x"), &[]).await;
    assert!(
        b.cache_status().starts_with("outpost-shield; hit"),
        "{}",
        b.cache_status()
    );
    assert_eq!(b.text(), "v1");
    assert_eq!(
        origin.requests(),
        1,
        "the second edge was served by the shield"
    );
}

#[tokio::test]
async fn the_shield_serves_edges_only() {
    let origin =
        Origin::start(|_, _| Reply::ok("secret stuff", &[("cache-control", "max-age=60")])).await;
    let sh = shield(&origin).await;
    let direct = get(&sh.url("/x"), &[]).await;
    assert_eq!(direct.status, 403);
    let wrong = get(&sh.url("/x"), &[("outpost-shield-secret", "guess")]).await;
    assert_eq!(wrong.status, 403);
    let right = get(&sh.url("/x"), &[("outpost-shield-secret", SECRET)]).await;
    assert_eq!(right.status, 200);
    assert_eq!(origin.requests(), 1);
    // A client cannot smuggle the secret or a purge version through an edge.
    let e = edge(&origin, |_| {}).await;
    get(
        &e.url("/y"),
        &[
            ("outpost-shield-secret", SECRET),
            ("outpost-purge-version", "999"),
        ],
    )
    .await;
    assert!(origin.last().headers.get("outpost-shield-secret").is_none());
}

#[tokio::test]
async fn two_hundred_misses_over_three_edges_make_one_origin_request() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("fetch {n}"), &[("cache-control", "max-age=60")])
            .delay(Duration::from_millis(300))
    })
    .await;
    let sh = shield(&origin).await;
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(edge(&origin, behind(&[&sh])).await);
    }
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (c, url) = (c.clone(), edges[i % 3].url("/hot"));
            tokio::spawn(async move { send(&c, "GET", &url, &[]).await })
        })
        .collect();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!(g.text(), "fetch 1");
    }
    assert_eq!(
        origin.requests(),
        1,
        "one origin request for 200 misses over 3 edges"
    );
}

#[tokio::test]
async fn edges_route_around_dead_shields_and_return_when_they_recover() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} {n}", seen.uri),
            &[("cache-control", "max-age=60")],
        )
    })
    .await;
    let s1 = shield(&origin).await;
    let s2 = shield(&origin).await;
    let (a1, a2) = (s1.addr, s2.addr);
    let e = edge(&origin, behind(&[&s1, &s2])).await;
    // Find which shield is home for /k by looking at the shields' stats.
    get(&e.url("/k"), &[]).await;
    let stores = |s: &TestEdge| s.proxy.stats_json()["stores"].as_u64().unwrap();
    let (home, other) = if stores(&s1) == 1 { (s1, s2) } else { (s2, s1) };
    assert_eq!(stores(&other), 0);
    // The home shield dies: the very next request succeeds through the other one.
    drop(home);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let r = get(&e.url("/k2"), &[]).await;
    assert_eq!(r.status, 200);
    let r = get(&e.url("/k"), &[("cache-control", "no-cache")]).await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failover took {:?}",
        t.elapsed()
    );
    // Every shield dead: straight to the origin.
    drop(other);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = origin.requests();
    let r = get(&e.url("/direct"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.cache_status(),
        "outpost-edge; fwd=miss; fwd-status=200; stored",
        "no shield in the chain"
    );
    assert_eq!(origin.requests(), before + 1);
    // A shield comes back on the same address: after the retry period the edge uses it again.
    let mut cfg = shield_config(&origin.url());
    cfg.listen = vec![a1];
    let registry = agent::metrics::Registry::default();
    let back = match origin_shield::bind(&cfg, Default::default(), &registry).await {
        Ok(b) => b,
        Err(_) => {
            cfg.listen = vec![a2];
            origin_shield::bind(&cfg, Default::default(), &registry)
                .await
                .unwrap()
        }
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(back.serve(rx));
    tokio::time::sleep(edge_node::upstream::SHIELD_RETRY + Duration::from_millis(200)).await;
    let mut via_shield = false;
    for i in 0..8 {
        let r = get(&e.url(&format!("/again/{i}")), &[]).await;
        via_shield |= r.cache_status().contains("outpost-shield");
    }
    assert!(via_shield, "the edge returned to the recovered shield");
    let _ = stop.send(true);
}

#[tokio::test]
async fn a_shield_never_answers_older_than_the_edges_purges() {
    use edge_node::purge::{PurgeEvent, PurgeTarget};
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("v{n}"),
            &[("cache-control", "max-age=60"), ("surrogate-key", "k")],
        )
    })
    .await;
    let sh = shield(&origin).await;
    // The edge has its own purge marks; the shield's are separate and lag behind.
    let edge_node = Node::start(
        Some(&origin.url()),
        Some("http://127.0.0.1:9".into()),
        None,
        behind(&[&sh]),
    )
    .await;
    get(&edge_node.url("/p"), &[]).await;
    assert_eq!(origin.requests(), 1);
    let ev = PurgeEvent {
        version: 1,
        at_ms: 0,
        soft: false,
        target: PurgeTarget::Tags(vec!["k".into()]),
    };
    assert!(edge_node.purge.apply(&ev));
    // The edge misses (purged); the shield has the old copy but has not applied version 1,
    // so it must not serve it.
    let r = get(&edge_node.url("/p"), &[]).await;
    assert_eq!(
        r.text(),
        "v2",
        "fresh from the origin, not the shield's older copy"
    );
    assert!(
        r.cache_status().contains("purge-behind"),
        "{}",
        r.cache_status()
    );
}

/// A refresh an edge starts ends with a response fresh at the shield: the shield revalidates
/// its own stale copy with the origin for the edge instead of answering it within
/// stale-while-revalidate; the Age it sends keeps the edge's freshness honest; and `ttl` in
/// Cache-Status is an integer (RFC 9211).
#[tokio::test]
async fn an_edges_refresh_through_the_shield_comes_back_fresh() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("gen{n}"),
            &[("cache-control", "max-age=1, stale-while-revalidate=30")],
        )
    })
    .await;
    let sh = shield(&origin).await;
    let e = edge(&origin, behind(&[&sh])).await;
    assert_eq!(get(&e.url("/r"), &[]).await.text(), "gen1");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale = get(&e.url("/r"), &[]).await;
    assert_eq!(stale.text(), "gen1");
    let st = stale.cache_status();
    assert!(st.contains("detail=stale-while-revalidate"), "{st}");
    assert!(
        st.contains("ttl=-1") || st.contains("ttl=-2"),
        "integer ttl: {st}"
    );
    assert!(!st.contains("ttl=-0"), "{st}");
    // The background refresh reached the origin through the shield.
    let refreshed = eventually(Duration::from_secs(5), || origin.requests() == 2).await;
    assert!(refreshed, "origin requests: {}", origin.requests());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = get(&e.url("/r"), &[]).await;
    assert_eq!(fresh.text(), "gen2");
    assert!(
        fresh.cache_status().starts_with("outpost-edge; hit; ttl="),
        "fresh at the edge after one refresh: {}",
        fresh.cache_status()
    );
    assert_eq!(origin.requests(), 2);
}

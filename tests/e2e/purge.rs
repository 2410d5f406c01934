//! Versioned purge across nodes: a hub and three edges in one test, each purge kind, soft vs
//! hard, a partitioned node catching up, a restarted node resuming, and bad requests.

use crate::support::*;
use std::time::Duration;

/// An origin whose responses carry tags by path, cacheable for a minute, stale-if-error 60 s.
async fn tagged_origin() -> Origin {
    Origin::start(|seen, n| {
        let tags = match seen.uri.split('?').next().unwrap() {
            p if p.starts_with("/product/") => "product catalog",
            p if p.starts_with("/img/") => "images",
            _ => "misc",
        };
        Reply::ok(
            &format!("{} #{n}", seen.uri),
            &[
                ("cache-control", "max-age=60, stale-if-error=60"),
                ("surrogate-key", tags),
                ("vary", "Accept-Language"),
            ],
        )
    })
    .await
}

struct Cluster {
    origin: Origin,
    hub: Node,
    edges: Vec<Node>,
}

async fn cluster() -> Cluster {
    let origin = tagged_origin().await;
    let hub = Node::start(None, None, None, |_| {}).await;
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(Node::start(Some(&origin.url()), Some(hub.admin_url()), None, |_| {}).await);
    }
    Cluster { origin, hub, edges }
}

const PATHS: &[&str] = &[
    "/product/1",
    "/product/2",
    "/img/a.png",
    "/img/b.png",
    "/about",
];

async fn warm(c: &Cluster) {
    for e in &c.edges {
        for p in PATHS {
            get(&e.url(p), &[]).await;
            get(&e.url(p), &[("accept-language", "de")]).await;
            assert!(get(&e.url(p), &[]).await.is_hit(), "{p} not cached");
        }
    }
}

async fn hits(c: &Cluster, path: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for e in &c.edges {
        out.push(
            get(&e.url(path), &[("accept-language", "de")])
                .await
                .is_hit(),
        );
    }
    out
}

async fn wait_applied(c: &Cluster, v: u64) {
    for e in &c.edges {
        assert!(
            e.purge.wait_applied(v, Duration::from_secs(5)).await,
            "edge did not apply version {v}"
        );
    }
}

#[tokio::test]
async fn each_purge_kind_reaches_every_edge() {
    let c = cluster().await;
    warm(&c).await;
    // By URL, sent to an edge (forwarded to the hub): every variant of that URL goes.
    let (status, v) = purge(
        &c.edges[0].admin_url(),
        TOKEN,
        r#"{"urls":["http://127.0.0.1/product/1"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 1);
    wait_applied(&c, 1).await;
    assert_eq!(hits(&c, "/product/1").await, [false; 3]);
    assert_eq!(hits(&c, "/product/2").await, [true; 3]);

    // By tag, sent to the hub.
    let (_, v) = purge(&c.hub.admin_url(), TOKEN, r#"{"tags":["images"]}"#).await;
    assert_eq!(v["version"], 2);
    wait_applied(&c, 2).await;
    assert_eq!(hits(&c, "/img/a.png").await, [false; 3]);
    assert_eq!(hits(&c, "/img/b.png").await, [false; 3]);
    assert_eq!(hits(&c, "/about").await, [true; 3]);

    // By prefix.
    let (_, v) = purge(
        &c.edges[2].admin_url(),
        TOKEN,
        r#"{"prefixes":["http://127.0.0.1/prod"]}"#,
    )
    .await;
    wait_applied(&c, v["version"].as_u64().unwrap()).await;
    assert_eq!(hits(&c, "/product/2").await, [false; 3]);
    assert_eq!(hits(&c, "/about").await, [true; 3]);

    // Everything.
    let (_, v) = purge(&c.edges[1].admin_url(), TOKEN, r#"{"all":true}"#).await;
    assert_eq!(v["version"], 4);
    wait_applied(&c, 4).await;
    assert_eq!(hits(&c, "/about").await, [false; 3]);
    // After the purge, objects are cached again as usual.
    assert_eq!(hits(&c, "/about").await, [true; 3]);
    let log = client()
        .get(format!("{}/purge/log?since=0", c.hub.admin_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let log: serde_json::Value = log.json().await.unwrap();
    assert_eq!(log["events"].as_array().unwrap().len(), 4);
    assert_eq!(log["latest"], 4);
    drop(c.origin);
}

#[tokio::test]
async fn soft_purge_keeps_stale_if_error_and_hard_does_not() {
    let c = cluster().await;
    warm(&c).await;
    let (_, v) = purge(
        &c.hub.admin_url(),
        TOKEN,
        r#"{"tags":["product"],"soft":true}"#,
    )
    .await;
    wait_applied(&c, v["version"].as_u64().unwrap()).await;
    c.origin
        .set(|_, _| Reply::ok("origin broken", &[]).status(503));
    for e in &c.edges {
        let r = get(&e.url("/product/1"), &[]).await;
        assert_eq!(
            r.status, 200,
            "soft-purged object is stale, so stale-if-error serves it"
        );
        assert!(
            r.cache_status().contains("stale-if-error"),
            "{}",
            r.cache_status()
        );
    }
    let (_, v) = purge(&c.hub.admin_url(), TOKEN, r#"{"tags":["catalog"]}"#).await;
    wait_applied(&c, v["version"].as_u64().unwrap()).await;
    for e in &c.edges {
        assert_eq!(
            get(&e.url("/product/1"), &[]).await.status,
            503,
            "hard-purged object is gone"
        );
    }
}

#[tokio::test]
async fn soft_purge_revalidates_then_serves_fresh() {
    let c = cluster().await;
    warm(&c).await;
    let before = c.origin.requests();
    let (_, v) = purge(
        &c.hub.admin_url(),
        TOKEN,
        r#"{"urls":["http://127.0.0.1/about"],"soft":true}"#,
    )
    .await;
    wait_applied(&c, v["version"].as_u64().unwrap()).await;
    let r = get(&c.edges[0].url("/about"), &[]).await;
    assert!(!r.is_hit());
    assert_eq!(c.origin.requests(), before + 1);
    assert!(get(&c.edges[0].url("/about"), &[]).await.is_hit());
}

/// A TCP relay that can be cut: the partition between an edge and its hub.
async fn relay(target: std::net::SocketAddr) -> (String, tokio::sync::watch::Sender<bool>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = l.accept().await else {
                return;
            };
            let mut cut_rx = cut_rx.clone();
            if *cut_rx.borrow() {
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut out) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = cut_rx.wait_for(|c| *c) => {}
                }
            });
        }
    });
    (format!("http://{addr}"), cut)
}

#[tokio::test]
async fn a_partitioned_edge_catches_up_and_serves_nothing_purged() {
    let origin = tagged_origin().await;
    let hub = Node::start(None, None, None, |_| {}).await;
    let (via, cut) = relay(hub.admin).await;
    let edge = Node::start(Some(&origin.url()), Some(via), None, |_| {}).await;
    for p in PATHS {
        get(&edge.url(p), &[]).await;
    }
    cut.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for json in [
        r#"{"tags":["images"]}"#,
        r#"{"urls":["http://127.0.0.1/about"]}"#,
        r#"{"tags":["catalog"],"soft":true}"#,
    ] {
        assert_eq!(purge(&hub.admin_url(), TOKEN, json).await.0, 200);
    }
    assert_eq!(edge.purge.applied(), 0, "partitioned: nothing arrives");
    cut.send_replace(false);
    assert!(
        edge.purge.wait_applied(3, Duration::from_secs(10)).await,
        "caught up after the partition healed"
    );
    let mut purged_served = 0;
    for p in PATHS {
        let r = get(&edge.url(p), &[]).await;
        if r.is_hit() {
            purged_served += 1;
        }
    }
    assert_eq!(
        purged_served, 0,
        "no purged object is served after catch-up"
    );
}

#[tokio::test]
async fn an_edge_further_behind_than_an_in_memory_hub_holds_purges_everything() {
    // An in-memory hub keeps its newest 4096 events. An edge cut off for more purges than
    // that cannot replay them, so it must drop everything it holds and resume after them.
    let origin = tagged_origin().await;
    let hub = Node::start(None, None, None, |_| {}).await;
    let (via, cut) = relay(hub.admin).await;
    let edge = Node::start(Some(&origin.url()), Some(via), None, |_| {}).await;
    purge(&hub.admin_url(), TOKEN, r#"{"tags":["before"]}"#).await;
    assert!(edge.purge.wait_applied(1, Duration::from_secs(5)).await);
    for p in PATHS {
        get(&edge.url(p), &[]).await;
        assert!(get(&edge.url(p), &[]).await.is_hit(), "{p} not cached");
    }
    cut.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The first purge names what the edge holds; the rest name nothing it has.
    assert_eq!(
        purge(&hub.admin_url(), TOKEN, r#"{"tags":["images"]}"#)
            .await
            .0,
        200
    );
    let client = client();
    for i in 0..4200 {
        let r = client
            .post(format!("{}/purge", hub.admin_url()))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(format!(r#"{{"tags":["other-{i}"]}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let latest = hub.purge.latest();
    assert_eq!(latest, 4202);
    // The hub says plainly that it no longer has them.
    let r = client
        .get(format!("{}/purge/log?since=1", hub.admin_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["oldest"], latest - 4096 + 1, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no longer held"),
        "{v}"
    );
    cut.send_replace(false);
    assert!(
        edge.purge
            .wait_applied(latest, Duration::from_secs(10))
            .await,
        "caught up after the partition healed"
    );
    for p in PATHS {
        assert!(
            !get(&edge.url(p), &[]).await.is_hit(),
            "{p} was cached before the gap and is served after it"
        );
    }
    // And it follows normally from there.
    let (_, v) = purge(
        &hub.admin_url(),
        TOKEN,
        r#"{"urls":["http://127.0.0.1/about"]}"#,
    )
    .await;
    assert!(
        edge.purge
            .wait_applied(v["version"].as_u64().unwrap(), Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn a_restarted_edge_resumes_from_its_applied_version_and_the_hub_keeps_its_log() {
    let origin = tagged_origin().await;
    let hub_dir = temp_dir("hub");
    let edge_dir = temp_dir("edge");
    let hub = Node::start(None, None, Some(hub_dir.to_path_buf()), |_| {}).await;
    let edge = Node::start(
        Some(&origin.url()),
        Some(hub.admin_url()),
        Some(edge_dir.to_path_buf()),
        |_| {},
    )
    .await;
    purge(&hub.admin_url(), TOKEN, r#"{"all":true}"#).await;
    assert!(edge.purge.wait_applied(1, Duration::from_secs(5)).await);
    edge.shutdown().await;
    // While the edge is down, two purges.
    purge(&hub.admin_url(), TOKEN, r#"{"tags":["x"]}"#).await;
    purge(&hub.admin_url(), TOKEN, r#"{"tags":["y"]}"#).await;
    // The hub restarts too: its log and version survive.
    let hub_addr = hub.admin;
    hub.shutdown().await;
    let hub = Node::start(None, None, Some(hub_dir.to_path_buf()), |_| {}).await;
    assert_eq!(hub.purge.latest(), 3);
    assert_ne!(hub.admin, hub_addr);
    let edge = Node::start(
        Some(&origin.url()),
        Some(hub.admin_url()),
        Some(edge_dir.to_path_buf()),
        |_| {},
    )
    .await;
    assert_eq!(
        edge.purge.applied(),
        1,
        "resumes from its persisted version"
    );
    assert!(edge.purge.wait_applied(3, Duration::from_secs(5)).await);
    let (_, v) = purge(&edge.admin_url(), TOKEN, r#"{"all":true}"#).await;
    assert_eq!(v["version"], 4, "versions keep increasing across restarts");
    edge.shutdown().await;
    hub.shutdown().await;
    let _ = std::fs::remove_dir_all(hub_dir);
    let _ = std::fs::remove_dir_all(edge_dir);
}

#[tokio::test]
async fn events_are_never_applied_out_of_order() {
    use edge_node::purge::{PurgeEvent, PurgeTarget};
    let origin = tagged_origin().await;
    let dead_hub = "http://127.0.0.1:9".to_string();
    let node = Node::start(Some(&origin.url()), Some(dead_hub), None, |_| {}).await;
    get(&node.url("/img/a.png"), &[]).await;
    let ev = |v, tag: &str| PurgeEvent {
        version: v,
        at_ms: 0,
        soft: false,
        target: PurgeTarget::Tags(vec![tag.into()]),
    };
    assert!(
        !node.purge.apply(&ev(2, "images")),
        "version 2 before 1 is refused"
    );
    assert_eq!(node.purge.applied(), 0);
    assert!(
        get(&node.url("/img/a.png"), &[]).await.is_hit(),
        "nothing was applied"
    );
    assert!(node.purge.apply(&ev(1, "nothing")));
    assert!(node.purge.apply(&ev(2, "images")));
    assert!(node.purge.apply(&ev(2, "images")), "a repeat is a no-op");
    assert_eq!(node.purge.applied(), 2);
    assert!(!get(&node.url("/img/a.png"), &[]).await.is_hit());
}

#[tokio::test]
async fn a_soft_purge_stamped_by_a_clock_ahead_of_this_node_applies_at_once() {
    // The hub's clock runs an hour ahead: its soft purge says "stale from an hour from now".
    // Taken literally, the object would stay fresh here for another hour.
    use edge_node::purge::{PurgeEvent, PurgeTarget, UrlTarget};
    let origin = tagged_origin().await;
    let node = Node::start(
        Some(&origin.url()),
        Some("http://127.0.0.1:9".into()),
        None,
        |_| {},
    )
    .await;
    get(&node.url("/about"), &[]).await;
    assert!(get(&node.url("/about"), &[]).await.is_hit());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let before = origin.requests();
    assert!(node.purge.apply(&PurgeEvent {
        version: 1,
        at_ms: now_ms + 3_600_000,
        soft: true,
        target: PurgeTarget::Urls(vec![UrlTarget {
            host: "127.0.0.1".into(),
            path: "/about".into(),
        }]),
    }));
    assert!(
        !get(&node.url("/about"), &[]).await.is_hit(),
        "a soft-purged object is served fresh because the purge is stamped in the future"
    );
    assert_eq!(origin.requests(), before + 1, "it was revalidated");
    assert!(get(&node.url("/about"), &[]).await.is_hit());
}

#[tokio::test]
async fn bad_purge_requests_get_clear_errors_and_change_nothing() {
    let c = cluster().await;
    warm(&c).await;
    let admin = c.hub.admin_url();
    for (json, want) in [
        ("not json", "invalid purge JSON"),
        (
            r#"{"urls":["http://127.0.0.1/a"],"bogus":1}"#,
            "unknown field",
        ),
        (r#"{"urls":[]}"#, "name what to purge"),
        (r#"{"tags":["a"],"all":true}"#, "exactly one"),
        (r#"{"urls":["/relative"]}"#, "absolute"),
        (r#"{"tags":["has space"]}"#, "invalid tag"),
    ] {
        let (status, v) = purge(&admin, TOKEN, json).await;
        assert_eq!(status, 400, "{json}");
        assert!(v["error"].as_str().unwrap().contains(want), "{json}: {v}");
    }
    let (status, v) = purge(&admin, "wrong", r#"{"all":true}"#).await;
    assert_eq!(status, 403);
    assert!(v["error"].is_string());
    let r = client()
        .post(format!("{admin}/purge"))
        .body(r#"{"all":true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Through a follower, bad requests are refused before reaching the hub.
    let (status, _) = purge(&c.edges[0].admin_url(), TOKEN, r#"{"prefixes":["nope"]}"#).await;
    assert_eq!(status, 400);
    let bad_since = client()
        .get(format!("{admin}/purge/log?since=abc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_since.status(), 400);
    assert_eq!(c.hub.purge.latest(), 0, "no version was used");
    assert_eq!(hits(&c, "/about").await, [true; 3]);
}

#[tokio::test]
async fn a_follower_reports_an_unreachable_hub() {
    let origin = tagged_origin().await;
    let node = Node::start(
        Some(&origin.url()),
        Some("http://127.0.0.1:9".into()),
        None,
        |_| {},
    )
    .await;
    let (status, v) = purge(&node.admin_url(), TOKEN, r#"{"all":true}"#).await;
    assert_eq!(status, 502);
    assert!(v["error"].as_str().unwrap().contains("purge hub"), "{v}");
}

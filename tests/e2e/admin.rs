//! The admin API: health, Prometheus metrics and JSON stats, behind a bearer token.

use crate::support::*;
use edge_node::admin::{router, AdminState};

#[tokio::test]
async fn metrics_and_stats_need_the_token_and_count_requests() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("{n}"), &[("cache-control", "max-age=60")])).await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/a"), &[]).await;
    get(&edge.url("/a"), &[]).await;
    get(&edge.url("/a"), &[("host", "nobody.test")]).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let state = AdminState::new("s3cret", vec![edge.node.clone()])
        .with_metrics(edge.proxy.registry().clone());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let base = format!("http://{admin}");

    let health = get(&format!("{base}/healthz"), &[]).await;
    assert_eq!(health.status, 200, "health is open for probes");
    assert_eq!(get(&format!("{base}/metrics"), &[]).await.status, 401);
    let wrong = get(
        &format!("{base}/metrics"),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, 403);
    assert!(wrong.text().contains("\"error\""));
    assert_eq!(
        get(
            &format!("{base}/metrics"),
            &[("authorization", "Basic czNjcmV0")]
        )
        .await
        .status,
        401
    );

    let m = get(
        &format!("{base}/metrics"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(m.status, 200);
    let text = m.text();
    let requests = "http_server_request_duration_seconds_count";
    let edge_tier = ("cdn_tier", "edge");
    for (name, labels, want) in [
        (requests, vec![edge_tier, ("cdn_cache_status", "hit")], 1.0),
        (requests, vec![edge_tier, ("cdn_cache_status", "miss")], 1.0),
        (
            requests,
            vec![edge_tier, ("cdn_cache_status", "error")],
            1.0,
        ),
        (requests, vec![edge_tier], 3.0),
        (
            "http_server_request_duration_seconds_bucket",
            vec![edge_tier, ("le", "+Inf")],
            3.0,
        ),
        (
            "http_client_request_duration_seconds_count",
            vec![edge_tier],
            1.0,
        ),
        ("outpost_cache_stores_total", vec![edge_tier], 1.0),
        ("outpost_cache_objects", vec![edge_tier], 1.0),
    ] {
        assert_eq!(
            metric_sum(&text, name, &labels),
            Some(want),
            "{name} {labels:?} in\n{text}"
        );
    }
    let s = get(
        &format!("{base}/stats"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(v["edge"][0]["hits"], 1);
    assert!(v["edge"][0]["cache"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        get(
            &format!("{base}/nope"),
            &[("authorization", "Bearer s3cret")]
        )
        .await
        .status,
        404
    );
}

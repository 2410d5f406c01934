//! Invalidation on unsafe methods (RFC 9111 section 4.4): the target URI, and Location and
//! Content-Location on the same host, after a non-error response.

use crate::support::*;

async fn setup() -> (Origin, TestEdge) {
    let origin = Origin::start(|seen, n| match seen.method.as_str() {
        "GET" => Reply::ok(
            &format!("{} v{n}", seen.uri),
            &[("cache-control", "max-age=600")],
        ),
        _ if seen.uri == "/fail" => Reply::ok("nope", &[]).status(500),
        _ => Reply::ok(
            "done",
            &[
                ("location", "/other"),
                ("content-location", "http://127.0.0.1/third"),
                ("cache-control", "no-store"),
            ],
        )
        .status(201),
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    (origin, edge)
}

#[tokio::test]
async fn unsafe_methods_invalidate_target_location_and_content_location() {
    let (origin, edge) = setup().await;
    for p in ["/item", "/other", "/third", "/unrelated"] {
        get(&edge.url(p), &[]).await;
        assert!(get(&edge.url(p), &[]).await.is_hit());
    }
    let c = client();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = send(&c, method, &edge.url("/item"), &[]).await;
        assert_eq!(r.status, 201);
        assert!(
            r.cache_status().contains("fwd=method"),
            "{}",
            r.cache_status()
        );
        for p in ["/item", "/other", "/third"] {
            assert!(
                !get(&edge.url(p), &[]).await.is_hit(),
                "{method} should invalidate {p}"
            );
        }
        assert!(get(&edge.url("/unrelated"), &[]).await.is_hit());
    }
    assert_eq!(
        origin
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "PATCH")
            .count(),
        1
    );
}

/// With a disk tier, an invalidation reaches every tier: the copy written to disk must not
/// come back (promoted into memory) on the next GET.
#[tokio::test]
async fn unsafe_methods_invalidate_the_disk_tier_too() {
    let origin = Origin::start(|seen, n| match seen.method.as_str() {
        "GET" => Reply::ok(
            &format!("{} v{n}", seen.uri),
            &[("cache-control", "max-age=600")],
        ),
        _ => Reply::ok(
            "done",
            &[("location", "/other"), ("cache-control", "no-store")],
        )
        .status(201),
    })
    .await;
    let dir = temp_dir("invalidate-disk");
    let d = dir.to_path_buf();
    let edge = edge(&origin, move |c| {
        c.disk_path = Some(d);
        c.disk_bytes = edge_node::config::ByteSize(64 << 20);
    })
    .await;
    disk_ready(&edge).await;
    for p in ["/item", "/other"] {
        get(&edge.url(p), &[]).await;
        assert!(get(&edge.url(p), &[]).await.is_hit());
    }
    disk_writes(&edge, 2).await;
    let r = send(&client(), "POST", &edge.url("/item"), &[]).await;
    assert_eq!(r.status, 201);
    for (p, fresh) in [("/item", "/item v4"), ("/other", "/other v5")] {
        let again = get(&edge.url(p), &[]).await;
        assert!(
            !again.is_hit(),
            "{p} answered from a tier the POST did not invalidate: {}",
            again.cache_status()
        );
        assert_eq!(again.text(), fresh);
    }
    assert_eq!(
        origin.requests(),
        5,
        "both URLs fetched again after the POST"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn failed_unsafe_requests_do_not_invalidate() {
    let (_origin, edge) = setup().await;
    get(&edge.url("/fail"), &[]).await;
    let r = send(&client(), "POST", &edge.url("/fail"), &[]).await;
    assert_eq!(r.status, 500);
    assert!(get(&edge.url("/fail"), &[]).await.is_hit());
}

#[tokio::test]
async fn request_bodies_are_forwarded() {
    let origin = Origin::start(|seen, _| {
        Reply::ok(
            &format!(
                "{} {}",
                seen.method,
                seen.headers
                    .get("content-length")
                    .map(|v| v.to_str().unwrap())
                    .unwrap_or("-")
            ),
            &[],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let r = client()
        .post(edge.url("/upload"))
        .body("x".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "POST 5000");
}

//! Outpost's `Cache` on its own: a memory tier and a disk tier, responses stored, looked up
//! (fresh, then a miss once purged) and found again on disk by a new cache over the same
//! directory (a restart).
//!
//!     cargo run --example cache_alone             # runs its checks, exit 0
//!
//! `cargo test` runs it as a test.

use bytes::Bytes;
use edge_node::cache::{
    Cache, CacheKey, CacheOptions, Freshness, Lookup, Mark, Object, PurgeMarks, Request,
};
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Looks `path` up on host `example.test`.
/// Waits (up to 30 s, for a loaded machine) until `done` holds.
async fn settle(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lookup(cache: &Cache, path: &str) -> Lookup {
    let key = CacheKey::new("https", "example.test", path, None);
    let headers = HeaderMap::new();
    let req = Request {
        key: &key,
        headers: &headers,
        host: "example.test",
        path,
    };
    cache.lookup(req, now_ms()).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("outpost-cache-alone-{}", std::process::id()));
    let opts = CacheOptions {
        memory_bytes: 8 << 20,
        max_variants: 4,
        max_object_bytes: 1 << 20,
        disk: Some((dir.clone(), 64 << 20)),
    };
    let mut failed = 0;
    let mut check = |name: &str, ok: bool| {
        failed += usize::from(!ok);
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
    };

    // The disk tier indexes its directory in the background and takes writes once that is
    // done, so wait for it before storing (a node serves from memory meanwhile).
    let cache = Cache::new(&opts, Arc::new(PurgeMarks::default()));
    settle(|| cache.gauges().disk.is_some_and(|d| d.ready)).await;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "text/plain".parse()?);
    headers.insert("surrogate-key", "docs".parse()?);
    for path in ["/a", "/b"] {
        let object = Object::new(
            StatusCode::OK,
            &headers,
            Bytes::from(format!("body of {path}")),
            Freshness::for_ttl(now_ms(), Duration::from_secs(60)),
        );
        let key = CacheKey::new("https", "example.test", path, None);
        cache.insert(key, None, Box::default(), Arc::new(object));
    }
    let fresh = |l: &Lookup| matches!(l, Lookup::Fresh { .. });
    // Written through to disk in the background.
    settle(|| cache.gauges().disk.is_some_and(|d| d.writes >= 2)).await;
    check("stored /a is fresh", fresh(&lookup(&cache, "/a").await));
    check(
        "/c was never stored",
        matches!(lookup(&cache, "/c").await, Lookup::Miss { .. }),
    );

    let purge = Mark {
        version: 1,
        soft: false,
        at_ms: now_ms(),
    };
    cache.purge_keys(&[CacheKey::new("https", "example.test", "/a", None)], purge);
    cache.purged_up_to(1);
    check(
        "purged /a is a miss",
        matches!(lookup(&cache, "/a").await, Lookup::Miss { .. }),
    );
    check("/b is still fresh", fresh(&lookup(&cache, "/b").await));

    // A new cache over the same directory rebuilds its index and finds /b there.
    drop(cache);
    let reopened = Cache::new(&opts, Arc::new(PurgeMarks::default()));
    settle(|| reopened.gauges().disk.is_some_and(|d| d.ready)).await;
    let found = match lookup(&reopened, "/b").await {
        Lookup::Fresh { object, .. } => object.body == "body of /b",
        _ => false,
    };
    check("after a restart /b comes from disk", found);

    let _ = std::fs::remove_dir_all(&dir);
    println!("cache_alone: {} passed, {failed} failed", 5 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

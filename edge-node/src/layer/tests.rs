//! The layer in front of a real axum app on 127.0.0.1, asked over real connections: hits,
//! misses, Vary, no-store, collapsing, purges, stale-if-error, invalidation, Cache-Status.

use super::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Calls of the app's handlers, by route.
#[derive(Default)]
struct Calls {
    page: AtomicUsize,
    lang: AtomicUsize,
    nostore: AtomicUsize,
    slow: AtomicUsize,
    flaky: AtomicUsize,
    tagged: AtomicUsize,
}

async fn page(State(c): State<Arc<Calls>>) -> impl IntoResponse {
    let n = c.page.fetch_add(1, Ordering::SeqCst) + 1;
    (
        [("cache-control", "max-age=60"), ("etag", "\"p\"")],
        format!("page {n}"),
    )
}

async fn lang(State(c): State<Arc<Calls>>, h: HeaderMap) -> impl IntoResponse {
    c.lang.fetch_add(1, Ordering::SeqCst);
    let l = h
        .get("accept-language")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    (
        [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        format!("lang {l}"),
    )
}

async fn nostore(State(c): State<Arc<Calls>>) -> impl IntoResponse {
    let n = c.nostore.fetch_add(1, Ordering::SeqCst) + 1;
    ([("cache-control", "no-store")], format!("fresh {n}"))
}

async fn slow(State(c): State<Arc<Calls>>) -> impl IntoResponse {
    c.slow.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ([("cache-control", "max-age=60")], "slow")
}

/// Fresh for one second, may be served stale for a minute if the app then fails (it does,
/// from the second call on).
async fn flaky(State(c): State<Arc<Calls>>) -> axum::response::Response {
    if c.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
        ([("cache-control", "max-age=1, stale-if-error=60")], "good").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
    }
}

async fn tagged(State(c): State<Arc<Calls>>) -> impl IntoResponse {
    let n = c.tagged.fetch_add(1, Ordering::SeqCst) + 1;
    (
        [
            ("cache-control", "max-age=60"),
            ("surrogate-key", "products p1"),
        ],
        format!("tagged {n}"),
    )
}

async fn start(layer: CacheLayer) -> (SocketAddr, Arc<Calls>, tokio::task::JoinHandle<()>) {
    let calls = Arc::new(Calls::default());
    let app = Router::new()
        .route("/page", get(page).post(|| async { StatusCode::NO_CONTENT }))
        .route("/img/a", get(page))
        .route("/lang", get(lang))
        .route("/nostore", get(nostore))
        .route("/slow", get(slow))
        .route("/flaky", get(flaky))
        .route("/tagged", get(tagged))
        .with_state(calls.clone())
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, calls, task)
}

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", "app.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::new()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("answer within 10 s")
        .expect("answer");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get_(addr: SocketAddr, path: &str) -> Got {
    send(addr, "GET", path, &[]).await
}

#[tokio::test]
async fn miss_then_hit_with_cache_status_and_age() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    let a = get_(addr, "/page").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "page 1");
    assert_eq!(
        a.cache_status(),
        "outpost; fwd=miss; fwd-status=200; stored"
    );
    let b = get_(addr, "/page").await;
    assert_eq!(b.body, "page 1");
    assert!(
        b.cache_status().starts_with("outpost; hit; ttl="),
        "{}",
        b.cache_status()
    );
    assert_eq!(b.headers["age"], "0");
    assert_eq!(b.headers["content-length"], "6");
    // The same URL by another spelling of its path is the same entry.
    assert_eq!(get_(addr, "/x/../page").await.body, "page 1");
    assert_eq!(calls.page.load(Ordering::SeqCst), 1);
    // HEAD from the stored GET, no body.
    let h = send(addr, "HEAD", "/page", &[]).await;
    assert_eq!((h.status, h.body.as_str()), (StatusCode::OK, ""));
    assert_eq!(calls.page.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    let en = send(addr, "GET", "/lang", &[("accept-language", "en")]).await;
    let de = send(addr, "GET", "/lang", &[("accept-language", "de")]).await;
    assert_eq!((en.body.as_str(), de.body.as_str()), ("lang en", "lang de"));
    let en2 = send(addr, "GET", "/lang", &[("accept-language", "EN")]).await;
    let de2 = send(addr, "GET", "/lang", &[("accept-language", "de")]).await;
    assert_eq!(
        (en2.body.as_str(), de2.body.as_str()),
        ("lang en", "lang de")
    );
    assert!(en2.cache_status().contains("hit"), "{}", en2.cache_status());
    assert!(de2.cache_status().contains("hit"), "{}", de2.cache_status());
    assert_eq!(calls.lang.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_store_is_never_stored() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    let a = get_(addr, "/nostore").await;
    let b = get_(addr, "/nostore").await;
    assert_eq!((a.body.as_str(), b.body.as_str()), ("fresh 1", "fresh 2"));
    assert_eq!(
        b.cache_status(),
        "outpost; fwd=miss; fwd-status=200; detail=no-store"
    );
    assert_eq!(calls.nostore.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_misses_make_one_inner_call() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    let all = futures_util::future::join_all((0..10).map(|_| get_(addr, "/slow"))).await;
    assert!(all.iter().all(|g| g.status == 200 && g.body == "slow"));
    assert_eq!(calls.slow.load(Ordering::SeqCst), 1);
    let collapsed = all
        .iter()
        .filter(|g| g.cache_status().ends_with("stored; collapsed"))
        .count();
    assert_eq!(
        collapsed,
        9,
        "{:?}",
        all.iter().map(Got::cache_status).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_cancelled_leader_strands_nobody() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    // The first request goes away while its fill runs; the second joins that fill.
    let first = tokio::spawn(get_(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.abort();
    let second = get_(addr, "/slow").await;
    assert_eq!(second.body, "slow");
    assert_eq!(calls.slow.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn purges_by_url_prefix_tag_and_all() {
    let layer = CacheLayer::new(CacheConfig::default());
    let purge = layer.purge_handle();
    let (addr, calls, _t) = start(layer).await;
    let page = |calls: &Calls| calls.page.load(Ordering::SeqCst);

    get_(addr, "/page").await;
    get_(addr, "/page").await;
    assert_eq!(page(&calls), 1);
    purge.url("http://app.test/page").unwrap();
    assert_eq!(get_(addr, "/page").await.body, "page 2");

    get_(addr, "/img/a").await;
    purge.prefix("http://app.test/img/").unwrap();
    assert_eq!(get_(addr, "/img/a").await.body, "page 4");
    assert!(get_(addr, "/page").await.cache_status().contains("hit"));

    assert_eq!(get_(addr, "/tagged").await.body, "tagged 1");
    assert_eq!(get_(addr, "/tagged").await.body, "tagged 1");
    purge.tag("p1");
    assert_eq!(get_(addr, "/tagged").await.body, "tagged 2");

    purge.all();
    assert_eq!(get_(addr, "/page").await.body, "page 5");
    assert_eq!(get_(addr, "/tagged").await.body, "tagged 3");

    // A soft purge leaves the object for stale use; it is fetched again.
    purge
        .purge(Purge::Url("http://app.test/page"), true)
        .unwrap();
    assert_eq!(get_(addr, "/page").await.body, "page 6");
    assert!(purge.url("/page").is_err());
}

#[tokio::test]
async fn stale_if_error_answers_with_the_stored_object() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default())).await;
    assert_eq!(get_(addr, "/flaky").await.body, "good");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = get_(addr, "/flaky").await;
    assert_eq!((b.status, b.body.as_str()), (StatusCode::OK, "good"));
    assert_eq!(
        b.cache_status(),
        "outpost; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    assert_eq!(calls.flaky.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_conditionals_get_304() {
    let (addr, calls, _t) = start(CacheLayer::new(CacheConfig::default().name("app"))).await;
    get_(addr, "/page").await;
    let p = send(addr, "POST", "/page", &[]).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    assert_eq!(p.cache_status(), "app; fwd=method; fwd-status=204");
    assert_eq!(get_(addr, "/page").await.body, "page 2");
    let lm = get_(addr, "/page").await;
    assert!(lm.cache_status().starts_with("app; hit"));
    assert_eq!(calls.page.load(Ordering::SeqCst), 2);
    let c = send(addr, "GET", "/page", &[("if-none-match", "W/\"p\"")]).await;
    assert_eq!((c.status, c.body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    assert_eq!(c.headers["etag"], "\"p\"");
    let c = send(addr, "GET", "/page", &[("if-none-match", "\"q\"")]).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(calls.page.load(Ordering::SeqCst), 2);
}

/// Waits up to 5 s for `ok` of the layer's disk tier.
async fn disk_until(layer: &CacheLayer, ok: impl Fn(&crate::cache::DiskGauges) -> bool) {
    for _ in 0..100 {
        if layer.cache().gauges().disk.as_ref().is_some_and(&ok) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("disk tier: {:?}", layer.cache().gauges().disk);
}

#[tokio::test]
async fn disk_tier_keeps_objects_across_layers() {
    let dir = std::env::temp_dir().join(format!("outpost-layer-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = CacheConfig::default().disk(&dir, 16 << 20);
    {
        let layer = CacheLayer::new(config.clone());
        let (addr, _calls, t) = start(layer.clone()).await;
        disk_until(&layer, |d| d.ready).await;
        assert_eq!(get_(addr, "/page").await.body, "page 1");
        // Written through in the background.
        disk_until(&layer, |d| d.writes == 1).await;
        t.abort();
    }
    // A new layer over the same directory (a restart) serves it from disk.
    let layer = CacheLayer::new(config);
    let (addr, calls, _t) = start(layer.clone()).await;
    disk_until(&layer, |d| d.ready).await;
    let g = get_(addr, "/page").await;
    assert_eq!(g.body, "page 1", "{}", g.cache_status());
    assert!(g.cache_status().contains("hit"), "{}", g.cache_status());
    assert_eq!(calls.page.load(Ordering::SeqCst), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Criterion benchmark of the cache-hit path without sockets: normalise the host and query,
//! build the key, look up the memory tier (with and without Vary), check freshness, and build
//! the client response (headers, Age, Cache-Status). Run: `cargo bench -p edge-node`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_node::cache::headers::StoredHeaders;
use edge_node::cache::key::{normalize_host, normalize_query, CacheKey};
use edge_node::cache::object::Object;
use edge_node::cache::policy::{unix_ms, Freshness, Usability};
use edge_node::cache::store::{Lookup, MemoryStore};
use edge_node::cache::vary::VarySpec;
use edge_node::config::QueryMode;
use edge_node::proxy::respond::Reply;
use http::{HeaderMap, HeaderValue, Method};
use std::hint::black_box;
use std::sync::Arc;

fn object(vary: bool) -> Arc<Object> {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "date",
        HeaderValue::from_static("Tue, 24 Nov 2026 10:00:00 GMT"),
    );
    h.insert("etag", HeaderValue::from_static("\"5f3a-1k\""));
    h.insert(
        "last-modified",
        HeaderValue::from_static("Mon, 23 Nov 2026 10:00:00 GMT"),
    );
    if vary {
        h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
    }
    let now = unix_ms(std::time::SystemTime::now());
    Arc::new(Object {
        status: http::StatusCode::OK,
        headers: StoredHeaders::from_map(&h, |_| true),
        body: Bytes::from(vec![b'x'; 1024]),
        fresh: Freshness {
            response_time_ms: now,
            initial_age_ms: 0,
            fresh_until_ms: now + 3_600_000,
            swr_ms: 0,
            sie_ms: 0,
            has_validator: true,
            keep_until_ms: now + 7_200_000,
        },
        encoded: Box::default(),
        tags: Box::default(),
        purge_version: 0,
    })
}

fn hit(store: &MemoryStore, req: &HeaderMap, via: &HeaderValue, path: &str) {
    let host = normalize_host(black_box("WWW.example.test:8080")).unwrap_or_default();
    let q = normalize_query(None, QueryMode::Sort, &[]);
    let key = CacheKey::new("http", &host, black_box(path), q.as_deref());
    let Lookup::Found(obj, _) = store.lookup(&key, req) else {
        panic!("expected a hit for {path}")
    };
    let now = unix_ms(std::time::SystemTime::now());
    assert_eq!(obj.fresh.usability(now), Usability::Fresh);
    let ttl = (obj.fresh.fresh_until_ms - now) / 1000;
    let reply = Reply {
        method: &Method::GET,
        req,
        cache_status: HeaderValue::from_str(&format!("outpost-edge; hit; ttl={ttl}"))
            .unwrap_or(HeaderValue::from_static("x")),
        via,
    };
    black_box(reply.object(&obj, obj.fresh.age_secs(now)));
}

fn bench(c: &mut Criterion) {
    let store = MemoryStore::new(256 << 20, 8);
    let mut vary_h = HeaderMap::new();
    vary_h.insert("vary", HeaderValue::from_static("Accept-Encoding"));
    let spec = VarySpec::from_response(&vary_h);
    let mut req = HeaderMap::new();
    req.insert("host", HeaderValue::from_static("www.example.test"));
    req.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    req.insert("user-agent", HeaderValue::from_static("wrk"));
    for i in 0..10_000 {
        let key = CacheKey::new("http", "www.example.test", &format!("/bytes/{i}"), None);
        store.insert(key, None, Box::new([]), object(false));
        let key = CacheKey::new("http", "www.example.test", &format!("/vary/{i}"), None);
        let values = spec.as_ref().map(|s| s.values(&req)).unwrap_or_default();
        store.insert(key, spec.clone(), values, object(true));
    }
    let via = HeaderValue::from_static("1.1 outpost-edge");

    c.bench_function("hit_path/plain_1k", |b| {
        b.iter(|| hit(&store, &req, &via, "/bytes/4242"))
    });
    c.bench_function("hit_path/vary_1k", |b| {
        b.iter(|| hit(&store, &req, &via, "/vary/4242"))
    });
    c.bench_function("key/xxh3_128", |b| {
        b.iter(|| {
            black_box(CacheKey::new(
                "http",
                "www.example.test",
                black_box("/static/app.js"),
                Some("v=3"),
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

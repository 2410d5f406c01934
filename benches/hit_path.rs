//! Criterion benchmark of the cache-hit path without sockets: a whole request through the
//! node's request path (route, key, cache lookup, freshness, response with Age and
//! Cache-Status, metrics), for a 1 KiB object with and without Vary; and the cache's lookup
//! and the key hash alone; and the plain hit through a site with 20 rules and 2 limiters
//! (benches/load/rules20-site.toml). The objects are filled once through a real origin on loopback.
//! Run: `cargo bench -p edge-node --bench hit_path`.

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a failed run
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_node::cache::CacheKey;

use edge_node::cache::{Lookup, Request as CacheRequest};
use edge_node::config::{EdgeConfig, SiteConfig};
use edge_node::proxy::ClientInfo;
use http::Request;
use http_body_util::Empty;
use std::hint::black_box;
use std::sync::Arc;

#[path = "support/origin.rs"]
mod origin;
use origin::origin;

fn req(path: &str) -> Request<Empty<Bytes>> {
    req_to("www.example.test", path)
}

fn req_to(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", host)
        .header("accept-encoding", "gzip, deflate, br")
        .header("user-agent", "wrk")
        .body(Empty::new())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = ClientInfo::new("127.0.0.1:40000".parse().unwrap(), "http");
    let proxy = rt.block_on(async {
        let o = origin().await;
        let site = SiteConfig::new(vec!["www.example.test".into()], vec![format!("http://{o}")]);
        // The same origin behind a site with 20 rules and 2 limiters (issue 15's figure).
        let ruled: SiteConfig = toml::from_str(&format!(
            "hosts = [\"rules.example.test\"]\norigins = [\"http://{o}\"]\n{}",
            include_str!("load/rules20-site.toml")
        ))
        .unwrap();
        let mut cfg = EdgeConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![site, ruled]);
        cfg.limits = ["client", "path"]
            .iter()
            .zip(["a", "b"])
            .map(|(key, name)| edge_node::limits::LimitConfig {
                name: name.into(),
                rate: "1000000/s".into(),
                burst: None,
                key: key.to_string(),
                block: None,
                upstream_only: false,
            })
            .collect();
        let e = edge_node::Edge::bind(&cfg).await.unwrap();
        let p = e.proxy();
        for (host, path) in [
            ("www.example.test", "/bytes/4242"),
            ("www.example.test", "/vary/4242"),
            ("rules.example.test", "/bytes/4242"),
        ] {
            let req = |path| req_to(host, path);
            let r = p.clone().handle(req(path), client.clone()).await;
            let _ = http_body_util::BodyExt::collect(r.into_body()).await;
            let r = p.clone().handle(req(path), client.clone()).await;
            let st = r
                .headers()
                .get("cache-status")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert!(st.contains("; hit"), "{st}");
        }
        Arc::new(p)
    });
    let cache = proxy.cache().clone();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "accept-encoding",
        http::HeaderValue::from_static("gzip, deflate, br"),
    );
    for (name, path) in [
        ("cache/lookup_1k", "/bytes/4242"),
        ("cache/lookup_vary_1k", "/vary/4242"),
    ] {
        let key = CacheKey::new("http", "www.example.test", path, None);
        c.bench_function(name, |b| {
            b.iter(|| {
                let req = CacheRequest {
                    key: &key,
                    headers: &headers,
                    host: "www.example.test",
                    path,
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                match rt.block_on(cache.lookup(req, now)) {
                    Lookup::Fresh { object, .. } => black_box(object),
                    other => panic!("expected a fresh hit, got {other:?}"),
                }
            })
        });
    }
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
    c.bench_function("hit_path/handle_1k", |b| {
        b.iter(|| {
            black_box(rt.block_on((*proxy).clone().handle(req("/bytes/4242"), client.clone())))
        })
    });
    c.bench_function("hit_path/handle_1k_20_rules_2_limiters", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(
                    (*proxy)
                        .clone()
                        .handle(req_to("rules.example.test", "/bytes/4242"), client.clone()),
                ),
            )
        })
    });
    c.bench_function("hit_path/handle_vary_1k", |b| {
        b.iter(|| {
            black_box(rt.block_on((*proxy).clone().handle(req("/vary/4242"), client.clone())))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

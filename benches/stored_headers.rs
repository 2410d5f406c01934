//! Criterion benchmark of the stored header block: building it from a response's fields (once
//! per stored object) and turning it back into a `HeaderMap` (once per hit), for the ten
//! fields nginx sends with a static file (three of them dates); and that map with the five
//! fields a hit adds (`Age`, `Cache-Status`, `Via`, `Accept-Ranges`, `Content-Length`), as
//! the edge answers. `decode` is a block's first answers on a thread (the block parsed, dates
//! formatted, values validated); `to_map` is every later one, from the thread's kept fields
//! (edge-node's `cache/hot_headers.rs`). Run: `cargo bench -p edge-node --bench stored_headers`.

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a failed run
use criterion::{criterion_group, criterion_main, Criterion};
use edge_node::cache::StoredHeaders;
use http::{HeaderMap, HeaderValue};
use std::hint::black_box;

fn nginx_fields() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("server", "nginx/1.22.1"),
        ("date", "Thu, 03 Dec 2026 13:10:42 GMT"),
        ("content-type", "application/octet-stream"),
        ("content-length", "1024"),
        ("last-modified", "Thu, 03 Dec 2026 12:58:01 GMT"),
        ("connection", "keep-alive"),
        ("etag", "\"692fb3b9-400\""),
        ("expires", "Thu, 03 Dec 2026 14:10:42 GMT"),
        ("cache-control", "max-age=3600"),
        ("accept-ranges", "bytes"),
    ] {
        h.insert(n, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let fields = nginx_fields();
    let keep = |n: &http::HeaderName| n != "connection";
    let stored = StoredHeaders::from_map(&fields, keep);
    let mut g = c.benchmark_group("stored_headers_nginx");
    g.bench_function("from_map", |b| {
        b.iter(|| black_box(StoredHeaders::from_map(black_box(&fields), keep)))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut h = HeaderMap::with_capacity(20);
            black_box(&stored).write_into(&mut h);
            black_box(h)
        })
    });
    g.bench_function("to_map", |b| {
        b.iter(|| black_box(black_box(&stored).to_map()))
    });
    let via = HeaderValue::from_static("1.1 outpost-edge");
    let status = HeaderValue::from_static("outpost-edge; hit; ttl=3599");
    g.bench_function("hit_fields", |b| {
        b.iter(|| {
            let mut h = black_box(&stored).to_map();
            h.insert("age", HeaderValue::from(black_box(7u64)));
            h.append("cache-status", status.clone());
            h.append("via", via.clone());
            h.insert("accept-ranges", HeaderValue::from_static("bytes"));
            h.insert("content-length", HeaderValue::from(black_box(1024u64)));
            black_box(h)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

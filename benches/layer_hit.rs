//! Criterion benchmark of `CacheLayer` on a hit against calling the inner service directly:
//! the same request (GET, Host, 1 KiB answer with `Cache-Control: max-age=3600`) to a tower
//! service that answers at once, bare and behind the layer (after one fill). Both run the
//! future to completion on a current-thread runtime and read the whole body; the difference
//! is the layer's cost (key, lookup, freshness, the response built from the stored object
//! with Age and Cache-Status). Run: `cargo bench -p edge-node --bench layer_hit`.

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a failed run
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_node::layer::{CacheConfig, CacheLayer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// An application that answers every request with the same 1 KiB, cacheable for an hour.
#[derive(Clone)]
struct App(Bytes);

impl Service<Request<()>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mut r = Response::new(Full::new(self.0.clone()));
        let h = r.headers_mut();
        h.insert("cache-control", "public, max-age=3600".parse().unwrap());
        h.insert("content-type", "application/octet-stream".parse().unwrap());
        h.insert("etag", "\"5f3a-1k\"".parse().unwrap());
        ready(Ok(r))
    }
}

fn request() -> Request<()> {
    Request::builder()
        .uri("/assets/app.js")
        .header("host", "bench.test")
        .header("accept-encoding", "gzip, br")
        .body(())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = App(Bytes::from(vec![b'x'; 1024]));
    let mut layered = rt.block_on(async {
        let mut svc = CacheLayer::new(CacheConfig::default()).layer(app.clone());
        let filled = svc.call(request()).await.unwrap();
        assert!(filled.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("stored"));
        let hit = svc.call(request()).await.unwrap();
        assert!(hit.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit"));
        svc
    });
    let mut bare = app;
    let mut g = c.benchmark_group("layer_hit_1k");
    g.bench_function("inner_direct", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = bare.call(black_box(request())).await.unwrap();
                black_box(r.into_body().collect().await.unwrap().to_bytes())
            })
        })
    });
    g.bench_function("cache_layer_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = layered.call(black_box(request())).await.unwrap();
                black_box(r.into_body().collect().await.unwrap().to_bytes())
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Criterion benchmark of HTTP/2 cache hits through a real edge on loopback: one connection
//! (prior knowledge, the h2 crate's client), ten 1 KiB hits sent at once and read whole, per
//! iteration. Client and edge share one current-thread runtime, so the figure is the CPU of
//! both sides, the client's own frame-by-frame writes included: the edge's write coalescing
//! (`listener/coalesce.rs`) is within this bench's noise here (docs/benchmarks.md); under
//! load, with the client on another core, it is not (benches/load/tls.sh, ab.sh). Run:
//! `cargo bench -p edge-node --bench h2_hits`; for a before/after comparison, run it with
//! `-- --save-baseline before` on the old build and `-- --baseline before` on the new.

#![allow(clippy::unwrap_used)] // bench set-up: a failed unwrap is a failed run
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use edge_node::config::{EdgeConfig, SiteConfig};
use edge_node::Edge;
use h2::client::SendRequest;
use http::Request;
use std::hint::black_box;

#[path = "support/origin.rs"]
mod origin;

/// Streams per iteration, as h2load's `-m10` in benches/load.
const STREAMS: usize = 10;

async fn get_all(client: &SendRequest<Bytes>, paths: &[String]) -> usize {
    let mut pending = Vec::with_capacity(paths.len());
    let mut c = client.clone().ready().await.unwrap();
    for p in paths {
        let req = Request::get(format!("http://www.example.test{p}"))
            .body(())
            .unwrap();
        let (res, _) = c.send_request(req, true).unwrap();
        pending.push(res);
        c = c.ready().await.unwrap();
    }
    let mut bytes = 0;
    for res in pending {
        let mut body = res.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            bytes += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let paths: Vec<String> = (0..STREAMS).map(|i| format!("/bytes/{i}")).collect();
    let (client, _stop) = rt.block_on(async {
        let o = origin::origin().await;
        let site = SiteConfig::new(vec!["www.example.test".into()], vec![format!("http://{o}")]);
        let mut cfg = EdgeConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![site]);
        cfg.max_requests_per_connection = 0;
        let edge = Edge::builder(&cfg).bind().await.unwrap();
        let addr = edge.local_addrs()[0];
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(edge.serve(stopped));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        // Fill: every path is a hit from here on.
        assert_eq!(get_all(&client, &paths).await, STREAMS * 1024);
        (client, stop)
    });
    c.bench_function("h2_hits/10_streams_1k_loopback", |b| {
        b.iter(|| black_box(rt.block_on(get_all(&client, black_box(&paths)))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

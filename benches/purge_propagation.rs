//! Purge propagation benchmark: the time from `POST /purge` being accepted to the purged
//! object being a miss on every one of N edges, for N = 3 and 20 in-process nodes, over the
//! embedded hub (long-poll) and over NATS JetStream; p50/p99 over 200 purges. Also the cost of
//! a tag purge with 100,000 tagged objects stored against one with 100.
//!
//! Run: `cargo bench -p edge-node --bench purge_propagation` (needs `nats-server` on PATH).
//! Under `cargo test` it runs a few purges only, as a smoke test.

use bytes::Bytes;
use edge_node::admin::{self, AdminState};
use edge_node::config::{EdgeConfig, SiteConfig};
use edge_node::purge::NatsBus;
use edge_node::purge::{PurgeService, PurgeSink, Role};
use edge_node::Edge;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const TOKEN: &str = "bench";

async fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut r = hyper::Response::new(Full::new(Bytes::from(format!(
                            "object {}",
                            req.uri()
                        ))));
                        r.headers_mut().insert(
                            "cache-control",
                            http::HeaderValue::from_static("max-age=3600"),
                        );
                        r.headers_mut()
                            .insert("surrogate-key", http::HeaderValue::from_static("bulk"));
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

struct Node {
    edge: Option<SocketAddr>,
    admin: SocketAddr,
    purge: Arc<PurgeService>,
}

async fn node(
    origin: SocketAddr,
    role: Role,
    with_edge: bool,
    stop: &watch::Receiver<bool>,
) -> Node {
    let mut edges = Vec::new();
    let mut edge = None;
    if with_edge {
        let site = SiteConfig::new(vec!["127.0.0.1".into()], vec![format!("http://{origin}")]);
        let cfg = EdgeConfig::new(vec!["127.0.0.1:0".parse().expect("addr")], vec![site]);
        let e = Edge::bind(&cfg).await.expect("edge");
        edge = Some(e.local_addrs()[0]);
        edges.push(e.node());
        tokio::spawn(e.serve(stop.clone()));
    }
    let sinks = edges
        .iter()
        .map(|e| e.clone() as Arc<dyn PurgeSink>)
        .collect();
    let purge = PurgeService::open(role, None, Arc::default(), sinks).expect("purge service");
    if !purge.is_hub() {
        tokio::spawn(purge.clone().follow(stop.clone()));
    }
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = l.local_addr().expect("addr");
    let state = AdminState::new(TOKEN, edges).with_purge(purge.clone());
    let rx = stop.clone();
    tokio::spawn(async move {
        let _ = admin::serve(l, None, state, rx).await;
    });
    Node { edge, admin, purge }
}

async fn get(c: &HttpClient, url: String) -> String {
    let res = c.get(url.parse().expect("url")).await.expect("GET");
    let status = res
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let _ = res.into_body().collect().await;
    status
}

async fn post_purge(c: &HttpClient, admin: SocketAddr, json: String) -> u64 {
    let req = http::Request::post(format!("http://{admin}/purge"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(json)))
        .expect("request");
    let res = c.request(req).await.expect("POST /purge");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("purge refused: {v}"))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn nats_server() -> Option<(std::process::Child, u16, std::path::PathBuf)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir =
        std::env::temp_dir().join(format!("outpost-bench-nats-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((child, port, dir));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

async fn run(backend: &str, n: usize, purges: usize, nats_port: Option<u16>) {
    let (stop_tx, stop) = watch::channel(false);
    let origin = origin().await;
    let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut edges = Vec::new();
    let entry;
    if backend == "hub" {
        let hub = node(origin, Role::Hub, false, &stop).await;
        for _ in 0..n {
            edges.push(
                node(
                    origin,
                    Role::Follower {
                        hub: format!("http://{}", hub.admin),
                        token: TOKEN.into(),
                        ca: None,
                    },
                    true,
                    &stop,
                )
                .await,
            );
        }
        entry = hub.admin;
    } else {
        let port = nats_port.expect("nats port");
        let stream = format!("BENCH_{n}_{}", std::process::id());
        for i in 0..n {
            let bus = NatsBus::connect(
                &format!("nats://127.0.0.1:{port}"),
                &stream,
                &format!("bench-{n}-{i}"),
            )
            .await
            .expect("nats");
            edges.push(node(origin, Role::Nats(bus), true, &stop).await);
        }
        entry = edges[0].admin;
    }
    // Let followers open their long polls / consumers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..purges {
        for e in &edges {
            get(&c, format!("http://{}/obj/{i}", e.edge.expect("edge"))).await;
        }
    }
    let mut times = Vec::with_capacity(purges);
    let mut served_after = 0;
    for i in 0..purges {
        let t = Instant::now();
        let v = post_purge(
            &c,
            entry,
            format!(r#"{{"urls":["http://127.0.0.1/obj/{i}"]}}"#),
        )
        .await;
        let waits = edges
            .iter()
            .map(|e| e.purge.wait_applied(v, Duration::from_secs(10)));
        let ok = futures_util::future::join_all(waits).await;
        let took = t.elapsed();
        assert!(ok.iter().all(|b| *b), "purge {v} did not reach every edge");
        times.push(took);
        for e in &edges {
            if get(&c, format!("http://{}/obj/{i}", e.edge.expect("edge")))
                .await
                .contains("hit")
            {
                served_after += 1;
            }
        }
    }
    times.sort();
    println!(
        "{backend:>4} N={n:<2} purges={purges}: p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}  purged objects served after apply: {served_after}",
        pct(&times, 0.5),
        pct(&times, 0.99),
        times[times.len() - 1]
    );
    let _ = stop_tx.send(true);
}

async fn tag_cost(objects: usize) -> Duration {
    let (stop_tx, stop) = watch::channel(false);
    let origin = origin().await;
    let hub = node(origin, Role::Hub, true, &stop).await;
    let c: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http();
    let edge = hub.edge.expect("edge");
    let chunks: Vec<_> = (0..16)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in (w..objects).step_by(16) {
                    get(&c, format!("http://{edge}/tagged/{i}")).await;
                }
            })
        })
        .collect();
    for ch in chunks {
        let _ = ch.await;
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        post_purge(&c, hub.admin, r#"{"tags":["bulk"],"soft":true}"#.into()).await;
        best = best.min(t.elapsed());
    }
    assert!(
        !get(&c, format!("http://{edge}/tagged/0"))
            .await
            .contains("; hit"),
        "the tag purge covered the objects"
    );
    let _ = stop_tx.send(true);
    best
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let purges = if full { 200 } else { 3 };
    let sizes: &[usize] = if full { &[3, 20] } else { &[3] };
    println!("purge propagation: time from POST /purge to applied on every edge (in-process nodes, loopback)");
    for &n in sizes {
        run("hub", n, purges, None).await;
        // A fresh server (and stream) per run, so versions start at 1 for every run.
        match nats_server().await {
            Some((mut child, port, dir)) => {
                run("nats", n, purges, Some(port)).await;
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(dir);
            }
            None => println!("nats N={n}: skipped, nats-server not found"),
        }
    }
    let (small, big) = if full { (100, 100_000) } else { (10, 100) };
    let a = tag_cost(small).await;
    let b = tag_cost(big).await;
    println!("tag purge (POST /purge round trip, best of 5): {small} tagged objects {a:.2?}; {big} tagged objects {b:.2?}");
}

//! An Outpost edge embedded in a program, built from code, with hooks of its own: requests
//! without an `x-api-key` header are refused (401) before they reach the cache, and every
//! answer gets an `x-served-by` header. Purges go through an in-process purge hub.
//!
//!     cargo run --example embed_edge -- --serve    # serves until Ctrl-C
//!     cargo run --example embed_edge               # a bounded self-check on loopback, exit 0
//!
//! `cargo test` runs it (the self-check) as a test.

use edge_node::body::ProxyBody;
use edge_node::config::{EdgeConfig, SiteConfig};
use edge_node::hooks::{Hooks, Refusal, RequestInfo};
use edge_node::purge::{PurgeRequest, PurgeService, PurgeSink, Role};
use edge_node::Edge;
use http::{HeaderValue, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The program's own request-phase logic.
struct ApiKeyHooks;

impl Hooks for ApiKeyHooks {
    fn admit(&self, req: &RequestInfo<'_>) -> Result<(), Refusal> {
        if req.headers.contains_key("x-api-key") {
            Ok(())
        } else {
            Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                detail: "no-api-key",
                message: "an x-api-key header is required\n",
            })
        }
    }

    fn response(&self, res: &mut Response<ProxyBody>) {
        res.headers_mut()
            .insert("x-served-by", HeaderValue::from_static("embed-example"));
        res.headers_mut().remove("server");
    }
}

/// A small origin on 127.0.0.1: `/hello` is cacheable for a minute; counts its requests.
async fn origin() -> std::io::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/hello",
        axum::routing::get(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move { ([("cache-control", "max-age=60")], format!("hello #{n}\n")) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, hits))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let (origin, origin_hits) = origin().await?;

    // The node, from code: one site, its origin, a 16 MiB memory tier; `EdgeConfig::from_toml`
    // reads the same thing from an `[edge]` table.
    let listen: SocketAddr = if serve {
        "127.0.0.1:8080".parse()?
    } else {
        "127.0.0.1:0".parse()?
    };
    let site = SiteConfig::new(vec!["localhost".into()], vec![format!("http://{origin}")]);
    let mut cfg = EdgeConfig::new(vec![listen], vec![site]);
    cfg.memory_bytes = edge_node::config::ByteSize(16 << 20);
    let edge = Edge::builder(&cfg)
        .tier("embedded")
        .hooks(Arc::new(ApiKeyHooks))
        .bind()
        .await?;
    let addr = edge.local_addrs()[0];

    // Purges: an in-memory purge hub applying to this node's cache.
    let sink: Arc<dyn PurgeSink> = edge.proxy();
    let purges = PurgeService::open(Role::Hub, None, Arc::default(), vec![sink])?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(edge.serve(stopped));
    if serve {
        println!("edge on http://{addr} (Host: localhost, header x-api-key), origin {origin}");
        tokio::signal::ctrl_c().await?;
        let _ = stop.send(true);
        serving.await?;
        return Ok(());
    }

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let url = format!("http://{addr}/hello");
    let get = |key: bool| {
        let mut r = client.get(&url).header("host", "localhost");
        if key {
            r = r.header("x-api-key", "k");
        }
        r.send()
    };
    let mut failed = Vec::new();
    let mut check = |name: &str, ok: bool| {
        if !ok {
            failed.push(name.to_string());
        }
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
    };

    let refused = get(false).await?;
    check("no key: 401", refused.status() == StatusCode::UNAUTHORIZED);
    let first = get(true).await?;
    check("with key: 200", first.status() == StatusCode::OK);
    check(
        "response hook adds x-served-by",
        first
            .headers()
            .get("x-served-by")
            .is_some_and(|v| v == "embed-example"),
    );
    let second = get(true).await?;
    let status = second.headers().get("cache-status").cloned();
    check(
        "second request is a hit",
        status
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s.contains("hit")),
    );
    check("origin asked once", origin_hits.load(Ordering::SeqCst) == 1);
    let v = purges
        .submit(&PurgeRequest {
            urls: vec!["http://localhost/hello".into()],
            ..Default::default()
        })
        .await?;
    check("purge accepted", v >= 1);
    let third = get(true).await?;
    check(
        "after the purge: fetched again",
        third.text().await? == "hello #2\n",
    );

    let _ = stop.send(true);
    serving.await?;
    let (n, bad) = (7, failed.len());
    println!("embed_edge: {} passed, {bad} failed", n - bad);
    if bad > 0 {
        std::process::exit(1);
    }
    Ok(())
}

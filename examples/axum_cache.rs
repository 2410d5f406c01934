//! An axum application that caches its own responses in process with Outpost's
//! `CacheLayer` (one line), and purges them through an endpoint of its own.
//!
//!     cargo run --example axum_cache -- --serve    # serves on 127.0.0.1:3000 until Ctrl-C
//!     cargo run --example axum_cache               # a bounded self-check on loopback, exit 0
//!
//! `cargo test` runs it (the self-check) as a test.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use edge_node::layer::{CacheConfig, CacheLayer, PurgeHandle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `GET /users/{id}`: an expensive page, cacheable for five minutes, tagged for purges.
async fn user(
    Path(id): Path<u32>,
    State(renders): State<Arc<AtomicUsize>>,
) -> impl axum::response::IntoResponse {
    let n = renders.fetch_add(1, Ordering::SeqCst) + 1;
    (
        [
            ("cache-control", "public, max-age=300"),
            ("surrogate-key", "users"),
        ],
        format!("user {id} (render #{n})\n"),
    )
}

/// The body of `POST /purge`: `{"url": ".."}` or `{"tag": ".."}`.
#[derive(serde::Deserialize)]
struct PurgeBody {
    url: Option<String>,
    tag: Option<String>,
}

/// `POST /purge`: answers with the purge's version.
async fn purge(
    State(handle): State<PurgeHandle>,
    Json(body): Json<PurgeBody>,
) -> Result<String, (http::StatusCode, String)> {
    let bad = |e: String| (http::StatusCode::BAD_REQUEST, e);
    let version = match (body.url, body.tag) {
        (Some(url), None) => handle.url(&url).map_err(|e| bad(e.to_string()))?,
        (None, Some(tag)) => handle.tag(&tag),
        _ => return Err(bad("give one of url, tag\n".into())),
    };
    Ok(format!("{version}\n"))
}

fn app(renders: Arc<AtomicUsize>) -> Router {
    let cache = CacheLayer::new(CacheConfig::default().memory_bytes(32 << 20));
    let purges = Router::new()
        .route("/purge", post(purge))
        .with_state(cache.purge_handle());
    Router::new()
        .route("/users/{id}", get(user))
        .with_state(renders)
        .layer(cache) // <- the one line
        .merge(purges) // the purge endpoint itself is not cached
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");
    let renders = Arc::new(AtomicUsize::new(0));
    let renders_for_app = renders.clone();
    let bind = if serve {
        "127.0.0.1:3000"
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app(renders_for_app)).await });
    if serve {
        println!("http://{addr}/users/7 ; purge: curl -d '{{\"tag\":\"users\"}}' -H 'content-type: application/json' http://{addr}/purge");
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let url = format!("http://{addr}/users/7");
    let mut failed = 0;
    let mut check = |name: &str, ok: bool| {
        failed += usize::from(!ok);
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
    };
    let status = |r: &reqwest::Response| {
        r.headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };

    let a = client.get(&url).send().await?;
    check(
        "first: a stored miss",
        status(&a).contains("fwd=miss") && status(&a).contains("stored"),
    );
    let b = client.get(&url).send().await?;
    check("second: a hit", status(&b).contains("hit"));
    check("same body", b.text().await? == "user 7 (render #1)\n");
    let p = client
        .post(format!("http://{addr}/purge"))
        .json(&serde_json::json!({ "tag": "users" }))
        .send()
        .await?;
    check("purge by tag accepted", p.status().is_success());
    let c = client.get(&url).send().await?;
    check(
        "after the purge: rendered again",
        c.text().await? == "user 7 (render #2)\n",
    );
    check("two renders in all", renders.load(Ordering::SeqCst) == 2);

    server.abort();
    println!("axum_cache: {} passed, {failed} failed", 6 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

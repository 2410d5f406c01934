//! `outpost purge`: sends one purge to a node's admin API and prints its version.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// What to purge, from the command line.
#[derive(clap::Args)]
pub struct PurgeArgs {
    /// Admin URL of any node (`http://127.0.0.1:9901`, or `https://` when its admin API is on
    /// TLS).
    #[arg(long)]
    pub admin: String,
    /// PEM file of the CAs that sign an https:// admin API's certificate (the fleet CA);
    /// default: the system's roots.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Admin bearer token.
    #[arg(long, env = "OUTPOST_ADMIN_TOKEN")]
    pub token: String,
    /// Absolute URL to purge (all its variants); repeatable.
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Absolute URL prefix to purge; repeatable.
    #[arg(long = "prefix")]
    pub prefixes: Vec<String>,
    /// Surrogate-Key / Cache-Tag to purge; repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Purge everything.
    #[arg(long)]
    pub all: bool,
    /// Mark stale instead of removing.
    #[arg(long)]
    pub soft: bool,
}

/// Sends the purge; returns the version, or one line saying what went wrong.
pub async fn run(a: PurgeArgs) -> Result<u64, String> {
    let req = edge_node::purge::PurgeRequest {
        urls: a.urls,
        prefixes: a.prefixes,
        tags: a.tags,
        all: a.all,
        soft: a.soft,
    };
    req.target()?;
    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    let url = format!("{}/purge", a.admin.trim_end_matches('/'));
    let http_req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", a.token))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("invalid --admin URL {:?}: {e}", a.admin))?;
    let client = edge_node::upstream::tls::admin_client::<Full<Bytes>>(a.ca.as_deref())?;
    let res = tokio::time::timeout(Duration::from_secs(15), client.request(http_req))
        .await
        .map_err(|_| format!("{url}: no answer within 15s"))?
        .map_err(|e| format!("{url}: {}", edge_node::upstream::error_chain(&e)))?;
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no details");
        return Err(format!("{url}: {status}: {msg}"));
    }
    json.get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| format!("{url}: answer has no version"))
}

//! `outpost purge`: sends one purge to a node's admin API and prints its version;
//! `outpost purge log` prints the recent purges (`purge_log.rs`).

use crate::admin_client::{AdminApi, AdminArgs};

/// `outpost purge [log]`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PurgeCmd {
    /// `log`: the recent purges instead of a new one.
    #[command(subcommand)]
    pub sub: Option<PurgeSub>,
    /// The purge to send.
    #[command(flatten)]
    pub purge: PurgeArgs,
}

/// What `outpost purge` does besides purging.
#[derive(clap::Subcommand)]
pub enum PurgeSub {
    /// Print the recent purges of a node's purge log (version, time, kind, targets).
    Log(crate::purge_log::LogArgs),
}

/// What to purge, from the command line.
#[derive(clap::Args)]
pub struct PurgeArgs {
    /// The admin API of any node.
    #[command(flatten)]
    pub admin: AdminArgs,
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
    let api = AdminApi::new(&a.admin)?;
    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    let json = api.post("/purge", body).await?;
    json.get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| "the admin API's answer has no version".to_string())
}

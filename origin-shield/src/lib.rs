//! The origin shield: the parent tier in front of the origin. Edges send their misses here
//! (each object to its home shield, by rendezvous hashing on the edge's side); only the shield
//! talks to the origin, so each object is fetched from it once.
//!
//! The shield is an `edge-node` node of its own kind: its own `[shield]` config
//! ([`config::ShieldConfig`], which refuses the edge's keys), its own name in `Cache-Status`
//! (`outpost-shield`) and telemetry (`cdn.tier = "shield"`), and request-phase hooks
//! ([`hooks::ShieldHooks`]) for what makes it a shield: admission of edges only (the shared
//! secret, or fleet certificates checked by mutual TLS) and the purge-version gate (it never answers an edge with an
//! object older than a purge that edge has applied). See shared/DESIGN.md, "Origin shield".
#![warn(missing_docs)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod config;
pub mod hooks;

pub use config::ShieldConfig;

use agent::metrics::Registry;
use edge_node::cache::PurgeMarks;
use edge_node::{Edge, EdgeError};
use std::sync::Arc;

/// The `cdn.tier` of a shield's telemetry.
pub const TIER: &str = "shield";

/// Builds the shield of `cfg` and binds its listeners: its cache checks `marks` (shared with
/// the other caches of the process), its instruments go to `registry`.
pub async fn bind(
    cfg: &ShieldConfig,
    marks: Arc<PurgeMarks>,
    registry: &Registry,
) -> Result<Edge, EdgeError> {
    if let Some(p) = cfg.validate("shield").first() {
        return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
    }
    let hooks = hooks::ShieldHooks::new(cfg.secret.as_deref(), marks.clone())
        .map_err(|e| EdgeError::Config(format!("shield.secret: {e}")))?;
    let node = cfg.node_config();
    Edge::builder(&node)
        .tier(TIER)
        .hooks(Arc::new(hooks))
        .purge_marks(marks)
        .metrics(registry)
        .bind()
        .await
}

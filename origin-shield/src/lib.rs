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
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod config;
pub mod hooks;

pub use config::ShieldConfig;

use agent::metrics::Registry;
use edge_node::cache::PurgeMarks;
use edge_node::config::EdgeConfig;
use edge_node::{Edge, EdgeBuilder, EdgeError, Node, Reload};
use std::sync::Arc;

/// The `cdn.tier` of a shield's telemetry.
pub const TIER: &str = "shield";

/// Builds a shield of `cfg` and binds its listeners.
pub async fn bind(
    cfg: &ShieldConfig,
    marks: Arc<PurgeMarks>,
    registry: &Registry,
) -> Result<Edge, EdgeError> {
    let node = cfg.node_config();
    builder(cfg, &node, marks, registry)?.bind().await
}

/// Prepares `cfg` as the new config of the serving shield `node` (see
/// [`edge_node::EdgeBuilder::prepare_reload`]): nothing changes until it is applied.
pub async fn prepare_reload(
    cfg: &ShieldConfig,
    node: &Arc<Node>,
    marks: Arc<PurgeMarks>,
    registry: &Registry,
) -> Result<Reload, EdgeError> {
    let node_cfg = cfg.node_config();
    builder(cfg, &node_cfg, marks, registry)?
        .prepare_reload(node)
        .await
}

/// The shield of `cfg` (`node_cfg` is `cfg.node_config()`): its tier name, hooks, marks.
fn builder<'a>(
    cfg: &ShieldConfig,
    node_cfg: &'a EdgeConfig,
    marks: Arc<PurgeMarks>,
    registry: &Registry,
) -> Result<EdgeBuilder<'a>, EdgeError> {
    if let Some(p) = cfg.validate("shield").first() {
        return Err(EdgeError::Config(format!("{}: {}", p.path, p.message)));
    }
    let hooks = hooks::ShieldHooks::new(cfg.secret.as_deref(), marks.clone())
        .map_err(|e| EdgeError::Config(format!("shield.secret: {e}")))?;
    Ok(Edge::builder(node_cfg)
        .tier(TIER)
        .hooks(Arc::new(hooks))
        .purge_marks(marks)
        .metrics(registry))
}

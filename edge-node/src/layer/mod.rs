//! The edge's cache as a tower layer: [`CacheLayer`] in front of any
//! `tower::Service<http::Request<B>>` (an axum `Router`, a hyper service) caches its
//! responses in process, by the same rules, storage tiers and purge marks as the Outpost
//! edge (one [`Cache`](crate::cache::Cache)), with request collapsing and `Cache-Status`.
//!
//! ```
//! use axum::{routing::get, Router};
//! use edge_node::layer::{CacheConfig, CacheLayer};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let app: Router = Router::new()
//!     .route("/", get(|| async { ([("cache-control", "max-age=60")], "hello") }))
//!     .layer(CacheLayer::new(CacheConfig::default()));
//! # let _ = app;
//! # });
//! ```
//!
//! What it does not do (the edge does): serve ranges from stored objects (a hit answers a
//! range request with the whole object, which HTTP allows; a range miss is passed through),
//! revalidate with conditional requests (a stale object is fetched afresh), compress, store
//! objects larger than `max_object_bytes` (passed through as they stream).

mod answer;
mod body;
mod collapse;
mod config;
mod fill;
mod key;
mod purge;
mod service;
mod state;

pub use body::CacheBody;
pub use config::CacheConfig;
pub use purge::{Purge, PurgeError, PurgeHandle};
pub use service::{CacheFuture, CacheLayer, CacheService};

#[cfg(test)]
mod tests;

//! Versioned purge: requests and events (`event.rs`), the hub's ordered log (`log.rs`),
//! applying them in order to the caches of the process and propagating them between nodes
//! (`service.rs`, over the hub's long-poll, or NATS JetStream in `nats.rs`); `submit.rs` lets a
//! caching node's `PURGE` method hand purges to the service; `fleet.rs` is the hub's table of
//! the nodes that follow it (they report themselves). The marks each
//! purge leaves, checked at lookup, are the cache's (`cache/marks.rs`).

pub(crate) mod event;
pub mod fleet;
pub(crate) mod log;
pub(crate) mod nats;
pub(crate) mod service;
pub(crate) mod submit;

pub use event::{PurgeEvent, PurgeRequest, PurgeTarget, UrlTarget};
pub use nats::NatsBus;
pub use service::{PurgeError, PurgeService, PurgeSink, Role};
pub use submit::{PurgeSubmitter, Submitted};

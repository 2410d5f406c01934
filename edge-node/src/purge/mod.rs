//! Versioned purge: requests and events (`event.rs`), O(1) purge marks checked at lookup
//! (`generations.rs`), the hub's ordered log (`log.rs`) and propagation between nodes
//! (`service.rs`).

pub mod event;
pub mod generations;
pub mod log;
pub mod nats;
pub mod service;

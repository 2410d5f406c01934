//! The origin-shield tier: an edge node configured as the parent tier in front of the origin.
//!
//! The shield role works today without code of its own here: a `[shield]` section is an
//! `edge_node::config::EdgeConfig` with a `secret`, and `edge-node` does the rest (the
//! constant-time secret check and purge-version consistency in `proxy/mod.rs`, rendezvous
//! hashing of keys over shields and failover in `proxy/upstream.rs`). Shield-only logic that
//! outgrows that (mTLS between tiers, shield-to-shield peering) will live in this crate, on top
//! of `edge-node`. See shared/DESIGN.md, "Origin shield", and ARCHITECTURE.md.
#![warn(missing_docs)]

//! The origin-shield tier: an edge node configured as the parent tier in front of the origin.
//!
//! Not built yet. This crate will hold the shield-only logic that sits on top of `edge-node`:
//! accepting requests only from edges (shared secret or mTLS), rendezvous hashing of cache keys
//! across several shields, and collapsing of misses across edges so the origin sees one fetch
//! per object. See shared/DESIGN.md, "Origin shield".
#![warn(missing_docs)]

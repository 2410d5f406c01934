//! The cache: keys, policy, stored objects, the memory tier and request collapsing.

pub mod compress;
pub mod disk;
pub mod fill;
pub mod headers;
pub mod key;
pub mod object;
pub mod policy;
pub mod store;
pub mod vary;

//! Reading what the disk tier holds for a key without using it: the index is read (no recency
//! bump, so eviction order stays as it was) and each variant's file head (meta, checksum
//! verified) is read; bodies are not. A damaged or vanished file is left for the request path
//! to find and drop: inspecting changes nothing.

use super::format::Meta;
use super::{read_head, DiskStore};
use crate::cache::key::CacheKey;
use std::sync::Arc;

/// One stored variant as its file describes it.
#[derive(Debug)]
pub(crate) struct Peeked {
    /// Everything stored about the response but its body.
    pub meta: Meta,
    /// Bytes of body.
    pub body_len: u64,
    /// Bytes of the whole file.
    pub file_len: u64,
}

impl DiskStore {
    /// Every variant stored under `key`, from the index and the heads of their files; empty
    /// while the index is being rebuilt.
    pub(crate) async fn peek(self: &Arc<Self>, key: CacheKey) -> Vec<Peeked> {
        if !self.is_ready() {
            return Vec::new();
        }
        let paths: Vec<_> = match self.index.lock() {
            Ok(idx) => idx
                .slots
                .get(&key)
                .map(|list| list.iter().map(|s| self.path(key, s.vh)).collect())
                .unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
        if paths.is_empty() {
            return Vec::new();
        }
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .filter_map(|p| read_head(p).ok())
                .map(|(h, meta)| Peeked {
                    meta,
                    body_len: h.body_len,
                    file_len: h.file_len(),
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

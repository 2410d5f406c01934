//! What one client connection may take, on either protocol.

use std::time::Duration;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time allowed for a request head (HTTP/1.1), or for the HTTP/2 handshake.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

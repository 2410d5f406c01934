//! What one client connection may take, on either protocol.

use std::time::Duration;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time allowed for a request head (HTTP/1.1), or for the HTTP/2 handshake.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Connections the node holds at most (0: no bound).
    pub max_connections: usize,
    /// Connections one client address holds at most (0: no bound).
    pub max_connections_per_client: u32,
    /// Requests one connection may carry before the node closes it (0: no bound).
    pub max_requests_per_connection: u64,
}

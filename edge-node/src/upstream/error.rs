//! Errors on the proxy path, carrying what failed so that the choice between 502, 504 and
//! serving stale is data, not string matching. `response_status` is the one mapping to HTTP.

use http::StatusCode;

/// An upstream fetch failed before a usable response.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// No connection could be made to the upstream (origin or shield) tried last.
    #[error("cannot connect to {origin}: {detail}")]
    Connect {
        /// The origin tried last.
        origin: String,
        /// The underlying error.
        detail: String,
    },
    /// The origin did not answer in time.
    #[error("{origin} timed out waiting for the {phase}")]
    Timeout {
        /// The origin.
        origin: String,
        /// What was awaited: "response head" or "body".
        phase: &'static str,
    },
    /// The origin answered with something unusable.
    #[error("{origin} failed: {detail}")]
    Protocol {
        /// The origin.
        origin: String,
        /// The underlying error.
        detail: String,
    },
}

impl UpstreamError {
    /// The status a client gets when no stale response can stand in.
    pub(crate) fn response_status(&self) -> StatusCode {
        match self {
            UpstreamError::Connect { .. } | UpstreamError::Protocol { .. } => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the next tier could not be reached at all (refused, reset or closed before a
    /// response head): a stored stale response may stand in (RFC 9111 4.2.4).
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::Protocol { .. }
        )
    }

    /// What a client is told: the kind of failure, never an address or a name (those go to
    /// the log).
    pub(crate) fn client_message(&self) -> &'static str {
        match self {
            UpstreamError::Connect { detail, .. } if detail.contains("certificate") => {
                "the upstream's TLS certificate did not verify"
            }
            UpstreamError::Connect { detail, .. } if detail.contains("cannot resolve") => {
                "cannot resolve the upstream's name"
            }
            UpstreamError::Connect { .. } => "cannot connect to the upstream",
            UpstreamError::Timeout { .. } => "the upstream did not answer in time",
            UpstreamError::Protocol { .. } => "the upstream's response was unusable",
        }
    }

    /// A short label for metrics and Cache-Status details.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Protocol { .. } => "protocol",
        }
    }
}

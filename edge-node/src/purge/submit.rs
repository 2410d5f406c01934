//! How a caching node's request path hands a purge to the purge service (the HTTP `PURGE`
//! method): a small trait, so the proxies, built before the service, are given it afterwards.

use super::event::PurgeRequest;
use super::service::{PurgeError, PurgeService};
use std::future::Future;
use std::pin::Pin;

/// The future of one submitted purge: its version, or why it was refused.
pub type Submitted<'a> = Pin<Box<dyn Future<Output = Result<u64, PurgeError>> + Send + 'a>>;

/// Accepts purges as `POST /purge` does: versioned, applied here and propagated.
pub trait PurgeSubmitter: Send + Sync {
    /// Accepts `req`; answers with its purge version.
    fn submit_purge<'a>(&'a self, req: &'a PurgeRequest) -> Submitted<'a>;
}

impl PurgeSubmitter for PurgeService {
    fn submit_purge<'a>(&'a self, req: &'a PurgeRequest) -> Submitted<'a> {
        Box::pin(self.submit(req))
    }
}

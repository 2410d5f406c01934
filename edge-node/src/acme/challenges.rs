//! HTTP-01 challenge answers (RFC 8555 8.3): while an order waits for validation, each of its
//! tokens maps to its key authorization, and `GET /.well-known/acme-challenge/TOKEN` on any
//! host of the node gets it as `text/plain`.

use std::collections::HashMap;
use std::sync::RwLock;

/// Where the CA's validator asks.
pub(crate) const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The tokens of the orders under way.
#[derive(Debug, Default)]
pub(crate) struct Challenges(RwLock<HashMap<String, String>>);

impl Challenges {
    /// Answers `token` with `key_authorization` until [`Challenges::remove`].
    pub(crate) fn put(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.write() {
            m.insert(token.to_string(), key_authorization.to_string());
        }
    }

    /// Stops answering `token`.
    pub(crate) fn remove(&self, token: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(token);
        }
    }

    /// Every token with its key authorization (what a hub shares).
    pub(crate) fn all(&self) -> HashMap<String, String> {
        self.0.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// Answers exactly `tokens` from now on (a follower taking its hub's).
    pub(crate) fn replace_all(&self, tokens: &HashMap<String, String>) {
        if let Ok(mut m) = self.0.write() {
            m.clone_from(tokens);
        }
    }

    /// The answer for a request to `path`, if it is a challenge this node knows.
    pub(crate) fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        self.0.read().ok()?.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_tokens_under_the_prefix_are_answered() {
        let c = Challenges::default();
        c.put("tok", "tok.thumb");
        assert_eq!(
            c.answer("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        for other in [
            "/.well-known/acme-challenge/other",
            "/.well-known/acme-challenge/",
            "/tok",
            "/.well-known/acme-challenge/tok/x",
        ] {
            assert_eq!(c.answer(other), None, "{other}");
        }
        c.remove("tok");
        assert_eq!(c.answer("/.well-known/acme-challenge/tok"), None);
    }
}

//! The console's sessions: a bounded server-side table of random 256-bit ids with an expiry,
//! each with its CSRF token; and the constant-time comparisons of the admin token and CSRF
//! tokens.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a session lasts from sign-in.
pub(crate) const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most (the one closest to expiry makes room).
pub(crate) const MAX_SESSIONS: usize = 256;

/// A signed-in browser.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub id: String,
    /// Carried by every form, checked on every POST.
    pub csrf: String,
    pub expires: Instant,
}

/// The session table.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

/// 32 random bytes as hex.
fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Sessions {
    /// A new session, or `None` when the system has no randomness to give.
    pub(crate) fn create(&self, now: Instant) -> Option<Session> {
        let s = Session {
            id: random_hex()?,
            csrf: random_hex()?,
            expires: now + LIFETIME,
        };
        let mut t = self.0.lock().ok()?;
        t.retain(|_, s| s.expires > now);
        if t.len() >= MAX_SESSIONS {
            let first = t.values().min_by_key(|s| s.expires).map(|s| s.id.clone());
            if let Some(id) = first {
                t.remove(&id);
            }
        }
        t.insert(s.id.clone(), s.clone());
        Some(s)
    }

    /// The live session named by `id`.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let t = self.0.lock().ok()?;
        t.get(id).filter(|s| s.expires > now).cloned()
    }

    /// Ends the session `id`.
    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut t) = self.0.lock() {
            t.remove(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map(|t| t.len()).unwrap_or(0)
    }
}

/// Whether `presented` is the admin token (constant time in the token's bytes).
pub(crate) fn token_matches(presented: &str, token: &str) -> bool {
    bool::from(presented.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// Whether the form's CSRF token is the session's.
pub(crate) fn csrf_matches(presented: Option<&str>, s: &Session) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(s.csrf.as_bytes())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sessions_expire_and_are_bounded() {
        let t = Sessions::default();
        let now = Instant::now();
        let s = t.create(now).unwrap();
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        assert!(t.get(&s.id, now).is_some());
        assert!(t.get(&s.id, now + LIFETIME).is_none(), "expired");
        assert!(t.get("nope", now).is_none());
        for _ in 0..MAX_SESSIONS + 10 {
            t.create(now).unwrap();
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        assert!(token_matches(" demo ", "demo") && !token_matches("demo2", "demo"));
        assert!(csrf_matches(Some(&s.csrf), &s) && !csrf_matches(None, &s));
    }
}

//! The `Date` field of the node's own answers (RFC 9110 6.6.1), from the wall clock.
//!
//! hyper adds one too, from a per-thread copy it renews only once the clock passes the next
//! second it expected: after the wall clock steps back, its `Date` stays where the clock was
//! until the clock catches up (after a step back of a day, for a day). This copy is rendered
//! again whenever the second differs, either way, so `Date` follows the wall clock; it is
//! per thread too, so a response costs a clock read and a shared-buffer clone.

use http::header::{HeaderMap, HeaderValue, DATE};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// The second (since the epoch) last rendered, and its rendering.
    static RENDERED: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
}

/// `Date` for now.
pub(crate) fn now() -> Option<HeaderValue> {
    let t = SystemTime::now();
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    RENDERED.with(|r| {
        let mut r = r.borrow_mut();
        match &*r {
            Some((s, v)) if *s == secs => Some(v.clone()),
            _ => {
                let v = HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok()?;
                *r = Some((secs, v.clone()));
                Some(v)
            }
        }
    })
}

/// Gives `headers` a `Date` for now unless they have one (a stored response keeps its own).
pub(crate) fn ensure(headers: &mut HeaderMap) {
    if !headers.contains_key(DATE) {
        if let Some(v) = now() {
            headers.insert(DATE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_date_is_added_unless_there_is_one() {
        let mut h = HeaderMap::new();
        ensure(&mut h);
        let d = httpdate::parse_http_date(h[DATE].to_str().unwrap()).unwrap();
        let off = SystemTime::now().duration_since(d).unwrap_or_default();
        assert!(off.as_secs() < 5);
        let mut stored = HeaderMap::new();
        stored.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        ensure(&mut stored);
        assert_eq!(stored[DATE], "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}

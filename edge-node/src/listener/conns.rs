//! How many connections a node holds, in total and per client address, so one client (or a
//! flood) cannot take every socket: a connection over either bound is closed as soon as it is
//! accepted. Each admitted connection holds a [`Held`] that gives its place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The node's open connections (shared by its listeners and kept across reloads).
#[derive(Default)]
pub(crate) struct Conns {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    /// Connections closed at once for being over a bound.
    pub refused: AtomicU64,
    /// Connections closed for their PROXY header (`proxy_protocol = true`): from a peer not
    /// trusted, without one, or with a bad one.
    pub proxy_refused: AtomicU64,
}

/// A place among the node's connections, given back on drop.
pub(crate) struct Held {
    conns: Arc<Conns>,
    client: IpAddr,
}

impl Conns {
    /// A place for a connection from `client`, if neither `max_total` nor `max_per_client` is
    /// reached (0: no bound).
    pub(crate) fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        max_total: usize,
        max_per_client: u32,
    ) -> Option<Held> {
        let total = self.total.fetch_add(1, Relaxed) + 1;
        let mut admitted = max_total == 0 || total <= max_total;
        if admitted {
            if let Ok(mut m) = self.per_client.lock() {
                let n = m.entry(client).or_insert(0);
                if max_per_client != 0 && *n >= max_per_client {
                    admitted = false;
                } else {
                    *n += 1;
                }
            }
        }
        if !admitted {
            self.total.fetch_sub(1, Relaxed);
            self.refused.fetch_add(1, Relaxed);
            return None;
        }
        Some(Held {
            conns: self.clone(),
            client,
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.total.load(Relaxed)
    }
}

impl Held {
    /// This place, counted for `client` instead (the address a PROXY header gave), if
    /// `client` holds fewer than `max_per_client` (0: no bound); else the place is given
    /// back and the refusal counted.
    pub(crate) fn moved_to(mut self, client: IpAddr, max_per_client: u32) -> Option<Held> {
        if client == self.client {
            return Some(self);
        }
        let moved = match self.conns.per_client.lock() {
            Ok(mut m) => {
                let n = m.entry(client).or_insert(0);
                // `n` is at least 1 here: no empty entry is left behind.
                if max_per_client != 0 && *n >= max_per_client {
                    false
                } else {
                    *n += 1;
                    if let Some(old) = m.get_mut(&self.client) {
                        *old -= 1;
                        if *old == 0 {
                            m.remove(&self.client);
                        }
                    }
                    true
                }
            }
            // A poisoned map counts nobody: nothing to move.
            Err(_) => true,
        };
        if !moved {
            self.conns.refused.fetch_add(1, Relaxed);
            return None;
        }
        self.client = client;
        Some(self)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.conns.total.fetch_sub(1, Relaxed);
        if let Ok(mut m) = self.conns.per_client.lock() {
            if let Some(n) = m.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    // Bounded by the connections open now, not by every client ever seen.
                    m.remove(&self.client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bounds_hold_and_places_come_back() {
        let c = Arc::new(Conns::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = c.admit(a, 3, 2).unwrap();
        let _a2 = c.admit(a, 3, 2).unwrap();
        assert!(c.admit(a, 3, 2).is_none(), "per client");
        let _b1 = c.admit(b, 3, 2).unwrap();
        assert!(c.admit(b, 3, 2).is_none(), "in total");
        assert_eq!(c.refused.load(Relaxed), 2);
        drop(a1);
        assert_eq!(c.open(), 2);
        assert!(c.admit(a, 3, 2).is_some());
        assert!(c.admit(b, 0, 0).is_some(), "0: no bound");
        assert!(c.per_client.lock().unwrap().len() <= 2);
    }

    #[test]
    fn a_place_moves_to_the_address_a_proxy_header_gave() {
        let c = Arc::new(Conns::default());
        let lb: IpAddr = "10.0.0.1".parse().unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a1 = c.admit(lb, 0, 0).unwrap().moved_to(a, 1).unwrap();
        let a2 = c.admit(lb, 0, 0).unwrap();
        assert!(a2.moved_to(a, 1).is_none(), "a's share is one");
        assert_eq!(c.open(), 1, "the refused place is given back");
        assert_eq!(c.refused.load(Relaxed), 1);
        let b = c
            .admit(lb, 0, 0)
            .unwrap()
            .moved_to("192.0.2.2".parse().unwrap(), 1);
        assert!(b.is_some());
        let kept = c.admit(lb, 0, 0).unwrap().moved_to(lb, 1);
        assert!(kept.is_some(), "the same address: nothing moves");
        {
            let m = c.per_client.lock().unwrap();
            assert_eq!(m.get(&lb), Some(&1));
            assert_eq!(m.get(&a), Some(&1));
        }
        drop((a1, b, kept));
        assert_eq!(c.open(), 0);
        assert!(c.per_client.lock().unwrap().is_empty());
    }
}

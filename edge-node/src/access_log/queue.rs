//! The hand-off between the request path and the writer thread: a bounded list under a mutex,
//! emptied by the writer every [`TICK`] (or as soon as it is half full). A request only pushes
//! (no wake-up of the writer per record, no system call): the writer's work comes in batches.

use super::record::Record;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Longest a record waits before the writer takes it.
pub(super) const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
struct State {
    records: Vec<Record>,
    reopen: bool,
    closed: bool,
}

/// Records on their way to the writer.
pub(super) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    cap: usize,
}

/// What the writer took in one go.
pub(super) struct Taken {
    /// The file is to be reopened (before these records are written).
    pub reopen: bool,
    /// No more records will come.
    pub closed: bool,
}

impl Queue {
    /// A queue holding at most `cap` records.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::default(),
            wake: Condvar::new(),
            cap: cap.max(1),
        }
    }

    /// Adds `r`; false (and `r` dropped) when the queue is full or closed.
    pub(super) fn push(&self, r: Record) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.closed || s.records.len() >= self.cap {
            return false;
        }
        s.records.push(r);
        if s.records.len() == self.cap / 2 + 1 {
            self.wake.notify_one();
        }
        true
    }

    /// Asks the writer to reopen its file.
    pub(super) fn reopen(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.reopen = true;
            self.wake.notify_one();
        }
    }

    /// No more records: the writer writes what it has and ends.
    pub(super) fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
            self.wake.notify_one();
        }
    }

    /// Waits up to [`TICK`] for records (or a reopen, or the close), then swaps them all into
    /// `into` (which must be empty: its capacity is reused).
    pub(super) fn take(&self, into: &mut Vec<Record>) -> Taken {
        let Ok(s) = self.state.lock() else {
            return Taken {
                reopen: false,
                closed: true,
            };
        };
        let idle = |s: &mut State| s.records.is_empty() && !s.reopen && !s.closed;
        let mut s = match self.wake.wait_timeout_while(s, TICK, idle) {
            Ok((s, _)) => s,
            Err(poisoned) => poisoned.into_inner().0,
        };
        std::mem::swap(&mut s.records, into);
        Taken {
            reopen: std::mem::take(&mut s.reopen),
            closed: s.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(id: u64) -> Record {
        Record::sample(id, "-")
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_too() {
        let q = Queue::new(2);
        assert!(q.push(rec(1)) && q.push(rec(2)));
        assert!(!q.push(rec(3)), "full");
        let mut got = Vec::new();
        let t = q.take(&mut got);
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert!(!t.reopen && !t.closed);
        q.reopen();
        q.close();
        assert!(!q.push(rec(4)), "closed");
        got.clear();
        let t = q.take(&mut got);
        assert!(got.is_empty() && t.reopen && t.closed);
    }
}

//! The decoded header fields of the objects a worker thread answers again and again.
//!
//! A stored object keeps its header fields as a compact block ([`super::headers`]), which a
//! hit turns back into a `HeaderMap`: parsing each line, formatting dates, validating values
//! and hashing every name into the map. That is about a tenth of the user-space work of a
//! small hit (`benches/load/insns.sh`). Traffic is skewed: the same few objects are answered
//! most of the time, and each answer would decode the same block into the same map. Here each
//! thread keeps the decoded fields of up to [`SLOTS`] blocks, and a hit on one of them builds
//! its map from those (names and values are cloned: the values share their buffer), skipping
//! the parsing, formatting and validating. The fields are kept as a list rather than as a
//! map: a cloned `HeaderMap` has no room left, and the fields an answer adds would then grow
//! it twice on every hit.
//!
//! - **Keyed by content.** A slot holds a copy of the block its fields were decoded from, and
//!   is used only for a block with the very same bytes: the fields are a function of the block
//!   alone, so an object freed and another stored at its address can never be answered with
//!   the old fields, and nothing here needs to know when objects are evicted, purged or
//!   replaced.
//! - **Kept on second use.** A block is decoded as before the first time it lands in a slot,
//!   and kept the second time in a row, so a long tail of objects answered once each costs no
//!   copies and does not churn out the hot ones.
//! - **Bounded.** [`SLOTS`] slots per worker thread, each about a KiB for ordinary
//!   fields and at most about 16 KiB ([`MAX_BLOCK`]); the memory tier's objects are not
//!   touched, so their cost per object is what it was.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;

/// Slots per thread (a power of two).
const SLOTS: usize = 64;

/// Blocks larger than this are not kept: a slot holds at most about twice this (the block
/// and its fields), so a thread's slots at most 1 MiB whatever origins send.
const MAX_BLOCK: usize = 8 * 1024;

/// A block's decoded fields, in order, and the block.
struct Slot {
    block: Box<[u8]>,
    fields: Box<[(HeaderName, HeaderValue)]>,
}

/// One thread's slots.
struct Table {
    slots: Vec<Option<Slot>>,
    /// Per slot, the address of the last block decoded there and not kept: the same block
    /// again is kept.
    seen: Vec<usize>,
}

impl Table {
    fn new() -> Self {
        Table {
            slots: (0..SLOTS).map(|_| None).collect(),
            seen: vec![0; SLOTS],
        }
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::new());
}

/// The slot for the block at `addr` (blocks are separate allocations: the low bits carry
/// little, so the address is mixed first).
fn slot_of(addr: usize) -> usize {
    let mixed = (addr as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SLOTS.trailing_zeros())) as usize
}

/// The map `decode` makes of `block`, made with room for `capacity` fields: from this
/// thread's kept fields when it holds them for these very bytes, else `decode(capacity)`'s,
/// whose fields are kept if the same block was decoded in this slot last time.
pub(crate) fn decoded(
    block: &[u8],
    capacity: usize,
    decode: impl FnOnce(usize) -> HeaderMap,
) -> HeaderMap {
    let addr = block.as_ptr() as usize;
    let i = slot_of(addr);
    let kept = TABLE.try_with(|t| {
        let t = t.borrow();
        match &t.slots[i] {
            Some(s) if *s.block == *block => {
                let mut m = HeaderMap::with_capacity(capacity);
                for (n, v) in s.fields.iter() {
                    m.append(n.clone(), v.clone());
                }
                Some(m)
            }
            _ => None,
        }
    });
    match kept {
        Ok(Some(map)) => map,
        // The thread is ending: decode without keeping.
        Err(_) => decode(capacity),
        Ok(None) => {
            let map = decode(capacity);
            let _ = TABLE.try_with(|t| {
                let mut t = t.borrow_mut();
                if t.seen[i] == addr && block.len() <= MAX_BLOCK {
                    t.slots[i] = Some(Slot {
                        block: block.into(),
                        fields: map.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
                    });
                    t.seen[i] = 0;
                } else {
                    t.seen[i] = addr;
                }
            });
            map
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;
    use std::cell::Cell;

    fn map_of(v: &'static str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-v", HeaderValue::from_static(v));
        m
    }

    #[test]
    fn a_block_is_kept_on_its_second_use_and_built_from_its_fields_after() {
        let block: Box<[u8]> = b"x-v:1\n".to_vec().into_boxed_slice();
        let calls = Cell::new(0);
        let decode = |_| {
            calls.set(calls.get() + 1);
            map_of("1")
        };
        for _ in 0..5 {
            assert_eq!(decoded(&block, 4, decode)["x-v"], "1");
        }
        assert_eq!(calls.get(), 2, "decoded on the first two uses only");
    }

    #[test]
    fn kept_fields_answer_only_the_same_bytes() {
        // The same allocation, rewritten: the kept fields must not answer the new bytes.
        let mut block = b"x-v:1\n".to_vec().into_boxed_slice();
        for _ in 0..3 {
            assert_eq!(decoded(&block, 4, |_| map_of("1"))["x-v"], "1");
        }
        block[4] = b'2';
        assert_eq!(decoded(&block, 4, |_| map_of("2"))["x-v"], "2");
        assert_eq!(decoded(&block, 4, |_| map_of("2"))["x-v"], "2");
        assert_eq!(decoded(&block, 4, |_| map_of("2"))["x-v"], "2");
    }

    #[test]
    fn a_caller_changing_its_map_leaves_the_kept_fields_alone() {
        let block: Box<[u8]> = b"x-v:3\n".to_vec().into_boxed_slice();
        for _ in 0..3 {
            let mut m = decoded(&block, 4, |_| map_of("3"));
            assert_eq!(m["x-v"], "3");
            m.insert("x-v", HeaderValue::from_static("changed"));
            m.insert("age", HeaderValue::from_static("9"));
        }
        let m = decoded(&block, 4, |_| map_of("3"));
        assert_eq!(m["x-v"], "3");
        assert!(m.get("age").is_none());
    }

    #[test]
    fn slots_spread_and_stay_in_range() {
        let mut used = std::collections::HashSet::new();
        for k in 0..4096usize {
            let i = slot_of(0x7f00_0000_0000 + k * 112);
            assert!(i < SLOTS);
            used.insert(i);
        }
        assert_eq!(used.len(), SLOTS);
    }
}

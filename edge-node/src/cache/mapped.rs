//! Large stored bodies in sealed memory files, so a plain connection can hand them to the
//! kernel with `sendfile` instead of copying them into the socket.
//!
//! Copying a body into the socket is most of what a large hit costs: 37% of the edge's CPU for
//! 256 KiB hits over plain HTTP/1.1 (`benches/load/profile.sh`, docs/benchmarks.md). A body of
//! at least [`MIN_BYTES`] is written once into an anonymous memory file (`memfd_create`),
//! sealed against every change, and mapped read-only. The stored `Bytes` reads that mapping,
//! so every other path (TLS, HTTP/2, the disk tier, compression, ranges) sees an ordinary
//! buffer; the plain HTTP/1.1 writer (`listener/sendfile.rs`) asks [`source`] for the file
//! behind a slice it is given, and the kernel sends the file's pages by reference.
//!
//! Why this is sound (the one `unsafe` in the crate, memmap2's `map`):
//! - the file is sealed against writes, shrinking and growing, and against further seals,
//!   before it is mapped, so the bytes behind the mapping never change and never go away while
//!   it is mapped, whoever else might hold the descriptor;
//! - pages the kernel is still sending when the object is dropped stay alive by their own
//!   reference count after the mapping and the file are gone, and nothing writes into them
//!   again, so a purge or an eviction during a send never changes bytes already on their way;
//! - the registry maps each mapping's address range to its file. An entry is removed before its
//!   mapping goes, and a slice borrowed from a mapping keeps the mapping alive while borrowed,
//!   so the lookup for a slice finds the file that slice was read from, or nothing. The entry
//!   holds its own reference to the file, which the sender clones.
//!
//! Each body holds one descriptor and one mapping. At most [`budget`] bodies are mapped at
//! once: a quarter of the open-file limit, and never more than 16,384 (under Linux's default
//! of 65,530 mappings per process). Beyond that, or when any step fails, a body stays on the
//! heap and is sent by copy, as before.
#![allow(unsafe_code)]

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use std::collections::BTreeMap;
use std::io::{IoSlice, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};

/// Bodies at least this large are mapped; smaller ones cost more in a descriptor, a mapping
/// and a page of rounding than their copy does.
pub(crate) const MIN_BYTES: usize = 64 * 1024;

/// Most bodies mapped at once, whatever the open-file limit.
const MAX_MAPPED: usize = 16_384;

/// Mapped bodies by the address their mapping starts at.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());
/// Bodies mapped now (counted before they are made, so the budget holds under races).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// A failure other than the budget has been logged.
static WARNED: AtomicBool = AtomicBool::new(false);

struct Region {
    len: usize,
    file: Arc<OwnedFd>,
}

/// Where a slice of a mapped body lives: its file and its offset in it.
pub(crate) struct Source {
    pub(crate) file: Arc<OwnedFd>,
    pub(crate) offset: u64,
}

/// Most bodies kept mapped at once: a quarter of the soft open-file limit, 16,384 at most.
pub(crate) fn budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let soft = limit.current.unwrap_or(u64::MAX);
        usize::try_from(soft / 4).map_or(MAX_MAPPED, |n| n.min(MAX_MAPPED))
    })
}

/// Bodies mapped now.
pub(crate) fn mapped_now() -> usize {
    LIVE.load(Relaxed)
}

/// The body made of `chunks` (`total` bytes in all) in a sealed, mapped memory file; `None`
/// when it is smaller than [`MIN_BYTES`], the budget is spent, or the kernel refuses (the
/// caller keeps it on the heap).
pub(crate) fn from_chunks<T: AsRef<[u8]>>(chunks: &[T], total: usize) -> Option<Bytes> {
    if total < MIN_BYTES {
        return None;
    }
    let slot = Slot::take()?;
    match map(chunks, total) {
        Ok((map, file)) => {
            let start = map.as_ptr() as usize;
            if let Ok(mut regions) = REGIONS.write() {
                regions.insert(
                    start,
                    Region {
                        len: map.len(),
                        file,
                    },
                );
            } else {
                // Poisoned by a panic elsewhere: keep the body on the heap.
                return None;
            }
            Some(Bytes::from_owner(Mapped {
                map,
                start,
                _slot: slot,
            }))
        }
        Err(e) => {
            if !WARNED.swap(true, Relaxed) {
                tracing::warn!(
                    error = %e,
                    "large bodies stay on the heap and are sent by copy: a memory file for \
                     one could not be made"
                );
            }
            None
        }
    }
}

/// Writes `chunks` into a new memory file, seals it and maps it read-only.
fn map<T: AsRef<[u8]>>(
    chunks: &[T],
    total: usize,
) -> std::io::Result<(memmap2::Mmap, Arc<OwnedFd>)> {
    // Never executable (Linux 6.3 and later warn about, or with `vm.memfd_noexec = 2` refuse,
    // a memory file that does not say); older kernels do not know the flag and say EINVAL.
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = match rustix::fs::memfd_create("outpost-body", flags | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("outpost-body", flags)?,
        r => r?,
    };
    let mut file = std::fs::File::from(fd);
    let written: usize = chunks.iter().map(|c| c.as_ref().len()).sum();
    if written != total {
        return Err(std::io::Error::other(format!(
            "the body's chunks hold {written} bytes, not {total}"
        )));
    }
    write_chunks(&mut file, chunks)?;
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    // SAFETY: memmap2's `map` is unsafe because another party could change or truncate the
    // file under the mapping. This file is sealed against writes, shrinking and growing (and
    // against removing those seals) before it is mapped, so its `total` bytes are fixed for
    // as long as the mapping lives, whoever holds a descriptor to it.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .len(total)
            .populate()
            .map(&file)?
    };
    Ok((map, Arc::new(OwnedFd::from(file))))
}

/// Writes every chunk to `file`, up to 1,024 of them per system call (a fetched body comes
/// in chunks of 16 KiB or so: one call per chunk would be 2,048 calls for 32 MiB).
fn write_chunks<T: AsRef<[u8]>>(file: &mut std::fs::File, chunks: &[T]) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .map(AsRef::as_ref)
        .filter(|c| !c.is_empty())
        .map(IoSlice::new)
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let batch = rest.len().min(IOV_MAX);
        match file.write_vectored(&rest[..batch]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The memory file behind `slice`, when `slice` lies wholly inside a mapped body.
pub(crate) fn source(slice: &[u8]) -> Option<Source> {
    if slice.is_empty() || LIVE.load(Relaxed) == 0 {
        return None;
    }
    let regions = REGIONS.read().ok()?;
    find(&regions, slice.as_ptr() as usize, slice.len())
}

/// The region holding `len` bytes from address `start`, and the offset of `start` in it.
fn find(regions: &BTreeMap<usize, Region>, start: usize, len: usize) -> Option<Source> {
    let end = start.checked_add(len)?;
    let (&base, region) = regions.range(..=start).next_back()?;
    if end > base.checked_add(region.len)? {
        return None;
    }
    Some(Source {
        file: region.file.clone(),
        offset: (start - base) as u64,
    })
}

/// A mapped body, owned by the `Bytes` that read it.
struct Mapped {
    map: memmap2::Mmap,
    start: usize,
    _slot: Slot,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Out of the registry before the mapping goes (the fields drop after this).
        if let Ok(mut regions) = REGIONS.write() {
            regions.remove(&self.start);
        }
    }
}

/// One body's share of the budget, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        Slot::within(budget())
    }

    fn within(budget: usize) -> Option<Slot> {
        if LIVE.fetch_add(1, Relaxed) >= budget {
            LIVE.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsFd;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn large_bodies_are_mapped_and_read_back_whole() {
        let data = body(300_000);
        let chunks: Vec<Bytes> = data.chunks(70_000).map(Bytes::copy_from_slice).collect();
        let b = from_chunks(&chunks, data.len()).unwrap();
        assert_eq!(&b[..], &data[..]);
        // A slice inside the body names the file and the offset it starts at.
        let part = b.slice(1000..5000);
        let src = source(&part).unwrap();
        assert_eq!(src.offset, 1000);
        let mut buf = vec![0u8; 4000];
        rustix::io::pread(src.file.as_fd(), &mut buf, 1000).unwrap();
        assert_eq!(&buf[..], &data[1000..5000]);
    }

    #[test]
    fn bodies_of_many_chunks_empty_ones_too_are_written_whole() {
        // More chunks than one vectored write takes, some of them empty.
        let data = body(3000 * 100);
        let mut chunks: Vec<Bytes> = data.chunks(100).map(Bytes::copy_from_slice).collect();
        chunks.insert(0, Bytes::new());
        chunks.insert(1500, Bytes::new());
        chunks.splice(2000..2000, std::iter::repeat_n(Bytes::new(), 1500));
        chunks.push(Bytes::new());
        let b = from_chunks(&chunks, data.len()).unwrap();
        assert!(b[..] == data[..]);
    }

    #[test]
    fn small_bodies_and_other_memory_are_not_mapped() {
        let small = body(MIN_BYTES - 1);
        assert!(from_chunks(&[Bytes::from(small.clone())], small.len()).is_none());
        assert!(source(&small).is_none());
        assert!(source(&[]).is_none());
    }

    #[test]
    fn only_slices_wholly_inside_a_region_find_it() {
        let file = Arc::new(rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC).unwrap());
        let mut regions = BTreeMap::new();
        for base in [1000, 2000] {
            let file = file.clone();
            regions.insert(base, Region { len: 100, file });
        }
        let at = |start, len| find(&regions, start, len).map(|s| s.offset);
        assert_eq!(at(1000, 100), Some(0));
        assert_eq!(at(1050, 50), Some(50));
        assert_eq!(at(2099, 1), Some(99));
        assert_eq!(at(1050, 51), None, "reaches past the end");
        assert_eq!(at(999, 1), None, "starts before the first region");
        assert_eq!(at(1100, 1), None, "between regions");
        assert_eq!(at(1999, 2), None, "straddles into the next region");
        assert_eq!(at(usize::MAX, 2), None, "wraps");
    }

    #[test]
    fn a_spent_budget_keeps_bodies_on_the_heap() {
        assert!(Slot::within(0).is_none());
        assert!(Slot::within(usize::MAX).is_some());
        assert!(budget() >= 1 && budget() <= MAX_MAPPED);
    }

    #[test]
    fn a_wrong_total_is_refused_and_nothing_is_kept() {
        let data = body(MIN_BYTES * 2);
        let before = mapped_now();
        assert!(from_chunks(&[Bytes::from(data)], MIN_BYTES * 3).is_none());
        assert!(mapped_now() <= before);
    }

    #[test]
    fn dropping_the_body_unregisters_it_and_the_file_is_sealed() {
        let b = from_chunks(&[Bytes::from(body(MIN_BYTES))], MIN_BYTES).unwrap();
        let src = source(&b).unwrap();
        // Sealed: neither written nor resized.
        assert!(rustix::io::pwrite(src.file.as_fd(), b"x", 0).is_err());
        assert!(rustix::fs::ftruncate(src.file.as_fd(), 1).is_err());
        let start = b.as_ptr() as usize;
        drop(b);
        assert!(!REGIONS.read().unwrap().contains_key(&start));
        // The sender's own reference keeps the file readable after the body is gone.
        let mut buf = [0u8; 4];
        rustix::io::pread(src.file.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(&buf, &body(4)[..]);
    }
}

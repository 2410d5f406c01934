//! The agent's bounded on-disk buffer: records appended in order to segment files, read back
//! in order from an acknowledged position that is saved only after the collector accepted
//! them. A collector outage of any length loses nothing that fits; after a restart, sending
//! resumes at the last acknowledged record (at-least-once: a batch sent but not yet
//! acknowledged when the process died is sent again).
//!
//! Written here rather than taken from a crate: the one needed behaviour (append, read from a
//! durable cursor, free whole segments) is small, and the queue crates in the lists either
//! keep everything in memory or do not bound the bytes on disk.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One shipped log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The file it came from.
    pub src: String,
    /// The line, without its newline.
    pub line: String,
    /// When it was read, Unix nanoseconds.
    pub t: u64,
}

/// A position in the buffer: segment id and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pos {
    /// Segment id.
    pub seg: u64,
    /// Byte offset in it.
    pub off: u64,
}

/// The buffer.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segment ids and sizes, oldest first.
    segments: Vec<(u64, u64)>,
    ack: Pos,
}

fn seg_name(id: u64) -> String {
    format!("seg-{id:020}.log")
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        crate::files::create_dir_all(dir)?;
        let mut segments = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                segments.push((id, e.metadata()?.len()));
            }
        }
        segments.sort_unstable();
        let ack: Pos = fs::read_to_string(dir.join("ack"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Pos {
                seg: segments.first().map_or(0, |s| s.0),
                off: 0,
            });
        let mut b = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 8 << 20),
            segments,
            ack,
        };
        b.drop_acked()?;
        Ok(b)
    }

    /// Bytes on disk not yet acknowledged (roughly: whole segments from the acknowledged one).
    pub fn used(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.1)
            .sum::<u64>()
            .saturating_sub(self.ack.off)
    }

    /// Appends `records` durably (fsync); `false` when they do not fit (nothing written).
    pub fn append(&mut self, records: &[Record]) -> io::Result<bool> {
        let mut bytes = Vec::new();
        for r in records {
            serde_json::to_writer(&mut bytes, r).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        if self.used() + bytes.len() as u64 > self.max_bytes {
            return Ok(false);
        }
        let need_new = match self.segments.last() {
            None => true,
            Some((_, size)) => *size >= self.segment_bytes,
        };
        if need_new {
            let id = self.segments.last().map_or(self.ack.seg, |s| s.0 + 1);
            self.segments.push((id, 0));
        }
        let Some(last) = self.segments.last_mut() else {
            return Ok(false);
        };
        let mut f = crate::files::append(&self.dir.join(seg_name(last.0)))?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        last.1 += bytes.len() as u64;
        Ok(true)
    }

    /// Up to `max` records from the acknowledged position, and the position after them.
    pub fn read(&self, max: usize) -> io::Result<(Vec<Record>, Pos)> {
        let mut out = Vec::new();
        let mut pos = self.ack;
        for &(id, size) in self.segments.iter().filter(|s| s.0 >= self.ack.seg) {
            if id > pos.seg {
                pos = Pos { seg: id, off: 0 };
            }
            if pos.off >= size {
                continue;
            }
            let mut f = BufReader::new(File::open(self.dir.join(seg_name(id)))?);
            f.seek(SeekFrom::Start(pos.off))?;
            let mut line = String::new();
            while out.len() < max {
                line.clear();
                let n = f.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break; // end, or a torn last write from a crash
                }
                pos.off += n as u64;
                if let Ok(r) = serde_json::from_str::<Record>(line.trim_end()) {
                    out.push(r);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        Ok((out, pos))
    }

    /// Marks everything before `pos` as delivered (saved atomically), freeing whole segments.
    pub fn ack(&mut self, pos: Pos) -> io::Result<()> {
        let tmp = self.dir.join("ack.tmp");
        {
            let mut f = crate::files::create(&tmp)?;
            f.write_all(
                serde_json::to_string(&pos)
                    .map_err(io::Error::other)?
                    .as_bytes(),
            )?;
            f.sync_data()?;
        }
        fs::rename(&tmp, self.dir.join("ack"))?;
        self.ack = pos;
        self.drop_acked()
    }

    fn drop_acked(&mut self) -> io::Result<()> {
        while let Some(&(id, size)) = self.segments.first() {
            let done = id < self.ack.seg
                || (self.segments.len() > 1 && id == self.ack.seg && self.ack.off >= size);
            if !done {
                break;
            }
            let _ = fs::remove_file(self.dir.join(seg_name(id)));
            self.segments.remove(0);
            if id == self.ack.seg {
                if let Some(next) = self.segments.first() {
                    self.ack = Pos {
                        seg: next.0,
                        off: 0,
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(i: usize) -> Record {
        Record {
            src: "/f".into(),
            line: format!("line {i} {}", "x".repeat(100)),
            t: i as u64,
        }
    }

    #[test]
    fn order_bound_ack_and_reopen() {
        let dir = std::env::temp_dir().join(format!("outpost-buffer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut b = DiskBuffer::open(&dir, 1 << 20).unwrap();
        let mut n = 0;
        while b.append(&[rec(n)]).unwrap() {
            n += 1;
        }
        assert!(n > 5000, "{n}");
        assert!(b.used() <= 1 << 20);
        let (first, pos) = b.read(100).unwrap();
        assert_eq!(first, (0..100).map(rec).collect::<Vec<_>>());
        b.ack(pos).unwrap();
        // Reopened: resumes after the acknowledged records, in order, nothing lost.
        drop(b);
        let mut b = DiskBuffer::open(&dir, 1 << 20).unwrap();
        let mut got = Vec::new();
        loop {
            let (rs, pos) = b.read(1000).unwrap();
            if rs.is_empty() {
                break;
            }
            got.extend(rs);
            b.ack(pos).unwrap();
        }
        assert_eq!(got, (100..n).map(rec).collect::<Vec<_>>());
        assert!(b.append(&[rec(0)]).unwrap(), "space is freed by acks");
        let _ = fs::remove_dir_all(&dir);
    }
}

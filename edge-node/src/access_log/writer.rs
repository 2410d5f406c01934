//! The access log's writer thread: formats records, writes them to a file or stderr in
//! batches (flushed whenever the channel runs dry), reopens the file when asked.

use super::format::Format;
use super::queue::Queue;
use super::record::Record;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Where lines go.
pub(super) enum Output {
    Stderr,
    File(PathBuf, std::io::BufWriter<File>),
}

impl Output {
    /// `stderr`, or a file opened for appending (created mode 0640).
    pub(super) fn open(path: &str) -> Result<Output, String> {
        if path == "stderr" {
            return Ok(Output::Stderr);
        }
        let p = PathBuf::from(path);
        let f = open_file(&p)?;
        Ok(Output::File(
            p,
            std::io::BufWriter::with_capacity(64 << 10, f),
        ))
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stderr => std::io::stderr().lock().write_all(bytes),
            Output::File(_, w) => w.write_all(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stderr => Ok(()),
            Output::File(_, w) => w.flush(),
        }
    }

    /// Opens the path again (logrotate moved the old file away).
    fn reopen(&mut self) -> Result<(), String> {
        if let Output::File(p, w) = self {
            let _ = w.flush();
            *w = std::io::BufWriter::with_capacity(64 << 10, open_file(p)?);
        }
        Ok(())
    }
}

fn open_file(p: &std::path::Path) -> Result<File, String> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o640);
    }
    o.open(p)
        .map_err(|e| format!("access log {}: {e}", p.display()))
}

/// Writes what `queue` receives, a batch at a time, until it is closed and empty.
pub(super) fn run(queue: &Queue, mut out: Output, format: Format) {
    let mut line = String::with_capacity(512);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut batch: Vec<Record> = Vec::new();
    let mut failing = false;
    loop {
        let taken = queue.take(&mut batch);
        if taken.reopen {
            flush(&mut out, &mut buf, &mut failing);
            match out.reopen() {
                Ok(()) => tracing::info!("access log reopened"),
                Err(e) => tracing::error!("cannot reopen the {e}"),
            }
        }
        for r in batch.drain(..) {
            line.clear();
            format.write(&r, &mut line);
            buf.extend_from_slice(line.as_bytes());
            export(&r, &line);
            if buf.len() > 60 << 10 {
                flush(&mut out, &mut buf, &mut failing);
            }
        }
        flush(&mut out, &mut buf, &mut failing);
        if taken.closed {
            return;
        }
    }
}

fn flush(out: &mut Output, buf: &mut Vec<u8>, failing: &mut bool) {
    if buf.is_empty() {
        return;
    }
    let r = out.write(buf).and_then(|()| out.flush());
    buf.clear();
    match r {
        Err(e) if !*failing => {
            *failing = true;
            tracing::error!(error = %e, "cannot write the access log; lines are lost until it recovers");
        }
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!("the access log is written again");
        }
        _ => {}
    }
}

/// The record as an OTLP log record, when logs are exported.
fn export(r: &Record, line: &str) {
    if !agent::logs_exported() {
        return;
    }
    let trace = r
        .trace
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_default();
    let (method, path, status, client) = (
        r.method.as_str(),
        r.target.split('?').next().unwrap_or_default(),
        r.status,
        r.client.ip(),
    );
    let (site, cache, tier, id) = (&*r.site, r.cache, r.tier, format!("{:016x}", r.id));
    tracing::event!(
        target: agent::ACCESS_TARGET,
        tracing::Level::INFO,
        http.request.method = method,
        url.path = path,
        http.response.status_code = status,
        client.address = %client,
        cdn.site = site,
        cdn.cache.status = cache,
        cdn.tier = tier,
        request.id = id.as_str(),
        trace_id = trace.as_str(),
        "{}",
        line.trim_end()
    );
}

//! Stderr logs of `outpost run` as operators see them: no colour escapes in a pipe or a
//! file, colours on a terminal unless NO_COLOR; a warning that repeats in a retry loop said
//! once, then summarised once per interval with a count, and its recovery said once.

use crate::support::process::{Process, BIN};
use crate::support::{temp_dir, TOKEN};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An edge that follows a purge hub at `port`, which keeps warning while nobody is there.
fn follower(port: u16) -> String {
    format!(
        "[edge]\nlisten = [\"127.0.0.1:0\"]\npurge_hub = \"http://127.0.0.1:{port}\"\n\
         purge_hub_token = \"{TOKEN}\"\n\n\
         [[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:1\"]\n"
    )
}

/// Runs `cmd` with its output read into a buffer until `done` holds for what it has
/// written, or `limit` passes; then kills it. Returns what it wrote.
fn output_until(
    mut cmd: Command,
    stream: fn(&mut std::process::Child) -> Box<dyn Read + Send>,
    limit: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut child = cmd.spawn().unwrap();
    let mut out = stream(&mut child);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while Instant::now() < deadline && !done(&String::from_utf8_lossy(&got)) {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(50)) {
            got.extend(chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    String::from_utf8_lossy(&got).into_owned()
}

fn stderr_of(c: &mut std::process::Child) -> Box<dyn Read + Send> {
    Box::new(c.stderr.take().unwrap())
}

fn stdout_of(c: &mut std::process::Child) -> Box<dyn Read + Send> {
    Box::new(c.stdout.take().unwrap())
}

#[test]
fn warnings_in_a_pipe_carry_no_colour_escapes() {
    let dir = temp_dir("logs-pipe");
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, follower(closed_port())).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["--workers", "1", "run", "--config"])
        .arg(&cfg)
        .env("OUTPOST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let err = output_until(cmd, stderr_of, Duration::from_secs(15), |s| {
        s.contains("cannot reach the purge hub")
    });
    assert!(err.contains("WARN"), "no warning logged:\n{err}");
    assert!(!err.contains('\x1b'), "colour escapes in a pipe:\n{err:?}");
}

/// `outpost run` on a terminal (a pseudo-terminal made by util-linux `script`; `timeout`
/// stops it after 5 s at the latest): what the terminal showed once it warned.
fn on_a_terminal(cfg: &std::path::Path, no_color: Option<&str>) -> String {
    let line = format!(
        "timeout -s TERM 5 {BIN} --workers 1 run --config {}",
        cfg.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &line, "/dev/null"])
        .env("OUTPOST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    output_until(cmd, stdout_of, Duration::from_secs(15), |s| {
        s.contains("cannot reach the purge hub")
    })
}

#[test]
fn a_terminal_gets_colours_unless_no_color_is_set() {
    let dir = temp_dir("logs-tty");
    let cfg = dir.join("node.toml");
    std::fs::write(&cfg, follower(closed_port())).unwrap();
    let coloured = on_a_terminal(&cfg, None);
    assert!(
        coloured.contains("cannot reach the purge hub") && coloured.contains('\x1b'),
        "a terminal gets colours:\n{coloured:?}"
    );
    let plain = on_a_terminal(&cfg, Some("1"));
    assert!(
        plain.contains("cannot reach the purge hub") && !plain.contains('\x1b'),
        "NO_COLOR=1 gets none:\n{plain:?}"
    );
}

/// "cannot reach the purge hub URL: N times in …" lines and their N.
fn summaries(log: &str, hub: &str) -> Vec<u64> {
    let head = format!("cannot reach the purge hub {hub}: ");
    log.lines()
        .filter_map(|l| l.split_once(&head).map(|(_, rest)| rest))
        .filter_map(|rest| {
            let (n, rest) = rest.split_once(' ')?;
            (rest.starts_with("time") && rest.contains(", last error: "))
                .then(|| n.parse().ok())
                .flatten()
        })
        .collect()
}

#[tokio::test]
async fn a_down_purge_hub_is_one_warning_then_a_count_per_interval_then_a_recovery() {
    let dir = temp_dir("logs-repeat");
    let port = closed_port();
    let hub = format!("http://127.0.0.1:{port}");
    let edge = Process::start_env(
        &dir,
        "edge",
        &follower(port),
        1,
        &[("OUTPOST_LOG_REPEAT_INTERVAL", "1s")],
    );
    let started = Instant::now();
    let warned = format!("cannot reach the purge hub {hub}");
    // The follower retries after 0.1, 0.2, 0.4, 0.8, 1.6, 2 s ...: about six attempts in 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = started + Duration::from_secs(12);
    while summaries(&edge.log(), &hub).iter().all(|n| *n < 2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = edge.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&warned)).collect();
    let counts = summaries(&log, &hub);
    assert_eq!(
        lines.len(),
        1 + counts.len(),
        "the first failure said once, then only summaries:\n{log}"
    );
    assert!(
        summaries(lines[0], &hub).is_empty()
            && lines[0].contains("WARN")
            && lines[0].to_lowercase().contains("connection refused"),
        "the first line names the error:\n{log}"
    );
    let attempts = 1 + counts.iter().sum::<u64>();
    assert!(
        counts.iter().any(|n| *n >= 2) && (lines.len() as u64) < attempts,
        "{attempts} attempts in {} lines, not one line each:\n{log}",
        lines.len()
    );
    assert!(!log.contains('\x1b'), "no colour escapes in a file");

    // The hub comes up on that port: the follower says so once.
    let _hub = Process::start(
        &dir,
        "hub",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\npurge_hub = true\nstate_dir = {:?}\n",
            dir.join("hub-state").display().to_string()
        ),
        1,
    );
    let recovered = format!("purge hub {hub} reachable again after ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !edge.log().contains(&recovered) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = edge.log();
    let back: Vec<&str> = log.lines().filter(|l| l.contains(&recovered)).collect();
    assert_eq!(back.len(), 1, "the recovery said once:\n{log}");
    assert!(back[0].contains("INFO"), "{}", back[0]);
    let total: u64 = back[0]
        .split_once(&recovered)
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        total >= attempts,
        "the recovery counts every failure:\n{log}"
    );
    eprintln!("--- edge stderr ---\n{log}");
}

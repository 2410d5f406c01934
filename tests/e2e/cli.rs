//! The `outpost` binary as a process: check-config, run with port 0, clean stop, clear errors.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// A config file in a directory of its own; the directory goes when the pair is dropped.
fn tmp(name: &str, body: &str) -> (crate::support::TempDir, std::path::PathBuf) {
    let dir = crate::support::temp_dir(&format!("cli-{name}"));
    let p = dir.join("node.toml");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    (dir, p)
}

#[test]
fn check_config_reports_every_problem_with_line_and_key() {
    let (_dir, p) = tmp(
        "bad",
        r#"[admin]
listen = "127.0.0.1:0"
token = ""

[edge]
listen = ["127.0.0.1:0"]
memory_bytes = "4KiB"

[[edge.sites]]
hosts = ["bad host!"]
origins = ["ftp://nowhere"]
"#,
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = p.display().to_string();
    for want in [
        format!("{f}:3: admin.token: must not be empty"),
        format!("{f}:7: edge.memory_bytes: must be at least 1MiB"),
        format!("{f}:10: edge.sites[0].hosts[0]:"),
        format!("{f}:11: edge.sites[0].origins[0]:"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
}

/// Five (and more) bad values across sections: type errors, semantic errors, an unknown key,
/// a missing required key, listen addresses taken twice within a role and across roles.
const FIVE_BAD: &str = r#"[admin]
listen = "127.0.0.1:19901"
token = ""

[edge]
listen = ["127.0.0.1:18080", "127.0.0.1:99999", "127.0.0.1:18080"]
tls_listen = ["127.0.0.1:19901"]
memory_bytes = "12XB"
max_variants = "eight"
colapse_timeout = "5s"

[[edge.sites]]
hosts = ["a.test"]

[[edge.sites]]
hosts = ["bad host!"]
origins = ["ftp://nowhere"]

[shield]
secret = "s3cret-s3cret"
listen = ["0.0.0.0:18080"]
keep = 30

[[shield.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]

[dns]
listen = ["127.0.0.1:18080"]

[[dns.zones]]
name = "example.test"
ns = ["ns1.example.test"]
records = [
  { name = "www", type = "A", value = "192.0.2.1" },
  { name = "mail", type = "MX", value = "10 mx.example.test." },
  { name = "x", type = "SRV", value = "1" },
]

[telemetry]
sampling_ratio = 2.0
"#;

/// The lines every run over [`FIVE_BAD`] must print (the file's path in front).
const FIVE_BAD_LINES: [&str; 14] = [
    ":3: admin.token: must not be empty",
    ":6: edge.listen[1]: \"127.0.0.1:99999\" is not a socket address",
    ":6: edge.listen[2]: \"127.0.0.1:18080\" is also edge.listen[0]",
    ":7: edge.tls_listen[0]: \"127.0.0.1:19901\" is also admin.listen",
    ":8: edge.memory_bytes: \"12XB\" is not a size (use bytes or a string like \"512MiB\")",
    ":9: edge.max_variants: \"eight\" is not a whole number",
    ":10: edge.colapse_timeout: unknown key; did you mean \"collapse_timeout\"?",
    ":12: edge.sites[0].origins: missing: this key is required",
    ":16: edge.sites[1].hosts[0]: \"bad host!\" is not a host name",
    ":21: shield.listen[0]: \"0.0.0.0:18080\" overlaps edge.listen[0] \"127.0.0.1:18080\"",
    ":22: shield.keep: 30 is not a duration",
    ":29: dns.listen[0]: \"127.0.0.1:18080\" is also edge.listen[0]",
    ":37: dns.zones[0].records[2].type: unsupported record type \"SRV\"",
    ":41: telemetry.sampling_ratio: must be between 0.0 and 1.0 (got 2.0)",
];

#[test]
fn check_config_and_run_report_every_problem_of_every_section_at_once() {
    let (_dir, p) = tmp("five-bad", FIVE_BAD);
    let f = p.display().to_string();
    for cmd in [&["check-config"][..], &["run", "--config"][..]] {
        let out = Command::new(BIN).args(cmd).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for want in FIVE_BAD_LINES {
            let want = format!("{f}{want}");
            assert!(
                err.lines().any(|l| l.starts_with(&want)),
                "{cmd:?}: missing {want:?} in\n{err}"
            );
        }
        // Nothing but problems, one a line, each with its file and line.
        assert!(
            err.lines().all(|l| l.starts_with(&format!("{f}:"))),
            "{cmd:?}:\n{err}"
        );
    }
}

#[test]
fn example_configs_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("check-config")
                .arg(&path)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            // Certificate and token files of the examples live on the target host, not here.
            let real: Vec<_> = err
                .lines()
                .filter(|l| {
                    !l.contains("does not exist") && !l.contains("cannot read /etc/outpost")
                })
                .collect();
            assert!(real.is_empty(), "{}: {real:?}", path.display());
        }
    }
}

#[test]
fn bad_flags_and_missing_files_exit_2() {
    let out = Command::new(BIN).arg("run").arg("--nope").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/outpost.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/outpost.toml: cannot read"));
}

/// The node raises its soft open-file limit to the hard one (connections and large bodies in
/// memory files each hold a descriptor).
#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let limits = |pid: u32| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let v: Vec<String> = line.split_whitespace().map(String::from).collect();
        (v[3].clone(), v[4].clone())
    };
    let hard = limits(std::process::id()).1;
    // Started with a soft limit below the hard one (when the hard one allows it).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -S -n 256; exec {BIN} --workers 1 sample-origin --listen 127.0.0.1:0"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    let (soft, max) = limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(max, hard);
    assert_eq!(soft, hard, "the soft limit stayed below the hard one");
}

#[test]
fn busy_port_is_one_clear_line_and_exit_2() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (_dir, p) = tmp(
        "busy",
        &format!("[edge]\nlisten = [\"127.0.0.1:{port}\"]\n[[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:1\"]\n"),
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn run_serves_on_port_zero_and_stops_on_sigterm() {
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in origin.incoming().take(1) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=60\r\n\r\nhello",
            );
        }
    });
    let (_dir, p) = tmp(
        "run",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n[edge]\nlisten = [\"127.0.0.1:0\"]\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"http://{origin_addr}\"]\n"
        ),
    );
    let mut child = Command::new(BIN)
        .args(["--workers", "1", "run", "--config"])
        .arg(&p)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("outpost: edge listening on ")
        .expect(&first)
        .to_string();
    let admin = lines.next().unwrap().unwrap();
    assert!(
        admin.starts_with("outpost: admin listening on http://127.0.0.1:"),
        "{admin}"
    );
    for _ in 0..2 {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", &format!("{url}/x")])
            .output();
        let Ok(out) = out else { break };
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(text.contains("hello"), "{text}");
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP with a broken file: the running process keeps its config and logs every problem of
/// the new file, the same lines check-config prints.
#[test]
fn a_rejected_reload_logs_every_problem() {
    let (_dir, p) = tmp(
        "reload",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n[edge]\nlisten = [\"127.0.0.1:0\"]\n[[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:1\"]\n",
    );
    let mut child = Command::new(BIN)
        .args(["--workers", "1", "run", "--config"])
        .arg(&p)
        .env("OUTPOST_LOG", "info")
        .env_remove("OUTPOST_LOG_FORMAT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = out.next().unwrap().unwrap();
    assert!(first.starts_with("outpost: edge listening on "), "{first}");
    std::fs::write(&p, FIVE_BAD).unwrap();
    let pid = child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let f = p.display().to_string();
    let mut missing: Vec<String> = FIVE_BAD_LINES.iter().map(|w| format!("{f}{w}")).collect();
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        if line.contains("reload rejected") {
            missing.retain(|w| !line.contains(&format!("serving: {w}")));
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(missing.is_empty(), "not logged: {missing:?}\n{seen}");
}

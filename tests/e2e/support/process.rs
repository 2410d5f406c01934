//! `outpost run` as a child process, for tests of the binary as operators run it.

pub const BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// `outpost check-config` on `toml` (written in `dir`): its exit code and stderr.
pub fn check_config(dir: &std::path::Path, toml: &str) -> (Option<i32>, String) {
    let file = dir.join("check.toml");
    std::fs::write(&file, toml).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `outpost run` and what its banner said.
pub struct Process {
    child: std::process::Child,
    pub banner: Vec<String>,
    pub log: std::path::PathBuf,
    /// Its config file.
    pub config: std::path::PathBuf,
}

impl Process {
    /// Starts `outpost run` on `toml` (written in `dir`) and reads `lines` banner lines.
    pub fn start(dir: &std::path::Path, name: &str, toml: &str, lines: usize) -> Process {
        Self::start_env(dir, name, toml, lines, &[])
    }

    /// [`Process::start`] with more environment variables.
    pub fn start_env(
        dir: &std::path::Path,
        name: &str,
        toml: &str,
        lines: usize,
        env: &[(&str, &str)],
    ) -> Process {
        Self::start_wrapped(dir, name, toml, lines, env, &[])
    }

    /// [`Process::start_env`] through `wrapper`: a command and its arguments that end by
    /// running what follows them (the binary and its arguments), as `unshare ... sh -c
    /// '...; exec "$@"'` does. The process's id is the wrapper's, which must exec the binary.
    pub fn start_wrapped(
        dir: &std::path::Path,
        name: &str,
        toml: &str,
        lines: usize,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Process {
        use std::io::{BufRead, BufReader};
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = std::process::Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => std::process::Command::new(BIN),
        };
        let mut child = cmd
            .args(["--workers", "1", "run", "--config"])
            .arg(&cfg)
            .env("OUTPOST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner: Vec<String> = (0..lines)
            .map(|_| match out.next() {
                Some(Ok(l)) => l,
                _ => panic!(
                    "{name}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            })
            .collect();
        Process {
            child,
            banner,
            log,
            config: cfg,
        }
    }

    /// The URL after "outpost: {what} listening on ".
    pub fn url(&self, what: &str) -> String {
        let prefix = format!("outpost: {what} listening on ");
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {what} in {:?}", self.banner))
            .to_string()
    }
}

impl Process {
    /// Its process id (for /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (`HUP`, `TERM`, ...).
    pub fn signal(&self, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -s {signal} failed");
    }

    /// Waits up to `limit` for it to exit; its exit status, if it did.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

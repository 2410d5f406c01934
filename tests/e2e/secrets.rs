//! Secrets and files (issue 17, point 6): a node's state is private to its user whatever the
//! umask, and a config file holding a secret that others can read is warned about.

use crate::support::process::Process;
use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// Every file and directory under `root` with its mode (permission bits).
fn modes(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            out.push((p.clone(), m.permissions().mode() & 0o777));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn state_and_disk_files_are_private_to_the_node_user() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("private-state");
    let (admin, port) = (free_port(), free_port());
    let toml = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
token = "t"

[edge]
listen = ["127.0.0.1:{port}"]
state_dir = "{state}"
disk_path = "{disk}"

[[edge.sites]]
hosts = ["127.0.0.1"]
origins = ["{origin}"]
"#,
        state = dir.join("state").display(),
        disk = dir.join("disk").display(),
        origin = origin.url(),
    );
    let node = Process::start(&dir, "edge", &toml, 1);
    let url = format!("http://127.0.0.1:{port}/a");
    get(&url, &[]).await;
    let admin_url = format!("http://127.0.0.1:{admin}");
    let (st, _) = purge(&admin_url, "t", r#"{"tags":["none"]}"#).await;
    assert_eq!(st, 200);
    // The disk tier writes behind; the purge state is saved as it is applied.
    let mut files = Vec::new();
    for _ in 0..100 {
        files = modes(&dir.join("disk"));
        files.extend(modes(&dir.join("state")));
        if files.iter().filter(|(_, m)| *m & 0o100 == 0).count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(node);
    let plain: Vec<_> = files.iter().filter(|(_, m)| *m & 0o100 == 0).collect();
    assert!(plain.len() >= 3, "too few files to judge: {files:?}");
    for (p, m) in &files {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} is {m:o}", p.display());
    }
}

#[test]
fn a_config_with_a_secret_others_can_read_is_warned_about() {
    let dir = temp_dir("exposed");
    let toml = "[admin]\nlisten = \"127.0.0.1:9\"\ntoken = \"do-not-show\"\n\n[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:9\"]\n";
    // check_config writes the file with the umask's mode: make it readable by all.
    let file = dir.join("check.toml");
    std::fs::write(&file, toml).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(crate::support::process::BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("admin.token") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("do-not-show"), "the secret was shown: {err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = std::process::Command::new(crate::support::process::BIN)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

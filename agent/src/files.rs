//! Files and directories only this user may read: every node's state (purge log and
//! marks, the disk tier's objects, the agent's buffers) is created through here, mode 0600
//! (directories 0700), whatever the umask.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates (or truncates) `path` for writing, mode 0600 when it is new.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Opens `path` for appending, created with mode 0600 when it is new.
pub fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to a new or truncated `path` (mode 0600).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}

/// Creates `dir` and its missing parents, the new ones mode 0700.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_private_whatever_the_umask() {
        let d = std::env::temp_dir().join(format!("outpost-files-{}", std::process::id()));
        create_dir_all(&d.join("a/b")).unwrap();
        write(&d.join("a/b/f"), b"x").unwrap();
        append(&d.join("a/g")).unwrap();
        let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("a"), mode("a/b")), (0o700, 0o700));
        assert_eq!((mode("a/b/f"), mode("a/g")), (0o600, 0o600));
        let _ = std::fs::remove_dir_all(&d);
    }
}

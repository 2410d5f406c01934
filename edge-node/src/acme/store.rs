//! ACME state on disk, under `state_dir/acme/`: the account's credentials (`account.json`)
//! and each certificate with its key (`certs/NAME.pem`, `certs/NAME.key`), every file mode
//! 0600 and replaced by a rename, so a crash leaves the old file or the new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the ACME state of a node lives.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under `state_dir`; its directories are created (mode 0700).
    pub(crate) fn open(state_dir: &Path) -> Result<Store, String> {
        let dir = state_dir.join("acme");
        create_private_dir(&dir.join("certs"))?;
        Ok(Store { dir })
    }

    /// The account's credentials (JSON), if saved.
    pub(crate) fn account(&self) -> Result<Option<String>, String> {
        read_if_there(&self.dir.join("account.json"))
    }

    /// Saves the account's credentials.
    pub(crate) fn save_account(&self, json: &str) -> Result<(), String> {
        write_private(&self.dir.join("account.json"), json)
    }

    /// The certificate chain and key saved for `name`, if both are there.
    pub(crate) fn cert(&self, name: &str) -> Result<Option<(String, String)>, String> {
        let (c, k) = self.cert_paths(name);
        Ok(match (read_if_there(&c)?, read_if_there(&k)?) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        })
    }

    /// Saves the certificate chain and key for `name` (the key first: a chain is never on
    /// disk without its key).
    pub(crate) fn save_cert(&self, name: &str, chain: &str, key: &str) -> Result<(), String> {
        let (c, k) = self.cert_paths(name);
        write_private(&k, key)?;
        write_private(&c, chain)
    }

    fn cert_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        // Host names are letters, digits, '-' and '.'; a wildcard's '*' becomes '_'.
        let file = name.replace('*', "_");
        let d = self.dir.join("certs");
        (d.join(format!("{file}.pem")), d.join(format!("{file}.key")))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn read_if_there(p: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", p.display())),
    }
}

/// Writes `text` to a new file beside `p` (mode 0600 from its creation), then renames it over.
fn write_private(p: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", p.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("outpost-acme-store-{}", std::process::id()));
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.account().unwrap(), None);
        s.save_account("{}").unwrap();
        s.save_cert("*.example.test", "CHAIN", "KEY").unwrap();
        assert_eq!(s.account().unwrap().as_deref(), Some("{}"));
        assert_eq!(
            s.cert("*.example.test").unwrap(),
            Some(("CHAIN".into(), "KEY".into()))
        );
        for f in ["acme/account.json", "acme/certs/_.example.test.key"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(dir.join("acme"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

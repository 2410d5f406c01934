//! A config file that holds a secret in clear and that other users can read: said at start
//! and by `check-config` (a warning, not a refusal: a container's read-only config mount
//! may have no say over its mode). The fix is `chmod 600`, or the secret in a file of its
//! own (`token_file`).

use std::path::Path;

/// The keys whose string values are secrets (their `_file` forms name files, not secrets).
fn is_secret(key: &str) -> bool {
    !key.ends_with("_file")
        && ["token", "secret", "password", "hmac_key"]
            .iter()
            .any(|s| key.ends_with(s))
}

/// The dotted paths of the secrets `t` holds in clear.
fn secrets(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) if is_secret(k) && !s.is_empty() => out.push(path),
            toml::Value::Table(inner) => secrets(&path, inner, out),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        secrets(&format!("{path}[{i}]"), inner, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The warning for `path` (with contents `src`) when it holds a secret and its mode lets
/// the group or others read it; `None` otherwise.
pub(crate) fn warning(path: &Path, src: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    if mode & 0o044 == 0 {
        return None;
    }
    let table: toml::Table = src.parse().ok()?;
    let mut found = Vec::new();
    secrets("", &table, &mut found);
    let first = found.first()?;
    let more = match found.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Some(format!(
        "{file} holds a secret ({first}{more}) and other users can read it (mode {m:04o}): \
         chmod 600 {file}, or keep the secret in a file of its own (token_file)",
        file = path.display(),
        m = mode & 0o7777,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn readable_secrets_are_named_and_private_files_pass() {
        let dir = std::env::temp_dir().join(format!("outpost-exposed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        let src = "[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"s3cret\"\n\n[edge]\nshield_secret = \"x\"\n\n[[edge.certificates]]\nkey = \"k.pem\"\n";
        std::fs::write(&f, src).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let w = warning(&f, src).unwrap();
        assert!(w.contains("admin.token and 1 more"), "{w}");
        assert!(w.contains("mode 0644") && !w.contains("s3cret"), "{w}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(warning(&f, src), None);
        // No secret in it: readable is fine (a certificate's key path is not a secret).
        let plain = "[edge]\nlisten = [\"127.0.0.1:1\"]\ntoken_file = \"/etc/t\"\n\n[[edge.certificates]]\nkey = \"k.pem\"\n";
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(warning(&f, plain), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

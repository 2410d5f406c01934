//! Reloading a running node's config (SIGHUP, `POST /reload`, `outpost reload`): the file is
//! read and validated whole; the edge and shield roles get their new config prepared (request
//! paths built, new listeners bound) before anything is applied, then DNS reloads, then the
//! prepared roles are applied together. Any failure before that point changes nothing and
//! says why. What only a restart can change (roles added or removed, `[admin]`,
//! `[telemetry]`, `[agent]`, `[acme]`, the purge settings) refuses the reload by name. The
//! answer lists what changed, key by key, with secrets' values withheld.

use crate::config::NodeConfig;
use edge_node::cache::PurgeMarks;
use edge_node::Node;
use std::path::PathBuf;
use std::sync::Arc;

/// The running roles a reload applies to, and the config they run now.
pub struct Reloader {
    path: PathBuf,
    edge: Option<Arc<Node>>,
    shield: Option<Arc<Node>>,
    dns: Option<geo_dns::DnsHandle>,
    marks: Arc<PurgeMarks>,
    registry: agent::metrics::Registry,
    admin_token: Option<String>,
    /// The config applied last (raw, for the diff), held while a reload runs: one at a time.
    current: tokio::sync::Mutex<(NodeConfig, toml::Table)>,
}

/// Top-level sections only a restart can change.
const RESTART_SECTIONS: [&str; 4] = ["admin", "telemetry", "agent", "acme"];
/// Keys of `[edge]` only a restart can change (the purge service is built once; edge-node
/// refuses its own, such as `state_dir` and `disk_path`).
const RESTART_EDGE_KEYS: [&str; 6] = [
    "purge_hub",
    "purge_hub_token",
    "purge_hub_ca",
    "purge_nats_url",
    "purge_nats_stream",
    "node_id",
];

/// Keys of `[dns]` only a restart can change (its sockets and threads).
const RESTART_DNS_KEYS: [&str; 3] = ["listen", "udp_workers", "tcp_idle_timeout"];

/// The parts of a running node a [`Reloader`] works on.
pub struct Parts {
    pub path: PathBuf,
    pub cfg: NodeConfig,
    pub edge: Option<Arc<Node>>,
    pub shield: Option<Arc<Node>>,
    pub dns: Option<geo_dns::DnsHandle>,
    pub marks: Arc<PurgeMarks>,
    pub registry: agent::metrics::Registry,
    pub admin_token: Option<String>,
}

impl Reloader {
    /// A reloader of `p.path`, whose config `p.cfg` runs now.
    pub fn new(p: Parts) -> Result<Self, String> {
        let raw = raw(&p.path)?;
        Ok(Self {
            path: p.path,
            edge: p.edge,
            shield: p.shield,
            dns: p.dns,
            marks: p.marks,
            registry: p.registry,
            admin_token: p.admin_token,
            current: tokio::sync::Mutex::new((p.cfg, raw)),
        })
    }

    /// The config applied last, as JSON (for the console's config page); `None` while a
    /// reload runs.
    pub fn current_json(&self) -> Option<serde_json::Value> {
        let current = self.current.try_lock().ok()?;
        serde_json::to_value(&current.1).ok()
    }

    /// Re-reads the file and applies it: `Ok` with what changed (empty: nothing did), or
    /// `Err` with every reason nothing was applied.
    pub async fn reload(&self) -> Result<Vec<String>, Vec<String>> {
        let mut current = self.current.lock().await;
        // Read once: what is checked, diffed and applied is the same text.
        let src = read(&self.path).map_err(|e| vec![e])?;
        let cfg = NodeConfig::parse(&self.path.display().to_string(), &src)?;
        let new_raw = table(&self.path, &src).map_err(|e| vec![e])?;
        let changes = diff(
            "",
            &toml::Value::Table(current.1.clone()),
            &toml::Value::Table(new_raw.clone()),
        );
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        restart_only(&current.1, &new_raw)?;
        let edge = match (&self.edge, &cfg.edge) {
            (Some(node), Some(ec)) => Some(
                edge_node::Edge::builder(ec)
                    .purge_marks(self.marks.clone())
                    .metrics(&self.registry)
                    .acme(cfg.acme.as_ref())
                    .acme_hub(acme_hub(ec, self.admin_token.as_deref()))
                    .prepare_reload(node)
                    .await
                    .map_err(|e| vec![format!("edge: {e}")])?,
            ),
            _ => None,
        };
        let shield = match (&self.shield, &cfg.shield) {
            (Some(node), Some(sc)) => Some(
                origin_shield::prepare_reload(sc, node, self.marks.clone(), &self.registry)
                    .await
                    .map_err(|e| vec![format!("shield: {e}")])?,
            ),
            _ => None,
        };
        if let (Some(server), Some(dc)) = (&self.dns, &cfg.dns) {
            server
                .reload(dc)
                .await
                .map_err(|e| vec![format!("dns: {e}")])?;
        }
        if let Some(r) = edge {
            r.apply();
        }
        if let Some(r) = shield {
            r.apply();
        }
        *current = (cfg, new_raw);
        Ok(changes)
    }
}

fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn table(path: &std::path::Path, src: &str) -> Result<toml::Table, String> {
    src.parse::<toml::Table>()
        .map_err(|e| format!("{}: {}", path.display(), e.message()))
}

fn raw(path: &std::path::Path) -> Result<toml::Table, String> {
    table(path, &read(path)?)
}

/// Refuses a change only a restart can make, naming each.
fn restart_only(old: &toml::Table, new: &toml::Table) -> Result<(), Vec<String>> {
    let mut out = Vec::new();
    let roles = ["edge", "shield", "dns"];
    for section in roles.iter().chain(&RESTART_SECTIONS) {
        match (old.get(*section), new.get(*section)) {
            (None, Some(_)) => out.push(format!("a [{section}] section was added")),
            (Some(_), None) => out.push(format!("the [{section}] section was removed")),
            (Some(a), Some(b)) if a != b && RESTART_SECTIONS.contains(section) => {
                out.push(format!("[{section}] changed"))
            }
            _ => {}
        }
    }
    let key = |t: &toml::Table, s: &str, k: &str| t.get(s).and_then(|e| e.get(k)).cloned();
    for k in RESTART_EDGE_KEYS {
        if key(old, "edge", k) != key(new, "edge", k) {
            out.push(format!("edge.{k} changed"));
        }
    }
    for k in RESTART_DNS_KEYS {
        if key(old, "dns", k) != key(new, "dns", k) {
            out.push(format!("dns.{k} changed"));
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    Err(out
        .into_iter()
        .map(|w| format!("{w}: only a restart applies it"))
        .collect())
}

/// What differs from `old` to `new`, one line per changed key: `path: old -> new`, `path:
/// added (value)`, `path: removed`. Arrays of tables are compared element by element.
pub fn diff(path: &str, old: &toml::Value, new: &toml::Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(path, old, new, &mut out);
    out
}

fn show(key: &str, v: &toml::Value) -> String {
    if edge_node::admin::console::secret_key(key) {
        return "(secret)".into();
    }
    let s = v.to_string();
    if s.len() > 120 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn diff_into(path: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<String>) {
    use toml::Value;
    let leaf = path.rsplit(['.', ']']).next().unwrap_or(path);
    match (old, new) {
        (Value::Table(a), Value::Table(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff_into(&join(path, k), va, vb, out),
                    None => out.push(format!("{}: removed", join(path, k))),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    out.push(format!("{}: added ({})", join(path, k), show(k, vb)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(Value::is_table) => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff_into(&format!("{path}[{i}]"), va, vb, out);
            }
            for i in b.len()..a.len() {
                out.push(format!("{path}[{i}]: removed"));
            }
            for (i, vb) in b.iter().enumerate().skip(a.len()) {
                out.push(format!("{path}[{i}]: added ({})", show(leaf, vb)));
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {} -> {}", show(leaf, a), show(leaf, b))),
        _ => {}
    }
}

/// The hub whose ACME state an edge follows: its purge hub, when it has one (the purge hub
/// orders the fleet's certificates); none with NATS or as the hub itself.
pub fn acme_hub(
    ec: &edge_node::config::EdgeConfig,
    admin_token: Option<&str>,
) -> Option<edge_node::AcmeHub> {
    let url = ec.purge_hub.clone()?;
    let token = ec
        .purge_hub_token
        .clone()
        .or_else(|| admin_token.map(str::to_string))?;
    Some(edge_node::AcmeHub {
        url,
        token,
        ca: ec.purge_hub_ca.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> toml::Value {
        toml::Value::Table(s.parse::<toml::Table>().unwrap())
    }

    #[test]
    fn diff_names_each_changed_key_and_hides_secrets() {
        let old = t(r#"
[edge]
memory_bytes = "64MiB"
shield_secret = "a"
[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]
"#);
        let new = t(r#"
[edge]
memory_bytes = "32MiB"
shield_secret = "b"
[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:2"]
[[edge.sites]]
hosts = ["b.test"]
origins = ["http://127.0.0.1:3"]
"#);
        let d = diff("", &old, &new);
        assert!(
            d.contains(&r#"edge.memory_bytes: "64MiB" -> "32MiB""#.to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(&"edge.shield_secret: (secret) -> (secret)".to_string()),
            "{d:?}"
        );
        assert!(
            d.contains(
                &r#"edge.sites[0].origins: ["http://127.0.0.1:1"] -> ["http://127.0.0.1:2"]"#
                    .to_string()
            ),
            "{d:?}"
        );
        assert!(
            d.iter().any(|l| l.starts_with("edge.sites[1]: added (")),
            "{d:?}"
        );
        assert!(diff("", &old, &old).is_empty());
    }

    #[test]
    fn restart_only_changes_are_named() {
        let a = t(
            "[admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"x\"\n[edge]\npurge_hub = \"http://a\"\n",
        );
        let b = t("[admin]\nlisten = \"127.0.0.1:2\"\ntoken = \"x\"\n[edge]\npurge_hub = \"http://b\"\n[dns]\n");
        let (toml::Value::Table(a), toml::Value::Table(b)) = (a, b) else {
            unreachable!()
        };
        let e = restart_only(&a, &b).unwrap_err();
        assert!(
            e.iter().any(|l| l.starts_with("a [dns] section was added")),
            "{e:?}"
        );
        assert!(e.iter().any(|l| l.starts_with("[admin] changed")), "{e:?}");
        assert!(
            e.iter().any(|l| l.starts_with("edge.purge_hub changed")),
            "{e:?}"
        );
        assert!(restart_only(&a, &a).is_ok());
    }
}

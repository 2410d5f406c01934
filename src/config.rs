//! The node config file: one TOML file whose sections start the roles of this process, parsed
//! with every problem reported as `FILE:LINE: KEY: message`.

pub use agent::config::TelemetryConfig;
use agent::role::config::AgentConfig;
use edge_node::config::{AcmeConfig, AdminConfig, ConfigProblem, EdgeConfig};
use serde::Deserialize;
use std::path::Path;

/// A whole node config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Telemetry settings.
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
    /// The edge role.
    #[serde(default)]
    pub edge: Option<EdgeConfig>,
    /// The shield role: the parent tier in front of the origin.
    #[serde(default)]
    pub shield: Option<origin_shield::ShieldConfig>,
    /// The geo-DNS role.
    #[serde(default)]
    pub dns: Option<geo_dns::DnsConfig>,
    /// The agent role: host metrics and log shipping.
    #[serde(default)]
    pub agent: Option<AgentConfig>,
    /// Certificates from an ACME CA for the edge's sites with `acme = true`.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
}

impl NodeConfig {
    /// Parses and validates `src` (read from `file`); every problem, one line each.
    pub fn parse(file: &str, src: &str) -> Result<NodeConfig, Vec<String>> {
        let at = |line: Option<usize>, key: &str, msg: &str| match line {
            Some(l) => format!("{file}:{l}: {key}: {msg}"),
            None => format!("{file}: {key}: {msg}"),
        };
        // Syntax first, so a broken file gets one syntax error rather than a schema one.
        if let Err(e) = src.parse::<toml::Table>() {
            let line = e.span().map(|s| line_of(src, s.start));
            return Err(vec![at(line, "(syntax)", e.message())]);
        }
        let cfg: NodeConfig = match toml::from_str(src) {
            Ok(c) => c,
            Err(e) => {
                let line = e.span().map(|s| line_of(src, s.start));
                let key = e
                    .span()
                    .and_then(|s| key_near(src, s.start))
                    .unwrap_or_else(|| "(config)".into());
                return Err(vec![at(line, &key, e.message())]);
            }
        };
        let mut problems: Vec<ConfigProblem> = Vec::new();
        if let Some(a) = &cfg.admin {
            problems.extend(a.validate("admin"));
        }
        if let Some(e) = &cfg.edge {
            problems.extend(e.validate("edge"));
            if cfg.acme.is_none() {
                for (i, s) in e.sites.iter().enumerate() {
                    if s.acme {
                        problems.push(ConfigProblem::new(
                            format!("edge.sites[{i}].acme"),
                            "needs an [acme] section (directory, contact)",
                        ));
                    }
                }
            }
        }
        if let Some(a) = &cfg.acme {
            problems.extend(a.validate("acme"));
        }
        if let Some(sh) = &cfg.shield {
            problems.extend(sh.validate("shield"));
        }
        if let Some(d) = &cfg.dns {
            problems.extend(geo_dns::check_config(d));
        }
        if let Some(t) = &cfg.telemetry {
            problems.extend(t.validate("telemetry"));
        }
        if let Some(a) = &cfg.agent {
            let exporting = cfg.telemetry.as_ref().is_some_and(|t| t.exports());
            problems.extend(a.validate("agent", exporting));
        }
        problems.extend(purge_hub_problems(&cfg));
        let hub = cfg.admin.as_ref().is_some_and(|a| a.purge_hub);
        if cfg.edge.is_none()
            && cfg.shield.is_none()
            && cfg.dns.is_none()
            && cfg.agent.is_none()
            && !hub
        {
            problems.push(ConfigProblem {
                path: if cfg.admin.is_some() { "admin.purge_hub" } else { "edge" }.into(),
                message:
                    "nothing to run: add an [edge], [shield], [dns] or [agent] section (or [admin] with purge_hub = true, for a dedicated purge hub)"
                        .into(),
            });
        }
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|p| at(locate(src, &p.path), &p.path, &p.message))
                .collect());
        }
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, Vec<String>> {
        let file = path.display().to_string();
        let src =
            std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: cannot read: {e}")])?;
        Self::parse(&file, &src)
    }
}

/// Problems with `[admin] purge_hub = true`: a hub cannot follow another, and a hub with no
/// cache of its own keeps its log in `[admin] state_dir`.
fn purge_hub_problems(cfg: &NodeConfig) -> Vec<ConfigProblem> {
    let Some(admin) = cfg.admin.as_ref().filter(|a| a.purge_hub) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(e) = &cfg.edge {
        if e.purge_hub.is_some() || e.purge_nats_url.is_some() {
            out.push(ConfigProblem::new(
                "admin.purge_hub",
                "this node follows edge.purge_hub (or takes purges over NATS): it cannot be the hub too",
            ));
        }
    }
    if cfg.edge.is_none() && cfg.shield.is_none() && admin.state_dir.is_none() {
        out.push(ConfigProblem::new(
            "admin.state_dir",
            "a dedicated purge hub keeps the fleet's purge log: set state_dir (a directory that survives restarts)",
        ));
    }
    out
}

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The bare key written at or just before `offset`, for serde errors that carry only a span.
fn key_near(src: &str, offset: usize) -> Option<String> {
    let line_start = src[..offset.min(src.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = src[line_start..].lines().next()?;
    let key = line.split('=').next()?.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// The line of the deepest part of a key path (`edge.sites[0].origins[1]`) found in `src`.
pub fn locate(src: &str, path: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(src).ok()?;
    let segs: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|seg| match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        })
        .collect();
    walk(doc.as_table(), &segs, None).map(|o| line_of(src, o))
}

fn walk(
    table: &dyn toml_edit::TableLike,
    segs: &[(&str, Option<usize>)],
    best: Option<usize>,
) -> Option<usize> {
    let Some(((name, idx), rest)) = segs.split_first() else {
        return best;
    };
    let Some((key, item)) = table.get_key_value(name) else {
        return best;
    };
    let best = key.span().map(|s| s.start).or(best);
    match idx {
        Some(i) => {
            if let Some(t) = item.as_array_of_tables().and_then(|a| a.get(*i)) {
                let best = t.span().map(|s| s.start).or(best);
                return walk(t, rest, best);
            }
            if let Some(v) = item.as_array().and_then(|a| a.get(*i)) {
                let best = v.span().map(|s| s.start).or(best);
                return match v.as_inline_table() {
                    Some(t) => walk(t, rest, best),
                    None => best,
                };
            }
            best
        }
        None => match item.as_table_like() {
            Some(t) if !rest.is_empty() => walk(t, rest, best),
            _ => best,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"[admin]
listen = "127.0.0.1:0"
token = "t"

[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]

[[edge.sites]]
hosts = ["b.test"]
origins = ["http://127.0.0.1:1", "ftp://nope"]
"#;

    #[test]
    fn origin_tls_keys_are_checked_with_their_lines() {
        let src = r#"[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]
origin_ca = "/nonexistent/ca.pem"

[[edge.sites]]
hosts = ["b.test"]
origins = ["https://127.0.0.1:1"]
origin_sni = "not a name"
origin_host = "bad host/"

[[edge.sites]]
hosts = ["c.test"]
origins = ["https://127.0.0.1:1"]
origin_ca = "/etc/hostname"
origin_insecure_skip_verify = true
"#;
        let errs = NodeConfig::parse("n.toml", src).unwrap_err();
        let has = |line: usize, key: &str, words: &str| {
            errs.iter().any(|e| {
                e.starts_with(&format!("n.toml:{line}: edge.sites["))
                    && e.contains(key)
                    && e.contains(words)
            })
        };
        assert!(
            has(7, "origin_ca", "cannot read /nonexistent/ca.pem"),
            "{errs:?}"
        );
        assert!(has(7, "origin_ca", "has none"), "{errs:?}");
        assert!(has(12, "origin_sni", "not a server name"), "{errs:?}");
        assert!(has(13, "origin_host", "not a host"), "{errs:?}");
        assert!(
            has(19, "origin_insecure_skip_verify", "contradicts origin_ca"),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 5, "{errs:?}");
    }

    #[test]
    fn tier_tls_keys_are_checked_with_their_lines() {
        let src = r#"[edge]
listen = ["127.0.0.1:0"]
client_ca = "/etc/hostname"
purge_hub_ca = "/etc/hostname"
shields = ["http://127.0.0.1:2"]
shield_secret = "s3cret-s3cret"
shield_ca = "/nonexistent/fleet.pem"
shield_client_cert = "/etc/hostname"

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]

[admin]
listen = "127.0.0.1:0"
token = "t"
cert = "/etc/hostname"
"#;
        let errs = NodeConfig::parse("n.toml", src).unwrap_err();
        let has = |line: usize, words: &str| {
            errs.iter()
                .any(|e| e.starts_with(&format!("n.toml:{line}: edge.")) && e.contains(words))
        };
        assert!(has(3, "there is none"), "{errs:?}");
        assert!(has(4, "an https:// purge_hub"), "{errs:?}");
        assert!(has(7, "cannot read /nonexistent/fleet.pem"), "{errs:?}");
        assert!(has(7, "applies to https:// shields"), "{errs:?}");
        assert!(has(8, "go together"), "{errs:?}");
        assert!(has(8, "applies to https:// shields"), "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("n.toml:17: admin.cert") && e.contains("go together")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 7, "{errs:?}");
    }

    #[test]
    fn acme_keys_are_checked_with_their_lines() {
        let src = r#"[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]
acme = true
"#;
        let errs = NodeConfig::parse("n.toml", src).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("n.toml:7: edge.sites[0].acme: needs an [acme]")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("edge.state_dir")),
            "{errs:?}"
        );
        let with = format!(
            "{src}\n[acme]\ndirectory = \"http://ca.test/dir\"\ncontact = [\"ops@x.test\"]\n\
             eab_kid = \"k\"\nretry_after = \"0s\"\nchallenge = \"dns-99\"\n"
        );
        let errs = NodeConfig::parse("n.toml", &with).unwrap_err();
        assert!(
            errs[0].contains("challenge") && errs[0].contains("dns-99"),
            "{errs:?}"
        );
        let with = with.replace("challenge = \"dns-99\"\n", "");
        let errs = NodeConfig::parse("n.toml", &with).unwrap_err();
        for (line, key) in [
            (10, "acme.directory"),
            (11, "acme.contact[0]"),
            (12, "acme.eab_kid"),
            (13, "acme.retry_after"),
        ] {
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("n.toml:{line}: {key}:"))),
                "{key}: {errs:?}"
            );
        }
    }

    #[test]
    fn an_eab_key_that_is_not_base64url_is_refused() {
        let src = "[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"a.test\"]\n\
                   origins = [\"http://127.0.0.1:1\"]\n\n[acme]\neab_kid = \"k\"\n\
                   eab_hmac_key = \"not base64!\"\n";
        let errs = NodeConfig::parse("n.toml", src).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("n.toml:10: acme.eab_hmac_key: must be the base64url")),
            "{errs:?}"
        );
    }

    #[test]
    fn locates_nested_keys() {
        assert_eq!(locate(SRC, "admin.token"), Some(3));
        assert_eq!(locate(SRC, "edge.listen"), Some(6));
        assert_eq!(locate(SRC, "edge.sites[1].origins[1]"), Some(14));
        assert_eq!(locate(SRC, "edge.sites[1].missing"), Some(12));
    }

    #[test]
    fn reports_every_problem_with_line_and_key() {
        let errs = NodeConfig::parse("n.toml", SRC).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("n.toml:14: edge.sites[1].origins[1]: "),
            "{errs:?}"
        );
        let bad = SRC
            .replace("token = \"t\"", "token = \"\"")
            .replace("a.test", "b.test");
        let errs = NodeConfig::parse("n.toml", &bad).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        let typo = SRC.replace("listen = [", "lisen = [");
        let errs = NodeConfig::parse("n.toml", &typo).unwrap_err();
        assert!(
            errs[0].contains("n.toml:6") && errs[0].contains("lisen"),
            "{errs:?}"
        );
        let syntax = "[edge\nlisten=1";
        assert!(NodeConfig::parse("n.toml", syntax).unwrap_err()[0].starts_with("n.toml:1:"));
        let dns = format!("{SRC}\n[dns]\nlisten = [\"127.0.0.1:0\"]\nenabled = true\n");
        let errs = NodeConfig::parse("n.toml", &dns).unwrap_err();
        assert!(
            errs[0].contains("n.toml:18: enabled: unknown field"),
            "{errs:?}"
        );
        let agent = format!("{SRC}\n[agent]\nlogs = [{{ path = \"/var/log/x.log\" }}]\n");
        let errs = NodeConfig::parse("n.toml", &agent.replace("\"ftp://nope\"", "")).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("agent: the agent forwards over OTLP")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("agent.buffer_dir")),
            "{errs:?}"
        );
        let shield = format!("{SRC}\n[shield]\nlisten = [\"127.0.0.1:0\"]\nsecret = \"x\"\n");
        let errs = NodeConfig::parse("n.toml", &shield).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("shield.secret: use at least 8")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("shield.sites")), "{errs:?}");
        let tel = format!(
            "{SRC}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsampling_ratio = 2.0\n"
        );
        let errs = NodeConfig::parse("n.toml", &tel.replace("\"ftp://nope\"", "")).unwrap_err();
        assert_eq!(
            errs,
            ["n.toml:18: telemetry.sampling_ratio: must be between 0.0 and 1.0"],
            "{errs:?}"
        );
        let size = SRC.replace("[edge]\n", "[edge]\nmemory_bytes = \"lots\"\n");
        let errs = NodeConfig::parse("n.toml", &size).unwrap_err();
        assert!(
            errs[0].contains("n.toml:6") && errs[0].contains("memory_bytes"),
            "{errs:?}"
        );
    }
}

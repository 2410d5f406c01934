//! The node config file: one TOML file whose sections start the roles of this process, parsed
//! with every problem reported as `FILE:LINE: full.key.path: message`: every serde error of
//! every section (`problems`), the semantic checks of each section that deserialized, and
//! listen addresses that cannot all be bound (`listen`).

pub(crate) mod exposed;
mod listen;
mod locate;
mod problems;
mod wording;

pub use agent::config::TelemetryConfig;
use agent::role::config::AgentConfig;
use edge_node::config::{AcmeConfig, AdminConfig, ConfigProblem, EdgeConfig};
use problems::Section;
use std::path::Path;

/// The top-level sections a node file may have.
const SECTIONS: [&str; 7] = [
    "admin",
    "telemetry",
    "edge",
    "shield",
    "dns",
    "agent",
    "acme",
];

/// A whole node config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The admin listener.
    pub admin: Option<AdminConfig>,
    /// Telemetry settings.
    pub telemetry: Option<TelemetryConfig>,
    /// The edge role.
    pub edge: Option<EdgeConfig>,
    /// The shield role: the parent tier in front of the origin.
    pub shield: Option<origin_shield::ShieldConfig>,
    /// The geo-DNS role.
    pub dns: Option<geo_dns::DnsConfig>,
    /// The agent role: host metrics and log shipping.
    pub agent: Option<AgentConfig>,
    /// Certificates from an ACME CA for the edge's sites with `acme = true`.
    pub acme: Option<AcmeConfig>,
}

impl NodeConfig {
    /// The roles this config starts, in a fixed order: `edge`, `shield`, `dns`, `agent`,
    /// `admin`.
    pub fn roles(&self) -> Vec<&'static str> {
        [
            ("edge", self.edge.is_some()),
            ("shield", self.shield.is_some()),
            ("dns", self.dns.is_some()),
            ("agent", self.agent.is_some()),
            ("admin", self.admin.is_some()),
        ]
        .into_iter()
        .filter_map(|(r, on)| on.then_some(r))
        .collect()
    }

    /// Parses and validates `src` (read from `file`); every problem, one line each, in the
    /// order of the file.
    pub fn parse(file: &str, src: &str) -> Result<NodeConfig, Vec<String>> {
        let lines = locate::Lines::new(src);
        let at = |line: Option<usize>, key: &str, msg: &str| match line {
            Some(l) => format!("{file}:{l}: {key}: {msg}"),
            None => format!("{file}: {key}: {msg}"),
        };
        // Syntax first: a file that is not TOML gets its one syntax error.
        let raw = match src.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| locate::line_of(src, s.start));
                return Err(vec![at(line, "(syntax)", e.message())]);
            }
        };
        let cfg = Sections::of(&raw);
        let problems = cfg.problems(&raw, &lines);
        if !problems.is_empty() {
            let mut out: Vec<(Option<usize>, String)> = problems
                .iter()
                .map(|p| {
                    let line = lines.line(&p.path);
                    (line, at(line, &p.path, &p.message))
                })
                .collect();
            out.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
            out.dedup();
            return Err(out.into_iter().map(|(_, s)| s).collect());
        }
        Ok(NodeConfig {
            admin: cfg.admin.and_then(|s| s.value),
            telemetry: cfg.telemetry.and_then(|s| s.value),
            edge: cfg.edge.and_then(|s| s.value),
            shield: cfg.shield.and_then(|s| s.value),
            dns: cfg.dns.and_then(|s| s.value),
            agent: cfg.agent.and_then(|s| s.value),
            acme: cfg.acme.and_then(|s| s.value),
        })
    }

    /// Reads and parses a config file, with the warning it deserves when it holds a secret
    /// others can read (`exposed.rs`).
    pub fn load(path: &Path) -> Result<(NodeConfig, Option<String>), Vec<String>> {
        let file = path.display().to_string();
        let src =
            std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: cannot read: {e}")])?;
        let cfg = Self::parse(&file, &src)?;
        Ok((cfg, exposed::warning(path, &src)))
    }
}

/// Each section of the file, deserialized on its own so that one broken section hides
/// nothing in another.
struct Sections {
    admin: Option<Section<AdminConfig>>,
    telemetry: Option<Section<TelemetryConfig>>,
    edge: Option<Section<EdgeConfig>>,
    shield: Option<Section<origin_shield::ShieldConfig>>,
    dns: Option<Section<geo_dns::DnsConfig>>,
    agent: Option<Section<AgentConfig>>,
    acme: Option<Section<AcmeConfig>>,
}

impl Sections {
    fn of(raw: &toml::Table) -> Self {
        fn one<T: serde::de::DeserializeOwned>(
            raw: &toml::Table,
            name: &str,
        ) -> Option<Section<T>> {
            raw.get(name).map(|v| problems::collect(name, v))
        }
        Self {
            admin: one(raw, "admin"),
            telemetry: one(raw, "telemetry"),
            edge: one(raw, "edge"),
            shield: one(raw, "shield"),
            dns: one(raw, "dns"),
            agent: one(raw, "agent"),
            acme: one(raw, "acme"),
        }
    }

    /// Every problem: unknown sections, serde problems, then the semantic checks of the
    /// sections that deserialized, and listen conflicts.
    fn problems(&self, raw: &toml::Table, lines: &locate::Lines) -> Vec<ConfigProblem> {
        let mut out: Vec<ConfigProblem> = raw
            .keys()
            .filter(|k| !SECTIONS.contains(&k.as_str()))
            .map(|k| ConfigProblem::new(k.as_str(), wording::unknown("section", k, &SECTIONS)))
            .collect();
        fn serde<T>(s: &Option<Section<T>>) -> &[ConfigProblem] {
            s.as_ref().map_or(&[], |s| &s.problems)
        }
        out.extend_from_slice(serde(&self.admin));
        out.extend_from_slice(serde(&self.telemetry));
        out.extend_from_slice(serde(&self.edge));
        out.extend_from_slice(serde(&self.shield));
        out.extend_from_slice(serde(&self.dns));
        out.extend_from_slice(serde(&self.agent));
        out.extend_from_slice(serde(&self.acme));
        fn check<T>(
            s: &Option<Section<T>>,
            raw: &toml::Table,
            out: &mut Vec<ConfigProblem>,
            f: impl FnOnce(&T) -> Vec<ConfigProblem>,
        ) {
            if let Some((s, v)) = s.as_ref().and_then(|s| Some((s, s.value.as_ref()?))) {
                out.extend(s.semantic(raw, f(v)));
            }
        }
        check(&self.admin, raw, &mut out, |a| a.validate("admin"));
        let has_acme = raw.contains_key("acme");
        check(&self.edge, raw, &mut out, |e| {
            let mut p = e.validate("edge");
            for (i, s) in e.sites.iter().enumerate() {
                if s.acme && !has_acme {
                    p.push(ConfigProblem::new(
                        format!("edge.sites[{i}].acme"),
                        "needs an [acme] section (directory, contact)",
                    ));
                }
            }
            p
        });
        check(&self.acme, raw, &mut out, |a| a.validate("acme"));
        check(&self.shield, raw, &mut out, |s| s.validate("shield"));
        check(&self.dns, raw, &mut out, geo_dns::check_config);
        check(&self.telemetry, raw, &mut out, |t| t.validate("telemetry"));
        // A [telemetry] section too broken to read is not also blamed on the agent.
        let exporting = self
            .telemetry
            .as_ref()
            .is_some_and(|t| t.value.as_ref().is_none_or(|t| t.exports()));
        check(&self.agent, raw, &mut out, |a| {
            a.validate("agent", exporting)
        });
        out.extend(self.purge_hub_problems(raw));
        let hub = raw
            .get("admin")
            .and_then(|a| a.get("purge_hub"))
            .and_then(toml::Value::as_bool)
            == Some(true);
        if !hub
            && !["edge", "shield", "dns", "agent"]
                .iter()
                .any(|k| raw.contains_key(*k))
        {
            let path = if raw.contains_key("admin") {
                "admin.purge_hub"
            } else {
                "edge"
            };
            out.push(ConfigProblem::new(
                path,
                "nothing to run: add an [edge], [shield], [dns] or [agent] section (or [admin] with purge_hub = true, for a dedicated purge hub)",
            ));
        }
        out.extend(listen::conflicts(raw, |p| lines.line(p)));
        out
    }

    /// Problems with `[admin] purge_hub = true`: a hub cannot follow another, and a hub with
    /// no cache of its own keeps its log in `[admin] state_dir`.
    fn purge_hub_problems(&self, raw: &toml::Table) -> Vec<ConfigProblem> {
        let Some(admin) = self
            .admin
            .as_ref()
            .and_then(|a| a.value.as_ref())
            .filter(|a| a.purge_hub)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(e) = self.edge.as_ref().and_then(|e| e.value.as_ref()) {
            if e.purge_hub.is_some() || e.purge_nats_url.is_some() {
                out.push(ConfigProblem::new(
                    "admin.purge_hub",
                    "this node follows edge.purge_hub (or takes purges over NATS): it cannot be the hub too",
                ));
            }
        }
        if !raw.contains_key("edge") && !raw.contains_key("shield") && admin.state_dir.is_none() {
            out.push(ConfigProblem::new(
                "admin.state_dir",
                "a dedicated purge hub keeps the fleet's purge log: set state_dir (a directory that survives restarts)",
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;

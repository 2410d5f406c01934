//! What a node says it runs when it starts (logged at info): its roles, each caching role's
//! sites with their origins, cache sizes, shields, and how purges reach it; the DNS zones.
//! Listen addresses are the banner's (`run.rs`); the GeoIP database's date is logged by the
//! DNS role when it loads it.

use crate::config::NodeConfig;
use edge_node::config::{EdgeConfig, SiteConfig};

/// One line per fact, in the order an operator reads them.
pub fn describe(cfg: &NodeConfig) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!("roles: {}", cfg.roles().join(", ")));
    if let Some(e) = &cfg.edge {
        caching("edge", e, &mut out);
        out.push(format!(
            "edge: shields: {}",
            list(&e.shields, "none (misses go to the origins)")
        ));
        out.push(format!("edge: purges: {}", purge_path(e)));
    }
    if let Some(s) = &cfg.shield {
        caching("shield", &s.node_config(), &mut out);
    }
    if let Some(a) = cfg.admin.as_ref().filter(|a| a.purge_hub) {
        let state = a
            .state_dir
            .as_ref()
            .map_or("-".into(), |p| p.display().to_string());
        out.push(format!(
            "admin: a dedicated purge hub (purge log in {state})"
        ));
    }
    if let Some(d) = &cfg.dns {
        for z in &d.zones {
            let geo: Vec<String> = z
                .geo
                .iter()
                .map(|g| format!("{} ({} regions)", g.name, g.regions.len()))
                .collect();
            out.push(format!(
                "dns: zone {}: {} records, geo names: {}",
                z.name,
                z.records.len(),
                list(&geo, "none")
            ));
        }
        if d.geoip_db.is_none() {
            out.push("dns: no GeoIP database: geo names answer with their default region".into());
        }
    }
    out
}

fn caching(role: &str, c: &EdgeConfig, out: &mut Vec<String>) {
    let disk = match &c.disk_path {
        Some(p) => format!("disk {} at {}", c.disk_bytes, p.display()),
        None => "no disk tier".into(),
    };
    out.push(format!("{role}: cache: memory {}, {disk}", c.memory_bytes));
    if let Some(a) = &c.access_log {
        out.push(format!("{role}: access log: {} ({})", a.path, a.format));
    }
    for s in &c.sites {
        out.push(format!("{role}: {}", site(s)));
    }
}

fn site(s: &SiteConfig) -> String {
    format!(
        "site {}: hosts {} -> origins {}{}",
        s.display_name(),
        s.hosts.join(", "),
        s.origins.join(", "),
        if s.acme {
            " (certificates by ACME)"
        } else {
            ""
        }
    )
}

fn purge_path(e: &EdgeConfig) -> String {
    match (&e.purge_nats_url, &e.purge_hub) {
        (Some(url), _) => format!("NATS {url} (stream {})", e.purge_nats_stream),
        (None, Some(hub)) => format!("follows the purge hub {hub}"),
        (None, None) => "this node is the purge hub (no purge_hub or purge_nats_url)".into(),
    }
}

fn list(items: &[String], none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(", ")
    }
}

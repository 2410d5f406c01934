//! Listen addresses that cannot all be bound, found before binding: the same address twice
//! (within a role or across roles), or a wildcard (`0.0.0.0:P`, `[::]:P`) and another address
//! on the same port. Every listener takes TCP; `[dns]` takes UDP on its addresses too. Port 0
//! (any free port) never conflicts.

use agent::config::ConfigProblem;
use std::net::{IpAddr, SocketAddr};

/// The listen keys of a node file: section, key, whether the key is an array, whether it is
/// the DNS role's (UDP and TCP).
const KEYS: [(&str, &str, bool, bool); 6] = [
    ("admin", "listen", false, false),
    ("edge", "listen", true, false),
    ("edge", "tls_listen", true, false),
    ("shield", "listen", true, false),
    ("shield", "tls_listen", true, false),
    ("dns", "listen", true, true),
];

struct Listener {
    line: Option<usize>,
    path: String,
    addr: SocketAddr,
    dns: bool,
}

/// Every conflict among the listen addresses of `raw` (the file as parsed), reported at the
/// later of the two in the file; `line` gives a key path's line. Addresses that do not parse
/// are reported elsewhere.
pub fn conflicts(raw: &toml::Table, line: impl Fn(&str) -> Option<usize>) -> Vec<ConfigProblem> {
    let mut all = Vec::new();
    for (section, key, array, dns) in KEYS {
        let Some(v) = raw.get(section).and_then(|s| s.get(key)) else {
            continue;
        };
        let values: Vec<(String, &toml::Value)> = match (array, v.as_array()) {
            (true, Some(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{section}.{key}[{i}]"), v))
                .collect(),
            (false, None) => vec![(format!("{section}.{key}"), v)],
            _ => Vec::new(),
        };
        for (path, v) in values {
            if let Some(addr) = v.as_str().and_then(|s| s.parse::<SocketAddr>().ok()) {
                all.push(Listener {
                    line: line(&path),
                    path,
                    addr,
                    dns,
                });
            }
        }
    }
    all.sort_by_key(|l| l.line.unwrap_or(usize::MAX));
    let mut out = Vec::new();
    for (j, b) in all.iter().enumerate() {
        if b.addr.port() == 0 {
            continue;
        }
        let clash = all[..j]
            .iter()
            .find(|a| a.addr.port() == b.addr.port() && overlap(a.addr.ip(), b.addr.ip()));
        if let Some(a) = clash {
            let proto = if a.dns && b.dns { "UDP and TCP" } else { "TCP" };
            let message = if a.addr == b.addr {
                format!(
                    "\"{}\" is also {}: an address can be listened on once ({proto})",
                    b.addr, a.path
                )
            } else {
                let wild = if a.addr.ip().is_unspecified() { a } else { b };
                let every = match (wild.addr.ip(), a.addr.is_ipv4() || b.addr.is_ipv4()) {
                    (IpAddr::V4(_), _) => "every IPv4 address",
                    (IpAddr::V6(_), true) => "every IPv6 and IPv4 address (dual-stack)",
                    (IpAddr::V6(_), false) => "every IPv6 address",
                };
                format!(
                    "\"{}\" overlaps {} \"{}\": {} takes port {} on {every} ({proto})",
                    b.addr,
                    a.path,
                    a.addr,
                    wild.addr.ip(),
                    b.addr.port()
                )
            };
            out.push(ConfigProblem::new(b.path.clone(), message));
        }
    }
    out
}

/// Whether two addresses on one port cannot both be bound: the same address, or a wildcard
/// and an address it covers. `[::]` covers IPv4 too where sockets are dual-stack: the Linux
/// default, unless `net.ipv6.bindv6only` is 1 on this host.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    let dual_stack = || {
        std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |v| v.trim() != "1")
    };
    let covers = |w: IpAddr, o: IpAddr| match w {
        IpAddr::V4(w) => w.is_unspecified() && o.is_ipv4(),
        IpAddr::V6(w) => w.is_unspecified() && (o.is_ipv6() || dual_stack()),
    };
    a == b || covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let raw: toml::Table = src.parse().unwrap_or_default();
        conflicts(&raw, |p| src.find(p.split('.').next().unwrap_or(p)))
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn duplicates_within_and_across_roles() {
        let p = problems(
            "[admin]\nlisten = \"127.0.0.1:9901\"\n[edge]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\ntls_listen = [\"127.0.0.1:9901\"]\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("edge.listen[1]: \"127.0.0.1:80\" is also edge.listen[0]"));
        assert!(p[1].starts_with("edge.tls_listen[0]: \"127.0.0.1:9901\" is also admin.listen"));
        let p = problems("[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n");
        assert!(p[0].ends_with("(UDP and TCP)"), "{p:?}");
    }

    #[test]
    fn wildcards_overlap_port_zero_and_other_ips_do_not() {
        let p = problems(
            "[edge]\nlisten = [\"0.0.0.0:80\", \"127.0.0.1:80\", \"127.0.0.2:81\", \"127.0.0.3:81\", \"127.0.0.1:0\", \"127.0.0.1:0\"]\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("overlaps edge.listen[0] \"0.0.0.0:80\": 0.0.0.0 takes port 80"),
            "{p:?}"
        );
        let p = problems(
            "[edge]\nlisten = [\"[::]:80\", \"[::1]:80\", \"[::1]:81\", \"127.0.0.1:81\"]\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("takes port 80 on every IPv6 address"),
            "{p:?}"
        );
    }
}

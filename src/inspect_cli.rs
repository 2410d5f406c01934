//! `outpost inspect URL`: what a node's caches hold for a URL (`GET /cache?url=`), printed per
//! caching node and tier, or as the raw JSON answer.

use crate::admin_client::{AdminApi, AdminArgs};
use serde_json::Value;

/// `outpost inspect` arguments.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The absolute URL to look up (`https://www.example.com/a.css?v=2`).
    pub url: String,
    /// The admin API of the node to ask.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Print the admin API's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
}

/// Asks the node; returns the lines to print.
pub async fn run(a: InspectArgs) -> Result<Vec<String>, String> {
    let api = AdminApi::new(&a.admin)?;
    let answer = api.get(&format!("/cache?url={}", encode(&a.url))).await?;
    if a.json {
        let text = serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?;
        return Ok(vec![text]);
    }
    Ok(render(&answer))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("-")
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Seconds as days, hours, minutes and seconds (`365d`, `1h 30m`, `58s`): humantime's months
/// and years are not the calendar's, and a year of max-age reads `11months 30days ...` there.
fn secs(v: &Value, k: &str) -> String {
    let mut left = n(v, k);
    if left == 0 {
        return "0s".into();
    }
    let mut out = Vec::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= len {
            out.push(format!("{}{unit}", left / len));
            left %= len;
        }
    }
    out.join(" ")
}

/// `512 B`, `1.5 KiB`, `20.0 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The answer of `GET /cache` for people.
fn render(a: &Value) -> Vec<String> {
    let cached = a.get("cached").and_then(Value::as_bool).unwrap_or(false);
    let mut out = vec![format!(
        "{}: {}",
        s(a, "url"),
        if cached { "cached" } else { "not cached" }
    )];
    let empty = Vec::new();
    for node in a.get("nodes").and_then(Value::as_array).unwrap_or(&empty) {
        out.push(String::new());
        let disk = match node.get("disk").and_then(Value::as_bool) {
            Some(true) => "memory and disk tiers",
            Some(false) => "memory and disk tiers (disk index still loading)",
            None => "memory tier only",
        };
        out.push(format!(
            "{} (site {}, purge version {} applied, {disk})",
            s(node, "tier"),
            s(node, "site"),
            n(node, "purge_applied"),
        ));
        for k in node.get("keys").and_then(Value::as_array).unwrap_or(&empty) {
            out.push(format!("  key {:<5} {}", s(k, "scheme"), s(k, "key")));
        }
        let rules = node
            .get("rules")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if rules.is_empty() {
            out.push("  rules: none match".into());
        }
        for r in rules {
            out.push(format!(
                "  rule  {:<5} {} (rules[{}])",
                s(r, "scheme"),
                s(r, "rule"),
                n(r, "index")
            ));
        }
        let entries = node
            .get("entries")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        if entries.is_empty() {
            out.push("  not cached".into());
        }
        for tier in ["memory", "disk"] {
            let here: Vec<&Value> = entries.iter().filter(|e| s(e, "tier") == tier).collect();
            if here.is_empty() {
                continue;
            }
            out.push(format!("  {tier}:"));
            for e in here {
                entry(e, &mut out);
            }
        }
    }
    out
}

/// One stored variant, indented under its tier.
fn entry(e: &Value, out: &mut Vec<String>) {
    let variant = match e.get("variant").and_then(Value::as_object) {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(v) => format!("{k}: {v:?}"),
                None => format!("{k}: (absent)"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(no Vary: one response for every request)".into(),
    };
    let key = s(e, "key");
    out.push(format!(
        "    variant {variant}  [{} key {}]",
        s(e, "scheme"),
        key.get(..16).unwrap_or(key)
    ));
    out.push(format!(
        "      status {}, {}: age {}, ttl {} of {}",
        n(e, "status"),
        s(e, "state"),
        secs(e, "age_secs"),
        secs(e, "ttl_secs"),
        secs(e, "lifetime_secs"),
    ));
    out.push(format!(
        "      stale windows: while-revalidate {}, if-error {}, if-unreachable {}; kept {} more{}",
        secs(e, "stale_while_revalidate_secs"),
        secs(e, "stale_if_error_secs"),
        secs(e, "stale_if_unreachable_secs"),
        secs(e, "keep_secs"),
        if e.get("has_validator").and_then(Value::as_bool) == Some(true) {
            " (has a validator)"
        } else {
            ""
        },
    ));
    let encodings: Vec<&str> = e
        .get("encodings")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push(format!(
        "      size {} body, {} stored{}{}",
        size(n(e, "body_bytes")),
        size(n(e, "stored_bytes")),
        if encodings.is_empty() {
            String::new()
        } else {
            format!(", also {}", encodings.join(" and "))
        },
        if e.get("large").and_then(Value::as_bool) == Some(true) {
            ", too large for memory: served from disk"
        } else {
            ""
        },
    ));
    let mark = match s(e, "purge") {
        "soft" => "a soft purge made it stale",
        "hard" => "a hard purge covers it: never served again",
        _ => "no purge covers it",
    };
    out.push(format!(
        "      purge: stored under version {}; {mark}",
        n(e, "purge_version")
    ));
    let tags: Vec<&str> = e
        .get("tags")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !tags.is_empty() {
        out.push(format!("      tags: {}", tags.join(" ")));
    }
    out.push("      headers:".into());
    for h in e
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (
            h.get(0).and_then(Value::as_str),
            h.get(1).and_then(Value::as_str),
        ) {
            out.push(format!("        {name}: {value}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_encoded_for_the_query() {
        assert_eq!(
            encode("http://a.test/x?b=1&c=%41"),
            "http%3A%2F%2Fa.test%2Fx%3Fb%3D1%26c%3D%2541"
        );
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(20 << 20), "20.0 MiB");
    }
}

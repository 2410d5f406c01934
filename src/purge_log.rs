//! `outpost purge log`: the recent purges of a node's purge log (`GET /purge/log`), as a table.

use crate::admin_client::{AdminApi, AdminArgs};
use edge_node::purge::{PurgeEvent, PurgeTarget};

/// Most events `GET /purge/log` returns at once.
const MAX_LIMIT: u64 = 1000;

/// `outpost purge log` arguments.
#[derive(clap::Args)]
pub struct LogArgs {
    /// The admin API of a node (the hub's log has every purge; a follower's, those it applied
    /// since it started).
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How many of the newest purges to print (at most 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub limit: u64,
}

/// Reads the newest `limit` purges; returns the lines to print.
pub async fn run(a: LogArgs) -> Result<Vec<String>, String> {
    let api = AdminApi::new(&a.admin)?;
    // The first read (past the end) only learns the newest version.
    let head = api.get(&format!("/purge/log?since={}", u64::MAX)).await?;
    let latest = head.get("latest").and_then(|v| v.as_u64()).unwrap_or(0);
    let since = latest.saturating_sub(a.limit);
    let log = api.get(&format!("/purge/log?since={since}")).await?;
    let events: Vec<PurgeEvent> = serde_json::from_value(log["events"].clone())
        .map_err(|e| format!("the admin API's purge log does not parse: {e}"))?;
    let skip = events.len().saturating_sub(a.limit as usize);
    Ok(table(&events[skip..], latest))
}

/// The events as aligned columns, newest last, with a header.
fn table(events: &[PurgeEvent], latest: u64) -> Vec<String> {
    if events.is_empty() {
        return vec![if latest == 0 {
            "no purges yet".to_string()
        } else {
            format!("no purges in this node's log (newest version {latest}: ask the purge hub for the whole log)")
        }];
    }
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|ev| {
            let (kind, targets) = describe(&ev.target);
            [
                ev.version.to_string(),
                time(ev.at_ms),
                kind.to_string(),
                if ev.soft { "soft" } else { "hard" }.to_string(),
                targets,
            ]
        })
        .collect();
    let header = ["VERSION", "TIME (UTC)", "KIND", "MODE", "TARGETS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    let mut out = vec![line(header)];
    out.extend(
        rows.iter()
            .map(|r| line([&r[0], &r[1], &r[2], &r[3], &r[4]])),
    );
    out
}

/// The kind of a purge and what it names.
fn describe(t: &PurgeTarget) -> (&'static str, String) {
    let urls = |list: &[edge_node::purge::UrlTarget]| {
        list.iter()
            .map(|u| format!("{}{}", u.host, u.path))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match t {
        PurgeTarget::Urls(u) => ("url", urls(u)),
        PurgeTarget::Prefixes(p) => ("prefix", urls(p)),
        PurgeTarget::Tags(t) => ("tag", t.join(" ")),
        PurgeTarget::All => ("all", "everything".to_string()),
    }
}

/// `2026-12-01 10:00:00` (UTC) for ms since the Unix epoch.
fn time(at_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_of_purges() {
        let ev = |version, soft, target| PurgeEvent {
            version,
            at_ms: 1_796_119_200_000,
            soft,
            target,
        };
        let lines = table(
            &[
                ev(
                    9,
                    false,
                    PurgeTarget::Tags(vec!["api".into(), "time".into()]),
                ),
                ev(10, true, PurgeTarget::All),
            ],
            10,
        );
        assert_eq!(
            lines,
            [
                "VERSION  TIME (UTC)           KIND  MODE  TARGETS",
                "      9  2026-12-01 10:00:00  tag   hard  api time",
                "     10  2026-12-01 10:00:00  all   soft  everything",
            ]
        );
        assert_eq!(table(&[], 0), ["no purges yet"]);
    }
}

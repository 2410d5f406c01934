//! Access log line formats: `combined` (Apache's, as nginx writes it), `json` (every field),
//! or chosen fields as `key=value` pairs.

use super::record::Record;
use std::fmt::Write;

/// Every field a line can hold, by name.
pub(crate) const FIELDS: &[&str] = &[
    "time",
    "client",
    "site",
    "method",
    "target",
    "protocol",
    "status",
    "bytes",
    "duration",
    "upstream_time",
    "cache",
    "tier",
    "request_id",
    "trace_id",
    "referer",
    "user_agent",
];

/// How records become lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    /// `client - - [time] "METHOD target PROTO" status bytes "referer" "user-agent"`.
    Combined,
    /// One JSON object per line with every field.
    Json,
    /// These fields (indexes into [`FIELDS`]), as `key=value`.
    Fields(Vec<usize>),
}

impl Format {
    /// `combined`, `json`, or field names separated by spaces or commas.
    pub(crate) fn parse(s: &str) -> Result<Format, String> {
        match s.trim() {
            "combined" => Ok(Format::Combined),
            "json" => Ok(Format::Json),
            list => {
                let mut out = Vec::new();
                for name in list.split([' ', ',']).filter(|n| !n.is_empty()) {
                    match FIELDS.iter().position(|f| *f == name) {
                        Some(i) => out.push(i),
                        None => {
                            return Err(format!(
                                "{name:?} is not a field: use combined, json, or fields among {}",
                                FIELDS.join(" ")
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err("empty: use combined, json, or a list of fields".into());
                }
                Ok(Format::Fields(out))
            }
        }
    }

    /// Appends `r` as one line (with its newline) to `out`.
    pub(crate) fn write(&self, r: &Record, out: &mut String) {
        match self {
            Format::Combined => combined(r, out),
            Format::Json => json(r, out),
            Format::Fields(fields) => {
                for (n, i) in fields.iter().enumerate() {
                    if n > 0 {
                        out.push(' ');
                    }
                    out.push_str(FIELDS[*i]);
                    out.push('=');
                    let v = value(r, *i);
                    if v.is_empty() || v.contains([' ', '"', '=']) {
                        let _ = write!(out, "{v:?}");
                    } else {
                        out.push_str(&v);
                    }
                }
            }
        }
        out.push('\n');
    }
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn header(v: &Option<Box<[u8]>>) -> String {
    v.as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// Field `i` of [`FIELDS`] as text (empty when absent).
fn value(r: &Record, i: usize) -> String {
    match FIELDS[i] {
        "time" => humantime::format_rfc3339_millis(r.time).to_string(),
        "client" => r.client.ip().to_string(),
        "site" => r.site.to_string(),
        "method" => r.method.to_string(),
        "target" => r.target.to_string(),
        "protocol" => protocol(r.version).into(),
        "status" => r.status.to_string(),
        "bytes" => r.bytes.map(|b| b.to_string()).unwrap_or_default(),
        "duration" => seconds(r.duration),
        "upstream_time" => r.upstream.map(seconds).unwrap_or_default(),
        "cache" => r.cache.into(),
        "tier" => r.tier.into(),
        "request_id" => format!("{:016x}", r.id),
        "trace_id" => r
            .trace
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default(),
        "referer" => header(&r.referer),
        "user_agent" => header(&r.user_agent),
        _ => String::new(),
    }
}

/// Escapes `"` and `\` and control bytes, as nginx does in its combined format.
fn quoted(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn combined(r: &Record, out: &mut String) {
    let local = httpdate_clf(r.time);
    let _ = write!(out, "{} - - [{local}] \"", r.client.ip());
    quoted(
        &format!("{} {} {}", r.method, r.target, protocol(r.version)),
        out,
    );
    let bytes = r.bytes.unwrap_or(0);
    let _ = write!(out, "\" {} {bytes} \"", r.status);
    let referer = header(&r.referer);
    quoted(if referer.is_empty() { "-" } else { &referer }, out);
    out.push_str("\" \"");
    let ua = header(&r.user_agent);
    quoted(if ua.is_empty() { "-" } else { &ua }, out);
    out.push('"');
}

/// `02/Dec/2026:10:05:03 +0000` (the common log format's time, in UTC).
fn httpdate_clf(t: std::time::SystemTime) -> String {
    // RFC 3339 `2026-12-02T10:05:03Z`, rearranged.
    let s = humantime::format_rfc3339_seconds(t).to_string();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let part = |a: usize, b: usize| s.get(a..b).unwrap_or("00");
    let month = part(5, 7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        part(8, 10),
        part(0, 4),
        part(11, 19)
    )
}

fn json(r: &Record, out: &mut String) {
    let mut m = serde_json::Map::new();
    for (i, name) in FIELDS.iter().enumerate() {
        let v = value(r, i);
        let v = match *name {
            "status" => serde_json::json!(r.status),
            "bytes" => r.bytes.map_or(serde_json::Value::Null, |b| b.into()),
            "duration" => serde_json::json!(r.duration.as_secs_f64()),
            "upstream_time" => r
                .upstream
                .map_or(serde_json::Value::Null, |d| d.as_secs_f64().into()),
            _ if v.is_empty() => serde_json::Value::Null,
            _ => v.into(),
        };
        m.insert((*name).to_string(), v);
    }
    out.push_str(&serde_json::Value::Object(m).to_string());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn rec() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_secs(1_796_205_903),
            client: "192.0.2.7:5555".parse().unwrap(),
            site: "www".into(),
            method: http::Method::GET,
            target: "/a?b=%22c%22".into(),
            version: http::Version::HTTP_11,
            referer: None,
            user_agent: Some(Box::from(&b"curl/8"[..])),
            status: 200,
            bytes: Some(5),
            duration: Duration::from_micros(1500),
            upstream: None,
            cache: "hit",
            tier: "edge",
            id: 0xab,
            trace: None,
        }
    }

    #[test]
    fn combined_is_apache_combined_with_escapes() {
        let mut s = String::new();
        Format::Combined.write(&rec(), &mut s);
        assert_eq!(
            s,
            "192.0.2.7 - - [02/Dec/2026:10:05:03 +0000] \"GET /a?b=%22c%22 HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n"
        );
    }

    #[test]
    fn fields_and_json_hold_what_was_asked() {
        let f = Format::parse("status cache request_id duration upstream_time").unwrap();
        let mut s = String::new();
        f.write(&rec(), &mut s);
        assert_eq!(
            s,
            "status=200 cache=hit request_id=00000000000000ab duration=0.001500 upstream_time=\"\"\n"
        );
        let mut j = String::new();
        Format::Json.write(&rec(), &mut j);
        let v: serde_json::Value = serde_json::from_str(j.trim()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["site"], "www");
        assert_eq!(v["upstream_time"], serde_json::Value::Null);
        assert!(Format::parse("status nonsense").is_err());
        assert!(Format::parse("  ").is_err());
    }
}

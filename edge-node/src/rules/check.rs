//! What `check-config` says about a rule: every problem of it alone, each with the key it
//! is about (limiter names are checked by the site, which knows them).

use super::actions::{Edits, Target};
use super::config::RuleConfig;
use super::matcher;

impl RuleConfig {
    /// Every problem of the rule alone, as (key, message); limiter names are checked by the
    /// site, which knows them.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |k: &str, m: String| out.push((k.to_string(), m));
        if let Some(p) = &self.path {
            if !p.starts_with('/') {
                add("path", format!("{p:?} does not start with /"));
            }
        }
        if let Some(g) = &self.path_glob {
            if let Err(e) = matcher::glob(g) {
                add("path_glob", e);
            }
        }
        if let Some(r) = &self.path_regex {
            if let Err(e) = matcher::regex(r) {
                add("path_regex", e);
            }
        }
        for (i, m) in self.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                add(&format!("methods[{i}]"), format!("{m:?} is not a method"));
            }
        }
        for (key, f) in [
            ("header", &self.header),
            ("cookie", &self.cookie),
            ("query_param", &self.query_param),
        ] {
            let Some(f) = f else { continue };
            if f.name.is_empty() {
                add(&format!("{key}.name"), "empty".into());
            }
            if key == "header" && http::HeaderName::from_bytes(f.name.as_bytes()).is_err() {
                add(
                    &format!("{key}.name"),
                    format!("{:?} is not a header name", f.name),
                );
            }
            if f.value.is_some() && f.regex.is_some() {
                add(key, "give value or regex, not both".into());
            }
            if let Some(r) = &f.regex {
                if let Err(e) = matcher::regex(r) {
                    add(&format!("{key}.regex"), e);
                }
            }
        }
        for (key, nets) in [("client", &self.client), ("client_not", &self.client_not)] {
            for (i, n) in nets.iter().enumerate() {
                if let Err(e) = crate::net::parse_network(n) {
                    add(&format!("{key}[{i}]"), e);
                }
            }
        }
        for (i, c) in self.country.iter().enumerate() {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                add(
                    &format!("country[{i}]"),
                    format!("{c:?} is not a two-letter country code (ISO 3166-1: \"DE\")"),
                );
            }
        }
        for (i, h) in self.key_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                add(
                    &format!("key_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
            }
        }
        for (key, edits) in [
            ("request_headers", &self.request_headers),
            ("response_headers", &self.response_headers),
        ] {
            for (msg_key, m) in Edits::problems(edits) {
                add(&format!("{key}.{msg_key}"), m);
            }
        }
        if let Some(r) = &self.redirect {
            if ![301, 302, 303, 307, 308].contains(&r.status) {
                add(
                    "redirect.status",
                    format!(
                        "{} is not a redirect status (301, 302, 303, 307, 308)",
                        r.status
                    ),
                );
            }
            match (&r.to, r.https) {
                (None, false) => add("redirect", "give `to` or `https = true`".into()),
                (Some(_), true) => add("redirect", "give `to` or `https = true`, not both".into()),
                _ => {}
            }
            if let Some(to) = &r.to {
                if let Err(e) = Target::parse(to) {
                    add("redirect.to", e);
                }
            }
        }
        if let Some(r) = &self.respond {
            if !(200..=599).contains(&r.status) {
                add(
                    "respond.status",
                    format!("{} is not a final status (200 to 599)", r.status),
                );
            }
            if http::HeaderValue::from_str(&r.content_type).is_err() {
                add("respond.content_type", "not a valid header value".into());
            }
        }
        if self.redirect.is_some() && self.respond.is_some() {
            add(
                "respond",
                "a rule answers with a redirect or a fixed response, not both".into(),
            );
        }
        for (i, o) in self.origins.iter().enumerate() {
            if let Err(e) = crate::upstream::addr::OriginAddr::parse(o) {
                add(&format!("origins[{i}]"), e);
            }
        }
        if !self.query_allow.is_empty() && !self.query_deny.is_empty() {
            add(
                "query_allow",
                "give query_allow or query_deny, not both".into(),
            );
        }
        out
    }
}

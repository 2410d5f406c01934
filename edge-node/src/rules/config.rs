//! `[[edge.sites.rules]]`: one rule as written in config (serde), and the problems
//! `check-config` reports about it, each with the key it is about.

use crate::cache::key::QueryMode;
use agent::units::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One rule of a site: conditions (all must hold; none: every request), then actions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name in `outpost inspect`, logs and problems (default: `rules[N]`).
    #[serde(default)]
    pub name: Option<String>,

    // Conditions.
    /// The path starts with this (`"/admin/"`).
    #[serde(default)]
    pub path: Option<String>,
    /// The path matches this glob (`"*.html"`, `"/img/**/*.png"`; `*` stays within a
    /// segment, `**` crosses them).
    #[serde(default)]
    pub path_glob: Option<String>,
    /// The path matches this regular expression; its captures can be used in `redirect.to`.
    #[serde(default)]
    pub path_regex: Option<String>,
    /// The method is one of these (`["GET", "HEAD"]`).
    #[serde(default)]
    pub methods: Vec<String>,
    /// The host is one of these (`*.example.com` matches one label).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A request header is present (or has a value).
    #[serde(default)]
    pub header: Option<FieldMatch>,
    /// A cookie is present (or has a value).
    #[serde(default)]
    pub cookie: Option<FieldMatch>,
    /// A query parameter is present (or has a value).
    #[serde(default)]
    pub query_param: Option<FieldMatch>,
    /// The client address is in one of these networks (CIDR).
    #[serde(default)]
    pub client: Vec<String>,
    /// The client address is NOT in any of these networks (CIDR).
    #[serde(default)]
    pub client_not: Vec<String>,
    /// The client's country (ISO 3166 code, from `[edge] geoip`) is one of these.
    #[serde(default)]
    pub country: Vec<String>,

    /// Evaluation goes on to the next rules after this one matched (default: it stops).
    #[serde(default, rename = "continue")]
    pub continue_: bool,

    // Actions.
    /// Edge TTL: how long the edge keeps the response fresh when the origin names no
    /// freshness (or always, with `edge_ttl_mode = "override"`).
    #[serde(default)]
    pub edge_ttl: Option<Dur>,
    /// `"default"` (the origin's freshness wins when it gives one) or `"override"` (the
    /// TTL replaces it: `no-cache`, `private`, `max-age` from the origin do not count here).
    #[serde(default)]
    pub edge_ttl_mode: TtlMode,
    /// Client TTL: the response reaches clients with `Cache-Control: max-age=N` (0:
    /// `no-cache`), whatever the origin sent them.
    #[serde(default)]
    pub client_ttl: Option<Dur>,
    /// Not looked up nor stored: straight to the origin.
    #[serde(default)]
    pub bypass: bool,
    /// Stale-while-revalidate window, in place of the response's.
    #[serde(default)]
    pub stale_while_revalidate: Option<Dur>,
    /// Stale-if-error window, in place of the response's.
    #[serde(default)]
    pub stale_if_error: Option<Dur>,
    /// Request headers whose values select separate cached copies.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Cookies whose values select separate cached copies.
    #[serde(default)]
    pub key_cookies: Vec<String>,
    /// The device class (`mobile`, `tablet`, `desktop`, from User-Agent) selects separate
    /// cached copies, and goes to the origin as `X-Device-Class`.
    #[serde(default)]
    pub key_device: bool,
    /// The query mode in place of the site's (`keep`, `sort`, `ignore`).
    #[serde(default)]
    pub query: Option<QueryMode>,
    /// Only these query parameters are kept (key and upstream); `utm_*` is a prefix.
    #[serde(default)]
    pub query_allow: Vec<String>,
    /// These query parameters are dropped (key and upstream); `utm_*` is a prefix.
    #[serde(default)]
    pub query_deny: Vec<String>,
    /// Edits of the request sent upstream.
    #[serde(default)]
    pub request_headers: HeaderEdits,
    /// Edits of the response sent to the client.
    #[serde(default)]
    pub response_headers: HeaderEdits,
    /// Answer with a redirect.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    /// Answer with a fixed response (block, maintenance page).
    #[serde(default)]
    pub respond: Option<RespondConfig>,
    /// Send the request to these origins instead of the site's (`http://host:port`).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Compression for clients on (even for media types not in `compress_types`) or off.
    #[serde(default)]
    pub compress: Option<bool>,
    /// Rate limiters (names of `[[edge.limits]]`) the request passes, beside the site's.
    #[serde(default)]
    pub limits: Vec<String>,
}

/// How `edge_ttl` meets the origin's freshness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlMode {
    /// Used when the origin names none.
    #[default]
    Default,
    /// Used in place of what the origin names.
    Override,
}

/// A header, cookie or query parameter condition: present, or equal to `value`, or matching
/// `regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMatch {
    /// Its name (headers: any case).
    pub name: String,
    /// The exact value it must have.
    #[serde(default)]
    pub value: Option<String>,
    /// A regular expression its value must match.
    #[serde(default)]
    pub regex: Option<String>,
    /// The condition holds when the field is absent (or has another value).
    #[serde(default)]
    pub absent: bool,
}

/// `set` (replace), `append` (add a line), `remove` (names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    /// Fields set to these values (replacing any).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Fields added as another line.
    #[serde(default)]
    pub append: BTreeMap<String, String>,
    /// Fields removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }
}

/// `redirect = { to = "https://new.example.com$1", status = 301 }`, or `{ https = true }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// The target: `$1`..`$9` and `${name}` are `path_regex` captures; `${host}`,
    /// `${path}`, `${query}` (with its `?`, or empty) are the request's.
    #[serde(default)]
    pub to: Option<String>,
    /// Upgrade plain HTTP to HTTPS: the same URL with `https://` (requests already on HTTPS
    /// are left alone).
    #[serde(default)]
    pub https: bool,
    /// 301, 302, 303, 307 or 308 (default 301).
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    301
}

/// `respond = { status = 403, body = "blocked" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondConfig {
    /// The status (100-999 are refused: 200 to 599).
    pub status: u16,
    /// The body.
    #[serde(default)]
    pub body: String,
    /// Its media type.
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".into()
}

impl RuleConfig {
    /// The rule's name in messages: its `name`, else `rules[index]`.
    pub fn display_name(&self, index: usize) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("rules[{index}]"),
        }
    }
}

//! The console's pages: one layout (header, navigation, sign-out form), a shell per page
//! that the script (`assets/console.js`) fills from `/ui/api/*`, the sign-in and purge pages
//! rendered here, and the embedded assets. Every page is served with a strict
//! Content-Security-Policy: nothing but this node's own scripts, styles and data.

use super::session::Session;
use super::state::ConsoleState;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Security headers of every page.
const PAGE_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
];

/// The pages, as (path, title, key).
pub(crate) const PAGES: [(&str, &str, &str); 7] = [
    ("/ui", "Overview", "overview"),
    ("/ui/fleet", "Fleet", "fleet"),
    ("/ui/purge", "Purge", "purge"),
    ("/ui/cache", "Cache inspector", "cache"),
    ("/ui/live", "Live requests", "live"),
    ("/ui/dns", "DNS", "dns"),
    ("/ui/config", "Config", "config"),
];

/// `s` with HTML's special characters escaped.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        PAGE_HEADERS,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn layout(st: &ConsoleState, s: &Session, key: &str, main: &str) -> String {
    let title = PAGES.iter().find(|p| p.2 == key).map_or("Console", |p| p.1);
    let nav: String = PAGES
        .iter()
        .map(|(path, name, k)| {
            let cur = if *k == key {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{path}\"{cur}>{name}</a>")
        })
        .collect();
    let region = st
        .info
        .region
        .as_deref()
        .map(|r| format!(" · region {}", esc(r)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Outpost {node}</title><link rel="stylesheet" href="/ui/assets/console.css"></head>
<body data-page="{key}" data-csrf="{csrf}">
<header><span class="brand">Outpost</span><span class="node">{node} · {roles}{region}</span>
<form method="post" action="/ui/logout" class="logout"><input type="hidden" name="csrf" value="{csrf}"><button>Sign out</button></form></header>
<nav>{nav}</nav>
<main><h1>{title}</h1>
{main}
</main>
<script src="/ui/assets/console.js"></script>
</body></html>"#,
        node = esc(&st.info.node),
        roles = esc(&st.info.roles.join(", ")),
        csrf = esc(&s.csrf),
    )
}

/// The shell of page `key` (filled by the script).
fn shell(key: &str) -> &'static str {
    match key {
        "overview" => {
            r#"<div class="toolbar"><label>Series <select id="series"></select></label><span id="updated" class="muted"></span></div>
<div id="health" class="cards"></div>
<div id="cards" class="cards"></div>
<div class="charts">
<figure><figcaption>Requests/s</figcaption><div class="chart" id="c-rps"></div></figure>
<figure><figcaption>Hit ratio</figcaption><div class="chart" id="c-hit"></div></figure>
<figure><figcaption>Bandwidth (bytes/s)</figcaption><div class="chart" id="c-bw"></div></figure>
<figure><figcaption>Latency percentiles (ms)</figcaption><div class="chart" id="c-lat"></div></figure>
<figure><figcaption>Status classes /s</figcaption><div class="chart" id="c-status"></div></figure>
<figure><figcaption>Upstream: requests/s and errors/s</figcaption><div class="chart" id="c-up"></div></figure>
</div>
<h2>Per site (since start)</h2><table id="sites"></table>"#
        }
        "fleet" => r#"<p id="fleet-note" class="muted"></p><table id="fleet"></table>"#,
        "cache" => {
            r#"<form id="inspect" class="row"><input name="url" id="url" placeholder="http://demo.test/static/app.js" size="60" required><button>Inspect</button></form>
<div id="result"></div>"#
        }
        "live" => {
            r#"<form id="filters" class="row"><label>Site <input name="site" size="12"></label>
<label>Status <input name="status" size="6" placeholder="5xx, 404"></label>
<label>Cache <select name="cache"><option value="">any</option><option>hit</option><option>miss</option><option>stale</option><option>pass</option><option>error</option></select></label>
<button>Apply</button><span id="live-state" class="muted"></span></form>
<table id="live"><thead><tr><th>time</th><th>tier</th><th>site</th><th>method</th><th>target</th><th>status</th><th>cache</th><th>bytes</th><th>ms</th><th>client</th></tr></thead><tbody></tbody></table>"#
        }
        "dns" => r#"<div id="dns"></div>"#,
        "config" => {
            r#"<p class="muted">The configuration this node runs: what its file sets, as last loaded or reloaded (defaults are not listed). Tokens, secrets and keys are redacted.</p><pre id="config"></pre>"#
        }
        _ => "",
    }
}

/// A page of the console for a signed-in browser.
fn page(st: &ConsoleState, s: &Session, key: &str) -> Response {
    html(StatusCode::OK, layout(st, s, key, shell(key)))
}

pub(crate) async fn overview(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "overview")
}
pub(crate) async fn fleet(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "fleet")
}
pub(crate) async fn cache(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "cache")
}
pub(crate) async fn live(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "live")
}
pub(crate) async fn dns(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "dns")
}
pub(crate) async fn config(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
) -> Response {
    page(&st, &s, "config")
}
#[derive(serde::Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: Option<u64>,
}

/// `GET /ui/purge[?done=V]`: the form, the log, and the version of a purge just accepted (the
/// form post redirects here, so reloading the page does not purge again).
pub(crate) async fn purge(
    State(st): State<ConsoleState>,
    Extension(s): Extension<Session>,
    q: Result<axum::extract::Query<Done>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let done = q.ok().and_then(|q| q.0.done);
    purge_page(&st, &s, StatusCode::OK, done.ok_or(""))
}

/// The purge page, with the outcome of a purge just made (`Ok(version)`, or `Err(why)`; an
/// empty `why` says nothing).
pub(crate) fn purge_page(
    st: &ConsoleState,
    s: &Session,
    status: StatusCode,
    outcome: Result<u64, &str>,
) -> Response {
    let note = match outcome {
        Ok(v) => format!("<p class=\"ok\" id=\"outcome\">Purge accepted: version {v}.</p>"),
        Err("") => String::new(),
        Err(e) => format!(
            "<p class=\"bad\" id=\"outcome\">Purge refused: {}</p>",
            esc(e)
        ),
    };
    let main = format!(
        r#"{note}<form method="post" action="/ui/purge" class="purge" id="purge-form">
<input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>What</legend>
<label><input type="radio" name="kind" value="url" checked> URLs</label>
<label><input type="radio" name="kind" value="prefix"> URL prefixes</label>
<label><input type="radio" name="kind" value="tag"> Tags</label>
<label><input type="radio" name="kind" value="all"> Everything</label></fieldset>
<label class="block">One per line<textarea name="value" rows="4" cols="60" placeholder="http://demo.test/static/app.js"></textarea></label>
<fieldset><legend>How</legend>
<label><input type="radio" name="mode" value="hard" checked> Hard (remove)</label>
<label><input type="radio" name="mode" value="soft"> Soft (mark stale)</label></fieldset>
<button>Purge</button></form>
<h2>Purge log</h2><p id="purge-state" class="muted"></p><table id="purge-log"></table>"#,
        csrf = esc(&s.csrf),
    );
    html(status, layout(st, s, "purge", &main))
}

/// The sign-in page (open), with a message after a refused attempt.
pub(crate) fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let note = message
        .map(|m| format!("<p class=\"bad\" id=\"outcome\">{}</p>", esc(m)))
        .unwrap_or_default();
    html(
        status,
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Outpost</title><link rel="stylesheet" href="/ui/assets/console.css"></head>
<body class="login"><main><h1>Outpost console</h1>{note}
<form method="post" action="/ui/login" id="login">
<label class="block">Admin token<input type="password" name="token" autocomplete="current-password" autofocus required></label>
<button>Sign in</button></form>
<p class="muted">The token is the node's <code>[admin] token</code> (or <code>token_file</code>).</p></main></body></html>"#
        ),
    )
}

pub(crate) async fn login() -> Response {
    login_page(StatusCode::OK, None)
}

pub(crate) async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub(crate) async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

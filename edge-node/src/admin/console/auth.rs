//! Signing in to the console: the admin token is exchanged for a session (`session.rs`) held
//! in an `HttpOnly; SameSite=Strict` cookie; every form carries the session's CSRF token and
//! every POST checks it (on top of SameSite). Without a session, pages answer 303 to the
//! sign-in page and data answers 401.

use super::session::{Session, LIFETIME};
use super::state::ConsoleState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::time::Instant;

/// The session cookie's name, before the admin port: browsers share cookies between the
/// ports of a host, so each node's console (the demo's on 9900, 9901, 9902) names its own.
pub(crate) const COOKIE: &str = "outpost_console";

/// The cookie name of a console whose admin API is at `admin` (a URL).
pub(crate) fn cookie_name(admin: Option<&str>) -> String {
    match admin
        .and_then(|a| a.rsplit_once(':'))
        .map(|(_, p)| p.trim_end_matches('/'))
    {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{COOKIE}_{port}")
        }
        _ => COOKIE.to_string(),
    }
}

/// The session id of the request's cookie, if any.
fn cookie_id<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's live session.
pub(crate) fn session(st: &ConsoleState, headers: &HeaderMap) -> Option<Session> {
    cookie_id(headers, &st.cookie).and_then(|id| st.sessions.get(id, Instant::now()))
}

/// The `Set-Cookie` value for `s` (or, with `None`, one that clears the cookie).
pub(crate) fn set_cookie(name: &str, s: Option<&Session>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match s {
        Some(s) => format!(
            "{name}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            s.id,
            LIFETIME.as_secs()
        ),
        None => format!("{name}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Pages: without a session, 303 to the sign-in page.
pub(crate) async fn pages_gate(
    State(st): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    match session(&st, req.headers()) {
        Some(s) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None => Redirect::to("/ui/login").into_response(),
    }
}

/// Data (JSON, SSE) and form posts: without a session, 401.
pub(crate) async fn api_gate(
    State(st): State<ConsoleState>,
    mut req: Request,
    next: Next,
) -> Response {
    match session(&st, req.headers()) {
        Some(s) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": "sign in at /ui/login" })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookies_are_strict_and_found_among_others() {
        let s = Session {
            id: "ab".into(),
            csrf: "cd".into(),
            expires: Instant::now(),
        };
        let c = set_cookie(COOKIE, Some(&s), false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(set_cookie(COOKIE, None, true).contains("Max-Age=0; Secure"));
        let name = cookie_name(Some("http://127.0.0.1:9901"));
        assert_eq!(name, "outpost_console_9901");
        assert_eq!(cookie_name(None), COOKIE);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}_9900=no; {name}=xyz")
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_id(&h, &name), Some("xyz"));
    }
}

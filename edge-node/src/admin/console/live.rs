//! `GET /ui/api/live`: the live tail of the requests as server-sent events, filtered by site,
//! status and cache status. Bounded: each watcher holds a position in the node's broadcast
//! ring (`access_log/tail.rs`); one that reads too slowly loses the oldest entries and gets a
//! `dropped` event saying how many. The request path never waits on a watcher. A stream ends
//! at shutdown and after [`MAX_STREAM`] (the browser's EventSource reconnects).

use super::state::ConsoleState;
use crate::access_log::{TailEntry, Watch};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Longest a stream lasts.
const MAX_STREAM: Duration = Duration::from_secs(600);

/// The filters of the live view (empty: any).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    site: String,
    /// `404`, or a class: `5xx`.
    #[serde(default)]
    status: String,
    #[serde(default)]
    cache: String,
}

impl Filter {
    /// Whether `e` passes.
    pub(crate) fn matches(&self, e: &TailEntry) -> bool {
        let site = self.site.trim();
        let status = self.status.trim().to_ascii_lowercase();
        let cache = self.cache.trim();
        (site.is_empty() || e.site == site)
            && (cache.is_empty() || e.cache == cache)
            && (status.is_empty()
                || match status.strip_suffix("xx") {
                    Some(class) => class == (e.status / 100).to_string(),
                    None => status == e.status.to_string(),
                })
    }
}

fn events(w: Watch, f: Filter) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    stream::unfold((w, f), |(mut w, f)| async move {
        loop {
            match w.rx.recv().await {
                Ok(e) if f.matches(&e) => {
                    let ev = Event::default()
                        .event("request")
                        .json_data(&*e)
                        .unwrap_or_else(|_| Event::default().comment("unencodable"));
                    return Some((Ok(ev), (w, f)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default().event("dropped").data(n.to_string());
                    return Some((Ok(ev), (w, f)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

pub(crate) async fn live(
    State(st): State<ConsoleState>,
    q: Result<Query<Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(f)) = q else {
        return (StatusCode::BAD_REQUEST, "use ?site=&status=&cache=").into_response();
    };
    if f.site.len() > 128 || f.status.len() > 8 || f.cache.len() > 16 {
        return (StatusCode::BAD_REQUEST, "filter too long").into_response();
    }
    if st.nodes.is_empty() {
        return (
            StatusCode::CONFLICT,
            "no edge or shield on this node: no requests",
        )
            .into_response();
    }
    let mut streams = Vec::new();
    for n in &st.nodes {
        match n.access_tail().subscribe() {
            Some(w) => streams.push(events(w, f.clone()).boxed()),
            None => {
                return (StatusCode::SERVICE_UNAVAILABLE, "too many live views open")
                    .into_response()
            }
        }
    }
    let mut stop = st.shutdown.clone();
    let end = async move {
        let shut = async {
            match stop.as_mut() {
                Some(s) => {
                    let _ = s.wait_for(|v| *v).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shut => {}
            _ = tokio::time::sleep(MAX_STREAM) => {}
        }
    };
    let hello = stream::once(async { Ok(Event::default().event("hello").data("watching")) });
    let merged = hello
        .chain(stream::select_all(streams))
        .take_until(Box::pin(end));
    Sse::new(merged)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(site: &str, status: u16, cache: &'static str) -> TailEntry {
        TailEntry {
            time_ms: 0,
            tier: "edge",
            site: site.into(),
            client: "127.0.0.1".into(),
            method: "GET".into(),
            target: "/".into(),
            status,
            bytes: None,
            duration_ms: 0.0,
            cache,
            request_id: "0".into(),
        }
    }

    #[test]
    fn filters_by_site_status_or_class_and_cache() {
        let f = |site: &str, status: &str, cache: &str| Filter {
            site: site.into(),
            status: status.into(),
            cache: cache.into(),
        };
        let e = entry("www", 503, "miss");
        assert!(f("", "", "").matches(&e));
        assert!(f("www", "5xx", "miss").matches(&e));
        assert!(f("", "503", "").matches(&e));
        assert!(!f("api", "", "").matches(&e));
        assert!(!f("", "4xx", "").matches(&e));
        assert!(!f("", "", "hit").matches(&e));
    }
}

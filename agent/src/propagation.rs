//! W3C Trace Context (`traceparent`, `tracestate`) read from and written to HTTP header maps,
//! so one trace spans edge, shield and origin.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The two W3C fields this propagator reads and writes.
pub const FIELDS: [&str; 2] = ["traceparent", "tracestate"];

struct Get<'a>(&'a http::HeaderMap);

impl Extractor for Get<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Set<'a>(&'a mut http::HeaderMap);

impl Injector for Set<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The remote parent named by a request's `traceparent`/`tracestate` (empty if none or bad).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Get(headers))
}

/// What a request's trace context says about recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Record: make a span (child of the caller's, if any).
    Record,
    /// The caller, or this node's `sampling_ratio`, says no: make no span at all. Should the
    /// request go upstream, [`inject`] gives it an unsampled `traceparent` (if it has none),
    /// so the next tiers do not record it either.
    Skip,
}

/// Head sampling, decided once where a request enters: a valid `traceparent` decides by its
/// sampled flag; otherwise `sampling_ratio` does. Unsampled requests then cost no span at all,
/// and nothing is allocated here.
pub fn decide(headers: &http::HeaderMap) -> Decision {
    if let Some(flags) = traceparent_flags(headers) {
        return if flags & 1 == 1 {
            Decision::Record
        } else {
            Decision::Skip
        };
    }
    if crate::setup::sample_root() {
        Decision::Record
    } else {
        Decision::Skip
    }
}

/// The flags of a well-formed `traceparent` (version-traceid-spanid-flags), if there is one.
fn traceparent_flags(headers: &http::HeaderMap) -> Option<u8> {
    // A ready-made name: looking a header up by `&str` parses the name on every call.
    static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
    let tp = headers.get(&TRACEPARENT)?.to_str().ok()?;
    let mut parts = tp.trim().split('-');
    let (_, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    u8::from_str_radix(flags, 16).ok()
}

/// A fresh unsampled `traceparent`: the trace context of a request this node chose not to
/// record, so that the next tiers follow the decision.
fn unsampled_traceparent() -> Option<http::HeaderValue> {
    let (hi, lo) = (crate::setup::random_u64(), crate::setup::random_u64());
    let tp = format!(
        "00-{hi:016x}{lo:016x}-{:016x}-00",
        crate::setup::random_u64() | 1
    );
    http::HeaderValue::from_str(&tp).ok()
}

/// The trace id of `span` (32 hex digits) when it records, else the one of the request's
/// `traceparent`, if any: the trace an access log line belongs to.
pub fn trace_id(span: Option<&tracing::Span>, headers: &http::HeaderMap) -> Option<[u8; 32]> {
    use opentelemetry::trace::TraceContextExt;
    if let Some(span) = span.filter(|s| !s.is_none()) {
        let sc = span.context().span().span_context().clone();
        if sc.is_valid() {
            let hex = format!("{:032x}", sc.trace_id());
            let mut out = [0u8; 32];
            out.copy_from_slice(hex.as_bytes());
            return Some(out);
        }
    }
    let tp = headers.get(FIELDS[0])?.as_bytes();
    let id = tp.get(3..35)?;
    if tp.get(2) != Some(&b'-') || !id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(id);
    Some(out)
}

/// Makes `span` a child of the trace context in `headers`, if they carry one.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key(FIELDS[0]) {
        let _ = span.set_parent(extract(headers));
    }
}

/// Replaces `traceparent`/`tracestate` in `headers` with the context of `span`, so the next
/// tier's span becomes its child. When `span` records nothing: with traces on, the request was
/// not sampled here, and one without a `traceparent` gets an unsampled one (the next tiers
/// then skip it too); with traces off the fields are left as the client sent them, and the
/// node is invisible to the trace.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
    if span.is_none() {
        // Not recorded here: a request without a usable traceparent (none, or malformed)
        // gets an unsampled one, so the next tiers do not start a partial trace of it.
        if crate::setup::traces_enabled() && traceparent_flags(headers).is_none() {
            if let Some(tp) = unsampled_traceparent() {
                headers.remove(FIELDS[1]);
                headers.insert(FIELDS[0], tp);
            }
        }
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    for f in FIELDS {
        headers.remove(f);
    }
    TraceContextPropagator::new().inject_context(&cx, &mut Set(headers));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    #[test]
    fn reads_w3c_fields() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = extract(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        h.insert("traceparent", "garbage".parse().unwrap());
        assert!(!extract(&h).span().span_context().is_valid());
    }

    #[test]
    fn head_sampling_follows_the_flag_else_the_ratio() {
        let mut h = http::HeaderMap::new();
        // Default ratio 1.0: a request without context is recorded.
        assert_eq!(decide(&h), Decision::Record);
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
                .parse()
                .unwrap(),
        );
        assert_eq!(decide(&h), Decision::Skip);
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(decide(&h), Decision::Record);
        // Malformed: the ratio decides, as for no traceparent at all.
        for bad in [
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",
            "00-0af7651916cd43dd-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            h.insert("traceparent", bad.parse().unwrap());
            assert_eq!(traceparent_flags(&h), None, "{bad}");
            assert_eq!(decide(&h), Decision::Record, "{bad}");
        }
    }

    #[test]
    fn without_a_tracer_the_fields_pass_unchanged() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        h.insert("tracestate", "a=b".parse().unwrap());
        inject(&tracing::Span::none(), &mut h);
        assert_eq!(h["tracestate"], "a=b");
        assert!(h["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-0af7651916cd43dd"));
    }
}

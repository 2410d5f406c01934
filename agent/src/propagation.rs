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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record: make a span (child of the caller's, if any).
    Record,
    /// The caller, or this node's `sampling_ratio`, says no: make no span at all. With
    /// `inject`, the request carries no context yet and the given unsampled `traceparent`
    /// must be added, so the next tiers do not record either.
    Skip {
        /// An unsampled `traceparent` to add, when the request has none.
        inject: Option<http::HeaderValue>,
    },
}

/// Head sampling, decided once where a request enters: a valid `traceparent` decides by its
/// sampled flag; otherwise `sampling_ratio` does. Unsampled requests then cost no span at all.
pub fn decide(headers: &http::HeaderMap) -> Decision {
    if let Some(tp) = headers.get(FIELDS[0]).and_then(|v| v.to_str().ok()) {
        // version-traceid-spanid-flags
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [_, trace, span, flags] = parts[..] {
            if trace.len() == 32 && span.len() == 16 {
                return match u8::from_str_radix(flags, 16) {
                    Ok(f) if f & 1 == 1 => Decision::Record,
                    Ok(_) => Decision::Skip { inject: None },
                    Err(_) => root_decision(),
                };
            }
        }
    }
    root_decision()
}

fn root_decision() -> Decision {
    if crate::setup::sample_root() {
        return Decision::Record;
    }
    let (hi, lo) = (crate::setup::random_u64(), crate::setup::random_u64());
    let tp = format!(
        "00-{hi:016x}{lo:016x}-{:016x}-00",
        crate::setup::random_u64() | 1
    );
    Decision::Skip {
        inject: http::HeaderValue::from_str(&tp).ok(),
    }
}

/// Makes `span` a child of the trace context in `headers`, if they carry one.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key(FIELDS[0]) {
        let _ = span.set_parent(extract(headers));
    }
}

/// Replaces `traceparent`/`tracestate` in `headers` with the context of `span`, so the next
/// tier's span becomes its child. When `span` has no OpenTelemetry context (telemetry off),
/// the fields are left as the client sent them: the node is then invisible to the trace.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    use opentelemetry::trace::TraceContextExt;
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
        assert_eq!(decide(&h), Decision::Skip { inject: None });
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(decide(&h), Decision::Record);
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

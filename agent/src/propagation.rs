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

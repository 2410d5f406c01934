//! Log lines on stderr that carry the trace and span ids of the request they belong to, as
//! text (`... trace_id=.. span_id=..`) or as one JSON object per line.

use opentelemetry::trace::TraceContextExt;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The trace and span id of the OpenTelemetry span active on this thread, if any.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// tracing-subscriber's text format, with `trace_id=` and `span_id=` appended when a span is
/// active.
#[derive(Debug)]
pub struct TraceIdFormat {
    inner: Format,
    ids: bool,
}

impl TraceIdFormat {
    /// `ids`: whether to look up trace ids (only useful with an OpenTelemetry tracer).
    pub fn new(ids: bool) -> Self {
        Self {
            inner: Format::default(),
            ids,
        }
    }
}

impl<S, N> FormatEvent<S, N> for TraceIdFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = if self.ids { current_ids() } else { None };
        let Some((t, s)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        writeln!(writer, "{line} trace_id={t} span_id={s}")
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's other
/// fields under `fields`, the innermost span's name as `span`, and `trace_id`/`span_id`.
#[derive(Debug, Default)]
pub struct StderrFormat;

struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for StderrFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut ts = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), ts.into());
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        if let Some(m) = fields.0.remove("message") {
            obj.insert("message".into(), m);
        }
        if !fields.0.is_empty() {
            obj.insert("fields".into(), fields.0.into());
        }
        if let Some(span) = ctx.lookup_current() {
            obj.insert("span".into(), span.name().into());
        }
        if let Some((t, s)) = current_ids() {
            obj.insert("trace_id".into(), t.into());
            obj.insert("span_id".into(), s.into());
        }
        let line = serde_json::Value::Object(obj).to_string();
        writeln!(writer, "{line}")
    }
}

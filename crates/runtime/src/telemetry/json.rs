//! JSON log lines that carry the W3C `trace_id` and `span_id` of the span they were logged in,
//! so that a log line found in Loki or Elasticsearch leads to its trace, and back.
//!
//! tracing-subscriber's JSON formatter knows `tracing` span ids only; the OpenTelemetry ids
//! live in the `tracing-opentelemetry` layer's span data, readable only through the
//! [`tracing::Dispatch`] ([`tracing_opentelemetry::get_otel_context`]). A formatter is never
//! given the dispatch (and asking for the current one while an event is being dispatched
//! yields none), so [`DispatchSlot`], a layer of its own, keeps a weak handle on it when the
//! subscriber is built, and [`TraceIds`] reads the ids through it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Where the subscriber's dispatch is kept once it is registered.
#[derive(Clone, Default)]
pub(crate) struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        // Weak: the subscriber owns this layer, a strong handle would be a cycle.
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// The JSON format with `trace_id` and `span_id` added to every line logged inside a span.
pub(crate) struct TraceIds<F> {
    inner: F,
    slot: DispatchSlot,
}

impl<F> TraceIds<F> {
    pub(crate) fn new(inner: F, slot: DispatchSlot) -> Self {
        Self { inner, slot }
    }

    /// The OpenTelemetry ids of `span`, when it has a valid context.
    fn ids(&self, span: &tracing::span::Id) -> Option<(String, String)> {
        let dispatch = self.slot.0.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(span, &dispatch)?;
        let otel = cx.span();
        let sc = otel.span_context();
        sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let ids = ctx.parent_span().and_then(|span| self.ids(&span.id()));
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        // The inner format writes one JSON object and a newline: the ids go before its `}`.
        match line.trim_end().strip_suffix('}') {
            Some(open) => {
                let comma = if open.trim_end().ends_with('{') { "" } else { "," };
                writeln!(writer, "{open}{comma}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}")
            }
            None => writer.write_str(&line),
        }
    }
}

/// The process's JSON log layer, writing to `writer`: flattened events, the current span, and
/// the trace ids.
pub(crate) fn layer<S, W>(slot: DispatchSlot, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let format = format::format().json().flatten_event(true).with_current_span(true).with_span_list(false);
    tracing_subscriber::fmt::layer().json().event_format(TraceIds::new(format, slot)).with_writer(writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::io;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().map_err(|_| io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(buffer: &Buffer) -> Vec<serde_json::Value> {
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn lines_in_a_span_carry_its_trace_and_span_ids() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let buffer = Buffer::default();
        let slot = DispatchSlot::default();
        let writer = buffer.clone();
        let logs = layer(slot.clone(), move || writer.clone());
        let subscriber = tracing_subscriber::registry()
            .with(slot)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("json-test")))
            .with(logs);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(outside = true, "no span");
            tracing::info_span!("work", app = "hello").in_scope(|| tracing::info!(inside = true, "in a span"));
        });
        let spans = exporter.get_finished_spans().expect("spans");
        let work = spans.iter().find(|s| s.name == "work").expect("work span");
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["message"], "no span");
        assert_eq!(lines[1]["message"], "in a span");
        assert_eq!(lines[1]["inside"], true);
        assert_eq!(lines[1]["span"]["app"], "hello");
        assert_eq!(lines[1]["trace_id"], work.span_context.trace_id().to_string());
        assert_eq!(lines[1]["span_id"], work.span_context.span_id().to_string());
    }
}

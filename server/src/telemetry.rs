//! Log set-up: human-readable by default, JSON for log pipelines; `RUST_LOG` filters. With an
//! OTLP endpoint, the same spans (one per request, with its request id, and the work inside it)
//! are also exported as OpenTelemetry traces over OTLP/HTTP.

use crate::config::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Where the CLI draws its progress bars. Log lines are written around them (bars cleared, line
/// written, bars drawn again), so a warning during `kenning ingest` never lands inside a bar.
pub fn bars() -> &'static indicatif::MultiProgress {
    static BARS: OnceLock<indicatif::MultiProgress> = OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

/// Makes one [`LogLine`] per event.
struct AroundBars;

impl fmt::MakeWriter<'_> for AroundBars {
    type Writer = LogLine;

    fn make_writer(&self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One event's text, written to standard output in one piece when it is complete.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        bars().suspend(|| {
            let _ = std::io::stdout().lock().write_all(&line);
        });
    }
}

/// Where traces go, when anywhere.
pub struct Otlp<'a> {
    /// Collector base URL; `/v1/traces` is appended.
    pub endpoint: &'a str,
    pub service_name: &'a str,
}

/// Keeps the trace exporter alive; `shutdown` sends what is still buffered.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (blocking: call off the async threads).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber once; later calls (tests) are ignored. A bad OTLP setting is
/// reported and tracing goes on without it, since logs matter more than traces.
pub fn init(format: LogFormat, otlp: Option<Otlp<'_>>) -> Telemetry {
    // Qdrant Edge warns, once per segment, that process-wide flags of Qdrant's server were never
    // set; its embedding API offers no way to set them and its defaults apply, so only its
    // errors from there are shown.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,tower_http=info,hnsw_rs=warn,qdrant_edge::common=error")
    });
    let provider = otlp.and_then(|o| match tracer_provider(&o) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: OTLP traces disabled: {e}");
            None
        }
    });
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("kenning")));
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    let _ = match format {
        LogFormat::Human => registry
            .with(fmt::layer().with_target(false).with_writer(AroundBars))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(AroundBars),
            )
            .try_init(),
    };
    Telemetry { provider }
}

fn tracer_provider(o: &Otlp<'_>) -> anyhow::Result<SdkTracerProvider> {
    let endpoint = format!("{}/v1/traces", o.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(o.service_name.to_string())
                .build(),
        )
        .build())
}

//! The metrics dashboard: the last two minutes, second by second, as small SVG charts drawn by
//! the app itself (no CDN), refreshed every two seconds without reloading the page.

use crate::api::{MetricsPoint, MetricsSnapshot};
use crate::components::{error_text, Badge, ErrorNotice, PageHeader};
use crate::server_fns::metrics_snapshot;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{lazy_route, LazyRoute};

/// Width and height of a chart's drawing area, in SVG units.
const W: f64 = 300.0;
const H: f64 = 64.0;

/// One series of a chart: a CSS class (its colour) and its values, oldest first.
struct Series {
    class: &'static str,
    values: Vec<Option<f64>>,
}

/// The SVG path of a series scaled to `max`, with gaps where there is no value.
fn path(values: &[Option<f64>], max: f64) -> String {
    let n = values.len().max(2) as f64 - 1.0;
    let mut d = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = i as f64 / n * W;
                let y = H - (v / max).clamp(0.0, 1.0) * (H - 2.0) - 1.0;
                d.push_str(&format!(
                    "{}{x:.1},{y:.1} ",
                    if pen_down { "L" } else { "M" }
                ));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d
}

/// A small time-series chart with its current value and the scale's top.
fn chart(
    title: &'static str,
    current: String,
    unit: &'static str,
    series: Vec<Series>,
) -> impl IntoView {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let max = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let paths = series
        .iter()
        .map(|s| view! { <path class=format!("line {}", s.class) d=path(&s.values, max)/> })
        .collect_view();
    let top = format!("{} {unit}", short(max));
    view! {
        <figure class="chart panel">
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="chart-value">{current}</span>
            </figcaption>
            <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=title>
                <line class="grid" x1="0" y1="1" x2=W.to_string() y2="1"/>
                <line class="grid" x1="0" y1=(H / 2.0).to_string() x2=W.to_string() y2=(H / 2.0).to_string()/>
                {paths}
            </svg>
            <div class="chart-scale muted small"><span>"2 min ago"</span><span>{top}</span><span>"now"</span></div>
        </figure>
    }
}

/// A number in at most four significant characters.
fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.1} ms"))
}

fn series(points: &[MetricsPoint], f: impl Fn(&MetricsPoint) -> Option<f64>) -> Vec<Option<f64>> {
    points.iter().map(f).collect()
}

/// The dashboard page.
pub struct MetricsPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct MetricsData {
    snapshot: Resource<Result<MetricsSnapshot, ServerFnError>>,
}

impl MetricsData {
    fn load() -> Self {
        Self {
            snapshot: Resource::new(|| (), |_| metrics_snapshot()),
        }
    }
}

#[lazy_route]
impl LazyRoute for MetricsPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = MetricsData::load();
        let snapshot = this.snapshot;
        // In the browser, refresh every two seconds; the page stays, only numbers move.
        Effect::new(move |_| {
            if let Ok(handle) = set_interval_with_handle(
                move || snapshot.refetch(),
                std::time::Duration::from_secs(2),
            ) {
                on_cleanup(move || handle.clear());
            }
        });
        view! {
            <Title text="Metrics"/>
            <PageHeader title="Metrics" subtitle="How this Kenning instance is doing, live. Prometheus scrapes the same figures at /metrics."/>
            <Transition fallback=|| view! { <p class="muted">"Loading metrics…"</p> }>
                {move || Suspend::new(async move {
                    match snapshot.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(s) => dashboard(s).into_any(),
                    }
                })}
            </Transition>
        }
        .into_any()
    }
}

fn dashboard(s: MetricsSnapshot) -> impl IntoView {
    let p = &s.points;
    let m = &s.last_minute;
    let charts = vec![
        chart(
            "Requests",
            format!("{:.1}/s", m.requests_per_second),
            "/s",
            vec![Series {
                class: "s1",
                values: series(p, |x| Some(x.requests as f64)),
            }],
        )
        .into_any(),
        chart(
            "Errors (5xx)",
            format!("{:.2} %", m.error_ratio * 100.0),
            "/s",
            vec![Series {
                class: "s-err",
                values: series(p, |x| Some(x.errors as f64)),
            }],
        )
        .into_any(),
        chart(
            "Latency p50 / p95 / p99",
            format!("{} / {} / {}", ms(m.p50_ms), ms(m.p95_ms), ms(m.p99_ms)),
            "ms",
            vec![
                Series {
                    class: "s1",
                    values: series(p, |x| x.p50_ms),
                },
                Series {
                    class: "s2",
                    values: series(p, |x| x.p95_ms),
                },
                Series {
                    class: "s3",
                    values: series(p, |x| x.p99_ms),
                },
            ],
        )
        .into_any(),
        chart(
            "Time to first token (p50)",
            ms(m.ttft_p50_ms),
            "ms",
            vec![Series {
                class: "s2",
                values: series(p, |x| x.ttft_ms),
            }],
        )
        .into_any(),
        chart(
            "Tokens generated",
            format!("{:.1}/s", m.tokens_per_second),
            "/s",
            vec![Series {
                class: "s1",
                values: series(p, |x| Some(x.tokens as f64)),
            }],
        )
        .into_any(),
        chart(
            "Vector search p95",
            ms(m.search_p95_ms),
            "ms",
            vec![Series {
                class: "s3",
                values: series(p, |x| x.search_p95_ms),
            }],
        )
        .into_any(),
        chart(
            "Database p95",
            ms(m.db_p95_ms),
            "ms",
            vec![Series {
                class: "s2",
                values: series(p, |x| x.db_p95_ms),
            }],
        )
        .into_any(),
        chart(
            "Passages indexed",
            format!("{:.1}/s", m.passages_per_second),
            "/s",
            vec![Series {
                class: "s2",
                values: series(p, |x| Some(x.passages as f64)),
            }],
        )
        .into_any(),
    ];
    let routes = s
        .routes
        .iter()
        .map(|r| {
            view! {
                <tr>
                    <td><code>{r.method.clone()}</code></td>
                    <td><code>{r.route.clone()}</code></td>
                    <td class="num">{r.count}</td>
                    <td class="num">{r.errors}</td>
                    <td class="num">{format!("{:.1}", r.p50_ms)}</td>
                    <td class="num">{format!("{:.1}", r.p95_ms)}</td>
                    <td class="num">{format!("{:.1}", r.p99_ms)}</td>
                </tr>
            }
        })
        .collect_view();
    let caches = s
        .caches
        .iter()
        .map(|c| {
            let total = c.hits + c.misses;
            let rate = if total == 0 {
                0.0
            } else {
                c.hits as f64 / total as f64 * 100.0
            };
            view! {
                <tr>
                    <td>{c.name.clone()}</td>
                    <td class="num">{c.hits}</td>
                    <td class="num">{c.misses}</td>
                    <td class="num">{format!("{rate:.0} %")}</td>
                </tr>
            }
        })
        .collect_view();
    let breakers = s
        .breakers
        .iter()
        .map(|b| {
            let status = match b.state.as_str() {
                "closed" => "healthy",
                "half_open" => "degraded",
                _ => "unhealthy",
            };
            view! { <li><span>{b.name.clone()}</span>" "<Badge status=status/>" "<span class="muted small">{b.state.replace('_', "-")}</span></li> }
        })
        .collect_view();
    let j = &s.jobs;
    view! {
        <section class="charts" id="charts">{charts}</section>
        <section class="dash-grid">
            <div class="panel">
                <h2>"Ingestion queue"</h2>
                <dl class="stats">
                    <div><dt>"Queued"</dt><dd id="jobs-queued">{j.queued}</dd></div>
                    <div><dt>"Running"</dt><dd>{j.running}</dd></div>
                    <div><dt>"Done"</dt><dd>{j.done}</dd></div>
                    <div><dt>"Failed"</dt><dd>{j.failed}</dd></div>
                </dl>
            </div>
            <div class="panel">
                <h2>"Process"</h2>
                <dl class="stats">
                    <div><dt>"Memory"</dt><dd>{crate::format::human_bytes(s.memory_bytes as i64)}</dd></div>
                    <div><dt>"CPU"</dt><dd>{format!("{:.0} %", s.cpu_percent)}</dd></div>
                    <div><dt>"Uptime"</dt><dd>{format!("{} min", s.uptime_seconds / 60)}</dd></div>
                </dl>
            </div>
            <div class="panel">
                <h2>"Circuit breakers"</h2>
                <ul class="breakers">{breakers}</ul>
            </div>
        </section>
        <section class="panel">
            <h2>"Caches"</h2>
            <table class="table">
                <thead><tr><th>"Cache"</th><th class="num">"Hits"</th><th class="num">"Misses"</th><th class="num">"Hit rate"</th></tr></thead>
                <tbody>{caches}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Routes"</h2>
            <table class="table" id="routes">
                <thead><tr><th>"Method"</th><th>"Route"</th><th class="num">"Requests"</th><th class="num">"5xx"</th><th class="num">"p50 ms"</th><th class="num">"p95 ms"</th><th class="num">"p99 ms"</th></tr></thead>
                <tbody>{routes}</tbody>
            </table>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::path;

    #[test]
    fn paths_scale_to_the_box_and_break_at_gaps() {
        let d = path(&[Some(0.0), Some(1.0), None, Some(1.0)], 1.0);
        assert_eq!(d, "M0.0,63.0 L100.0,1.0 M300.0,1.0 ");
    }
}

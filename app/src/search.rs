//! The search page: what each retrieval stage found for a query, with scores and highlighted terms.

use crate::api::{Page, Space};
use crate::components::{error_text, ErrorNotice, PageHeader};
use crate::server_fns::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{hooks::use_query_map, lazy_route, LazyRoute};

/// What the search form asked for, read from the URL so searches are links and work without JS.
#[derive(Clone, Debug, PartialEq)]
struct SearchParams {
    space: String,
    q: String,
    mode: crate::api::SearchMode,
    limit: i64,
    min_score: Option<f64>,
}

/// The search playground: query a space and see which passages come back, and why.
pub struct SearchPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct SearchData {
    params: Memo<SearchParams>,
    spaces: Resource<Result<Page<Space>, ServerFnError>>,
    results: Resource<Option<Result<crate::api::SearchResponse, ServerFnError>>>,
}

impl SearchData {
    fn load() -> Self {
        let query = use_query_map();
        let params = Memo::new(move |_| {
            let q = query.read();
            let mode = match q.get("mode").as_deref() {
                Some("dense") => crate::api::SearchMode::Dense,
                Some("keyword") => crate::api::SearchMode::Keyword,
                _ => crate::api::SearchMode::Hybrid,
            };
            SearchParams {
                space: q.get("space").unwrap_or_default(),
                q: q.get("q").unwrap_or_default(),
                mode,
                limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10),
                min_score: q.get("min_score").and_then(|m| m.parse().ok()),
            }
        });
        let spaces = Resource::new(|| (), |_| list_spaces(0));
        let results = Resource::new(
            move || params.get(),
            |p| async move {
                if p.space.is_empty() || p.q.trim().is_empty() {
                    return None;
                }
                Some(search_space(p.space, p.q, p.mode, Some(p.limit), p.min_score).await)
            },
        );
        Self {
            params,
            spaces,
            results,
        }
    }
}

#[lazy_route]
impl LazyRoute for SearchPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = SearchData::load();
        let SearchData {
            params,
            spaces,
            results,
        } = this;
        let p = params.get_untracked();
        let mode_option = move |value: &'static str, label: &'static str| {
            let selected = match params.get_untracked().mode {
                crate::api::SearchMode::Dense => value == "dense",
                crate::api::SearchMode::Keyword => value == "keyword",
                crate::api::SearchMode::Hybrid => value == "hybrid",
            };
            view! { <option value=value selected=selected>{label}</option> }
        };
        view! {
            <Title text="Search"/>
            <PageHeader title="Search" subtitle="Query a space and see exactly which passages retrieval returns, and why."/>
            <section class="panel">
                <form method="get" action="/search" class="form-row" id="search-form">
                    <label>
                        <span>"Space"</span>
                        <Suspense fallback=|| view! { <select name="space" disabled><option>"Loading…"</option></select> }>
                            {move || Suspend::new(async move {
                                let selected = params.get_untracked().space;
                                let items = spaces.await.map(|p| p.items).unwrap_or_default();
                                view! {
                                    <select name="space" required>
                                        {items.into_iter().map(|s| {
                                            let is = s.id == selected;
                                            view! { <option value=s.id.clone() selected=is>{s.name}</option> }
                                        }).collect_view()}
                                    </select>
                                }
                            })}
                        </Suspense>
                    </label>
                    <label class="grow">
                        <span>"Query"</span>
                        <input type="text" name="q" required maxlength="2000" value=p.q.clone() placeholder="e.g. how many vacation days do we get?"/>
                    </label>
                    <label>
                        <span>"Mode"</span>
                        <select name="mode">
                            {mode_option("hybrid", "Hybrid")}
                            {mode_option("dense", "Semantic")}
                            {mode_option("keyword", "Keyword")}
                        </select>
                    </label>
                    <label>
                        <span>"Limit"</span>
                        <input type="number" name="limit" min="1" max="50" value=p.limit.to_string() class="narrow"/>
                    </label>
                    <label>
                        <span>"Min score"</span>
                        <input type="number" name="min_score" step="any" value=p.min_score.map(|m| m.to_string()).unwrap_or_default() class="narrow"/>
                    </label>
                    <button type="submit">"Search"</button>
                </form>
            </section>
            <Transition fallback=|| view! { <p class="muted">"Searching…"</p> }>
                {move || Suspend::new(async move {
                    let terms: Vec<String> = params.get_untracked().q
                        .split(|c: char| !c.is_alphanumeric())
                        .filter(|t| t.len() > 2)
                        .map(str::to_lowercase)
                        .collect();
                    match results.await {
                        None => view! { <p class="muted">"Pick a space and type a question or some keywords."</p> }.into_any(),
                        Some(Err(e)) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Some(Ok(r)) => {
                            let summary = format!(
                                "{} result(s) in {:.1} ms{}",
                                r.results.len(),
                                r.took_ms,
                                if r.cached { " (cached)" } else { "" }
                            );
                            view! {
                                {r.notice.clone().map(|n| view! { <div class="notice warn" role="status">{n}</div> })}
                                <p class="muted small" id="search-summary">{summary}</p>
                                <ol class="results" id="search-results">
                                    {r.results.into_iter().map(|h| {
                                        let ranks = [
                                            h.dense_rank.map(|d| stage("semantic", d, h.dense_score)),
                                            h.keyword_rank.map(|k| stage("keyword", k, h.keyword_score)),
                                        ].into_iter().flatten().collect::<Vec<_>>().join(" · ");
                                        view! {
                                            <li class="result card">
                                                <div class="result-head">
                                                    <strong>{h.filename}</strong>
                                                    {(!h.chunk.heading_path.is_empty()).then(|| view! { <span class="muted">" › "{h.chunk.heading_path.clone()}</span> })}
                                                    <span class="score">{format!("{:.3}", h.score)}</span>
                                                </div>
                                                <p class="passage">{highlight(&h.chunk.text, &terms)}</p>
                                                <p class="muted small">{format!("{ranks} · characters {}–{}", h.chunk.char_start, h.chunk.char_end)}</p>
                                            </li>
                                        }
                                    }).collect_view()}
                                </ol>
                            }.into_any()
                        }
                    }
                })}
            </Transition>
        }
        .into_any()
    }
}

/// Wraps occurrences of the query's words in `<mark>`, case-insensitively.
/// How one search stage ranked a passage, with that stage's own score when it is known.
fn stage(name: &str, rank: usize, score: Option<f64>) -> String {
    match score {
        Some(s) => format!("{name} #{rank} ({s:.3})"),
        None => format!("{name} #{rank}"),
    }
}

fn highlight(text: &str, terms: &[String]) -> impl IntoView {
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths for some scripts; only highlight when it does not.
    if terms.is_empty() || lower.len() != text.len() {
        return vec![view! { <span>{text.to_string()}</span> }.into_any()];
    }
    let mut marks: Vec<(usize, usize)> = Vec::new();
    for t in terms {
        let mut from = 0;
        while let Some(i) = lower[from..].find(t.as_str()) {
            let start = from + i;
            marks.push((start, start + t.len()));
            from = start + t.len();
        }
    }
    marks.sort();
    let mut out = Vec::new();
    let mut pos = 0;
    for (s, e) in marks {
        if s < pos || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        out.push(view! { <span>{text[pos..s].to_string()}</span> }.into_any());
        out.push(view! { <mark>{text[s..e].to_string()}</mark> }.into_any());
        pos = e;
    }
    out.push(view! { <span>{text[pos..].to_string()}</span> }.into_any());
    out
}

//! Small building blocks shared by several pages.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_query_map};

/// A page title with an optional subtitle, the same on every page.
#[component]
pub fn PageHeader(
    #[prop(into)] title: String,
    #[prop(into, optional)] subtitle: String,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <div class="page-header">
            <div>
                <h1>{title}</h1>
                {(!subtitle.is_empty()).then(|| view! { <p class="subtitle">{subtitle}</p> })}
            </div>
            <div class="page-actions">{children.map(|c| c())}</div>
        </div>
    }
}

/// Shows a server error the way every page does.
#[component]
pub fn ErrorNotice(#[prop(into)] message: String) -> impl IntoView {
    view! { <div class="notice error" role="alert">{message}</div> }
}

/// A status badge whose colour follows the status name.
#[component]
pub fn Badge(#[prop(into)] status: String) -> impl IntoView {
    let class = format!("badge badge-{status}");
    view! { <span class=class>{status}</span> }
}

/// Strips a server function error down to the message meant for users.
pub fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(m) => m.clone(),
        other => other.to_string(),
    }
}

/// The list offset the page's `?offset=` names, so a reload or a shared link keeps the page.
pub(crate) fn offset_from_query() -> Memo<i64> {
    let query = use_query_map();
    Memo::new(move |_| {
        query
            .read()
            .get("offset")
            .and_then(|o| o.parse::<i64>().ok())
            .unwrap_or(0)
            .max(0)
    })
}

/// Links to the previous and next page of a list; plain links, so they work before hydration.
#[component]
pub(crate) fn Pager(
    base: String,
    prev: Option<i64>,
    next: Option<i64>,
    total: i64,
    shown: usize,
) -> impl IntoView {
    let prev_href = prev.map(|o| format!("{base}?offset={o}"));
    let next_href = next.map(|o| format!("{base}?offset={o}"));
    view! {
        <nav class="pager" aria-label="Pagination">
            <span class="muted">{format!("{shown} shown of {total}")}</span>
            {prev_href.map(|h| view! { <A href=h attr:class="button secondary">"← Previous"</A> })}
            {next_href.map(|h| view! { <A href=h attr:class="button secondary">"Next →"</A> })}
        </nav>
    }
}

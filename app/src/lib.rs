//! Kenning's web UI: the shell, the routes (every page lazily loaded) and the server functions.
#![recursion_limit = "256"]

mod account;
/// The REST contract, from the crate the server shares.
pub use kenning_api as api;
#[cfg(feature = "ssr")]
pub mod backend;
mod browser;
mod chat;
mod components;
mod dashboard;
mod document;
pub mod format;
#[cfg(feature = "ssr")]
pub mod markdown;
mod pages;
mod search;
pub mod server_fns;
mod sources;
mod upload;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes, A},
    path, Lazy, SsrMode,
};

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// A page title as it goes into the document. leptos_meta writes `<title>` text into the
/// server's HTML unescaped, so a space named `</title><script>…` would run as a script there:
/// on the server the text is escaped; in the browser it is set as text and must stay as is.
fn title_text(text: String) -> String {
    #[cfg(feature = "ssr")]
    {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    #[cfg(not(feature = "ssr"))]
    {
        text
    }
}

/// The application: a navigation frame around lazily loaded pages.
///
/// Routes render with `SsrMode::Async`: the server waits for a page's data and sends finished
/// HTML, so every page reads correctly before (or without) JavaScript. Our data is local and
/// fast, so waiting costs milliseconds, while out-of-order streaming would leave script-less
/// readers looking at "Loading…" placeholders.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let (is_routing, set_is_routing) = signal(false);
    // Effects run only in the browser, after hydration: a marker tests and scripts can wait for.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Title formatter=|page: String| title_text(if page.is_empty() { "Kenning".to_string() } else { format!("{page} · Kenning") })/>
        <Router set_is_routing>
            <div class="layout">
                <header class="sidebar">
                    <A href="/" attr:class="brand">
                        <span class="brand-mark" aria-hidden="true">"K"</span>
                        <span class="brand-name">"Kenning"</span>
                    </A>
                    <nav class="nav" aria-label="Main">
                        <A href="/spaces">"Spaces"</A>
                        <A href="/chat">"Chat"</A>
                        <A href="/search">"Search"</A>
                        <A href="/metrics/dashboard">"Metrics"</A>
                        <A href="/status">"Health"</A>
                        <A href="/account">"Account"</A>
                    </nav>
                    <SessionBadge/>
                    <div class="routing" aria-live="polite">
                        {move || is_routing.get().then_some("Loading…")}
                    </div>
                </header>
                <main class="content">
                    <Routes fallback=|| view! { <pages::NotFound/> }>
                        <Route path=path!("") view={Lazy::<pages::HomePage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("spaces") view={Lazy::<pages::SpacesPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("spaces/:id") view={Lazy::<pages::SpacePage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("spaces/:id/documents/:doc") view={Lazy::<document::DocumentPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("chat") view={Lazy::<chat::ChatPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("search") view={Lazy::<search::SearchPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("metrics/dashboard") view={Lazy::<dashboard::MetricsPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("status") view={Lazy::<pages::StatusPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("login") view={Lazy::<pages::LoginPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("account") view={Lazy::<account::AccountPage>::new()} ssr=SsrMode::Async/>
                        <Route path=path!("audit") view={Lazy::<account::AuditPage>::new()} ssr=SsrMode::Async/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}

/// Who is signed in, with a sign-out button; or a plain note that this is single-user mode.
#[component]
fn SessionBadge() -> impl IntoView {
    let info = Resource::new(|| (), |_| server_fns::session_info());
    view! {
        <div class="session" id="session">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(i) if i.auth == "none" => view! {
                            <p class="muted small" id="single-user">"Single-user mode: no sign-in, this machine only."</p>
                        }.into_any(),
                        Ok(api::SessionInfo { user: Some(u), .. }) => view! {
                            <p class="small" id="signed-in-as">"Signed in as "<strong>{u.email}</strong></p>
                            <form method="post" action="/api/v1/auth/logout">
                                <button class="secondary small" type="submit" id="sign-out">"Sign out"</button>
                            </form>
                        }.into_any(),
                        _ => view! { <a href="/login" id="sign-in-link">"Sign in"</a> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

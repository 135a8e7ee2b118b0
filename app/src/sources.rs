//! The sources panel of a space: folders and web pages it keeps in sync, each with its last
//! sync's outcome, a running sync's progress and a button to sync now; and a form to add one.
//! Changes go to the REST API from the browser, as uploads do.

use crate::api::{CreateSource, Source};
use crate::components::{error_text, ErrorNotice};
use crate::server_fns::list_sources;
use leptos::prelude::*;

/// The panel; `changed` is bumped when a sync ends so the documents list follows.
#[component]
pub fn SourcesPanel(space_id: Memo<String>, changed: RwSignal<u64>) -> impl IntoView {
    let refresh = RwSignal::new(0u64);
    let sources = Resource::new(
        move || (space_id.get(), refresh.get()),
        |(id, _)| list_sources(id),
    );
    let error = RwSignal::new(None::<String>);
    let was_busy = RwSignal::new(false);

    // While a sync runs, look again shortly; when it ends, refresh the documents too.
    Effect::new(move |_| {
        let busy = sources
            .get()
            .and_then(|r| r.ok())
            .is_some_and(|list| list.iter().any(|s| s.status == "syncing"));
        if busy {
            set_timeout(
                move || refresh.update(|v| *v += 1),
                std::time::Duration::from_millis(1000),
            );
        } else if was_busy.get_untracked() {
            changed.update(|v| *v += 1);
        }
        was_busy.set(busy);
    });

    let on_add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let form: leptos::web_sys::HtmlFormElement = event_target(&ev);
        let Some(req) = read_form(&form) else {
            return;
        };
        let space = space_id.get_untracked();
        leptos::task::spawn_local(async move {
            match post(&format!("/api/v1/spaces/{space}/sources"), &req).await {
                Ok(()) => {
                    form.reset();
                    error.set(None);
                    refresh.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let sync_now = move |source_id: String| {
        let space = space_id.get_untracked();
        leptos::task::spawn_local(async move {
            let url = format!("/api/v1/spaces/{space}/sources/{source_id}/sync");
            match post(&url, &serde_json::json!({})).await {
                Ok(()) => error.set(None),
                Err(e) => error.set(Some(e)),
            }
            refresh.update(|v| *v += 1);
        });
    };

    view! {
        <section class="panel" id="sources">
            <h2>"Sources"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading sources…"</p> }>
                {move || Suspend::new(async move {
                    match sources.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="muted small">"No sources yet: add a web page, a site, or a folder on the server (admins) to keep in sync."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="source-list">
                                {list.into_iter().map(|s| source_row(s, sync_now)).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            {move || error.get().map(|e| view! { <ErrorNotice message=e/> })}
            <form class="form-row" id="source-form" on:submit=on_add>
                <label>
                    <span>"Kind"</span>
                    <select name="kind">
                        <option value="url">"Web page"</option>
                        <option value="site">"Web site"</option>
                        <option value="folder">"Server folder"</option>
                    </select>
                </label>
                <label class="grow">
                    <span>"URL or folder path"</span>
                    <input type="text" name="location" required placeholder="https://docs.example.com/"/>
                </label>
                <label>
                    <span>"Every (minutes)"</span>
                    <input type="number" name="interval_minutes" min="1" max="10080" placeholder="on demand"/>
                </label>
                <label class="inline">
                    <input type="checkbox" name="watch"/>
                    " Watch the folder"
                </label>
                <button type="submit" class="secondary">"Add source"</button>
            </form>
        </section>
    }
}

fn source_row(s: Source, sync_now: impl Fn(String) + Copy + 'static) -> impl IntoView {
    let syncing = s.status == "syncing";
    let id = s.id.clone();
    let state = if syncing {
        format!(
            "syncing: {} {:.0} %",
            s.phase.clone().unwrap_or_default(),
            s.progress * 100.0
        )
    } else if let Some(e) = &s.last_error {
        format!("failed: {e}")
    } else if let Some(r) = &s.last_result {
        format!(
            "{} added, {} updated, {} unchanged, {} deleted, {} failed",
            r.added, r.updated, r.unchanged, r.deleted, r.failed
        )
    } else {
        "not synced yet".into()
    };
    let when = s.last_sync_at.map(|t| {
        format!(
            "last sync {}",
            t.chars().take(16).collect::<String>().replace('T', " ")
        )
    });
    let schedule = match (s.watch, s.interval_minutes) {
        (true, _) => "watched".to_string(),
        (false, Some(m)) => format!("every {m} min"),
        (false, None) => "on demand".into(),
    };
    view! {
        <li class="source" data-source-id=s.id.clone()>
            <span class="badge">{s.kind}</span>" "
            <span class="source-key">{s.location}</span>
            <div class="muted small">{schedule}" · "{state}{when.map(|w| format!(" · {w}"))}</div>
            <button class="small secondary" disabled=syncing on:click=move |_| sync_now(id.clone())>
                "Sync now"
            </button>
        </li>
    }
}

/// The add-source form as the API takes it.
fn read_form(form: &leptos::web_sys::HtmlFormElement) -> Option<CreateSource> {
    let field = |name: &str| field_value(form, name);
    Some(CreateSource {
        kind: field("kind")?,
        location: field("location")?,
        interval_minutes: field("interval_minutes").and_then(|m| m.trim().parse().ok()),
        watch: field("watch").map(|_| true),
        max_pages: None,
    })
}

#[cfg(feature = "hydrate")]
fn field_value(form: &web_sys::HtmlFormElement, name: &str) -> Option<String> {
    let data = web_sys::FormData::new_with_form(form).ok()?;
    data.get(name).as_string()
}

#[cfg(not(feature = "hydrate"))]
fn field_value(_form: &leptos::web_sys::HtmlFormElement, _name: &str) -> Option<String> {
    None
}

/// Posts JSON to the API; the error is the server's own message.
#[cfg(feature = "hydrate")]
async fn post<T: serde::Serialize>(url: &str, body: &T) -> Result<(), String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&json.into());
    let headers = web_sys::Headers::new().map_err(|_| "No headers.".to_string())?;
    headers
        .set("content-type", "application/json")
        .map_err(|_| "No headers.".to_string())?;
    init.set_headers(&headers);
    crate::browser::fetch(url, &init).await.map(|_| ())
}

#[cfg(not(feature = "hydrate"))]
async fn post<T: serde::Serialize>(_url: &str, _body: &T) -> Result<(), String> {
    Err("This needs the browser.".to_string())
}

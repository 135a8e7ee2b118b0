//! Uploading from the browser: files picked (one, several or a whole folder) or dropped onto the
//! space page go to the REST API one after another, so each streams straight to disk, and each
//! file's state shows as it goes, then a summary.

use crate::components::ErrorNotice;
use leptos::prelude::*;

/// Where one file of a batch stands.
#[derive(Clone, Debug, PartialEq)]
pub enum FileState {
    Waiting,
    Sending,
    /// Accepted; `true` when the space already held the same bytes.
    Done(bool),
    Failed(String),
}

/// A file the browser handed over; nothing on the server.
#[cfg(feature = "hydrate")]
pub type Picked = web_sys::File;
/// A file the browser handed over; nothing on the server.
#[cfg(not(feature = "hydrate"))]
pub type Picked = ();

/// The upload panel of a space: a form with a file picker (several files), a folder picker and a
/// drop zone; `changed` is bumped after each accepted file so the documents list follows.
#[component]
pub fn UploadPanel(
    space_id: Memo<String>,
    changed: RwSignal<u64>,
    children: Children,
) -> impl IntoView {
    let files = RwSignal::new(Vec::<(String, FileState)>::new());
    let busy = RwSignal::new(false);
    let over = RwSignal::new(false);

    let start = move |picked: Vec<Picked>| {
        if picked.is_empty() || busy.get_untracked() {
            return;
        }
        busy.set(true);
        files.set(
            picked
                .iter()
                .map(|f| (name_of(f), FileState::Waiting))
                .collect(),
        );
        let space = space_id.get_untracked();
        leptos::task::spawn_local(async move {
            for (i, file) in picked.iter().enumerate() {
                files.update(|v| v[i].1 = FileState::Sending);
                let state = match send(&space, file).await {
                    Ok(created) => {
                        changed.update(|v| *v += 1);
                        FileState::Done(!created)
                    }
                    Err(e) => FileState::Failed(e),
                };
                files.update(|v| v[i].1 = state);
            }
            busy.set(false);
        });
    };

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let form: leptos::web_sys::HtmlFormElement = event_target(&ev);
        start(picked_in(&form));
        form.reset();
    };
    let on_folder = move |ev: leptos::ev::Event| {
        let input: leptos::web_sys::HtmlInputElement = event_target(&ev);
        start(picked_from(&input));
        input.set_value("");
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        over.set(false);
        start(dropped(&ev));
    };

    view! {
        <section class="panel drop-zone" id="upload-panel" class:over=move || over.get()
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); over.set(true); }
            on:dragleave=move |_| over.set(false)
            on:drop=on_drop>
            <h2>"Upload documents"</h2>
            <form class="form-row" id="upload-form" method="post" enctype="multipart/form-data"
                action=move || format!("/api/v1/spaces/{}/documents", space_id.get())
                on:submit=on_submit>
                <label class="grow">
                    <span>"Documents (Markdown, text, HTML, PDF, DOCX, CSV, JSON) — or drop files here"</span>
                    <input type="file" name="file" required multiple accept=".md,.markdown,.txt,.html,.htm,.pdf,.docx,.csv,.json,text/*,application/pdf,application/json"/>
                </label>
                <button type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Uploading…" } else { "Upload" }}
                </button>
            </form>
            <label class="button secondary small folder-pick">
                "Pick a whole folder…"
                <input type="file" id="folder-input" class="visually-hidden" prop:webkitdirectory=true multiple on:change=on_folder/>
            </label>
            {children()}
            {move || {
                let list = files.get();
                (!list.is_empty()).then(|| view! {
                    <ul class="upload-list" id="upload-list">
                        {list.into_iter().map(|(name, state)| {
                            let (class, label) = match &state {
                                FileState::Waiting => ("muted", "waiting".to_string()),
                                FileState::Sending => ("muted", "uploading…".to_string()),
                                FileState::Done(false) => ("ok", "uploaded".to_string()),
                                FileState::Done(true) => ("ok", "already in this space".to_string()),
                                FileState::Failed(e) => ("error-text", e.clone()),
                            };
                            view! { <li><span class="name">{name}</span>" "<span class=class>{label}</span></li> }
                        }).collect_view()}
                    </ul>
                })
            }}
            {move || summary(&files.get(), busy.get())}
        </section>
    }
}

/// The batch's outcome once it is over: a status line, and the failures as an alert.
fn summary(list: &[(String, FileState)], busy: bool) -> Option<AnyView> {
    if busy || list.is_empty() {
        return None;
    }
    let failed: Vec<String> = list
        .iter()
        .filter_map(|(name, s)| match s {
            FileState::Failed(e) if list.len() == 1 => Some(e.clone()),
            FileState::Failed(e) => Some(format!("{name}: {e}")),
            _ => None,
        })
        .collect();
    let done = list
        .iter()
        .filter(|(_, s)| matches!(s, FileState::Done(_)))
        .count();
    let status = match (done, list.len()) {
        (0, _) => None,
        (1, 1) => Some(format!("Uploaded {}.", list[0].0)),
        (n, total) => Some(format!("Uploaded {n} of {total} files.")),
    };
    Some(
        view! {
            {status.map(|s| view! { <div class="notice success" role="status">{s}</div> })}
            {(!failed.is_empty()).then(|| view! { <ErrorNotice message=failed.join("\n")/> })}
        }
        .into_any(),
    )
}

#[cfg(feature = "hydrate")]
fn name_of(file: &Picked) -> String {
    let relative = js_sys::Reflect::get(file, &"webkitRelativePath".into())
        .ok()
        .and_then(|v| v.as_string())
        .filter(|p| !p.is_empty());
    relative.unwrap_or_else(|| file.name())
}

#[cfg(not(feature = "hydrate"))]
fn name_of(_file: &Picked) -> String {
    String::new()
}

#[cfg(feature = "hydrate")]
fn list_files(list: Option<web_sys::FileList>) -> Vec<Picked> {
    let Some(list) = list else {
        return Vec::new();
    };
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

#[cfg(feature = "hydrate")]
fn picked_in(form: &web_sys::HtmlFormElement) -> Vec<Picked> {
    use wasm_bindgen::JsCast;
    form.query_selector("input[name=file]")
        .ok()
        .flatten()
        .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
        .map(|input| list_files(input.files()))
        .unwrap_or_default()
}

#[cfg(feature = "hydrate")]
fn picked_from(input: &web_sys::HtmlInputElement) -> Vec<Picked> {
    list_files(input.files())
}

#[cfg(feature = "hydrate")]
fn dropped(ev: &web_sys::DragEvent) -> Vec<Picked> {
    list_files(ev.data_transfer().and_then(|d| d.files()))
}

#[cfg(not(feature = "hydrate"))]
fn picked_in(_form: &leptos::web_sys::HtmlFormElement) -> Vec<Picked> {
    Vec::new()
}

#[cfg(not(feature = "hydrate"))]
fn picked_from(_input: &leptos::web_sys::HtmlInputElement) -> Vec<Picked> {
    Vec::new()
}

#[cfg(not(feature = "hydrate"))]
fn dropped(_ev: &leptos::ev::DragEvent) -> Vec<Picked> {
    Vec::new()
}

/// Posts one file; a file from a picked folder is keyed by its path in that folder, so picking
/// the folder again replaces changed files instead of adding copies. `Ok(true)` when it is new.
#[cfg(feature = "hydrate")]
async fn send(space_id: &str, file: &Picked) -> Result<bool, String> {
    let data = web_sys::FormData::new().map_err(|_| "Could not build the upload.".to_string())?;
    data.append_with_blob_and_filename("file", file, &file.name())
        .map_err(|_| "Could not read the file.".to_string())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&data);
    let name = name_of(file);
    let mut url = format!("/api/v1/spaces/{space_id}/documents");
    if name != file.name() {
        url.push_str("?key=");
        url.push_str(&String::from(js_sys::encode_uri_component(&name)));
    }
    let status = crate::browser::fetch(&url, &init).await?;
    Ok(status == 202)
}

#[cfg(not(feature = "hydrate"))]
async fn send(_space_id: &str, _file: &Picked) -> Result<bool, String> {
    Err("Uploads need the browser.".to_string())
}

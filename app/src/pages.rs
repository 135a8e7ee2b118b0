//! Every page of the UI. Each one is a lazy route: its view code is split out of the main WASM
//! bundle and fetched the first time the page is visited. A page's `data()` stays in the main
//! module, so pages create their resources in their views: the server calls and deserialisers
//! of every page would otherwise all load with the home page. The cost is one round trip after
//! the chunk arrives on client-side navigation; a first load hydrates from the server's data.

use crate::api::{Document, Page, Space};
use crate::components::{error_text, offset_from_query, Badge, ErrorNotice, PageHeader, Pager};
use crate::format::human_bytes;
use crate::server_fns::*;
use crate::sources::SourcesPanel;
use crate::upload::UploadPanel;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::A,
    hooks::{use_navigate, use_params_map, use_query_map},
    lazy_route, LazyRoute,
};

/// The landing page: what is here and where to go next.
pub struct HomePage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct HomeData {
    spaces: Resource<Result<Page<Space>, ServerFnError>>,
}

impl HomeData {
    fn load() -> Self {
        Self {
            spaces: Resource::new(|| (), |_| list_spaces(0)),
        }
    }
}

#[lazy_route]
impl LazyRoute for HomePage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = HomeData::load();
        let spaces = this.spaces;
        view! {
            <Title text=""/>
            <section class="hero">
                <h1>"Answers from your team's documents"</h1>
                <p class="subtitle">
                    "Put documents into knowledge spaces, ask questions, and get answers streamed back with citations to the exact passages."
                </p>
                <div class="hero-actions">
                    <A href="/spaces" attr:class="button">"Open spaces"</A>
                    <A href="/status" attr:class="button secondary">"System health"</A>
                </div>
            </section>
            <Suspense fallback=|| view! { <p class="muted">"Loading spaces…"</p> }>
                {move || Suspend::new(async move {
                    match spaces.await {
                        Ok(page) if page.items.is_empty() => view! {
                            <div class="empty">
                                <h2>"No spaces yet"</h2>
                                <p>"A space holds the documents one team asks about. Create the first one to get started."</p>
                                <A href="/spaces" attr:class="button">"Create a space"</A>
                            </div>
                        }.into_any(),
                        Ok(page) => {
                            let docs: i64 = page.items.iter().map(|s| s.document_count).sum();
                            view! {
                                <div class="stats">
                                    <div class="stat"><span class="stat-value">{page.total}</span><span class="stat-label">"spaces"</span></div>
                                    <div class="stat"><span class="stat-value">{docs}</span><span class="stat-label">"documents in the latest spaces"</span></div>
                                </div>
                                <h2>"Recent spaces"</h2>
                                <div class="cards">
                                    {page.items.into_iter().take(6).map(|s| view! { <SpaceCard space=s/> }).collect_view()}
                                </div>
                            }.into_any()
                        }
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

#[component]
fn SpaceCard(space: Space) -> impl IntoView {
    let href = format!("/spaces/{}", space.id);
    let docs = match space.document_count {
        1 => "1 document".to_string(),
        n => format!("{n} documents"),
    };
    view! {
        <A href=href attr:class="card space-card">
            <h3>{space.name}</h3>
            <p class="muted">{if space.description.is_empty() { "No description".to_string() } else { space.description }}</p>
            <span class="card-meta">{docs}</span>
        </A>
    }
}

/// All spaces, with the form to create one.
pub struct SpacesPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct SpacesData {
    create: ServerAction<CreateSpace>,
    spaces: Resource<Result<Page<Space>, ServerFnError>>,
}

impl SpacesData {
    fn load() -> Self {
        let offset = offset_from_query();
        let create = ServerAction::<CreateSpace>::new();
        let spaces = Resource::new(
            move || (offset.get(), create.version().get()),
            |(offset, _)| list_spaces(offset),
        );
        Self { create, spaces }
    }
}

#[lazy_route]
impl LazyRoute for SpacesPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = SpacesData::load();
        let SpacesData { create, spaces } = this;
        let create_error = move || {
            create
                .value()
                .get()
                .and_then(|r| r.err())
                .map(|e| view! { <ErrorNotice message=error_text(&e)/> })
        };
        view! {
            <Title text="Spaces"/>
            <PageHeader title="Spaces" subtitle="Each space is a separate knowledge base with its own documents and answers."/>
            <section class="panel">
                <h2>"New space"</h2>
                <ActionForm action=create attr:class="form-row" attr:id="create-space">
                    <label>
                        <span>"Name"</span>
                        <input type="text" name="name" required maxlength="100" placeholder="e.g. Engineering handbook"/>
                    </label>
                    <label class="grow">
                        <span>"Description"</span>
                        <input type="text" name="description" maxlength="500" placeholder="What is in it, who asks about it"/>
                    </label>
                    <button type="submit" disabled=move || create.pending().get()>"Create space"</button>
                </ActionForm>
                {create_error}
            </section>
            <Suspense fallback=|| view! { <p class="muted">"Loading spaces…"</p> }>
                {move || Suspend::new(async move {
                    match spaces.await {
                        Ok(page) if page.items.is_empty() && page.offset == 0 => view! {
                            <div class="empty"><p>"No spaces yet. Name your first one above."</p></div>
                        }.into_any(),
                        Ok(page) => {
                            let (prev, next, total, shown) = (page.prev_offset(), page.next_offset(), page.total, page.items.len());
                            view! {
                                <div class="cards" id="space-list">
                                    {page.items.into_iter().map(|s| view! { <SpaceCard space=s/> }).collect_view()}
                                </div>
                                <Pager base="/spaces".to_string() prev next total shown/>
                            }.into_any()
                        }
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

/// One space: its documents, upload, rename and delete.
pub struct SpacePage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct SpaceData {
    id: Memo<String>,
    changed: RwSignal<u64>,
    space: Resource<Result<Space, ServerFnError>>,
    documents: Resource<Result<Page<Document>, ServerFnError>>,
    limit: Resource<Result<u64, ServerFnError>>,
}

impl SpaceData {
    fn load() -> Self {
        let params = use_params_map();
        let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
        let offset = offset_from_query();
        let changed = RwSignal::new(0u64);
        let space = Resource::new(move || (id.get(), changed.get()), |(id, _)| get_space(id));
        let documents = Resource::new(
            move || (id.get(), offset.get(), changed.get()),
            |(id, offset, _)| list_documents(id, offset),
        );
        let limit = Resource::new(|| (), |_| max_upload_bytes());
        Self {
            id,
            changed,
            space,
            documents,
            limit,
        }
    }
}

#[lazy_route]
impl LazyRoute for SpacePage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = SpaceData::load();
        let SpaceData {
            id,
            changed,
            space,
            documents,
            limit,
        } = this;
        let rename = ServerAction::<RenameSpace>::new();
        let delete_space_action = ServerAction::<DeleteSpace>::new();
        let delete_doc = ServerAction::<DeleteDocument>::new();

        Effect::new(move |_| {
            if rename.version().get() > 0 || delete_doc.version().get() > 0 {
                changed.update(|v| *v += 1);
            }
        });
        let navigate = use_navigate();
        Effect::new(move |_| {
            if let Some(Ok(())) = delete_space_action.value().get() {
                navigate("/spaces", Default::default());
            }
        });

        // While any document is still being ingested, look again shortly: progress is live.
        Effect::new(move |_| {
            let busy = documents.get().and_then(|r| r.ok()).is_some_and(|page| {
                page.items
                    .iter()
                    .any(|d| d.status == "pending" || d.status == "processing")
            });
            if busy {
                set_timeout(
                    move || changed.update(|v| *v += 1),
                    std::time::Duration::from_millis(1000),
                );
            }
        });

        let action_error = move || {
            let errors = [
                rename.value().get().and_then(|r| r.err()),
                delete_doc.value().get().and_then(|r| r.err()),
                delete_space_action.value().get().and_then(|r| r.err()),
            ];
            errors
                .into_iter()
                .flatten()
                .next()
                .map(|e| view! { <ErrorNotice message=error_text(&e)/> })
        };

        view! {
            <Suspense fallback=|| view! { <p class="muted">"Loading space…"</p> }>
                {move || Suspend::new(async move {
                    match space.await {
                        Err(e) => view! {
                            <Title text="Space not found"/>
                            <PageHeader title="Space not found"/>
                            <ErrorNotice message=error_text(&e)/>
                            <A href="/spaces" attr:class="button secondary">"Back to spaces"</A>
                        }.into_any(),
                        Ok(s) => view! {
                            <Title text=s.name.clone()/>
                            <p class="crumbs"><A href="/spaces">"Spaces"</A>" / "{s.name.clone()}</p>
                            <PageHeader title=s.name.clone() subtitle=s.description.clone()>
                                <A href=format!("/chat?space={}", s.id) attr:class="button">"Ask this space"</A>
                                <A href=format!("/search?space={}", s.id) attr:class="button secondary">"Search this space"</A>
                            </PageHeader>
                        }.into_any(),
                    }
                })}
            </Suspense>
            {action_error}
            <UploadPanel space_id=id changed=changed>
                <p class="muted small">
                    <Suspense fallback=|| ()>
                        {move || Suspend::new(async move {
                            limit.await.ok().map(|b| format!("Up to {} per file.", human_bytes(b as i64)))
                        })}
                    </Suspense>
                </p>
            </UploadPanel>
            <SourcesPanel space_id=id changed=changed/>
            <section class="panel">
                <h2>"Documents"</h2>
                <Transition fallback=|| view! { <p class="muted">"Loading documents…"</p> }>
                    {move || Suspend::new(async move {
                        match documents.await {
                            Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                            Ok(page) if page.items.is_empty() && page.offset == 0 => view! {
                                <p class="empty" id="no-documents">"No documents yet. Upload a Markdown or text file above."</p>
                            }.into_any(),
                            Ok(page) => {
                                let (prev, next, total, shown) = (page.prev_offset(), page.next_offset(), page.total, page.items.len());
                                let base = format!("/spaces/{}", id.get_untracked());
                                view! {
                                    <div class="table-wrap">
                                    <table class="table" id="documents">
                                        <thead><tr><th>"Name"</th><th>"Size"</th><th>"Type"</th><th>"Status"</th><th>"Passages"</th><th>"Uploaded"</th><th></th></tr></thead>
                                        <tbody>
                                            {page.items.into_iter().map(|d| {
                                                let (space_id, document_id) = (d.space_id.clone(), d.id.clone());
                                                let label = format!("Delete {}", d.filename);
                                                let status_doc = d.clone();
                                                let passages = (d.status == "ready").then_some(d.chunk_count);
                                                view! {
                                                    <tr data-document-id=d.id.clone()>
                                                        <td class="filename">{d.filename.clone()}
                                                            {(d.version > 1).then(|| view! { " "<span class="badge version" title="A newer upload or sync of this key replaced the earlier version">{format!("v{}", d.version)}</span> })}
                                                            {d.source_key.clone().filter(|k| *k != d.filename).map(|k| view! { <div class="muted small source-key">{k}</div> })}
                                                        </td>
                                                        <td>{human_bytes(d.size_bytes)}</td>
                                                        <td class="muted">{d.mime}</td>
                                                        <td class="status-cell"><DocumentStatus doc=status_doc/></td>
                                                        <td class="muted">{passages}</td>
                                                        <td class="muted">{d.created_at.chars().take(16).collect::<String>().replace('T', " ")}</td>
                                                        <td class="actions">
                                                            <button class="danger small" aria-label=label
                                                                on:click=move |_| { delete_doc.dispatch(DeleteDocument { space_id: space_id.clone(), document_id: document_id.clone() }); }>
                                                                "Delete"
                                                            </button>
                                                        </td>
                                                    </tr>
                                                }
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                    </div>
                                    <Pager base prev next total shown/>
                                }.into_any()
                            }
                        }
                    })}
                </Transition>
            </section>
            <crate::account::MembersPanel space_id=id/>
            <section class="panel">
                <h2>"Settings"</h2>
                <ActionForm action=rename attr:class="form-row" attr:id="rename-space">
                    <input type="hidden" name="id" value=move || id.get()/>
                    <label class="grow">
                        <span>"Rename space"</span>
                        <input type="text" name="name" required maxlength="100"/>
                    </label>
                    <button type="submit" class="secondary">"Rename"</button>
                </ActionForm>
                <div class="danger-zone">
                    <div>
                        <strong>"Delete this space"</strong>
                        <p class="muted small">"Removes the space and every document in it. This cannot be undone."</p>
                    </div>
                    <ActionForm action=delete_space_action>
                        <input type="hidden" name="id" value=move || id.get()/>
                        <button type="submit" class="danger">"Delete space"</button>
                    </ActionForm>
                </div>
            </section>
        }
        .into_any()
    }
}

/// A document's status, with the phase and progress of its ingestion while it runs and the
/// reason when it failed.
#[component]
fn DocumentStatus(doc: Document) -> impl IntoView {
    let detail = match doc.status.as_str() {
        "pending" | "processing" => {
            let phase = doc.phase.clone().unwrap_or_else(|| "queued".into());
            Some(format!("{phase} · {:.0}%", doc.progress * 100.0))
        }
        _ => None,
    };
    let pct = format!("width: {:.0}%", doc.progress * 100.0);
    let busy = detail.is_some();
    view! {
        <Badge status=doc.status.clone()/>
        {detail.map(|d| view! { <span class="muted small phase">{d}</span> })}
        {busy.then(|| view! { <div class="progress" aria-hidden="true"><div class="progress-bar" style=pct></div></div> })}
        {doc.error.filter(|_| doc.status == "failed").map(|e| view! { <div class="error-text small">{e}</div> })}
    }
}

/// Health of every dependency, the same data as `/health`.
pub struct StatusPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct StatusData {
    report: Resource<Result<crate::api::HealthReport, ServerFnError>>,
}

impl StatusData {
    fn load() -> Self {
        Self {
            report: Resource::new(|| (), |_| get_health()),
        }
    }
}

#[lazy_route]
impl LazyRoute for StatusPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = StatusData::load();
        let report = this.report;
        view! {
            <Title text="Health"/>
            <PageHeader title="Health" subtitle="Each dependency, probed now. The same report is served as JSON at /health.">
                <button class="secondary" id="refresh-health" on:click=move |_| report.refetch()>"Refresh"</button>
            </PageHeader>
            <Suspense fallback=|| view! { <p class="muted">"Probing…"</p> }>
                {move || Suspend::new(async move {
                    match report.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(r) => view! {
                            <div class="stats">
                                <div class="stat">
                                    <span class=format!("stat-value status-{}", r.status.as_str()) id="overall-status">{r.status.as_str()}</span>
                                    <span class="stat-label">"overall"</span>
                                </div>
                                <div class="stat"><span class="stat-value">{r.version.clone()}</span><span class="stat-label">"version"</span></div>
                                <div class="stat"><span class="stat-value">{format_uptime(r.uptime_seconds)}</span><span class="stat-label">"uptime"</span></div>
                            </div>
                            <div class="cards">
                                {r.checks.into_iter().map(|c| view! {
                                    <div class="card">
                                        <h3>{c.name}</h3>
                                        <p><Badge status=c.status.as_str()/>" "<span class="muted">{c.kind}</span></p>
                                        <p class="card-meta">{format!("{:.1} ms", c.latency_ms)}</p>
                                        {c.message.map(|m| view! { <p class="muted small">{m}</p> })}
                                    </div>
                                }).collect_view()}
                            </div>
                        }.into_any(),
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

fn format_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Shown for any path that matches no route.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <PageHeader title="Page not found" subtitle="There is nothing at this address."/>
        <A href="/" attr:class="button secondary">"Go home"</A>
    }
}

/// Sign-in, or the first (admin) account while there is none. A plain HTML form posting to the
/// API, so it works before the WASM has loaded; errors come back in the `error` query.
pub struct LoginPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct LoginData {
    info: Resource<Result<crate::api::SessionInfo, ServerFnError>>,
}

impl LoginData {
    fn load() -> Self {
        Self {
            info: Resource::new(|| (), |_| session_info()),
        }
    }
}

#[lazy_route]
impl LazyRoute for LoginPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = LoginData::load();
        let info = this.info;
        let query = use_query_map();
        let next = move || query.read().get("next").unwrap_or_else(|| "/".to_string());
        let error = move || query.read().get("error");
        view! {
            <Title text="Sign in"/>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match info.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(i) if i.auth == "none" => view! {
                            <PageHeader title="No sign-in needed" subtitle="Kenning runs in single-user mode: it only listens on this machine, and whoever uses it here may do everything."/>
                            <A href="/" attr:class="button secondary">"Go home"</A>
                        }.into_any(),
                        Ok(i) => {
                            let setup = i.needs_setup;
                            let (title, subtitle, action, button) = if setup {
                                ("Create the admin account", "No account exists yet. The first one manages the others and can reach every space.", "/api/v1/auth/setup", "Create account")
                            } else {
                                ("Sign in", "Sign in to reach your spaces.", "/api/v1/auth/login", "Sign in")
                            };
                            view! {
                                <PageHeader title=title subtitle=subtitle/>
                                {error().map(|e| view! { <ErrorNotice message=e/> })}
                                <form class="form login-form" method="post" action=action id="login-form">
                                    <label>"Email"
                                        <input type="email" name="email" required autocomplete="username" id="login-email"/>
                                    </label>
                                    <label>"Password"
                                        <input type="password" name="password" required
                                            minlength=if setup { "8" } else { "1" }
                                            autocomplete=if setup { "new-password" } else { "current-password" }
                                            id="login-password"/>
                                    </label>
                                    {setup.then(|| view! {
                                        <label>"Setup token"
                                            <input type="password" name="setup_token" autocomplete="off" id="login-setup-token"/>
                                        </label>
                                        <p class="muted">"From another machine: the token Kenning printed in its log at start. Not needed on the server's own machine."</p>
                                    })}
                                    <input type="hidden" name="next" value=next()/>
                                    <button type="submit" id="login-submit">{button}</button>
                                </form>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

//! The document page: a document's passages in order, the cited one highlighted and scrolled to.

use crate::components::{error_text, Badge, ErrorNotice, PageHeader};
use crate::server_fns::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::A,
    hooks::{use_params_map, use_query_map},
    lazy_route, LazyRoute,
};

/// A document's passages, with the cited one highlighted: where citations land.
pub struct DocumentPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct DocumentData {
    ids: Memo<(String, String)>,
    offset: Memo<i64>,
    chunk: Memo<String>,
    document: Resource<Result<crate::api::Document, ServerFnError>>,
    chunks: Resource<Result<crate::api::Page<crate::api::Chunk>, ServerFnError>>,
}

impl DocumentData {
    fn load() -> Self {
        let params = use_params_map();
        let query = use_query_map();
        let ids = Memo::new(move |_| {
            let p = params.read();
            (
                p.get("id").unwrap_or_default(),
                p.get("doc").unwrap_or_default(),
            )
        });
        let offset = crate::components::offset_from_query();
        let chunk = Memo::new(move |_| query.read().get("chunk").unwrap_or_default());
        let document = Resource::new(move || ids.get(), |(s, d)| get_document(s, d));
        let chunks = Resource::new(
            move || (ids.get(), offset.get()),
            |((s, d), o)| list_chunks(s, d, o),
        );
        Self {
            ids,
            offset,
            chunk,
            document,
            chunks,
        }
    }
}

#[lazy_route]
impl LazyRoute for DocumentPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = DocumentData::load();
        let DocumentData {
            ids,
            offset,
            chunk,
            document,
            chunks,
        } = this;
        // After client-side navigation the browser does not scroll to the anchor by itself.
        Effect::new(move |_| {
            let id = chunk.get();
            if !id.is_empty() && chunks.get().is_some() {
                if let Some(el) =
                    leptos::prelude::document().get_element_by_id(&format!("chunk-{id}"))
                {
                    el.scroll_into_view();
                }
            }
        });
        view! {
            <Suspense fallback=|| view! { <p class="muted">"Loading document…"</p> }>
                {move || Suspend::new(async move {
                    let (space_id, doc_id) = ids.get_untracked();
                    let doc = match document.await {
                        Ok(d) => d,
                        Err(e) => return view! {
                            <Title text="Document not found"/>
                            <PageHeader title="Document not found"/>
                            <ErrorNotice message=error_text(&e)/>
                        }.into_any(),
                    };
                    let cited = chunk.get_untracked();
                    let passages = chunks.await;
                    let back = format!("/spaces/{space_id}");
                    let subtitle = format!("{} passages · {}", doc.chunk_count, crate::format::human_bytes(doc.size_bytes));
                    view! {
                        <Title text=doc.filename.clone()/>
                        <PageHeader title=doc.filename.clone() subtitle=subtitle>
                            <A href=back attr:class="button secondary">"← Space"</A>
                        </PageHeader>
                        <Badge status=doc.status.clone()/>
                        {match passages {
                            Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                            Ok(page) => {
                                let base = format!("/spaces/{space_id}/documents/{doc_id}");
                                let prev = page.prev_offset().map(|o| format!("{base}?offset={o}"));
                                let next = page.next_offset().map(|o| format!("{base}?offset={o}"));
                                let shown = format!("Passages {}–{} of {}", page.offset + 1, page.offset + page.items.len() as i64, page.total);
                                view! {
                                    <ol class="passages" start=(offset.get_untracked() + 1).to_string()>
                                        {page.items.into_iter().map(|c| {
                                            let class = if c.id == cited { "passage card cited" } else { "passage card" };
                                            let anchor = format!("chunk-{}", c.id);
                                            let where_ = format!("characters {}–{}", c.char_start, c.char_end);
                                            view! {
                                                <li id=anchor class=class>
                                                    {(!c.heading_path.is_empty()).then(|| view! { <p class="muted small">{c.heading_path.clone()}</p> })}
                                                    <p class="passage-text">{c.text}</p>
                                                    <p class="muted small">{where_}</p>
                                                </li>
                                            }
                                        }).collect_view()}
                                    </ol>
                                    <nav class="pager" aria-label="Pagination">
                                        <span class="muted">{shown}</span>
                                        {prev.map(|h| view! { <A href=h attr:class="button secondary">"← Previous"</A> })}
                                        {next.map(|h| view! { <A href=h attr:class="button secondary">"Next →"</A> })}
                                    </nav>
                                }.into_any()
                            }
                        }}
                    }.into_any()
                })}
            </Suspense>
        }
        .into_any()
    }
}

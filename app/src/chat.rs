//! The chat page (answers streamed token by token over Server-Sent Events, with citations that
//! open the cited passage) and the document page those citations land on.

use crate::api::{Citation, DoneEvent, ErrorDetail, Message, SourcesEvent, TokenEvent};
use crate::components::{error_text, ErrorNotice, PageHeader};
use crate::format::passage_href;
use crate::server_fns::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, hooks::use_query_map, lazy_route, LazyRoute};

/// Renders streaming answer text with each `[n]` that names a source turned into a link to it;
/// a finished answer comes with the server's HTML instead.
fn cited_text(text: &str, sources: &[Citation], space_id: &str) -> Vec<AnyView> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        let closes = !digits.is_empty() && after[digits.len()..].starts_with(']');
        let source = closes
            .then(|| digits.parse::<usize>().ok())
            .flatten()
            .and_then(|n| sources.iter().find(|s| s.n == n));
        match source {
            Some(s) => {
                out.push(rest[..open].to_string().into_any());
                let href = passage_href(space_id, s);
                let title = format!("{} — {}", s.filename, s.heading_path);
                out.push(
                    view! { <a class="cite" href=href title=title>{format!("[{}]", s.n)}</a> }
                        .into_any(),
                );
                rest = &after[digits.len() + 1..];
            }
            None => {
                out.push(rest[..open + 1].to_string().into_any());
                rest = after;
            }
        }
    }
    out.push(rest.to_string().into_any());
    out
}

/// An answer's text: the server's rendering when there is one, else the plain text streaming in.
fn answer_body(html: Option<String>, text: &str, sources: &[Citation], space_id: &str) -> AnyView {
    match html {
        Some(html) => view! { <div class="answer-text rendered" inner_html=html></div> }.into_any(),
        None => {
            view! { <div class="answer-text plain">{cited_text(text, sources, space_id)}</div> }
                .into_any()
        }
    }
}

/// The numbered sources under an answer.
fn source_list(sources: &[Citation], space_id: &str) -> impl IntoView {
    let items = sources
        .iter()
        .map(|s| {
            let href = passage_href(space_id, s);
            let heading = (!s.heading_path.is_empty()).then(|| format!(" › {}", s.heading_path));
            view! {
                <li>
                    <a href=href class="source-link">
                        <span class="source-n">{s.n}</span>
                        <strong>{s.filename.clone()}</strong>
                        <span class="muted">{heading}</span>
                    </a>
                </li>
            }
        })
        .collect_view();
    view! { <ol class="sources">{items}</ol> }
}

/// A question and its answer as the page shows it, while streaming or after.
#[derive(Clone, Debug, Default, PartialEq)]
struct Turn {
    question: String,
    answer: String,
    sources: Vec<Citation>,
    notice: Option<String>,
    state: TurnState,
    done: Option<DoneEvent>,
}

#[derive(Clone, Debug, Default, PartialEq)]
enum TurnState {
    #[default]
    Waiting,
    Streaming,
    Done,
    Stopped,
    Failed(String),
}

/// The chat page: pick a space, ask, watch the answer stream in.
pub struct ChatPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct ChatData {
    space: Memo<String>,
    conversation: Memo<String>,
    spaces: Resource<Result<crate::api::Page<crate::api::Space>, ServerFnError>>,
    conversations:
        Resource<Option<Result<crate::api::Page<crate::api::Conversation>, ServerFnError>>>,
    history: Resource<Option<Result<crate::api::Page<Message>, ServerFnError>>>,
}

impl ChatData {
    fn load() -> Self {
        let query = use_query_map();
        let space = Memo::new(move |_| query.read().get("space").unwrap_or_default());
        let conversation = Memo::new(move |_| query.read().get("c").unwrap_or_default());
        let spaces = Resource::new(|| (), |_| list_spaces(0));
        let conversations = Resource::new(
            move || space.get(),
            |s| async move {
                if s.is_empty() {
                    None
                } else {
                    Some(list_conversations(s).await)
                }
            },
        );
        let history = Resource::new(
            move || (space.get(), conversation.get()),
            |(s, c)| async move {
                if s.is_empty() || c.is_empty() {
                    None
                } else {
                    Some(list_messages(s, c).await)
                }
            },
        );
        Self {
            space,
            conversation,
            spaces,
            conversations,
            history,
        }
    }
}

#[lazy_route]
impl LazyRoute for ChatPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = ChatData::load();
        let ChatData {
            space,
            conversation,
            spaces,
            conversations,
            history,
        } = this;
        let turns = RwSignal::new(Vec::<Turn>::new());
        // The conversation the next question continues; set by the first answer of a new one.
        let current = RwSignal::new(conversation.get_untracked());
        let busy = Memo::new(move |_| {
            turns.with(|t| {
                t.last()
                    .is_some_and(|t| matches!(t.state, TurnState::Waiting | TurnState::Streaming))
            })
        });
        let input = NodeRef::<leptos::html::Textarea>::new();
        let live = stream::cell();

        let ask = move |question: String, regenerate: bool| {
            let question = question.trim().to_string();
            if question.is_empty() || busy.get_untracked() {
                return;
            }
            turns.update(|t| {
                t.push(Turn {
                    question: question.clone(),
                    ..Turn::default()
                })
            });
            let url = stream::chat_url(
                &space.get_untracked(),
                &question,
                &current.get_untracked(),
                regenerate,
            );
            let on_event = move |name: &str, data: Option<String>| {
                let data = data.unwrap_or_default();
                let mut finished = false;
                turns.update(|t| {
                    let Some(turn) = t.last_mut() else { return };
                    match name {
                        "sources" => {
                            if let Ok(s) = serde_json::from_str::<SourcesEvent>(&data) {
                                turn.sources = s.sources;
                                turn.notice = s.notice;
                                turn.state = TurnState::Streaming;
                                if current.get_untracked() != s.conversation_id {
                                    current.set(s.conversation_id.clone());
                                    stream::remember_conversation(
                                        &space.get_untracked(),
                                        &s.conversation_id,
                                    );
                                }
                            }
                        }
                        "token" => {
                            if let Ok(tok) = serde_json::from_str::<TokenEvent>(&data) {
                                turn.answer.push_str(&tok.text);
                            }
                        }
                        "done" => {
                            if let Ok(d) = serde_json::from_str::<DoneEvent>(&data) {
                                if let Some(n) = d.notice.clone() {
                                    turn.notice = Some(n);
                                }
                                turn.done = Some(d);
                            }
                            turn.state = TurnState::Done;
                            finished = true;
                        }
                        _ => {
                            // A server `error` event carries a message; a bare one is the
                            // connection dropping.
                            let message = serde_json::from_str::<ErrorDetail>(&data)
                                .map(|e| e.message)
                                .unwrap_or_else(|_| {
                                    "The connection to the server was lost.".into()
                                });
                            if matches!(turn.state, TurnState::Waiting | TurnState::Streaming) {
                                turn.state = TurnState::Failed(message);
                            }
                            finished = true;
                        }
                    }
                });
                if finished {
                    // Closing stops the browser from reconnecting (and asking again).
                    live.with_value(|l| {
                        if let Some(l) = l {
                            l.close()
                        }
                    });
                    conversations.refetch();
                }
            };
            match stream::open(&url, on_event) {
                Ok(handle) => live.set_value(Some(handle)),
                Err(e) => turns.update(|t| {
                    if let Some(turn) = t.last_mut() {
                        turn.state = TurnState::Failed(e);
                    }
                }),
            }
        };

        let send = move || {
            if let Some(el) = input.get() {
                let q = el.value();
                el.set_value("");
                ask(q, false);
            }
        };
        let on_submit = move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            send();
        };
        let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
            // Enter sends, Shift+Enter starts a new line.
            if ev.key() == "Enter" && !ev.shift_key() {
                ev.prevent_default();
                send();
            }
        };
        let stop = move |_| {
            live.with_value(|l| {
                if let Some(l) = l {
                    l.close()
                }
            });
            turns.update(|t| {
                if let Some(turn) = t.last_mut() {
                    if matches!(turn.state, TurnState::Waiting | TurnState::Streaming) {
                        turn.state = TurnState::Stopped;
                    }
                }
            });
        };
        let regenerate = move |_| {
            let last = turns.with_untracked(|t| t.last().map(|t| t.question.clone()));
            if let Some(q) = last {
                ask(q, true);
            }
        };

        let space_picker = move || {
            Suspend::new(async move {
                let selected = space.get_untracked();
                let items = spaces.await.map(|p| p.items).unwrap_or_default();
                if items.is_empty() {
                    return view! {
                        <p class="muted">"No spaces yet. "<A href="/spaces">"Create one"</A>" and add documents first."</p>
                    }
                    .into_any();
                }
                view! {
                    <form method="get" action="/chat" class="stack" id="space-form">
                        <label>
                            <span>"Space"</span>
                            <select name="space" onchange="this.form.submit()">
                                <option value="" selected=selected.is_empty() disabled>"Choose a space…"</option>
                                {items.into_iter().map(|s| {
                                    let is = s.id == selected;
                                    view! { <option value=s.id.clone() selected=is>{s.name}</option> }
                                }).collect_view()}
                            </select>
                        </label>
                        <noscript><button type="submit" class="secondary">"Open"</button></noscript>
                    </form>
                }
                .into_any()
            })
        };

        let conversation_list = move || {
            Suspend::new(async move {
                let s = space.get_untracked();
                match conversations.await {
                    None => ().into_any(),
                    Some(Err(e)) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                    Some(Ok(page)) => {
                        let active = current.get_untracked();
                        view! {
                            <a href=format!("/chat?space={s}") class="button secondary new-chat" rel="external">"+ New conversation"</a>
                            <ul class="conversations" id="conversations">
                                {page.items.into_iter().map(|c| {
                                    let class = if c.id == active { "active" } else { "" };
                                    let href = format!("/chat?space={}&c={}", c.space_id, c.id);
                                    let title = if c.title.is_empty() { "Untitled".to_string() } else { c.title };
                                    view! { <li class=class><a href=href rel="external">{title}</a></li> }
                                }).collect_view()}
                            </ul>
                        }
                        .into_any()
                    }
                }
            })
        };

        let past = move || {
            Suspend::new(async move {
                let s = space.get_untracked();
                match history.await {
                    None => ().into_any(),
                    Some(Err(e)) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                    Some(Ok(page)) => page
                        .items
                        .into_iter()
                        .map(|m| {
                            if m.role == "user" {
                                view! { <li class="turn question">{m.content}</li> }.into_any()
                            } else {
                                let body = answer_body(m.html, &m.content, &m.citations, &s);
                                let generator = m.generator.unwrap_or_default();
                                view! {
                                    <li class="turn answer">
                                        {body}
                                        {(!m.citations.is_empty()).then(|| source_list(&m.citations, &s))}
                                        <p class="muted small">{format!("Answered by {generator}")}</p>
                                    </li>
                                }
                                .into_any()
                            }
                        })
                        .collect_view()
                        .into_any(),
                }
            })
        };

        let live_turns = move || {
            let s = space.get();
            turns
                .get()
                .into_iter()
                .map(|t| {
                    let html = t.done.as_ref().and_then(|d| d.html.clone());
                    let body = answer_body(html, &t.answer, &t.sources, &s);
                    let status = match &t.state {
                        TurnState::Waiting => Some(view! { <p class="muted small typing">"Finding sources…"</p> }.into_any()),
                        TurnState::Streaming if t.answer.is_empty() => Some(view! { <p class="muted small typing">"Thinking…"</p> }.into_any()),
                        TurnState::Streaming => None,
                        TurnState::Stopped => Some(view! { <p class="muted small">"Stopped."</p> }.into_any()),
                        TurnState::Failed(m) => Some(view! { <ErrorNotice message=m.clone()/> }.into_any()),
                        TurnState::Done => t.done.as_ref().map(|d| {
                            let first = d.timings.first_token_ms.map(|f| format!(", first token after {:.0} ms", f)).unwrap_or_default();
                            let line = format!(
                                "Answered by {}{} in {:.1} s{}",
                                d.generator,
                                if d.cached { " (from cache)" } else { "" },
                                d.timings.total_ms / 1000.0,
                                first,
                            );
                            view! { <p class="muted small answer-meta">{line}</p> }.into_any()
                        }),
                    };
                    let copy_text = t.answer.clone();
                    let finished = t.state == TurnState::Done;
                    view! {
                        <li class="turn question">{t.question.clone()}</li>
                        <li class="turn answer live" aria-live="polite">
                            {t.notice.clone().map(|n| view! { <div class="notice warn" role="status">{n}</div> })}
                            {body}
                            {(!t.sources.is_empty()).then(|| source_list(&t.sources, &s))}
                            {status}
                            {finished.then(|| view! {
                                <button type="button" class="link small copy" on:click=move |_| stream::copy(&copy_text)>"Copy"</button>
                            })}
                        </li>
                    }
                })
                .collect_view()
        };

        view! {
            <Title text="Chat"/>
            <PageHeader title="Chat" subtitle="Ask a space a question; every answer cites the passages it comes from."/>
            <div class="chat-layout">
                <aside class="panel chat-side">
                    <Suspense fallback=|| view! { <p class="muted">"Loading spaces…"</p> }>{space_picker}</Suspense>
                    <Suspense fallback=|| ()>{conversation_list}</Suspense>
                </aside>
                <section class="chat-main">
                    <ol class="messages" id="messages">
                        <Suspense fallback=|| view! { <li class="muted">"Loading the conversation…"</li> }>{past}</Suspense>
                        {live_turns}
                    </ol>
                    {move || {
                        if space.get().is_empty() {
                            view! { <p class="muted">"Choose a space to ask it something."</p> }.into_any()
                        } else {
                            view! {
                                <form class="composer panel" id="ask-form" on:submit=on_submit>
                                    <textarea node_ref=input name="question" rows="2" maxlength="4000" required
                                        placeholder="Ask a question about this space's documents…"
                                        on:keydown=on_keydown></textarea>
                                    <div class="composer-actions">
                                        <button type="submit" disabled=move || busy.get()>"Ask"</button>
                                        <button type="button" class="secondary" id="stop" disabled=move || !busy.get() on:click=stop>"Stop"</button>
                                        <button type="button" class="secondary" id="regenerate"
                                            disabled=move || busy.get() || turns.with(|t| t.is_empty())
                                            on:click=regenerate>"Regenerate"</button>
                                    </div>
                                    <noscript><p class="muted small">"Answers stream in with JavaScript enabled."</p></noscript>
                                </form>
                            }.into_any()
                        }
                    }}
                </section>
            </div>
        }
        .into_any()
    }
}

mod stream {
    //! The browser side of a streamed answer: an `EventSource` on the chat endpoint.

    /// The GET form of the chat endpoint, which `EventSource` can open.
    pub fn chat_url(space: &str, question: &str, conversation: &str, regenerate: bool) -> String {
        let mut url = format!("/api/v1/spaces/{space}/chat?question={}", encode(question));
        if !conversation.is_empty() {
            url.push_str(&format!("&conversation_id={}", encode(conversation)));
        }
        if regenerate {
            url.push_str("&regenerate=true");
        }
        url
    }

    #[cfg(feature = "hydrate")]
    fn encode(s: &str) -> String {
        String::from(js_sys::encode_uri_component(s))
    }

    #[cfg(not(feature = "hydrate"))]
    fn encode(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// An open answer stream; its handlers live as long as it does.
    #[cfg(feature = "hydrate")]
    pub struct Live {
        source: web_sys::EventSource,
        _handlers: Vec<wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>>,
    }

    #[cfg(feature = "hydrate")]
    impl Live {
        /// Closes the connection: the server stops generating.
        pub fn close(&self) {
            self.source.close();
        }
    }

    /// Opens the stream; `on_event(name, data)` is called for `sources`, `token`, `done` and
    /// `error` (with no data when the connection itself failed).
    #[cfg(feature = "hydrate")]
    pub fn open(
        url: &str,
        on_event: impl Fn(&str, Option<String>) + 'static,
    ) -> Result<Live, String> {
        use wasm_bindgen::JsCast;
        let source = web_sys::EventSource::new(url)
            .map_err(|_| "The browser could not open the answer stream.".to_string())?;
        let on_event = std::rc::Rc::new(on_event);
        let mut handlers = Vec::new();
        for name in ["sources", "token", "done", "error"] {
            let on_event = on_event.clone();
            let handler = wasm_bindgen::closure::Closure::<dyn FnMut(web_sys::Event)>::new(
                move |e: web_sys::Event| {
                    let data = e
                        .dyn_ref::<web_sys::MessageEvent>()
                        .and_then(|m| m.data().as_string());
                    on_event(name, data);
                },
            );
            source
                .add_event_listener_with_callback(name, handler.as_ref().unchecked_ref())
                .map_err(|_| "The browser could not listen to the answer stream.".to_string())?;
            handlers.push(handler);
        }
        Ok(Live {
            source,
            _handlers: handlers,
        })
    }

    /// Puts the conversation in the address bar without reloading, so a refresh keeps it.
    #[cfg(feature = "hydrate")]
    pub fn remember_conversation(space: &str, conversation: &str) {
        if let Ok(history) = leptos::prelude::window().history() {
            let url = format!("/chat?space={space}&c={conversation}");
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
        }
    }

    /// Copies text to the clipboard, where the browser allows it.
    #[cfg(feature = "hydrate")]
    pub fn copy(text: &str) {
        use wasm_bindgen::JsCast;
        let navigator = leptos::prelude::window().navigator();
        let Ok(clipboard) = js_sys::Reflect::get(&navigator, &"clipboard".into()) else {
            return;
        };
        let write = js_sys::Reflect::get(&clipboard, &"writeText".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(write) = write {
            let _ = write.call1(&clipboard, &text.into());
        }
    }

    /// Holds the open stream. In the browser it lives in thread-local storage (JS objects are
    /// not `Send`); on the server, where pages render across threads, nothing ever streams.
    #[cfg(feature = "hydrate")]
    pub fn cell() -> leptos::prelude::StoredValue<Option<Live>, leptos::prelude::LocalStorage> {
        leptos::prelude::StoredValue::new_local(None)
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn cell() -> leptos::prelude::StoredValue<Option<Live>> {
        leptos::prelude::StoredValue::new(None)
    }

    /// On the server nothing streams; these exist so the page compiles for SSR.
    #[cfg(not(feature = "hydrate"))]
    pub struct Live;

    #[cfg(not(feature = "hydrate"))]
    impl Live {
        pub fn close(&self) {}
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn open(
        _url: &str,
        _on_event: impl Fn(&str, Option<String>) + 'static,
    ) -> Result<Live, String> {
        Err("Answers stream in the browser.".to_string())
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn remember_conversation(_space: &str, _conversation: &str) {}

    #[cfg(not(feature = "hydrate"))]
    pub fn copy(_text: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citation_links_carry_the_page_and_the_passage() {
        let c = Citation {
            n: 2,
            chunk_id: "c9".into(),
            document_id: "d1".into(),
            filename: "f.md".into(),
            heading_path: String::new(),
            position: 57,
            char_start: 0,
            char_end: 1,
            score: 0.5,
            text: "t".into(),
        };
        assert_eq!(
            passage_href("s1", &c),
            format!(
                "/spaces/s1/documents/d1?offset={}&chunk=c9#chunk-c9",
                (57 / PAGE_SIZE) * PAGE_SIZE
            )
        );
        assert_eq!(
            stream::chat_url("s", "a b&c", "", true),
            "/api/v1/spaces/s/chat?question=a%20b%26c&regenerate=true"
        );
    }
}

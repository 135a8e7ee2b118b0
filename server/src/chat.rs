//! Asking a space: retrieve, number the passages, stream an answer from the generator chain,
//! remember the conversation. The stream is a sequence of events — `sources`, `token`…, then
//! `done` or `error` — which the HTTP layer sends as Server-Sent Events.

use crate::auth::Caller;
use crate::cache::TieredCache;
use crate::domain::{parse_id, InvalidInput};
use crate::error::{search_error, ServiceError};
use crate::generate::attribute::{render, Attribution};
use crate::generate::extractive::DECLINE;
use crate::generate::{Chain, Ending, Piece, Prompt};
use crate::redis_link::RedisLink;
use crate::retrieve::{Retriever, Search};
use crate::service::owner_of;
use crate::store::{MetadataStore, NewMessage};
use futures::{Stream, StreamExt};
use kenning_api::{
    ChatRequest, Citation, DoneEvent, ErrorDetail, SearchHit, SearchMode, SearchRequest,
    SearchResponse, SourcesEvent, Timings, TokenEvent, Usage,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest accepted question, in characters.
pub const MAX_QUESTION_CHARS: usize = 4_000;

/// One event of an answer stream.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatEvent {
    Sources(SourcesEvent),
    Token(TokenEvent),
    Done(DoneEvent),
    Error(ErrorDetail),
}

impl ChatEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatEvent::Sources(_) => "sources",
            ChatEvent::Token(_) => "token",
            ChatEvent::Done(_) => "done",
            ChatEvent::Error(_) => "error",
        }
    }

    /// The event's JSON payload.
    pub fn json(&self) -> serde_json::Value {
        let v = match self {
            ChatEvent::Sources(e) => serde_json::to_value(e),
            ChatEvent::Token(e) => serde_json::to_value(e),
            ChatEvent::Done(e) => serde_json::to_value(e),
            ChatEvent::Error(e) => serde_json::to_value(e),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// The built-in embedder's relevance floor (see `--answer-min-similarity`).
pub const DEFAULT_MIN_SIMILARITY: f64 = 0.35;

/// How answers are made.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// Least cosine similarity of the closest passage for an answer to be attempted.
    pub min_similarity: Option<f64>,
    /// Passages numbered as sources when the request names no number.
    pub max_sources: usize,
    /// Characters of each passage put into the prompt.
    pub max_source_chars: usize,
    /// Longest answer, in tokens.
    pub max_tokens: usize,
    /// Longest an answer may take from question to last token.
    pub answer_timeout: Duration,
    /// How long a finished answer is served from the cache.
    pub answer_cache_ttl: Duration,
    pub answer_cache_capacity: u64,
    /// What each generator's tokens cost (local and extractive cost nothing).
    pub prices: std::collections::HashMap<&'static str, Price>,
}

/// US dollars per million tokens, for the `llm_cost_usd` metric.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    pub prompt_per_mtok: f64,
    pub completion_per_mtok: f64,
}

impl Price {
    /// What an answer with `usage` cost.
    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.prompt_tokens as f64 * self.prompt_per_mtok
            + usage.completion_tokens as f64 * self.completion_per_mtok)
            / 1e6
    }
}

/// Most sources a request may ask for.
pub const MAX_SOURCES: i64 = 20;

type AnswerKey = (
    Uuid,
    i64,
    String,
    kenning_api::SearchMode,
    usize,
    Option<u64>,
);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct CachedAnswer {
    text: String,
    generator: String,
    usage: Usage,
    /// Entries cached before this field existed were whole answers.
    #[serde(default)]
    truncated: bool,
}

/// Answers questions; shared by the chat API, the UI and the OpenAI-compatible API.
pub struct Chat {
    store: Arc<dyn MetadataStore>,
    retriever: Arc<Retriever>,
    chain: Arc<Chain>,
    settings: ChatSettings,
    answers: Arc<TieredCache<CachedAnswer>>,
}

/// A checked question, ready to stream.
pub struct Asked {
    pub conversation_id: Uuid,
    pub events: std::pin::Pin<Box<dyn Stream<Item = ChatEvent> + Send>>,
}

/// An answer read to its end, for callers that do not stream it.
pub struct WholeAnswer {
    pub text: String,
    pub sources: Vec<Citation>,
    pub done: DoneEvent,
}

impl Asked {
    /// Reads the stream to its end: the answer with its sources and how it ended, or the error
    /// that stopped it.
    pub async fn whole(self) -> Result<WholeAnswer, ErrorDetail> {
        let (mut text, mut sources) = (String::new(), Vec::new());
        let mut events = self.events;
        while let Some(event) = events.next().await {
            match event {
                ChatEvent::Sources(s) => sources = s.sources,
                ChatEvent::Token(t) => text.push_str(&t.text),
                ChatEvent::Error(e) => return Err(e),
                ChatEvent::Done(done) => {
                    // A whole answer can show the verified citations in place of the model's.
                    if !done.sentences.is_empty() {
                        text = render(&done.sentences);
                    }
                    return Ok(WholeAnswer {
                        text,
                        sources,
                        done,
                    });
                }
            }
        }
        Err(error(
            "generation_failed",
            "The answer ended without finishing.",
        ))
    }
}

impl Chat {
    /// Wires the chat over a store, a retriever and a generator chain.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        retriever: Arc<Retriever>,
        chain: Arc<Chain>,
        settings: ChatSettings,
    ) -> Self {
        let answers = Arc::new(TieredCache::new(
            "answers",
            "answers_redis",
            settings.answer_cache_capacity,
            settings.answer_cache_ttl,
        ));
        Self {
            store,
            retriever,
            chain,
            settings,
            answers,
        }
    }

    /// Shares finished answers with other instances through Redis.
    pub fn with_redis(mut self, link: Arc<RedisLink>) -> Self {
        let answers = TieredCache::new(
            "answers",
            "answers_redis",
            self.settings.answer_cache_capacity,
            self.settings.answer_cache_ttl,
        );
        self.answers = Arc::new(answers.with_redis(link));
        self
    }

    /// The generator chain, for health and metrics.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Checks the request, retrieves the sources and returns the answer's event stream. Bad
    /// input fails here, before any event, so the client gets a 4xx; failures after the first
    /// event arrive as an `error` event.
    ///
    /// The conversation belongs to `caller`: a new one is stored under them, and
    /// `conversation_id` may only name one of theirs — anybody else's is refused exactly as an
    /// id that names nothing, so its existence is not revealed.
    pub async fn ask(
        &self,
        caller: &Caller,
        space_id: &str,
        req: ChatRequest,
    ) -> Result<Asked, ServiceError> {
        self.ask_with(caller, space_id, req, None).await
    }

    /// Like [`Chat::ask`], for a client that keeps the conversation itself (the OpenAI API):
    /// its earlier question comes with the request, and nothing is stored unless it asks.
    pub async fn ask_with(
        &self,
        caller: &Caller,
        space_id: &str,
        req: ChatRequest,
        client: Option<ClientTurns>,
    ) -> Result<Asked, ServiceError> {
        let started = Instant::now();
        let space = parse_id(space_id).ok_or(ServiceError::NotFound("space"))?;
        let owner = owner_of(caller)?;
        let question = req.question.trim().to_string();
        if question.is_empty() {
            return Err(invalid("empty_question", "The question must not be empty."));
        }
        if question.contains('\0') {
            return Err(invalid(
                "invalid_question",
                "The question may not contain NUL characters (U+0000).",
            ));
        }
        if question.chars().count() > MAX_QUESTION_CHARS {
            return Err(invalid(
                "question_too_long",
                format!("The question must be at most {MAX_QUESTION_CHARS} characters."),
            ));
        }
        let max_sources = match req.max_sources {
            None => self.settings.max_sources,
            Some(n) if (1..=MAX_SOURCES).contains(&n) => n as usize,
            Some(_) => {
                return Err(invalid(
                    "invalid_max_sources",
                    format!("max_sources must be between 1 and {MAX_SOURCES}."),
                ))
            }
        };
        self.store
            .get_space(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        // A follow-up ("and how many carry over?") is searched together with the question
        // before it, so retrieval knows what "it" refers to.
        let keep = client.as_ref().is_none_or(|c| c.keep);
        let guidance = client.as_ref().and_then(|c| c.guidance.clone());
        let max_tokens = client
            .as_ref()
            .and_then(|c| c.max_tokens)
            .map_or(self.settings.max_tokens, |m| {
                m.clamp(1, self.settings.max_tokens)
            });
        let (existing, previous) = match (client, &req.conversation_id) {
            (Some(c), _) => (None, c.previous_question),
            (None, Some(raw)) => {
                // A body naming no conversation of this space is bad input (400), not a
                // missing resource at the URL: the space itself exists.
                // Another caller's conversation is answered the same way: to this caller it
                // does not exist.
                let unknown = || {
                    ServiceError::from(crate::domain::InvalidInput::new(
                        "conversation_not_found",
                        "conversation_id names no conversation of this space.",
                    ))
                };
                let id = parse_id(raw).ok_or_else(unknown)?;
                // The ownership check `previous_question` and the turns appended below rely on.
                self.store
                    .get_conversation(space, owner, id)
                    .await
                    .map_err(|e| match e {
                        crate::store::StoreError::NotFound => unknown(),
                        other => ServiceError::from_store(other, "conversation"),
                    })?;
                (Some(id), self.previous_question(id).await?)
            }
            (None, None) => (None, None),
        };
        let query = retrieval_query(previous.as_deref(), &question);
        let search = Search::parse(
            space,
            &SearchRequest {
                query: query.clone(),
                mode: req.mode,
                limit: Some(max_sources as i64),
                min_score: req.min_score,
                document_id: None,
            },
        )
        .map_err(search_error)?;
        let version = self
            .store
            .space_version(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        let found = self.retriever.search(&search).await.map_err(search_error)?;
        let declined = self.too_far(search.mode, &found);
        let retrieval_ms = ms(started);
        let conversation_id = match existing {
            Some(id) => id,
            // The client keeps the conversation: an id for this exchange, stored nowhere.
            None if !keep => Uuid::now_v7(),
            None => {
                let id = Uuid::now_v7();
                let title: String = question.chars().take(80).collect();
                self.store
                    .create_conversation(id, space, owner, &title)
                    .await
                    .map_err(|e| ServiceError::from_store(e, "space"))?;
                id
            }
        };
        let conversation = conversation_id.to_string();

        let sources: Vec<Citation> = found
            .results
            .into_iter()
            .enumerate()
            .map(|(i, h)| citation(i + 1, h))
            .collect();

        if keep {
            self.store
                .add_message(
                    conversation_id,
                    &NewMessage {
                        id: Uuid::now_v7(),
                        role: "user",
                        content: question.clone(),
                        citations_json: "[]".into(),
                        generator: None,
                    },
                )
                .await
                .map_err(|e| ServiceError::from_store(e, "conversation"))?;
        }

        let key: AnswerKey = (
            space,
            version,
            // Guidance and a shorter cap change the answer, so they are part of its key.
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{max_tokens}",
                question.to_lowercase(),
                query.to_lowercase(),
                guidance.as_deref().unwrap_or("")
            ),
            search.mode,
            max_sources,
            req.min_score.map(f64::to_bits),
        );
        let cached = if req.regenerate {
            None
        } else {
            self.answers.get(&format!("{key:?}")).await
        };
        let run = Run {
            store: self.store.clone(),
            chain: self.chain.clone(),
            answers: self.answers.clone(),
            settings: self.settings.clone(),
            key,
            conversation: conversation.clone(),
            conversation_id,
            keep,
            previous: previous.filter(|_| query != question),
            declined,
            guidance,
            max_tokens,
            question,
            started,
            retrieval_ms,
        };
        let sources_event = SourcesEvent {
            conversation_id: conversation,
            sources,
            pending_documents: found.pending_documents,
            notice: found.notice,
        };
        Ok(Asked {
            conversation_id,
            events: Box::pin(run.events(sources_event, cached)),
        })
    }
}

impl Chat {
    /// Why no generator should be asked, when no passage is relevant enough to answer from:
    /// none was found, or the closest is below the similarity floor. Keyword searches and
    /// results without a dense score are never declined on similarity.
    fn too_far(&self, mode: SearchMode, found: &SearchResponse) -> Option<String> {
        if found.results.is_empty() {
            return Some("no passage of this space matches the question".into());
        }
        let floor = self.settings.min_similarity?;
        if mode == SearchMode::Keyword {
            return None;
        }
        let best = found
            .results
            .iter()
            .filter_map(|h| h.dense_score)
            .reduce(f64::max)?;
        (best < floor).then(|| {
            format!(
                "no passage of this space is close enough to the question (the closest scores \
                 {best:.2}, answers need {floor:.2})"
            )
        })
    }

    /// The last question asked in a conversation, if any. Messages are keyed by conversation
    /// alone, so this is only for a conversation `ask` has just found under the caller.
    async fn previous_question(&self, conversation: Uuid) -> Result<Option<String>, ServiceError> {
        let first = crate::domain::PageRequest {
            limit: 1,
            offset: 0,
        };
        let total = self
            .store
            .list_messages(conversation, first)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))?
            .total;
        if total == 0 {
            return Ok(None);
        }
        let tail = crate::domain::PageRequest {
            limit: 2,
            offset: (total - 2).max(0),
        };
        let page = self
            .store
            .list_messages(conversation, tail)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))?;
        Ok(page
            .items
            .into_iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content))
    }
}

/// Words that point back at something said before.
const REFERRING: &[&str] = &[
    "it",
    "its",
    "that",
    "this",
    "these",
    "those",
    "they",
    "them",
    "their",
    "there",
    "he",
    "she",
    "his",
    "her",
    "also",
    "else",
    "more",
    "same",
    "and",
    "what about",
    "how about",
];

/// The search query for a question: a short or referring follow-up is searched together with
/// the question before it; a self-contained question is searched alone.
pub fn retrieval_query(previous: Option<&str>, question: &str) -> String {
    let Some(previous) = previous else {
        return question.to_string();
    };
    let lower = question.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .collect();
    let refers = REFERRING.iter().any(|r| {
        if r.contains(' ') {
            lower.contains(r)
        } else {
            words.contains(r)
        }
    });
    if !(refers || words.len() <= 4) {
        return question.to_string();
    }
    let combined = format!("{previous} {question}");
    combined
        .chars()
        .take(crate::retrieve::MAX_QUERY_CHARS)
        .collect()
}

/// Everything one answer's stream needs, owned so the stream can outlive the request handler.
struct Run {
    store: Arc<dyn MetadataStore>,
    chain: Arc<Chain>,
    answers: Arc<TieredCache<CachedAnswer>>,
    settings: ChatSettings,
    key: AnswerKey,
    conversation: String,
    conversation_id: Uuid,
    /// Whether turns are stored (not for a client that keeps the conversation itself).
    keep: bool,
    question: String,
    /// The question this one follows up on, when retrieval combined them.
    previous: Option<String>,
    /// The client's system message, read under Kenning's own.
    guidance: Option<String>,
    /// Why the answer is "I don't know" without asking a generator, when it is.
    declined: Option<String>,
    /// Longest answer, in tokens.
    max_tokens: usize,
    started: Instant,
    retrieval_ms: f64,
}

impl Run {
    /// The checked answer as the chat page shows it.
    fn html(&self, attribution: &Attribution, citations: &[Citation]) -> String {
        app::markdown::checked_html(&attribution.sentences, citations, &self.key.0.to_string())
    }

    fn events(
        self,
        sources: SourcesEvent,
        cached: Option<Arc<CachedAnswer>>,
    ) -> impl Stream<Item = ChatEvent> + Send {
        async_stream::stream! {
            let citations = sources.sources.clone();
            yield ChatEvent::Sources(sources);
            let sources_ms = ms(self.started);
            if let Some(hit) = cached {
                // Checked again rather than cached: the check is cheap and always current.
                let attribution = Attribution::of(&hit.text, &citations);
                let text = attribution.text();
                yield ChatEvent::Token(TokenEvent { text: text.clone() });
                let first_token_ms = Some(ms(self.started));
                match self.save(&text, &citations, &hit.generator).await {
                    Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                        conversation_id: self.conversation.clone(),
                        message_id,
                        generator: hit.generator.clone(),
                        degraded: false,
                        notice: checked_notice(&attribution, &citations, hit.truncated),
                        cached: true,
                        truncated: hit.truncated,
                        declined: None,
                        unsupported: attribution.unsupported(),
                        html: Some(self.html(&attribution, &citations)),
                        sentences: attribution.sentences,
                        usage: hit.usage.clone(),
                        timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                    }),
                    Err(e) => yield ChatEvent::Error(e),
                }
                return;
            }

            if let Some(reason) = &self.declined {
                crate::metrics::global().record_declined();
                let text = format!("{DECLINE}: {reason}.");
                yield ChatEvent::Token(TokenEvent { text: text.clone() });
                let first_token_ms = Some(ms(self.started));
                match self.save(&text, &[], NO_GENERATOR).await {
                    Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                        conversation_id: self.conversation.clone(),
                        message_id,
                        generator: NO_GENERATOR.into(),
                        degraded: false,
                        notice: None,
                        cached: false,
                        truncated: false,
                        declined: Some(reason.clone()),
                        unsupported: 0,
                        html: Some(app::markdown::answer_html(&text, &[], &self.key.0.to_string())),
                        sentences: Vec::new(),
                        usage: Usage::default(),
                        timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                    }),
                    Err(e) => yield ChatEvent::Error(e),
                }
                return;
            }
            let mut prompt = Prompt::build(&self.question, citations.clone(), self.settings.max_source_chars);
            if let Some(previous) = &self.previous {
                prompt = prompt.following(previous);
            }
            if let Some(guidance) = &self.guidance {
                prompt = prompt.guided(guidance);
            }
            let deadline = tokio::time::Instant::from_std(self.started + self.settings.answer_timeout);
            let started = match tokio::time::timeout_at(deadline, self.chain.start(&prompt, self.max_tokens)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    yield ChatEvent::Error(error("generation_failed", format!("No generator could answer: {e}")));
                    return;
                }
                Err(_) => {
                    yield ChatEvent::Error(error("answer_timeout", "The answer took too long to start."));
                    return;
                }
            };
            let first_token_ms = Some(ms(self.started));
            let mut unfinished = Unfinished {
                store: self.store.clone(),
                conversation_id: self.conversation_id,
                citations: citations.clone(),
                generator: started.generator,
                text: started.first.clone(),
                // Nothing to keep for a client that keeps the conversation itself.
                finished: !self.keep,
            };
            // Pieces seen, for generators that do not count their tokens.
            let mut completion_tokens = 1u64;
            let mut ending = Ending::default();
            yield ChatEvent::Token(TokenEvent { text: started.first });
            let mut rest = started.rest;
            loop {
                match tokio::time::timeout_at(deadline, rest.next()).await {
                    Ok(None) => break,
                    Ok(Some(Ok(Piece::End(end)))) => ending = end,
                    Ok(Some(Ok(Piece::Text(piece)))) => {
                        if piece.is_empty() {
                            continue;
                        }
                        completion_tokens += 1;
                        unfinished.text.push_str(&piece);
                        yield ChatEvent::Token(TokenEvent { text: piece });
                    }
                    Ok(Some(Err(e))) => {
                        self.chain.report_failure(started.generator);
                        crate::metrics::global().record_llm(started.generator, "error", None, started.prompt_tokens, completion_tokens, 0.0);
                        yield ChatEvent::Error(error("generation_failed", format!("The answer broke off: {e}")));
                        return;
                    }
                    Err(_) => {
                        yield ChatEvent::Error(error("answer_timeout", "The answer took too long and was stopped."));
                        return;
                    }
                }
            }
            // Free the generator (a local model's context) before the bookkeeping.
            drop(rest);
            unfinished.finished = true;
            let text = std::mem::take(&mut unfinished.text);
            let usage = Usage {
                prompt_tokens: ending.prompt_tokens.unwrap_or(started.prompt_tokens),
                completion_tokens: ending.completion_tokens.unwrap_or(completion_tokens),
            };
            let price = self.settings.prices.get(started.generator).copied().unwrap_or_default();
            crate::metrics::global().record_llm(
                started.generator,
                "ok",
                first_token_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                usage.prompt_tokens,
                usage.completion_tokens,
                price.cost(&usage),
            );
            let attribution = Attribution::of(&text, &citations);
            let unsupported = attribution.unsupported();
            let backed = attribution.sentences.iter().filter(|s| !s.sources.is_empty()).count();
            crate::metrics::global().record_answer_check(backed, unsupported);
            let notice = started.notice.or_else(|| checked_notice(&attribution, &citations, ending.truncated));
            if !started.degraded {
                self.answers.insert(format!("{:?}", self.key), Arc::new(CachedAnswer {
                    text: text.clone(),
                    generator: started.generator.to_string(),
                    usage: usage.clone(),
                    truncated: ending.truncated,
                })).await;
            }
            // The turn keeps the verified citations, not the ones the generator wrote.
            match self.save(&attribution.text(), &citations, started.generator).await {
                Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                    conversation_id: self.conversation.clone(),
                    message_id,
                    generator: started.generator.to_string(),
                    degraded: started.degraded,
                    notice,
                    cached: false,
                    truncated: ending.truncated,
                    declined: None,
                    unsupported,
                    html: Some(self.html(&attribution, &citations)),
                    sentences: attribution.sentences,
                    usage,
                    timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                }),
                Err(e) => yield ChatEvent::Error(e),
            }
        }
    }

    /// Stores the answer as the conversation's next turn; returns its id.
    async fn save(
        &self,
        text: &str,
        citations: &[Citation],
        generator: &str,
    ) -> Result<String, ErrorDetail> {
        let message = assistant_message(text, citations, generator);
        let id = message.id;
        if !self.keep {
            return Ok(id.to_string());
        }
        self.store
            .add_message(self.conversation_id, &message)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation").to_detail())?;
        Ok(id.to_string())
    }
}

/// An answer as a conversation turn, keeping only the sources it cites.
fn assistant_message(text: &str, citations: &[Citation], generator: &str) -> NewMessage {
    let cited: Vec<&Citation> = citations.iter().filter(|c| cites(text, c)).collect();
    NewMessage {
        id: Uuid::now_v7(),
        role: "assistant",
        content: text.to_string(),
        citations_json: serde_json::to_string(&cited).unwrap_or_else(|_| "[]".into()),
        generator: Some(generator.to_string()),
    }
}

/// What a client that keeps its own conversation (the OpenAI API) sends with a question.
pub struct ClientTurns {
    /// The user's question before this one, so a follow-up is searched with it.
    pub previous_question: Option<String>,
    /// Whether the exchange is stored as a conversation of the caller's.
    pub keep: bool,
    /// The client's system message: guidance the model reads under Kenning's own rules.
    pub guidance: Option<String>,
    /// The client's cap on the answer's length, in tokens; never above the server's.
    pub max_tokens: Option<usize>,
}

/// An answer being streamed. If the stream is dropped before it finishes (Stop, a client that
/// left, a broken provider), what was already shown is kept as the turn, marked as cut off.
struct Unfinished {
    store: Arc<dyn MetadataStore>,
    conversation_id: Uuid,
    citations: Vec<Citation>,
    generator: &'static str,
    text: String,
    finished: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.finished || self.text.trim().is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let message = assistant_message(
            &format!("{} …", self.text.trim_end()),
            &self.citations,
            &format!("{} (stopped)", self.generator),
        );
        let store = self.store.clone();
        let conversation = self.conversation_id;
        runtime.spawn(async move {
            if let Err(e) = store.add_message(conversation, &message).await {
                tracing::warn!(error = %e, "could not keep a stopped answer");
            }
        });
    }
}

/// Whether `text` cites `source` as `[n]`.
fn cites(text: &str, source: &Citation) -> bool {
    text.contains(&format!("[{}]", source.n))
}

/// The generator named for answers declined before any generator was asked.
pub const NO_GENERATOR: &str = "none";

/// What a reader should know about a finished answer once its sentences are checked.
fn checked_notice(
    attribution: &Attribution,
    sources: &[Citation],
    truncated: bool,
) -> Option<String> {
    let unsupported = attribution.unsupported();
    let declined = attribution
        .sentences
        .first()
        .is_some_and(|s| s.text.starts_with(DECLINE));
    if truncated {
        Some("The answer reached the length limit and was cut off.".into())
    } else if unsupported > 0 {
        Some(format!(
            "{unsupported} sentence(s) of this answer are supported by none of the sources and \
             are marked; check them before relying on them."
        ))
    } else if !sources.is_empty() && !attribution.cites() && !declined {
        Some(
            "This answer cites none of the sources; check it against them before relying on it."
                .into(),
        )
    } else {
        None
    }
}

fn citation(n: usize, hit: SearchHit) -> Citation {
    Citation {
        n,
        chunk_id: hit.chunk.id,
        document_id: hit.chunk.document_id,
        filename: hit.filename,
        heading_path: hit.chunk.heading_path,
        position: hit.chunk.position,
        char_start: hit.chunk.char_start,
        char_end: hit.chunk.char_end,
        score: hit.score,
        text: hit.chunk.text,
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(InvalidInput {
        code,
        message: message.into(),
    })
}

fn error(code: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code: code.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::retrieval_query;

    #[test]
    fn follow_ups_are_searched_with_the_question_before_them() {
        let prev = Some("How many vacation days do we get?");
        assert_eq!(
            retrieval_query(prev, "And how many carry over?"),
            "How many vacation days do we get? And how many carry over?"
        );
        assert_eq!(
            retrieval_query(prev, "what about sick leave"),
            "How many vacation days do we get? what about sick leave"
        );
        assert_eq!(
            retrieval_query(prev, "When do production deploys happen on weekdays?"),
            "When do production deploys happen on weekdays?"
        );
        assert_eq!(retrieval_query(None, "And it?"), "And it?");
    }
}

//! Asking a space: retrieve, number the passages, stream an answer from the generator chain,
//! remember the conversation. The stream is a sequence of events — `sources`, `token`…, then
//! `done` or `error` — which the HTTP layer sends as Server-Sent Events.

use crate::auth::Caller;
use crate::cache::TieredCache;
use crate::domain::{parse_id, InvalidInput, SpaceId};
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

mod run;

use run::*;
pub use run::{ClientTurns, NO_GENERATOR};

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
        space_id: SpaceId,
        req: ChatRequest,
    ) -> Result<Asked, ServiceError> {
        self.ask_with(caller, space_id, req, None).await
    }

    /// Like [`Chat::ask`], for a client that keeps the conversation itself (the OpenAI API):
    /// its earlier question comes with the request, and nothing is stored unless it asks.
    pub async fn ask_with(
        &self,
        caller: &Caller,
        space_id: SpaceId,
        req: ChatRequest,
        client: Option<ClientTurns>,
    ) -> Result<Asked, ServiceError> {
        let started = Instant::now();
        let space = space_id.uuid();
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
        let (found, version) = self
            .retriever
            .search_versioned(&search)
            .await
            .map_err(search_error)?;
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
    // A question may be longer than a search query: its beginning is what is searched, and the
    // whole of it still goes to the generator.
    let searched = |text: &str| {
        text.chars()
            .take(crate::retrieve::MAX_QUERY_CHARS)
            .collect()
    };
    let Some(previous) = previous else {
        return searched(question);
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
        return searched(question);
    }
    searched(&format!("{previous} {question}"))
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

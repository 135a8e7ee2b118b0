//! Questions, the streamed answer's events, and conversations.

use crate::search::SearchMode;
use serde::{Deserialize, Serialize};

/// A question to a space, answered as a stream of events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatRequest {
    /// The question: not blank, at most 4,000 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 4000, pattern = r"\S")
    )]
    pub question: String,
    /// Continue this conversation; a new one is started when absent.
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub mode: SearchMode,
    /// Passages to retrieve and number as sources (default by server configuration, 1 to 20).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 20))]
    pub max_sources: Option<i64>,
    /// Drop passages scoring below this.
    pub min_score: Option<f64>,
    /// Skip the answer cache and generate afresh.
    #[serde(default)]
    pub regenerate: bool,
}

impl ChatRequest {
    /// A new question with every choice left to the server (hybrid search, default sources).
    pub fn new(question: String) -> Self {
        Self {
            question,
            conversation_id: None,
            mode: SearchMode::default(),
            max_sources: None,
            min_score: None,
            regenerate: false,
        }
    }
}

/// A numbered passage an answer may cite as `[n]`, with where it sits in its document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Citation {
    pub n: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub filename: String,
    pub heading_path: String,
    /// 0-based position of the passage in its document.
    pub position: i64,
    pub char_start: i64,
    pub char_end: i64,
    pub score: f64,
    pub text: String,
}

/// First event of an answer: what it will be based on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourcesEvent {
    pub conversation_id: String,
    pub sources: Vec<Citation>,
    /// Documents still being indexed: the answer cannot use them yet.
    pub pending_documents: i64,
    pub notice: Option<String>,
}

/// A piece of the answer's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEvent {
    pub text: String,
}

/// Token counts of one answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Where an answer's time went, in milliseconds since the request arrived.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// Embedding the question and searching.
    pub retrieval_ms: f64,
    /// When the `sources` event was sent.
    pub sources_ms: f64,
    /// When the first token was sent.
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// Last event of a successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoneEvent {
    pub conversation_id: String,
    pub message_id: String,
    /// The generator that wrote the answer (`local`, `openai`, `extractive`; `none` when the
    /// answer was declined before any was asked).
    pub generator: String,
    /// True when a preferred generator failed and a later one in the chain answered.
    pub degraded: bool,
    pub notice: Option<String>,
    /// Served from the answer cache.
    pub cached: bool,
    /// The length limit, not the model, ended the answer (OpenAI's `finish_reason: "length"`).
    #[serde(default)]
    pub truncated: bool,
    /// The answer sentence by sentence, each with the sources the server found to support it:
    /// the citations to show, in place of those the generator wrote.
    #[serde(default)]
    pub sentences: Vec<AttributedSentence>,
    /// Sentences that make a claim no source supports.
    #[serde(default)]
    pub unsupported: usize,
    /// Why the answer is "I don't know" without any generator asked: no passage was relevant
    /// enough to answer from.
    #[serde(default)]
    pub declined: Option<String>,
    /// The checked answer as HTML that is safe to insert into a page: Markdown rendered, raw
    /// HTML escaped, citations linking their passages in Kenning's UI (relative links),
    /// unsupported sentences in `<span class="unsupported">`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// One sentence of an answer and the sources that support it, checked by the server rather
/// than taken on the generator's word.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributedSentence {
    /// The sentence, without citation markers.
    pub text: String,
    /// The whitespace that followed it (a space, a line break), so the sentences join back
    /// into the answer.
    pub separator: String,
    /// Sources whose passage supports it: the citations shown. Empty when none does.
    pub sources: Vec<usize>,
    /// Sources the generator cited for it, supported or not.
    pub claimed: Vec<usize>,
    /// False when it makes a claim that no source supports.
    pub supported: bool,
}

/// A conversation with a space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: String,
    pub space_id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub citations: Vec<Citation>,
    pub generator: Option<String>,
    pub created_at: String,
    /// An answer as HTML for the chat page (Markdown rendered, raw HTML escaped, citations as
    /// links, unsupported sentences marked); filled for the UI only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

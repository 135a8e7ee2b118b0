//! Generation: one trait, three generators (a local model on llama.cpp, any OpenAI-compatible
//! server, and an extractive composer that needs no model), and a chain with circuit breakers
//! that falls through them so a failing provider degrades an answer instead of failing it.

pub mod attribute;
pub mod budget;
pub mod chain;
pub mod cpu;
pub mod extractive;
#[cfg(feature = "llama")]
pub mod local;
pub mod openai;
pub mod prompt;

pub use chain::{BreakerState, Chain, ChainSettings, Started};
pub use extractive::Extractive;
#[cfg(feature = "llama")]
pub use local::{LlmSettings, LocalGenerator};
pub use openai::{OpenAiGenerator, OpenAiSettings};
pub use prompt::Prompt;

use futures::Stream;
use std::pin::Pin;

/// Pieces of an answer as they are produced; the stream ends when the answer does.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<Piece, GenerateError>> + Send>>;

/// One item of an answer's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// More of the answer's text.
    Text(String),
    /// How the answer ended, from a generator that knows: the last item, at most once.
    End(Ending),
}

/// What a generator knows about the end of its answer, so clients hear the truth about
/// truncation and token usage instead of an estimate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ending {
    /// The token cap, not the model, ended the answer.
    pub truncated: bool,
    /// Prompt tokens as the generator counted them (the provider's reported usage).
    pub prompt_tokens: Option<u64>,
    /// Answer tokens as the generator counted them.
    pub completion_tokens: Option<u64>,
}

impl Piece {
    /// A text piece, for generators that stream plain strings.
    pub fn text(t: impl Into<String>) -> Self {
        Piece::Text(t.into())
    }
}

/// Why a generator could not answer; every variant counts as a failure for its circuit breaker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenerateError {
    #[error("the generator is busy")]
    Busy,
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("the provider answered with status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the provider's stream was malformed: {0}")]
    Malformed(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("generation failed: {0}")]
    Failed(String),
}

/// Writes an answer to a prompt as a stream of text pieces.
#[async_trait::async_trait]
pub trait Generator: Send + Sync + 'static {
    /// Short stable name shown to users and used in metrics (`local`, `openai`, `extractive`).
    fn name(&self) -> &'static str;
    /// Tokens the prompt costs this generator (an estimate unless the generator can count).
    fn prompt_tokens(&self, prompt: &Prompt) -> u64 {
        prompt.estimated_tokens()
    }
    /// Most tokens a prompt may have for the first token to come in time, when reading the
    /// prompt is what the first token waits on (a local model); `None` when it is not.
    fn prompt_budget(&self) -> Option<u64> {
        None
    }
    /// Starts answering; the returned stream yields text pieces. Dropping the stream stops the
    /// work promptly (the client went away or the answer timed out).
    async fn generate(
        &self,
        prompt: &Prompt,
        max_tokens: usize,
    ) -> Result<TokenStream, GenerateError>;
}

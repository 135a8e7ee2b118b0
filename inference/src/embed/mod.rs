//! Embeddings: one trait, two in-process models (all-MiniLM-L6-v2 int8 on ONNX Runtime, the
//! default, and f32 on candle) and any OpenAI-compatible provider. Queries take a priority lane
//! ahead of ingestion batches, so a question stays fast while a folder is being ingested.

pub mod lanes;
#[cfg(feature = "candle")]
pub mod local;
pub mod onnx;
pub mod openai;

pub use lanes::{LaneEmbedder, LaneSettings};
pub use openai::{OpenAiEmbedSettings, OpenAiEmbedder};

/// Which queue a request waits in; `Query` always goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Query,
    Ingest,
}

/// Why texts could not be embedded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedder is busy; try again shortly")]
    Busy,
    #[error("the embedder is not running")]
    Stopped,
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Turns texts into unit-length vectors of `dimensions()` floats.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// Stable name of the model, recorded per space so dimensions never mix.
    fn model_id(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimensions(&self) -> usize;
    /// Embeds `texts` in order.
    async fn embed(&self, texts: Vec<String>, lane: Lane) -> Result<Vec<Vec<f32>>, EmbedError>;
}

//! Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Azure-style
//! gateways, Ollama, vLLM, llama.cpp server, text-embeddings-inference): for teams that want a
//! larger model than the local one, or embeddings computed off this machine.

use super::{EmbedError, Embedder, Lane};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Where and how to call the provider.
#[derive(Clone, Debug)]
pub struct OpenAiEmbedSettings {
    /// Base URL including `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    /// Asked of models that can shorten their vectors; otherwise learned from the provider.
    pub dimensions: Option<usize>,
    pub timeout: Duration,
    /// Texts per request.
    pub batch: usize,
}

/// A provider-backed embedder; vectors are normalised here, whatever the provider returns.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    settings: OpenAiEmbedSettings,
    model_id: String,
    dimensions: usize,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// Connects and learns the vector length from one request, so a wrong URL, key or model
    /// stops the server at start with the provider's reason instead of failing every job.
    pub async fn connect(settings: OpenAiEmbedSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()?;
        let mut embedder = Self {
            http,
            model_id: format!("openai/{}", settings.model),
            settings,
            dimensions: 0,
        };
        let probe = embedder
            .request(&["dimension probe".to_string()])
            .await
            .map_err(|e| anyhow::anyhow!("the embeddings provider: {e}"))?;
        let dims = probe.first().map_or(0, Vec::len);
        if let Some(want) = embedder.settings.dimensions {
            anyhow::ensure!(
                dims == want,
                "the embeddings provider returned {dims} dimensions, {want} were configured"
            );
        }
        anyhow::ensure!(dims > 0, "the embeddings provider returned an empty vector");
        embedder.dimensions = dims;
        Ok(embedder)
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut body = json!({
            "model": self.settings.model,
            "input": texts,
            "encoding_format": "float",
        });
        if let Some(d) = self.settings.dimensions {
            body["dimensions"] = json!(d);
        }
        let url = format!(
            "{}/embeddings",
            self.settings.base_url.trim_end_matches('/')
        );
        let mut req = self.http.post(&url).json(&body);
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let response = req.send().await.map_err(|e| {
            EmbedError::Failed(if e.is_timeout() {
                format!("no answer from {url} within {:?}", self.settings.timeout)
            } else {
                format!("calling {url}: {e}")
            })
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(EmbedError::Busy);
        }
        let text = response
            .text()
            .await
            .map_err(|e| EmbedError::Failed(format!("reading the provider's answer: {e}")))?;
        if !status.is_success() {
            let excerpt: String = text.chars().take(300).collect();
            return Err(EmbedError::Failed(format!("HTTP {status}: {excerpt}")));
        }
        let mut parsed: EmbeddingsResponse = serde_json::from_str(&text).map_err(|e| {
            EmbedError::Failed(format!("the provider's answer is not embeddings: {e}"))
        })?;
        if parsed.data.len() != texts.len() {
            return Err(EmbedError::Failed(format!(
                "asked for {} embeddings, got {}",
                texts.len(),
                parsed.data.len()
            )));
        }
        parsed.data.sort_by_key(|d| d.index);
        parsed
            .data
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                if item.index != i {
                    return Err(EmbedError::Failed(
                        "embedding indexes do not match the input".into(),
                    ));
                }
                if self.dimensions != 0 && item.embedding.len() != self.dimensions {
                    return Err(EmbedError::Failed(format!(
                        "got {} dimensions, expected {}",
                        item.embedding.len(),
                        self.dimensions
                    )));
                }
                if item.embedding.iter().any(|x| !x.is_finite()) {
                    return Err(EmbedError::Failed(
                        "the provider returned a non-finite value".into(),
                    ));
                }
                Ok(kenning_vectors::vector::normalised(&item.embedding))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: Vec<String>, lane: Lane) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.settings.batch.max(1)) {
            kenning_metrics::global().record_embed(
                match lane {
                    Lane::Query => "query",
                    Lane::Ingest => "ingest",
                },
                batch.len(),
            );
            out.extend(self.request(batch).await?);
        }
        Ok(out)
    }
}

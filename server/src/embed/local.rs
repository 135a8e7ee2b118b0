//! all-MiniLM-L6-v2 in-process with candle: mean-pooled, L2-normalised 384-d sentence vectors.
//!
//! Two dedicated threads each own a copy of the model (90 MB each): one serves only queries
//! (several waiting queries share one forward pass), the other only ingestion batches. A query
//! therefore never waits behind an ingestion batch; it only shares the cores with it.

use super::{EmbedError, Embedder, Lane};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};
use tokio::sync::oneshot;

/// Model id recorded with spaces embedded by this model.
pub const MODEL_ID: &str = "local/all-MiniLM-L6-v2";
/// Output dimensions of the model.
pub const DIMENSIONS: usize = 384;

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

#[derive(Default)]
struct Queues {
    query: VecDeque<Request>,
    ingest: VecDeque<Request>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

/// Limits of the two lanes.
#[derive(Clone, Copy, Debug)]
pub struct LocalSettings {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Tokens per text; longer texts are truncated (chunks are sized below this).
    pub max_tokens: usize,
    /// Waiting query requests before new ones are refused as busy.
    pub query_capacity: usize,
    /// Waiting ingestion requests before new ones are refused as busy.
    pub ingest_capacity: usize,
    /// Cores the ingestion lane's matrix maths may use; fewer than the machine has leaves the
    /// rest to queries and serving.
    pub ingest_threads: usize,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            batch_size: 16,
            max_tokens: 512,
            query_capacity: 1024,
            ingest_capacity: 64,
            ingest_threads: 1,
        }
    }
}

/// The local embedder; cheap to share behind an `Arc`.
pub struct LocalEmbedder {
    shared: Arc<Shared>,
    settings: LocalSettings,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl LocalEmbedder {
    /// Loads the model from `dir` (model.safetensors, tokenizer.json, config.json) once per
    /// lane and starts the lanes' threads.
    pub fn load(dir: &Path, settings: LocalSettings) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        });
        for (lane, name) in [
            (Lane::Query, "kenning-embed-query"),
            (Lane::Ingest, "kenning-embed-ingest"),
        ] {
            let model = Model::load(dir, settings.max_tokens)?;
            let thread_shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // The ingestion lane computes inside its own small pool, so it never takes
                    // every core; the query lane uses the global pool (all cores).
                    let pool = match lane {
                        Lane::Ingest => rayon::ThreadPoolBuilder::new()
                            .num_threads(settings.ingest_threads.max(1))
                            .thread_name(|i| format!("kenning-embed-ingest-{i}"))
                            .build()
                            .ok(),
                        Lane::Query => None,
                    };
                    match pool {
                        Some(pool) => pool.install(|| {
                            serve(model, thread_shared, settings.batch_size.max(1), lane)
                        }),
                        None => serve(model, thread_shared, settings.batch_size.max(1), lane),
                    }
                })?;
        }
        Ok(Self { shared, settings })
    }
}

impl Drop for LocalEmbedder {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queues.lock() {
            q.closed = true;
        }
        self.shared.ready.notify_all();
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        MODEL_ID
    }

    fn dimensions(&self) -> usize {
        DIMENSIONS
    }

    async fn embed(&self, texts: Vec<String>, lane: Lane) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut q = self.shared.queues.lock().map_err(|_| EmbedError::Stopped)?;
            if q.closed {
                return Err(EmbedError::Stopped);
            }
            let (queue, cap) = match lane {
                Lane::Query => (&mut q.query, self.settings.query_capacity),
                Lane::Ingest => (&mut q.ingest, self.settings.ingest_capacity),
            };
            if queue.len() >= cap {
                return Err(EmbedError::Busy);
            }
            queue.push_back(Request { texts, reply });
        }
        // Two threads wait on one condition for different lanes: wake both.
        self.shared.ready.notify_all();
        answer.await.map_err(|_| EmbedError::Stopped)?
    }
}

/// A model thread serving one lane: queries micro-batched (all waiting, up to a batch), ingestion
/// one request at a time in slices of `batch_size`.
fn serve(model: Model, shared: Arc<Shared>, batch_size: usize, lane: Lane) {
    loop {
        let requests: Vec<Request> = {
            let Ok(mut q) = shared.queues.lock() else {
                return;
            };
            loop {
                if q.closed {
                    return;
                }
                let waiting = match lane {
                    Lane::Query => !q.query.is_empty(),
                    Lane::Ingest => !q.ingest.is_empty(),
                };
                if waiting {
                    break;
                }
                q = match shared.ready.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
            match lane {
                Lane::Query => {
                    let mut taken = Vec::new();
                    let mut texts = 0;
                    while let Some(r) = q.query.front() {
                        if !taken.is_empty() && texts + r.texts.len() > batch_size {
                            break;
                        }
                        texts += r.texts.len();
                        taken.extend(q.query.pop_front());
                    }
                    taken
                }
                Lane::Ingest => q.ingest.pop_front().into_iter().collect(),
            }
        };
        let all: Vec<String> = requests
            .iter()
            .flat_map(|r| r.texts.iter().cloned())
            .collect();
        crate::metrics::global().record_embed(
            match lane {
                Lane::Query => "query",
                Lane::Ingest => "ingest",
            },
            all.len(),
        );
        match model.embed_all(&all, batch_size) {
            Ok(mut vectors) => {
                for r in requests {
                    let rest = vectors.split_off(r.texts.len());
                    let _ = r.reply.send(Ok(vectors));
                    vectors = rest;
                }
            }
            Err(e) => {
                for r in requests {
                    let _ = r.reply.send(Err(EmbedError::Failed(e.to_string())));
                }
            }
        }
    }
}

impl Model {
    fn load(dir: &Path, max_tokens: usize) -> anyhow::Result<Self> {
        let device = Device::Cpu;
        let config: Config =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| anyhow::anyhow!("{e}"))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        // SAFETY: the weights file is mapped read-only and not modified while mapped.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &device,
            )?
        };
        let bert = BertModel::load(vb, &config)?;
        Ok(Self {
            bert,
            tokenizer,
            device,
        })
    }

    /// Embeds in slices of `batch_size`.
    fn embed_all(&self, texts: &[String], batch_size: usize) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for slice in texts.chunks(batch_size) {
            out.extend(self.embed_batch(slice)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let n = encodings.len();
        let len = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let mut ids = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            types.extend_from_slice(e.get_type_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let types = Tensor::from_vec(types, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let hidden = self.bert.forward(&ids, &types, Some(&mask))?;
        // Mean over real tokens only, then unit length: what sentence-transformers does for this model.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.to_vec2::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedder() -> LocalEmbedder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        LocalEmbedder::load(&dir, LocalSettings::default())
            .expect("model present (scripts/fetch-models.sh)")
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[tokio::test]
    async fn similar_sentences_are_closer_than_unrelated_ones() {
        let e = embedder();
        let v = e
            .embed(
                vec![
                    "How many days of paid leave do employees get?".into(),
                    "Staff are entitled to 25 days of annual holiday.".into(),
                    "The server listens on port 3000 by default.".into(),
                ],
                Lane::Query,
            )
            .await
            .unwrap();
        assert_eq!(v.len(), 3);
        assert!(v.iter().all(|x| x.len() == DIMENSIONS));
        for x in &v {
            let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        }
        assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
    }

    #[tokio::test]
    async fn batching_does_not_change_a_text_s_vector() {
        let e = embedder();
        let alone = e.embed(vec!["short".into()], Lane::Query).await.unwrap();
        let batched = e
            .embed(
                vec![
                    "a much longer sentence that forces padding of the short one".into(),
                    "short".into(),
                ],
                Lane::Ingest,
            )
            .await
            .unwrap();
        let d: f32 = alone[0]
            .iter()
            .zip(&batched[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "padding leaked into the vector: max diff {d}");
    }

    #[tokio::test]
    async fn concurrent_queries_each_get_their_own_vector() {
        let e = Arc::new(embedder());
        let texts: Vec<String> = (0..12)
            .map(|i| format!("question number {i} about invoices"))
            .collect();
        let handles: Vec<_> = texts
            .iter()
            .cloned()
            .map(|t| {
                let e = e.clone();
                tokio::spawn(async move { e.embed(vec![t], Lane::Query).await })
            })
            .collect();
        let expected = e.embed(texts.clone(), Lane::Ingest).await.unwrap();
        for (h, want) in handles.into_iter().zip(expected) {
            let got = h.await.unwrap().unwrap();
            let d: f32 = got[0]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(d < 1e-4);
        }
    }
}

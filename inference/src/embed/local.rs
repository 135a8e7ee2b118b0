//! all-MiniLM-L6-v2 in f32 with candle: mean-pooled, L2-normalised 384-d sentence vectors, the
//! reference the faster int8 ONNX Runtime model is checked against. Runs on the two lanes of
//! [`super::lanes`], each with its own 90 MB copy of the weights.

use super::lanes::{self, Forward, LaneEmbedder, LaneSettings};
use super::Lane;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::Tokenizer;

/// Model id recorded with spaces embedded by this model.
pub const MODEL_ID: &str = "local/all-MiniLM-L6-v2";
/// Output dimensions of the model.
pub const DIMENSIONS: usize = 384;

/// Loads the model from `dir` (model.safetensors, tokenizer.json, config.json) once per lane and
/// starts the lanes' threads.
pub fn load(dir: &Path, settings: LaneSettings) -> anyhow::Result<LaneEmbedder> {
    LaneEmbedder::start(MODEL_ID, DIMENSIONS, settings, |lane| {
        let model = Model::load(dir, settings.max_tokens)?;
        // The ingestion lane computes inside its own small pool while questions are being asked;
        // otherwise (and always for queries) the global pool, with every core.
        let pool = match lane {
            Lane::Ingest => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(settings.ingest_threads.max(1))
                    .thread_name(|i| format!("kenning-embed-ingest-{i}"))
                    .build()?,
            ),
            Lane::Query => None,
        };
        Ok(Box::new(CandleLane { model, pool }) as Box<dyn Forward>)
    })
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

struct CandleLane {
    model: Model,
    pool: Option<rayon::ThreadPool>,
}

impl Forward for CandleLane {
    fn embed_batch(&mut self, texts: &[String], wide: bool) -> anyhow::Result<Vec<Vec<f32>>> {
        match &self.pool {
            Some(pool) if !wide => pool.install(|| self.model.embed_batch(texts)),
            _ => self.model.embed_batch(texts),
        }
    }
}

impl Model {
    fn load(dir: &Path, max_tokens: usize) -> anyhow::Result<Self> {
        let device = Device::Cpu;
        let config: Config =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
        let tokenizer = lanes::load_tokenizer(&dir.join("tokenizer.json"), max_tokens)?;
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

    fn embed_batch(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>> {
        let batch = lanes::encode(&self.tokenizer, texts)?;
        let shape = (batch.rows, batch.len);
        let ids = Tensor::from_vec(batch.ids, shape, &self.device)?;
        let types = Tensor::from_vec(batch.types, shape, &self.device)?;
        let mask = Tensor::from_vec(batch.mask, shape, &self.device)?;
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
    use crate::embed::Embedder;
    use std::sync::Arc;

    fn embedder() -> LaneEmbedder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        load(&dir, LaneSettings::default()).expect("model present (scripts/fetch-models.sh)")
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

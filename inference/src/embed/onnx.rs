//! all-MiniLM-L6-v2 with int8 weights on ONNX Runtime: the default local embedder, about twice
//! as fast as f32 candle on these CPUs (see docs/BENCHMARKS.md). ONNX Runtime is loaded at run
//! time from the `libonnxruntime.so` that PyPI's `onnxruntime` wheel ships (nothing is linked or
//! downloaded at build time). Runs on the two lanes of [`super::lanes`].

use super::lanes::{self, Forward, LaneEmbedder, LaneSettings};
use super::Lane;
use anyhow::Context;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokenizers::Tokenizer;

/// Model id recorded with spaces embedded by this model; int8 vectors differ slightly from the f32
/// model's, so the two never share an index.
pub const MODEL_ID: &str = "local/all-MiniLM-L6-v2-int8";
/// Output dimensions of the model.
pub const DIMENSIONS: usize = 384;

/// Where the model and runtime files are.
#[derive(Clone, Debug)]
pub struct OnnxFiles {
    /// The int8 model (`model.onnx`).
    pub model: PathBuf,
    /// The model's tokenizer (`tokenizer.json`, shared with the f32 model).
    pub tokenizer: PathBuf,
    /// ONNX Runtime's shared library.
    pub runtime: PathBuf,
}

impl OnnxFiles {
    /// The layout `scripts/fetch-models.sh` leaves in the models directory.
    pub fn in_models_dir(dir: &Path) -> Self {
        Self {
            model: dir.join("all-MiniLM-L6-v2-int8").join("model.onnx"),
            tokenizer: dir.join("all-MiniLM-L6-v2").join("tokenizer.json"),
            runtime: dir.join("onnxruntime").join("libonnxruntime.so.1.31.1"),
        }
    }
}

/// ONNX Runtime allows one environment per process; every embedder (several in tests) shares it.
fn runtime(library: &Path) -> anyhow::Result<Environment> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let env = ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("kenning")
                .with_telemetry(false)
                .build()
                .map_err(|e| e.to_string())?;
            // ONNX Runtime narrates every graph rewrite at its info level; only problems matter.
            env.set_log_level(ort::logging::LogLevel::Warning);
            Ok(env)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("loading ONNX Runtime from {}: {e}", library.display()))
}

/// Loads the model and starts the lanes' threads. The query lane uses every core; the ingestion
/// lane `settings.ingest_threads` while questions are being asked, else every core (a session
/// per width: ONNX Runtime fixes a session's threads when it is made).
pub fn load(files: &OnnxFiles, settings: LaneSettings) -> anyhow::Result<LaneEmbedder> {
    for path in [&files.model, &files.tokenizer, &files.runtime] {
        anyhow::ensure!(path.is_file(), "{} is missing", path.display());
    }
    let env = runtime(&files.runtime)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    LaneEmbedder::start(MODEL_ID, DIMENSIONS, settings, |lane| {
        let tokenizer = lanes::load_tokenizer(&files.tokenizer, settings.max_tokens)?;
        let wide = session(&env, &files.model, cores)?;
        let narrow_threads = settings.ingest_threads.clamp(1, cores);
        let narrow = match lane {
            Lane::Ingest if narrow_threads < cores => {
                Some(session(&env, &files.model, narrow_threads)?)
            }
            _ => None,
        };
        let takes_types = takes_types(&wide, &files.model)?;
        Ok(Box::new(OnnxLane {
            wide,
            narrow,
            tokenizer,
            takes_types,
        }) as Box<dyn Forward>)
    })
}

struct OnnxLane {
    /// A session on every core.
    wide: Session,
    /// A session on the ingestion lane's share of the cores, when that is fewer.
    narrow: Option<Session>,
    tokenizer: Tokenizer,
    /// Whether the graph takes `token_type_ids` (BERT exports do, some others not).
    takes_types: bool,
}

fn session(env: &Environment, model: &Path, threads: usize) -> anyhow::Result<Session> {
    let failed = |e: &dyn std::fmt::Display| anyhow::anyhow!("ONNX Runtime session: {e}");
    let mut builder = Session::builder(env)
        .map_err(|e| failed(&e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| failed(&e))?
        .with_intra_threads(threads)
        .map_err(|e| failed(&e))?
        .with_inter_threads(1)
        .map_err(|e| failed(&e))?
        // Spinning workers would burn the core the other lane or the server needs.
        .with_intra_op_spinning(false)
        .map_err(|e| failed(&e))?;
    builder
        .commit_from_file(model)
        .map_err(|e| failed(&e))
        .with_context(|| format!("loading {}", model.display()))
}

/// Checks the graph's inputs; says whether it also takes `token_type_ids`.
fn takes_types(session: &Session, model: &Path) -> anyhow::Result<bool> {
    let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    for needed in ["input_ids", "attention_mask"] {
        anyhow::ensure!(
            names.contains(&needed),
            "{} has no input named {needed} (inputs: {names:?})",
            model.display()
        );
    }
    Ok(names.contains(&"token_type_ids"))
}

fn tensor(shape: [usize; 2], values: &[u32]) -> anyhow::Result<Tensor<i64>> {
    let data: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
    Tensor::from_array((shape, data)).map_err(|e| anyhow::anyhow!("{e}"))
}

impl Forward for OnnxLane {
    fn embed_batch(&mut self, texts: &[String], wide: bool) -> anyhow::Result<Vec<Vec<f32>>> {
        let batch = lanes::encode(&self.tokenizer, texts)?;
        let shape = [batch.rows, batch.len];
        let mut inputs = ort::inputs![
            "input_ids" => tensor(shape, &batch.ids)?,
            "attention_mask" => tensor(shape, &batch.mask)?,
        ];
        if self.takes_types {
            inputs.push(("token_type_ids".into(), tensor(shape, &batch.types)?.into()));
        }
        let session = match (&mut self.narrow, wide) {
            (Some(narrow), false) => narrow,
            _ => &mut self.wide,
        };
        let outputs = session.run(inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (dims, hidden) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            dims.len() == 3
                && dims[0] as usize == batch.rows
                && dims[1] as usize == batch.len
                && dims[2] as usize == DIMENSIONS,
            "unexpected output shape {dims:?}"
        );
        Ok(lanes::mean_pool_unit(
            hidden,
            &batch.mask,
            batch.rows,
            batch.len,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Embedder;

    fn models() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    const TEXTS: [&str; 4] = [
        "How many days of paid leave do employees get?",
        "Staff are entitled to 25 days of annual holiday.",
        "The server listens on port 3000 by default.",
        "Rotate database passwords every ninety days and store them in the vault.",
    ];

    #[cfg(feature = "candle")]
    #[tokio::test]
    async fn int8_vectors_agree_with_the_f32_model() {
        let int8 = load(
            &OnnxFiles::in_models_dir(&models()),
            LaneSettings::default(),
        )
        .expect("model and runtime present (scripts/fetch-models.sh)");
        let f32 =
            super::super::local::load(&models().join("all-MiniLM-L6-v2"), LaneSettings::default())
                .unwrap();
        let texts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
        let a = int8.embed(texts.clone(), Lane::Ingest).await.unwrap();
        let b = f32.embed(texts, Lane::Query).await.unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.len(), DIMENSIONS);
            let norm: f32 = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
            let agree = cosine(x, y);
            assert!(agree > 0.97, "int8 and f32 vectors differ: cosine {agree}");
        }
        // The ranking that matters for search survives quantisation.
        assert!(cosine(&a[0], &a[1]) > cosine(&a[0], &a[2]) + 0.2);
    }

    #[tokio::test]
    async fn padding_in_a_batch_does_not_change_a_text_s_vector() {
        let e = load(
            &OnnxFiles::in_models_dir(&models()),
            LaneSettings::default(),
        )
        .unwrap();
        let alone = e.embed(vec!["short".into()], Lane::Query).await.unwrap();
        let batched = e
            .embed(vec![TEXTS[3].into(), "short".into()], Lane::Ingest)
            .await
            .unwrap();
        let d = alone[0]
            .iter()
            .zip(&batched[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-3, "padding leaked into the vector: max diff {d}");
    }

    #[test]
    fn a_missing_runtime_library_is_a_clear_error() {
        let files = OnnxFiles {
            runtime: PathBuf::from("/nonexistent/libonnxruntime.so"),
            ..OnnxFiles::in_models_dir(&models())
        };
        let err = load(&files, LaneSettings::default()).err().unwrap();
        assert!(
            err.to_string().contains("libonnxruntime.so is missing"),
            "{err}"
        );
    }
}

//! The two lanes every in-process embedder runs on: dedicated threads, each owning its own copy
//! of the model, one serving only queries (several waiting queries share one forward pass), the
//! other only ingestion batches. A query therefore never waits behind an ingestion batch; it only
//! shares the cores with it. While questions are being asked the ingestion lane is held to fewer
//! cores than the machine has; when none has come for [`QUIET`], it takes every core.

use super::{EmbedError, Embedder, Lane};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};
use tokio::sync::oneshot;

/// How long after the last question the ingestion lane may take every core.
pub const QUIET: Duration = Duration::from_secs(2);

/// One lane's copy of a model: texts in, unit-length vectors out, in order.
pub trait Forward: Send + 'static {
    /// Embeds one batch (at most `batch_size` texts); `wide` says every core may be used (no
    /// question is waiting or was asked lately), else only the lane's own share.
    fn embed_batch(&mut self, texts: &[String], wide: bool) -> anyhow::Result<Vec<Vec<f32>>>;
}

/// When the last question reached the query lane, shared by both lanes.
#[derive(Clone)]
struct Activity {
    origin: Instant,
    last_query_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        let origin = Instant::now();
        Self {
            origin,
            // As if a question had just come: start narrow, widen once it is quiet.
            last_query_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn query_arrived(&self) {
        self.last_query_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn quiet(&self) -> bool {
        let last = self.last_query_ms.load(Ordering::Relaxed);
        self.now_ms().saturating_sub(last) >= u64::try_from(QUIET.as_millis()).unwrap_or(0)
    }
}

/// Limits of the two lanes.
#[derive(Clone, Copy, Debug)]
pub struct LaneSettings {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Tokens per text; longer texts are truncated (chunks are sized below this).
    pub max_tokens: usize,
    /// Waiting query requests before new ones are refused as busy.
    pub query_capacity: usize,
    /// Waiting ingestion requests before new ones are refused as busy.
    pub ingest_capacity: usize,
    /// Cores the ingestion lane may use; fewer than the machine has leaves the rest to queries
    /// and serving.
    pub ingest_threads: usize,
}

impl Default for LaneSettings {
    fn default() -> Self {
        Self {
            batch_size: 8,
            max_tokens: 512,
            query_capacity: 1024,
            ingest_capacity: 64,
            ingest_threads: 1,
        }
    }
}

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

/// An embedder running a [`Forward`] model on the two lanes; cheap to share behind an `Arc`.
pub struct LaneEmbedder {
    shared: Arc<Shared>,
    activity: Activity,
    settings: LaneSettings,
    model_id: &'static str,
    dimensions: usize,
}

impl LaneEmbedder {
    /// Loads one model copy per lane with `load` (told which lane it is for) and starts the
    /// lanes' threads.
    pub fn start(
        model_id: &'static str,
        dimensions: usize,
        settings: LaneSettings,
        load: impl Fn(Lane) -> anyhow::Result<Box<dyn Forward>>,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        });
        let activity = Activity::new();
        for (lane, name) in [
            (Lane::Query, "kenning-embed-query"),
            (Lane::Ingest, "kenning-embed-ingest"),
        ] {
            let model = load(lane)?;
            let thread_shared = shared.clone();
            let thread_activity = activity.clone();
            let batch = settings.batch_size.max(1);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || serve(model, thread_shared, &thread_activity, batch, lane))?;
        }
        Ok(Self {
            shared,
            activity,
            settings,
            model_id,
            dimensions,
        })
    }
}

impl Drop for LaneEmbedder {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queues.lock() {
            q.closed = true;
        }
        self.shared.ready.notify_all();
    }
}

#[async_trait::async_trait]
impl Embedder for LaneEmbedder {
    fn model_id(&self) -> &str {
        self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: Vec<String>, lane: Lane) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if lane == Lane::Query {
            self.activity.query_arrived();
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
fn serve(
    mut model: Box<dyn Forward>,
    shared: Arc<Shared>,
    activity: &Activity,
    batch_size: usize,
    lane: Lane,
) {
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
        kenning_metrics::global().record_embed(
            match lane {
                Lane::Query => "query",
                Lane::Ingest => "ingest",
            },
            all.len(),
        );
        let result =
            all.chunks(batch_size)
                .try_fold(Vec::with_capacity(all.len()), |mut out, slice| {
                    // Queries always go wide; ingestion only while nobody is asking (checked per
                    // batch, so a question narrows it within one batch).
                    let wide = lane == Lane::Query || activity.quiet();
                    out.extend(model.embed_batch(slice, wide)?);
                    anyhow::Ok(out)
                });
        match result {
            Ok(mut vectors) => {
                for r in requests {
                    let rest = vectors.split_off(r.texts.len().min(vectors.len()));
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

/// The model's tokenizer, truncating at `max_tokens` and padding each batch to its longest text.
pub fn load_tokenizer(path: &Path, max_tokens: usize) -> anyhow::Result<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_padding(Some(PaddingParams::default()));
    Ok(tokenizer)
}

/// A tokenized batch as flat row-major `(rows, len)` arrays of ids, type ids and mask.
pub struct Encoded {
    pub rows: usize,
    pub len: usize,
    pub ids: Vec<u32>,
    pub types: Vec<u32>,
    pub mask: Vec<u32>,
}

/// Tokenizes a batch; padding makes every row the same length.
pub fn encode(tokenizer: &Tokenizer, texts: &[String]) -> anyhow::Result<Encoded> {
    let encodings = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = encodings.len();
    let len = encodings.first().map_or(0, |e| e.get_ids().len());
    let mut out = Encoded {
        rows,
        len,
        ids: Vec::with_capacity(rows * len),
        types: Vec::with_capacity(rows * len),
        mask: Vec::with_capacity(rows * len),
    };
    for e in &encodings {
        out.ids.extend_from_slice(e.get_ids());
        out.types.extend_from_slice(e.get_type_ids());
        out.mask.extend_from_slice(e.get_attention_mask());
    }
    Ok(out)
}

/// Mean over the real tokens of each row of `hidden` (`rows × len × width`, row-major), then unit
/// length: what sentence-transformers does for MiniLM.
pub fn mean_pool_unit(hidden: &[f32], mask: &[u32], rows: usize, len: usize) -> Vec<Vec<f32>> {
    let width = hidden.len().checked_div(rows * len).unwrap_or(0);
    (0..rows)
        .map(|r| {
            let mut sum = vec![0.0f32; width];
            let mut count = 0.0f32;
            for t in 0..len {
                if mask[r * len + t] == 0 {
                    continue;
                }
                count += 1.0;
                let at = (r * len + t) * width;
                for (s, h) in sum.iter_mut().zip(&hidden[at..at + width]) {
                    *s += h;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            sum.iter_mut().for_each(|s| *s /= norm);
            sum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingestion_widens_only_after_a_quiet_spell() {
        let activity = Activity::new();
        assert!(!activity.quiet(), "starts narrow");
        let later = Activity {
            origin: activity.origin - QUIET,
            last_query_ms: activity.last_query_ms.clone(),
        };
        assert!(later.quiet(), "no question for QUIET: wide");
        later.query_arrived();
        assert!(!later.quiet(), "a question narrows it again");
    }

    #[test]
    fn mean_pooling_ignores_padding_and_returns_unit_vectors() {
        // Two rows of three tokens, width 2; the second row's last token is padding.
        let hidden = [
            1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 3.0, 100.0, 100.0,
        ];
        let mask = [1, 1, 1, 1, 1, 0];
        let v = mean_pool_unit(&hidden, &mask, 2, 3);
        assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    struct Echo;
    impl Forward for Echo {
        fn embed_batch(&mut self, texts: &[String], _wide: bool) -> anyhow::Result<Vec<Vec<f32>>> {
            anyhow::ensure!(texts.len() <= 2, "batch of {} over the limit", texts.len());
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    #[tokio::test]
    async fn requests_are_sliced_into_batches_and_answered_in_order() {
        let settings = LaneSettings {
            batch_size: 2,
            ..LaneSettings::default()
        };
        let e = LaneEmbedder::start("test/echo", 1, settings, |_| Ok(Box::new(Echo))).unwrap();
        let texts: Vec<String> = (1..=5).map(|n| "x".repeat(n)).collect();
        let got = e.embed(texts, Lane::Ingest).await.unwrap();
        assert_eq!(
            got,
            vec![vec![1.0], vec![2.0], vec![3.0], vec![4.0], vec![5.0]]
        );
        let q = e.embed(vec!["abc".into()], Lane::Query).await.unwrap();
        assert_eq!(q, vec![vec![3.0]]);
    }
}

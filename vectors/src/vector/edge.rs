//! Qdrant Edge: Qdrant's own engine inside the process, one shard per embedding model and
//! length in `DATA_DIR/edge`. Points carry the space and document ids as keyword payload
//! (indexed, the space one as the tenant key); scores are cosine similarities. Each point also
//! holds its passage as a BM25 sparse vector (Qdrant's own tokenizer, English stemming and stop
//! words, IDF applied by the shard), which is the keyword side of search on this backend. Writes go to the
//! shard's write-ahead log before they are acknowledged; after a large ingest the shard is
//! optimised in the background, which is when it builds its HNSW graph. One process owns a
//! shard, so this backend is for a single `kenning serve` with in-process workers.

use super::{validate, Chunks, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore};
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::serde_json::json;
use qdrant_edge::{
    Condition, CreateIndex, CreateVectorName, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations,
    Filter, HasIdCondition, JsonPath, KeywordIndexParamsBuilder, Match, Modifier, NamedQuery,
    OperationError, PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, QueryRequestBuilder, ScoringQuery, SparseVectorConfig,
    UpdateOperation, Vector, VectorInternal, VectorNameConfig, VectorNameOperations, Vectors,
};
use qdrant_edge::{EdgeConfig, ScoredPoint, WithPayloadInterface};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// The shard's dense vector.
const VECTOR: &str = "dense";
/// The shard's sparse vector: the passage's BM25 term weights.
const SPARSE: &str = "bm25";
/// Payload key of the space a passage belongs to.
const SPACE: &str = "space_id";
/// Payload key of the document a passage belongs to.
const DOCUMENT: &str = "document_id";
/// Points written since the last optimisation that start another one: about one large
/// document's worth, so a bulk ingest is indexed as it goes and small edits cost nothing.
const OPTIMIZE_AFTER: usize = 5_000;

/// Passage vectors in an embedded Qdrant Edge shard.
pub struct EdgeVectorStore {
    shard: Shard,
    dimensions: usize,
    /// Turns passages and queries into BM25 sparse vectors, as Qdrant's server does.
    bm25: Arc<EdgeBm25>,
}

impl From<OperationError> for VectorError {
    fn from(e: OperationError) -> Self {
        match e {
            OperationError::WrongVectorDimension { .. } => VectorError::Invalid(e.to_string()),
            other => VectorError::Other(anyhow::Error::new(other)),
        }
    }
}

/// The shard directory of one model and length: names keep letters, digits, `-` and `_`.
pub fn shard_dir(root: &Path, model: &str, dimensions: usize) -> PathBuf {
    root.join(super::slug(&format!("{model}_{dimensions}")))
}

/// A payload key as Qdrant's path syntax reads it.
fn key(name: &str) -> Result<JsonPath, VectorError> {
    name.parse()
        .map_err(|()| VectorError::Invalid(format!("not a payload path: {name:?}")))
}

/// A keyword payload index on `field` (the tenant key when `tenant`); creating one that exists
/// is a no-op, so this also mends a shard without it.
pub(crate) fn keyword_index(
    shard: &EdgeShard,
    field: &str,
    tenant: bool,
) -> Result<(), VectorError> {
    let params = KeywordIndexParamsBuilder::new().is_tenant(tenant).build();
    shard.update(UpdateOperation::FieldIndexOperation(
        FieldIndexOperations::CreateIndex(CreateIndex {
            field_name: key(field)?,
            field_schema: Some(PayloadFieldSchema::FieldParams(
                PayloadSchemaParams::Keyword(params),
            )),
        }),
    ))?;
    Ok(())
}

/// A condition that a keyword payload field equals `value`.
fn equals(field: &str, value: String) -> Result<Condition, VectorError> {
    Ok(Condition::Field(FieldCondition::new_match(
        key(field)?,
        Match::from(value),
    )))
}

/// The filter every search and delete starts from: one space, optionally one document.
fn scope(space: Uuid, document: Option<Uuid>) -> Result<Filter, VectorError> {
    let mut must = vec![equals(SPACE, space.to_string())?];
    if let Some(d) = document {
        must.push(equals(DOCUMENT, d.to_string())?);
    }
    Ok(Filter {
        must: Some(must),
        ..Filter::new()
    })
}

/// Runs a call into a shard on the blocking pool: every Edge call is synchronous.
async fn blocking<T, F>(f: F) -> Result<T, VectorError>
where
    F: FnOnce() -> Result<T, VectorError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorError::Other(anyhow::anyhow!("Qdrant Edge task failed: {e}")))?
}

/// Optimises a shard, then flushes its segments so its write-ahead log can drop what they now
/// hold: Edge flushes only when asked, and an unflushed log grows with every write.
fn optimize_and_flush(shard: &EdgeShard) -> Result<bool, VectorError> {
    let optimized = shard.optimize()?;
    shard.flush()?;
    Ok(optimized)
}

/// One open Qdrant Edge shard: the engine, the lock that keeps other processes off its
/// directory, and its background optimisation.
pub(crate) struct Shard {
    inner: Arc<Held>,
    path: PathBuf,
    /// Points written since the last optimisation began.
    written: Arc<AtomicUsize>,
    /// Points written that start another optimisation.
    optimize_after: usize,
    /// Whether an optimisation is running (one at a time).
    optimizing: Arc<AtomicBool>,
}

/// An open shard with the lock on its directory: whoever still holds the shard (a background
/// optimisation finishing after the store is gone) holds the lock too.
struct Held {
    shard: EdgeShard,
    /// Held open with an exclusive lock: a second process on the same shard is refused.
    _lock: std::fs::File,
}

impl std::ops::Deref for Held {
    type Target = EdgeShard;
    fn deref(&self) -> &EdgeShard {
        &self.shard
    }
}

/// Clears the running flag when an optimisation ends, even by a panic, so the next one can start.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Search threads per shard: one per core. Edge's own default is four per core, per shard,
/// meant for data read from disk; these shards are searched in memory.
pub(crate) fn search_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How long opening a shard waits for its lock before reporting it held by another process.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Marks a shard whose every indexed space has been queued for indexing into it.
const INDEXED_MARKER: &str = "kenning.indexed";

impl Shard {
    /// Opens the shard in `dir`, or creates it with `config`; `prepare` then runs on it before
    /// anyone else can (payload indexes, upgrades). With `retune`, an existing shard takes the
    /// tunables of `config` (optimiser thresholds, search threads) over the ones it was made
    /// with. The shard is optimised once in the background, finishing what a stopped process left.
    pub(crate) async fn open<T, P>(
        dir: PathBuf,
        config: EdgeConfig,
        retune: bool,
        optimize_after: usize,
        prepare: P,
    ) -> Result<(Self, T), VectorError>
    where
        P: FnOnce(&EdgeShard) -> Result<T, VectorError> + Send + 'static,
        T: Send + 'static,
    {
        let path = dir.clone();
        let (inner, lock, prepared) = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(anyhow::Error::new)?;
            let lock =
                std::fs::File::create(dir.join("kenning.lock")).map_err(anyhow::Error::new)?;
            // A store closed a moment ago may still be finishing a background optimisation,
            // which holds the lock until it is done: wait a little before calling it taken.
            let mut waited = std::time::Duration::ZERO;
            let mut locked = lock.try_lock();
            while matches!(locked, Err(std::fs::TryLockError::WouldBlock)) && waited < LOCK_WAIT {
                std::thread::sleep(std::time::Duration::from_millis(100));
                waited += std::time::Duration::from_millis(100);
                locked = lock.try_lock();
            }
            if let Err(e) = locked {
                return Err(match e {
                    std::fs::TryLockError::WouldBlock => VectorError::Unavailable(format!(
                        "the Qdrant Edge shard in {} is open in another Kenning process; \
                         stop it first, or send work through it (`kenning ingest --url`): \
                         edge serves one process, so use in-process workers",
                        dir.display()
                    )),
                    std::fs::TryLockError::Error(e) => VectorError::Other(e.into()),
                });
            }
            let shard = if dir.join("edge_config.json").exists() {
                EdgeShard::load(&dir, retune.then_some(config))?
            } else {
                EdgeShard::new(&dir, config)?
            };
            let prepared = prepare(&shard)?;
            Ok((shard, lock, prepared))
        })
        .await
        .map_err(|e| match e {
            VectorError::Other(e) => VectorError::Other(e.context(format!(
                "opening the Qdrant Edge shard in {}",
                path.display()
            ))),
            other => other,
        })?;
        let shard = Self {
            inner: Arc::new(Held {
                shard: inner,
                _lock: lock,
            }),
            path,
            written: Arc::new(AtomicUsize::new(0)),
            optimize_after: optimize_after.max(1),
            optimizing: Arc::new(AtomicBool::new(false)),
        };
        shard.optimize_in_background();
        Ok((shard, prepared))
    }

    /// The shard's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the shard on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, VectorError>
    where
        F: FnOnce(&EdgeShard) -> Result<T, VectorError> + Send + 'static,
        T: Send + 'static,
    {
        let shard = self.inner.clone();
        blocking(move || f(&shard)).await
    }

    /// Applies one update.
    pub(crate) async fn update(&self, op: UpdateOperation) -> Result<(), VectorError> {
        self.run(move |s| Ok(s.update(op)?)).await
    }

    /// Optimises the shard now (merging segments, building the HNSW graph once a segment is
    /// large); true when there was work to do.
    pub(crate) async fn optimize(&self) -> Result<bool, VectorError> {
        self.run(optimize_and_flush).await
    }

    /// Whether a background optimisation is running.
    pub(crate) fn optimizing(&self) -> bool {
        self.optimizing.load(Ordering::Acquire)
    }

    /// Counts `written` points (written or deleted) and starts a background optimisation, which
    /// also flushes the write-ahead log, once enough have changed since the last one.
    pub(crate) fn wrote(&self, written: usize) {
        let total = self.written.fetch_add(written, Ordering::Relaxed) + written;
        if total >= self.optimize_after {
            self.optimize_in_background();
        }
    }

    /// Starts an optimisation unless one is running.
    /// Whether nothing but this handle uses the shard: no call and no optimisation in flight.
    pub(crate) fn idle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1 && !self.optimizing.load(Ordering::Acquire)
    }

    pub(crate) fn optimize_in_background(&self) {
        if self.optimizing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.written.store(0, Ordering::Relaxed);
        let (shard, running) = (self.inner.clone(), Running(self.optimizing.clone()));
        tokio::task::spawn_blocking(move || {
            let _running = running;
            // Searches and writes go on meanwhile: Edge serves them from proxies of the segments.
            if let Err(e) = optimize_and_flush(&shard) {
                tracing::warn!(error = %e, "optimising the Qdrant Edge shard failed");
            }
        });
    }

    /// The `limit` points nearest `vector` (of the named vector `using`) that `filter` lets
    /// through, with their payloads when `payload` is set.
    pub(crate) async fn nearest(
        &self,
        vector: VectorInternal,
        using: &str,
        filter: Filter,
        limit: usize,
        payload: bool,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let request = QueryRequestBuilder::new(limit)
            .query(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                vector, using,
            ))))
            .filter(filter)
            .with_payload(WithPayloadInterface::Bool(payload))
            .build();
        self.run(move |s| Ok(s.query(request)?)).await
    }

    /// Removes the points `filter` lets through.
    pub(crate) async fn delete_where(&self, filter: Filter) -> Result<(), VectorError> {
        self.update(UpdateOperation::PointOperation(
            PointOperations::DeletePointsByFilter(filter),
        ))
        .await
    }
}

impl EdgeVectorStore {
    /// Opens the model's shard under `root`, creating it and its payload indexes the first time.
    /// A shard of another length is never reused: its directory name carries the length.
    pub async fn open(root: &Path, model: &str, dimensions: usize) -> Result<Self, VectorError> {
        let config = EdgeConfigBuilder::new()
            .vector(
                VECTOR,
                EdgeVectorParamsBuilder::new(dimensions, Distance::Cosine).build(),
            )
            .sparse_vector(
                SPARSE,
                EdgeSparseVectorParamsBuilder::new()
                    .modifier(Modifier::Idf)
                    .build(),
            )
            .max_search_threads(search_threads())
            .build();
        let (shard, ()) = Shard::open(
            shard_dir(root, model, dimensions),
            config,
            // Loaded as saved: a shard from before the keyword side must not be validated
            // against a configuration that already has it.
            false,
            OPTIMIZE_AFTER,
            |shard| {
                // A shard from before the keyword side gets it now, and its passages must be
                // indexed again to fill it.
                if !shard.config().sparse_vectors.contains_key(SPARSE) {
                    let marker = shard.path().join(INDEXED_MARKER);
                    if marker.exists() {
                        std::fs::remove_file(marker).map_err(anyhow::Error::new)?;
                    }
                }
                shard.update(UpdateOperation::VectorNameOperation(
                    VectorNameOperations::CreateVectorName(CreateVectorName {
                        vector_name: SPARSE.into(),
                        config: VectorNameConfig::sparse(SparseVectorConfig {
                            modifier: Some(Modifier::Idf),
                            datatype: None,
                        }),
                    }),
                ))?;
                keyword_index(shard, SPACE, true)?;
                keyword_index(shard, DOCUMENT, false)?;
                Ok(())
            },
        )
        .await?;
        Ok(Self {
            shard,
            dimensions,
            bm25: Arc::new(
                EdgeBm25::new(EdgeBm25Config::default())
                    .map_err(|e| VectorError::Other(anyhow::anyhow!("BM25 settings: {e}")))?,
            ),
        })
    }

    /// The shard's directory.
    pub fn path(&self) -> &Path {
        self.shard.path()
    }

    /// Optimises the shard now (merging segments, building the HNSW graph once a segment is
    /// large); true when there was work to do.
    pub async fn optimize(&self) -> Result<bool, VectorError> {
        self.shard.optimize().await
    }

    /// The chunk hits of a query on one of the shard's vectors.
    async fn hits(
        &self,
        vector: VectorInternal,
        using: &str,
        filter: Filter,
        limit: usize,
    ) -> Result<Vec<VectorHit>, VectorError> {
        self.shard
            .nearest(vector, using, filter, limit, false)
            .await?
            .into_iter()
            .map(|p| match p.id {
                PointId::Uuid(chunk_id) => Ok(VectorHit {
                    chunk_id,
                    score: p.score,
                }),
                other => Err(VectorError::Other(anyhow::anyhow!(
                    "the Qdrant Edge shard holds a point whose id is not a chunk id: {other}"
                ))),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl VectorStore for EdgeVectorStore {
    fn backend_name(&self) -> &'static str {
        "edge"
    }

    async fn ping(&self) -> Result<(), VectorError> {
        self.shard
            .run(|s| {
                s.info()?;
                Ok(())
            })
            .await
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<(), VectorError> {
        for p in &points {
            validate(&p.vector, self.dimensions)?;
        }
        if points.is_empty() {
            return Ok(());
        }
        let n = points.len();
        let bm25 = self.bm25.clone();
        self.shard.run(move |shard| {
            let structs = points
                .into_iter()
                .map(|p| {
                    let sparse = Vector::from(bm25.embed_document(&p.text));
                    PointStruct::new(
                        PointId::Uuid(p.chunk_id),
                        Vectors::new_named([
                            (VECTOR, Vector::from(p.vector)),
                            (SPARSE, sparse),
                        ]),
                        json!({ SPACE: p.space_id.to_string(), DOCUMENT: p.document_id.to_string() }),
                    )
                    .into()
                })
                .collect();
            Ok(shard.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(structs)),
            ))?)
        })
        .await?;
        self.shard.wrote(n);
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.hits(
            VectorInternal::Dense(query.vector),
            VECTOR,
            scope(query.space_id, query.document_id)?,
            query.limit,
        )
        .await
    }

    async fn keyword(
        &self,
        space_id: Uuid,
        query: &str,
        document_id: Option<Uuid>,
        limit: usize,
    ) -> Result<Option<Vec<VectorHit>>, VectorError> {
        let sparse = self.bm25.embed_query(query);
        // Nothing but stop words: no passage can match.
        if sparse.indices.is_empty() || limit == 0 {
            return Ok(Some(Vec::new()));
        }
        let hits = self
            .hits(
                VectorInternal::Sparse(sparse),
                SPARSE,
                scope(space_id, document_id)?,
                limit,
            )
            .await?;
        Ok(Some(hits))
    }

    fn needs_reindex(&self) -> bool {
        !self.shard.path().join(INDEXED_MARKER).exists()
    }

    async fn reindex_queued(&self) -> Result<(), VectorError> {
        let marker = self.shard.path().join(INDEXED_MARKER);
        std::fs::write(
            marker,
            b"every space indexed before this shard was queued for it\n",
        )
        .map_err(|e| VectorError::Other(e.into()))
    }

    async fn delete_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        which: Chunks<'_>,
    ) -> Result<(), VectorError> {
        let mut filter = scope(space_id, Some(document_id))?;
        let ids = |ids: &[Uuid]| {
            Condition::HasId(
                ids.iter()
                    .map(|id| PointId::Uuid(*id))
                    .collect::<HasIdCondition>(),
            )
        };
        match which {
            Chunks::Only([]) => return Ok(()),
            Chunks::Only(only) => filter.must.get_or_insert_with(Vec::new).push(ids(only)),
            Chunks::AllBut([]) => {}
            Chunks::AllBut(keep) => filter.must_not = Some(vec![ids(keep)]),
        }
        self.shard.delete_where(filter).await
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        self.shard.delete_where(scope(space_id, None)?).await?;
        // A whole space's passages are worth vacuuming now rather than at the next large write.
        self.shard.optimize_in_background();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::shard_dir;
    use std::path::Path;

    #[test]
    fn shard_directories_differ_by_model_and_length() {
        let root = Path::new("/data/edge");
        let a = shard_dir(root, "onnx:all-MiniLM-L6-v2/int8", 384);
        assert_eq!(a, root.join("onnx_all-minilm-l6-v2_int8_384"));
        assert_ne!(a, shard_dir(root, "onnx:all-MiniLM-L6-v2/int8", 256));
        assert_ne!(a, shard_dir(root, "openai:text-embedding-3-small", 384));
    }
}

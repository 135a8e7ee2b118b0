//! Qdrant Edge: Qdrant's own engine inside the process, one shard per embedding model and
//! length in `DATA_DIR/edge`. Points carry the space and document ids as keyword payload
//! (indexed, the space one as the tenant key); scores are cosine similarities. Each point also
//! holds its passage as a BM25 sparse vector (Qdrant's own tokenizer, English stemming and stop
//! words, IDF applied by the shard), which is the keyword side of search on this backend. Writes go to the
//! shard's write-ahead log before they are acknowledged; after a large ingest the shard is
//! optimised in the background, which is when it builds its HNSW graph. One process owns a
//! shard, so this backend is for a single `kenning serve` with in-process workers.

use super::{validate, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore};
use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::serde_json::json;
use qdrant_edge::{
    Condition, CreateIndex, CreateVectorName, Distance, EdgeConfigBuilder, EdgeShard,
    EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, FieldCondition, FieldIndexOperations,
    Filter, JsonPath, KeywordIndexParamsBuilder, Match, Modifier, NamedQuery, OperationError,
    PayloadFieldSchema, PayloadSchemaParams, PointId, PointInsertOperations, PointOperations,
    PointStruct, QueryEnum, QueryRequestBuilder, ScoringQuery, SparseVectorConfig, UpdateOperation,
    Vector, VectorInternal, VectorNameConfig, VectorNameOperations, Vectors,
};
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
    shard: Arc<EdgeShard>,
    dimensions: usize,
    path: PathBuf,
    /// Points written since the last optimisation began.
    written: Arc<AtomicUsize>,
    /// Whether an optimisation is running (one at a time).
    optimizing: Arc<AtomicBool>,
    /// Turns passages and queries into BM25 sparse vectors, as Qdrant's server does.
    bm25: Arc<EdgeBm25>,
    /// The shard held passages from before it had a keyword side.
    needs_reindex: bool,
    /// Held open with an exclusive lock: a second process on the same shard is refused.
    _lock: std::fs::File,
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

fn key(name: &str) -> Result<JsonPath, VectorError> {
    name.parse()
        .map_err(|()| VectorError::Other(anyhow::anyhow!("not a payload path: {name}")))
}

/// The filter every search and delete starts from: one space, optionally one document.
fn scope(space: Uuid, document: Option<Uuid>) -> Result<Filter, VectorError> {
    let equal = |field: &str, value: Uuid| -> Result<Condition, VectorError> {
        Ok(Condition::Field(FieldCondition::new_match(
            key(field)?,
            Match::from(value.to_string()),
        )))
    };
    let mut must = vec![equal(SPACE, space)?];
    if let Some(d) = document {
        must.push(equal(DOCUMENT, d)?);
    }
    Ok(Filter {
        must: Some(must),
        ..Filter::new()
    })
}

/// Runs a call into the shard on the blocking pool: every Edge call is synchronous.
async fn blocking<T, F>(f: F) -> Result<T, VectorError>
where
    F: FnOnce() -> Result<T, VectorError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorError::Other(anyhow::anyhow!("Qdrant Edge task failed: {e}")))?
}

impl EdgeVectorStore {
    /// Opens the model's shard under `root`, creating it and its payload indexes the first time.
    /// A shard of another length is never reused: its directory name carries the length.
    pub async fn open(root: &Path, model: &str, dimensions: usize) -> Result<Self, VectorError> {
        let path = shard_dir(root, model, dimensions);
        let dir = path.clone();
        let (shard, lock, needs_reindex) = blocking(move || {
            std::fs::create_dir_all(&dir).map_err(anyhow::Error::new)?;
            let lock =
                std::fs::File::create(dir.join("kenning.lock")).map_err(anyhow::Error::new)?;
            if let Err(e) = lock.try_lock() {
                return Err(match e {
                    std::fs::TryLockError::WouldBlock => VectorError::Unavailable(format!(
                        "the Qdrant Edge shard in {} is open in another Kenning process; \
                         stop it first (edge serves one process: use in-process workers)",
                        dir.display()
                    )),
                    std::fs::TryLockError::Error(e) => VectorError::Other(e.into()),
                });
            }
            let shard = if dir.join("edge_config.json").exists() {
                EdgeShard::load(&dir, None)?
            } else {
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
                    .build();
                EdgeShard::new(&dir, config)?
            };
            // A shard from before the keyword side gets it now; its passages need indexing again.
            let needs_reindex = !shard.config().sparse_vectors.contains_key(SPARSE)
                && shard.info()?.points_count > 0;
            shard.update(UpdateOperation::VectorNameOperation(
                VectorNameOperations::CreateVectorName(CreateVectorName {
                    vector_name: SPARSE.into(),
                    config: VectorNameConfig::sparse(SparseVectorConfig {
                        modifier: Some(Modifier::Idf),
                        datatype: None,
                    }),
                }),
            ))?;
            // Creating an index that exists is a no-op, so this also mends a shard without them.
            for (field, tenant) in [(SPACE, true), (DOCUMENT, false)] {
                let params = KeywordIndexParamsBuilder::new().is_tenant(tenant).build();
                shard.update(UpdateOperation::FieldIndexOperation(
                    FieldIndexOperations::CreateIndex(CreateIndex {
                        field_name: key(field)?,
                        field_schema: Some(PayloadFieldSchema::FieldParams(
                            PayloadSchemaParams::Keyword(params),
                        )),
                    }),
                ))?;
            }
            Ok((shard, lock, needs_reindex))
        })
        .await
        .map_err(|e| match e {
            VectorError::Other(e) => VectorError::Other(e.context(format!(
                "opening the Qdrant Edge shard in {}",
                path.display()
            ))),
            other => other,
        })?;
        Ok(Self {
            shard: Arc::new(shard),
            dimensions,
            path,
            written: Arc::new(AtomicUsize::new(0)),
            optimizing: Arc::new(AtomicBool::new(false)),
            bm25: Arc::new(
                EdgeBm25::new(EdgeBm25Config::default())
                    .map_err(|e| VectorError::Other(anyhow::anyhow!("BM25 settings: {e}")))?,
            ),
            needs_reindex,
            _lock: lock,
        })
    }

    /// The shard's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Optimises the shard now (merging segments, building the HNSW graph once a segment is
    /// large); true when there was work to do.
    pub async fn optimize(&self) -> Result<bool, VectorError> {
        let shard = self.shard.clone();
        blocking(move || Ok(shard.optimize()?)).await
    }

    /// Starts a background optimisation once enough has been written since the last one.
    fn optimize_when_due(&self, written: usize) {
        let total = self.written.fetch_add(written, Ordering::Relaxed) + written;
        if total < OPTIMIZE_AFTER || self.optimizing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.written.store(0, Ordering::Relaxed);
        let (shard, optimizing) = (self.shard.clone(), self.optimizing.clone());
        tokio::task::spawn_blocking(move || {
            // Searches and writes go on meanwhile: Edge serves them from proxies of the segments.
            if let Err(e) = shard.optimize() {
                tracing::warn!(error = %e, "optimising the Qdrant Edge shard failed");
            }
            optimizing.store(false, Ordering::Release);
        });
    }

    async fn update(&self, op: UpdateOperation) -> Result<(), VectorError> {
        let shard = self.shard.clone();
        blocking(move || Ok(shard.update(op)?)).await
    }

    /// The `limit` points of one vector nearest `vector` among those `filter` lets through.
    async fn nearest(
        &self,
        vector: VectorInternal,
        using: &str,
        filter: Filter,
        limit: usize,
    ) -> Result<Vec<VectorHit>, VectorError> {
        let request = QueryRequestBuilder::new(limit)
            .query(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery::new(
                vector, using,
            ))))
            .filter(filter)
            .build();
        let shard = self.shard.clone();
        let found = blocking(move || Ok(shard.query(request)?)).await?;
        found
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

    async fn delete_where(&self, filter: Filter) -> Result<(), VectorError> {
        self.update(UpdateOperation::PointOperation(
            PointOperations::DeletePointsByFilter(filter),
        ))
        .await
    }
}

#[async_trait::async_trait]
impl VectorStore for EdgeVectorStore {
    fn backend_name(&self) -> &'static str {
        "edge"
    }

    async fn ping(&self) -> Result<(), VectorError> {
        let shard = self.shard.clone();
        blocking(move || {
            shard.info()?;
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
        let (shard, bm25) = (self.shard.clone(), self.bm25.clone());
        blocking(move || {
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
        self.optimize_when_due(n);
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.nearest(
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
            .nearest(
                VectorInternal::Sparse(sparse),
                SPARSE,
                scope(space_id, document_id)?,
                limit,
            )
            .await?;
        Ok(Some(hits))
    }

    fn needs_reindex(&self) -> bool {
        self.needs_reindex
    }

    async fn delete_document(&self, space_id: Uuid, document_id: Uuid) -> Result<(), VectorError> {
        self.delete_where(scope(space_id, Some(document_id))?).await
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        self.delete_where(scope(space_id, None)?).await
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

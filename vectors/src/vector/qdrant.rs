//! A Qdrant server (or cluster) over gRPC: one collection per embedding model and length, the
//! space and document ids in each point's payload (keyword indexes, the space one marked as the
//! tenant key), cosine distance, and optional int8 scalar quantization searched with rescoring.
//! Writes wait for Qdrant to apply them, so an acknowledged chunk is searchable.

use super::{validate, Chunks, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore};
use qdrant_client::qdrant::{
    point_id::PointIdOptions, quantization_config, Condition, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance, FieldType, Filter,
    KeywordIndexParamsBuilder, PointStruct, QuantizationSearchParamsBuilder, QuantizationType,
    QueryPointsBuilder, ScalarQuantizationBuilder, SearchParamsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder,
};
use qdrant_client::{Qdrant, QdrantError};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use uuid::Uuid;

/// Payload key of the space a passage belongs to.
const SPACE: &str = "space_id";
/// Payload key of the document a passage belongs to.
const DOCUMENT: &str = "document_id";
/// Points per upsert request: large batches keep round trips few, small ones keep each
/// request well under Qdrant's default 32 MB message limit at any model's length.
const UPSERT_BATCH: usize = 256;

/// How the Qdrant backend connects and lays out its collection.
#[derive(Clone, Debug)]
pub struct QdrantSettings {
    /// gRPC address, e.g. `http://localhost:6334`.
    pub url: String,
    pub api_key: Option<SecretString>,
    /// Collection names start with this, then the model and vector length.
    pub collection_prefix: String,
    /// Stores int8 copies of the vectors (4x less memory) and rescores with the originals.
    pub int8: bool,
    /// Limit for any one call to Qdrant.
    pub timeout: Duration,
}

/// Passage vectors in a Qdrant collection.
pub struct QdrantVectorStore {
    client: Qdrant,
    collection: String,
    dimensions: usize,
    settings: QdrantSettings,
}

impl From<QdrantError> for VectorError {
    fn from(e: QdrantError) -> Self {
        use tonic::Code;
        match &e {
            QdrantError::ResponseError { status } => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    VectorError::Unavailable(format!("qdrant: {}", status.message()))
                }
                // The client reports a connection it could not make as an internal error.
                Code::Internal if status.message().starts_with("Failed to connect") => {
                    VectorError::Unavailable(format!("qdrant: {}", status.message()))
                }
                Code::InvalidArgument => VectorError::Invalid(status.message().to_string()),
                _ => VectorError::Other(anyhow::Error::new(e)),
            },
            QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => {
                VectorError::Unavailable(e.to_string())
            }
            _ => VectorError::Other(anyhow::Error::new(e)),
        }
    }
}

/// The collection holding one model's vectors: Qdrant names allow letters, digits, `_` and `-`.
pub fn collection_name(prefix: &str, model: &str, dimensions: usize) -> String {
    super::slug(&format!("{prefix}_{model}_{dimensions}"))
}

/// A client with the settings' address, key and time limits. It connects lazily; callers check
/// the server answers with a health check of their own, which honours the time limit.
pub(crate) fn connect(settings: &QdrantSettings) -> Result<Qdrant, QdrantError> {
    let mut builder = Qdrant::from_url(&settings.url)
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .skip_compatibility_check();
    if let Some(key) = &settings.api_key {
        builder = builder.api_key(key.expose_secret().to_string());
    }
    builder.build()
}

/// Whether Qdrant answered with this gRPC status code.
pub(crate) fn has_code(e: &QdrantError, code: tonic::Code) -> bool {
    matches!(e, QdrantError::ResponseError { status } if status.code() == code)
}

/// The filter every search and delete starts from: one space, optionally one document.
fn scope(space: Uuid, document: Option<Uuid>) -> Filter {
    let mut conditions = vec![Condition::matches(SPACE, space.to_string())];
    if let Some(d) = document {
        conditions.push(Condition::matches(DOCUMENT, d.to_string()));
    }
    Filter::must(conditions)
}

impl QdrantVectorStore {
    /// Connects, checks the server answers, and creates the model's collection and its payload
    /// indexes if they are missing. A collection of another length is never reused: its name
    /// carries the length.
    pub async fn open(
        settings: QdrantSettings,
        model: &str,
        dimensions: usize,
    ) -> Result<Self, VectorError> {
        let client = connect(&settings)?;
        let collection = collection_name(&settings.collection_prefix, model, dimensions);
        let store = Self {
            client,
            collection,
            dimensions,
            settings,
        };
        store.ping().await.map_err(|e| {
            VectorError::Unavailable(format!("no Qdrant answers at {}: {e}", store.settings.url))
        })?;
        store.ensure_collection().await?;
        Ok(store)
    }

    /// The collection this store reads and writes.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    async fn ensure_collection(&self) -> Result<(), VectorError> {
        if !self.client.collection_exists(&self.collection).await? {
            let dims = u64::try_from(self.dimensions).map_err(anyhow::Error::new)?;
            let mut create = CreateCollectionBuilder::new(&self.collection)
                .vectors_config(VectorParamsBuilder::new(dims, Distance::Cosine));
            if self.settings.int8 {
                create = create.quantization_config(quantization_config::Quantization::Scalar(
                    ScalarQuantizationBuilder::default()
                        .r#type(QuantizationType::Int8.into())
                        .always_ram(true)
                        .build(),
                ));
            }
            match self.client.create_collection(create).await {
                Ok(_) => {}
                // Another instance created it between the check and the create.
                Err(e) if has_code(&e, tonic::Code::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(collection = %self.collection, int8 = self.settings.int8, "created Qdrant collection");
        }
        // Creating an index that exists is a no-op in Qdrant, so this also mends a collection
        // whose indexes were dropped.
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(&self.collection, SPACE, FieldType::Keyword)
                    .field_index_params(KeywordIndexParamsBuilder::default().is_tenant(true))
                    .wait(true),
            )
            .await?;
        self.client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(
                    &self.collection,
                    DOCUMENT,
                    FieldType::Keyword,
                )
                .wait(true),
            )
            .await?;
        Ok(())
    }

    async fn delete_where(&self, filter: Filter) -> Result<(), VectorError> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl VectorStore for QdrantVectorStore {
    fn backend_name(&self) -> &'static str {
        "qdrant"
    }

    async fn ping(&self) -> Result<(), VectorError> {
        self.client.health_check().await?;
        Ok(())
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<(), VectorError> {
        for p in &points {
            validate(&p.vector, self.dimensions)?;
        }
        for batch in points.chunks(UPSERT_BATCH) {
            let structs: Vec<PointStruct> = batch
                .iter()
                .map(|p| {
                    PointStruct::new(
                        p.chunk_id.to_string(),
                        p.vector.clone(),
                        [
                            (SPACE, p.space_id.to_string().into()),
                            (DOCUMENT, p.document_id.to_string().into()),
                        ],
                    )
                })
                .collect();
            self.client
                .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true))
                .await?;
        }
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        let limit = u64::try_from(query.limit).unwrap_or(u64::MAX);
        // Qdrant searches its graph at least `limit` wide, so deep candidate lists stay exact.
        let mut params = SearchParamsBuilder::default();
        if self.settings.int8 {
            params = params.quantization(QuantizationSearchParamsBuilder::default().rescore(true));
        }
        let response = self
            .client
            .query(
                QueryPointsBuilder::new(&self.collection)
                    .query(query.vector)
                    .filter(scope(query.space_id, query.document_id))
                    .limit(limit)
                    .params(params)
                    .with_payload(false),
            )
            .await?;
        response
            .result
            .into_iter()
            .map(|p| {
                let id = match p.id.and_then(|id| id.point_id_options) {
                    Some(PointIdOptions::Uuid(s)) => Uuid::parse_str(&s).ok(),
                    _ => None,
                };
                id.map(|chunk_id| VectorHit {
                    chunk_id,
                    score: p.score,
                })
                .ok_or_else(|| {
                    VectorError::Other(anyhow::anyhow!(
                        "collection {} holds a point whose id is not a chunk id",
                        self.collection
                    ))
                })
            })
            .collect()
    }

    async fn delete_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        which: Chunks<'_>,
    ) -> Result<(), VectorError> {
        let mut filter = scope(space_id, Some(document_id));
        let ids = |ids: &[Uuid]| Condition::has_id(ids.iter().map(|id| id.to_string()));
        match which {
            Chunks::Only([]) => return Ok(()),
            Chunks::Only(only) => filter.must.push(ids(only)),
            Chunks::AllBut([]) => {}
            Chunks::AllBut(keep) => filter.must_not.push(ids(keep)),
        }
        self.delete_where(filter).await
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        self.delete_where(scope(space_id, None)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{collection_name, QdrantError, VectorError};

    #[test]
    fn a_qdrant_out_of_reach_is_unavailable_not_an_internal_failure() {
        let refused = QdrantError::ResponseError {
            status: tonic::Status::internal("Failed to connect to http://q:6334/: refused"),
        };
        assert!(matches!(
            VectorError::from(refused),
            VectorError::Unavailable(_)
        ));
        let slow = QdrantError::ResponseError {
            status: tonic::Status::deadline_exceeded("timeout"),
        };
        assert!(matches!(
            VectorError::from(slow),
            VectorError::Unavailable(_)
        ));
        let broken = QdrantError::ResponseError {
            status: tonic::Status::internal("segment is corrupted"),
        };
        assert!(matches!(VectorError::from(broken), VectorError::Other(_)));
    }

    #[test]
    fn collection_names_are_ones_qdrant_takes_and_differ_by_model_and_length() {
        let a = collection_name("kenning", "onnx:all-MiniLM-L6-v2/int8", 384);
        assert_eq!(a, "kenning_onnx_all-minilm-l6-v2_int8_384");
        assert_ne!(
            a,
            collection_name("kenning", "onnx:all-MiniLM-L6-v2/int8", 256)
        );
        assert_ne!(
            a,
            collection_name("kenning", "openai:text-embedding-3-small", 384)
        );
    }
}

//! The stores and models a process opens: metadata, vectors, points, the embedder, the
//! generator chain, and the ingestion workers over them.

use super::*;

/// The embedder the configuration asks for: the local model, or a provider checked at start.
pub(super) async fn open_embedder(ingest: &IngestConfig) -> anyhow::Result<Arc<dyn Embedder>> {
    let settings = LaneSettings {
        ingest_threads: ingest.embed_ingest_threads.max(1),
        batch_size: usize::from(ingest.embed_batch.max(1)),
        ..LaneSettings::default()
    };
    match ingest.embedder {
        EmbedderKind::Onnx => {
            let mut files = OnnxFiles::in_models_dir(&ingest.models_dir);
            if let Some(lib) = &ingest.onnxruntime_lib {
                files.runtime = lib.clone();
            }
            let embedder = tokio::task::spawn_blocking(move || {
                crate::embed::onnx::load(&files, settings).context(
                    "loading the int8 embedding model on ONNX Runtime (run scripts/fetch-models.sh)",
                )
            })
            .await??;
            Ok(Arc::new(embedder))
        }
        #[cfg(not(feature = "candle"))]
        EmbedderKind::Candle => anyhow::bail!(
            "this kenning was built without the candle embedder; use --embedder onnx (the \
             default), or build with `cargo leptos build --release --split --bin-features candle`"
        ),
        #[cfg(feature = "candle")]
        EmbedderKind::Candle => {
            let model_dir = ingest.models_dir.join("all-MiniLM-L6-v2");
            let embedder = tokio::task::spawn_blocking(move || {
                crate::embed::local::load(&model_dir, settings).with_context(|| {
                    format!(
                        "loading the embedding model from {} (run scripts/fetch-models.sh)",
                        model_dir.display()
                    )
                })
            })
            .await??;
            Ok(Arc::new(embedder))
        }
        EmbedderKind::Openai => {
            let base_url = ingest.embed_base_url.clone().context(
                "--embedder openai needs --embed-base-url (KENNING_EMBED_BASE_URL), e.g. https://api.openai.com/v1",
            )?;
            let embedder = OpenAiEmbedder::connect(OpenAiEmbedSettings {
                base_url,
                api_key: ingest.embed_api_key.clone(),
                model: ingest.embed_model.clone(),
                dimensions: ingest.embed_dimensions,
                timeout: Duration::from_secs(ingest.embed_timeout_secs.max(1)),
                batch: usize::from(ingest.embed_batch.max(1)),
            })
            .await?;
            tracing::info!(
                model = embedder.model_id(),
                dimensions = embedder.dimensions(),
                "embeddings provider ready"
            );
            Ok(Arc::new(embedder))
        }
    }
}

/// Points the embedded engine held before Qdrant Edge became the store are copied into Edge
/// once, space by space, so no client's vectors are lost in the move; a marker in the points
/// directory records that it was done. The rows stay in the database.
pub(super) async fn move_points_to_edge(
    pool: &sqlx::SqlitePool,
    edge: &EdgePointStore,
    root: &Path,
) -> anyhow::Result<()> {
    let marker = root.join("kenning.moved");
    if marker.exists() {
        return Ok(());
    }
    let mut moved = 0;
    for space in SqlitePointStore::spaces_with_points(pool)
        .await
        .context("listing the embedded engine's points")?
    {
        let points = SqlitePointStore::points_of(pool, space)
            .await
            .with_context(|| format!("reading the points of space {space}"))?;
        for batch in points.chunks(crate::points::MAX_BATCH) {
            edge.upsert(space, batch.to_vec())
                .await
                .with_context(|| format!("copying the points of space {space} to Qdrant Edge"))?;
            moved += batch.len();
        }
    }
    if moved > 0 {
        tracing::info!(
            points = moved,
            "copied the embedded engine's points into Qdrant Edge"
        );
    }
    std::fs::create_dir_all(root).context("making the points directory")?;
    std::fs::write(&marker, b"the embedded engine's points were copied here\n")
        .context("recording the points move")?;
    Ok(())
}

/// Vectors of two models must never meet in one index: each space another model embedded loses
/// its vectors and has its documents queued to be indexed again by this one (every space, when
/// the vector store says its index must be rebuilt). The vectors go
/// first, so a crash between the two steps leaves the space to be found again at the next start.
pub(super) async fn reembed_stale_spaces(
    store: &dyn MetadataStore,
    vectors: Option<&dyn VectorStore>,
    model: &str,
    ingest: &IngestConfig,
) -> anyhow::Result<()> {
    // A store that must rebuild its index takes every indexed space: no model is named "".
    let rebuild = vectors.is_some_and(|v| v.needs_reindex());
    let stale = store
        .spaces_embedded_by_other_models(if rebuild { "" } else { model })
        .await
        .context("reading the spaces' embedding models")?;
    for space in stale {
        if let Some(vectors) = vectors {
            vectors
                .delete_space(space.id)
                .await
                .with_context(|| format!("removing the old vectors of space '{}'", space.name))?;
        }
        let documents = store
            .requeue_space_for_new_model(space.id, &space.embedding_model, ingest.job_max_attempts)
            .await
            .with_context(|| format!("queueing space '{}' for re-embedding", space.name))?;
        if rebuild {
            tracing::warn!(
                space = %space.name,
                documents,
                "the vector store does not hold this space's passages yet; indexing them in the background"
            );
        } else {
            tracing::warn!(
                space = %space.name,
                previous = %space.embedding_model,
                model,
                documents,
                "space was embedded by another model; re-embedding it in the background"
            );
        }
    }
    if rebuild {
        if let Some(v) = vectors {
            v.reindex_queued()
                .await
                .context("recording that the vector store's spaces are queued")?;
        }
    }
    Ok(())
}

/// The stores and models one process works with, opened once and shared.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn MetadataStore>,
    pub vectors: Option<Arc<dyn VectorStore>>,
    pub embedder: Arc<dyn Embedder>,
    /// Client-supplied vectors (the points API), beside the metadata like the passage vectors.
    pub points: Arc<dyn PointStore>,
}

impl Engine {
    /// Opens the metadata store (applying migrations), loads the embedding model and opens the
    /// vector store the configuration asks for.
    pub async fn open(store_config: &StoreConfig, ingest: &IngestConfig) -> anyhow::Result<Self> {
        let (store, pool) = store::connect_with_pool(store_config)
            .await
            .context("opening the metadata store")?;
        store.migrate().await.context("applying migrations")?;
        tracing::info!(backend = store.backend_name(), "metadata store ready");

        let embedder = open_embedder(ingest).await?;
        let dims = embedder.dimensions();

        let qdrant = match ingest.vector_store {
            VectorBackend::Qdrant => Some(QdrantSettings {
                url: ingest.qdrant_url.clone().context(
                    "--vector-store qdrant needs --qdrant-url (QDRANT_URL), e.g. http://localhost:6334",
                )?,
                api_key: ingest.qdrant_api_key.clone(),
                collection_prefix: ingest.qdrant_collection_prefix.clone(),
                int8: ingest.qdrant_int8,
                timeout: std::time::Duration::from_secs(ingest.qdrant_timeout_secs),
            }),
            _ => None,
        };
        // `auto` is Qdrant Edge beside the embedded database and pgvector beside PostgreSQL.
        let backend = match (ingest.vector_store, &pool) {
            (VectorBackend::Auto, Pool::Sqlite(_)) => VectorBackend::Edge,
            (VectorBackend::Auto, Pool::Postgres(_)) => VectorBackend::Pgvector,
            (chosen, _) => chosen,
        };
        // The points API lives where the passage vectors do: in Qdrant Edge shards, a Qdrant
        // server, or the metadata database (on SQLite the same engine then serves passages).
        let (points, embedded_points): (Arc<dyn PointStore>, Option<Arc<SqlitePointStore>>) =
            match (&pool, &qdrant) {
                // On PostgreSQL points stay in pgvector, where they were before Edge existed.
                (Pool::Sqlite(pool), None) if backend == VectorBackend::Edge => {
                    let root = store_config.data_dir.join("edge").join("points");
                    let edge = EdgePointStore::open(&root, ingest.points_graph_min)
                        .await
                        .context("opening the points API's Qdrant Edge shards")?;
                    move_points_to_edge(pool, &edge, &root).await?;
                    (Arc::new(edge), None)
                }
                (_, Some(settings)) => (
                    Arc::new(
                        QdrantPointStore::open(settings, ingest.points_graph_min)
                            .await
                            .context("opening the points API's Qdrant collections")?,
                    ),
                    None,
                ),
                (Pool::Sqlite(pool), None) => {
                    let engine = Arc::new(
                        SqlitePointStore::open(
                            pool.clone(),
                            ingest.points_ef_search,
                            ingest.points_graph_min,
                        )
                        .await
                        .context("opening the points tables")?,
                    );
                    (engine.clone(), Some(engine))
                }
                (Pool::Postgres(pool), None) => (
                    Arc::new(
                        PgPointStore::open(pool.clone(), ingest.pgvector_ef_search)
                            .await
                            .context(
                                "opening the points tables (is the pgvector extension installed?)",
                            )?,
                    ),
                    None,
                ),
            };
        let vectors: Option<Arc<dyn VectorStore>> = match (backend, pool) {
            (VectorBackend::None, _) => None,
            (VectorBackend::Pgvector | VectorBackend::Auto, Pool::Postgres(pool)) => {
                Some(Arc::new(
                    PgVectorStore::open(pool, dims, ingest.pgvector_ef_search)
                        .await
                        .context("opening pgvector (is the extension installed?)")?,
                ))
            }
            (VectorBackend::Pgvector, Pool::Sqlite(_)) => {
                anyhow::bail!("--vector-store pgvector needs DATABASE_URL to point at PostgreSQL")
            }
            (VectorBackend::Embedded, Pool::Sqlite(pool)) => {
                let engine = embedded_points
                    .clone()
                    .context("the embedded points engine is not open")?;
                Some(Arc::new(
                    EmbeddedVectorStore::open(engine, pool, dims)
                        .await
                        .context("opening the embedded vector index")?,
                ))
            }
            (VectorBackend::Edge | VectorBackend::Auto, _) => Some(Arc::new(
                EdgeVectorStore::open(
                    &store_config.data_dir.join("edge"),
                    embedder.model_id(),
                    dims,
                )
                .await
                .context("opening the Qdrant Edge shard")?,
            )),
            (VectorBackend::Qdrant, _) => {
                let settings = qdrant.context("Qdrant settings are read above")?;
                Some(Arc::new(
                    QdrantVectorStore::open(settings, embedder.model_id(), dims)
                        .await
                        .context("opening the Qdrant collection")?,
                ))
            }
            (VectorBackend::Embedded, Pool::Postgres(_)) => {
                anyhow::bail!(
                    "--vector-store embedded needs the embedded database; with PostgreSQL use pgvector"
                )
            }
        };
        if let Some(v) = &vectors {
            tracing::info!(
                backend = v.backend_name(),
                model = embedder.model_id(),
                "vector store ready"
            );
        }
        reembed_stale_spaces(
            store.as_ref(),
            vectors.as_deref(),
            embedder.model_id(),
            ingest,
        )
        .await?;
        Ok(Self {
            store,
            vectors,
            embedder,
            points,
        })
    }
}

/// Builds the generator chain the configuration asks for, loading the local model if it is in it.
pub async fn build_chain(config: &GenerateConfig, models_dir: &Path) -> anyhow::Result<Chain> {
    let mut generators: Vec<Arc<dyn Generator>> = Vec::new();
    for kind in config.chain() {
        match kind {
            GeneratorKind::Extractive => generators.push(Arc::new(Extractive)),
            GeneratorKind::Openai => {
                let base_url = config.openai_base_url.clone().context(
                    "the openai generator needs OPENAI_BASE_URL (e.g. https://api.openai.com/v1)",
                )?;
                let timeout = Duration::from_secs(config.openai_timeout_secs.max(1));
                generators.push(Arc::new(OpenAiGenerator::new(OpenAiSettings {
                    base_url,
                    api_key: config.openai_api_key.clone(),
                    model: config.openai_model.clone(),
                    connect_timeout: timeout,
                    read_timeout: timeout,
                    temperature: config.openai_temperature,
                })?));
            }
            GeneratorKind::Local => generators.push(local_generator(config, models_dir).await?),
        }
    }
    Ok(Chain::new(
        generators,
        ChainSettings {
            retries: config.generator_retries,
            backoff_base: Duration::from_millis(config.retry_backoff_ms),
            first_token_timeout: Duration::from_millis(config.first_token_timeout_ms.max(1)),
            breaker_threshold: config.breaker_failures,
            breaker_reset: Duration::from_secs(config.breaker_reset_secs),
        },
    ))
}

/// The local model on llama.cpp, loaded off the async threads (it maps a file of many MB).
#[cfg(feature = "llama")]
async fn local_generator(
    config: &GenerateConfig,
    models_dir: &Path,
) -> anyhow::Result<Arc<dyn Generator>> {
    use crate::generate::{LlmSettings, LocalGenerator};
    let path = config.llm_model.clone().unwrap_or_else(|| {
        models_dir
            .join("SmolLM2-135M-Instruct")
            .join("SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let mut settings = LlmSettings {
        context_tokens: config.llm_context,
        temperature: config.llm_temperature,
        queue: config.llm_queue,
        first_token_target: (config.answer_first_token_ms > 0)
            .then(|| Duration::from_millis(config.answer_first_token_ms)),
        ..LlmSettings::default()
    };
    if let Some(t) = config.llm_threads {
        settings.threads = t.max(1);
    }
    if let Some(t) = config.llm_prefill_threads {
        settings.prefill_threads = t.max(1);
    }
    let local = tokio::task::spawn_blocking(move || {
        LocalGenerator::load(&path, settings).with_context(|| {
            format!(
                "loading the local language model from {} (run scripts/fetch-models.sh, \
                     or leave `local` out of KENNING_GENERATORS)",
                path.display()
            )
        })
    })
    .await??;
    Ok(Arc::new(local))
}

/// Builds without llama.cpp (`./scripts/run`'s quick build) refuse the local model at start,
/// saying how to get it, instead of answering without it.
#[cfg(not(feature = "llama"))]
async fn local_generator(
    _config: &GenerateConfig,
    _models_dir: &Path,
) -> anyhow::Result<Arc<dyn Generator>> {
    anyhow::bail!(
        "this kenning was built without the local language model (llama.cpp): leave `local` out \
         of KENNING_GENERATORS, or build the full server (`./scripts/run --release`, or \
         `cargo build --release -p kenning`, where the `llama` feature is on by default)"
    )
}

pub(super) fn chat_settings(
    config: &GenerateConfig,
    embedder: crate::config::EmbedderKind,
) -> ChatSettings {
    // The default floor is measured on the built-in embedder; another model's scale differs.
    let min_similarity = match (config.answer_min_similarity, embedder) {
        (Some(s), _) => Some(s),
        (None, crate::config::EmbedderKind::Openai) => None,
        (None, _) => Some(crate::chat::DEFAULT_MIN_SIMILARITY),
    }
    .filter(|s| *s > 0.0);
    ChatSettings {
        min_similarity,
        max_sources: config
            .chat_sources
            .clamp(1, crate::chat::MAX_SOURCES as usize),
        max_source_chars: config.chat_source_chars.max(100),
        max_tokens: config.max_answer_tokens.max(1),
        answer_timeout: Duration::from_secs(config.answer_timeout_secs.max(1)),
        answer_cache_ttl: Duration::from_secs(config.answer_cache_ttl_secs.max(1)),
        answer_cache_capacity: config.answer_cache_capacity,
        prices: [(
            "openai",
            Price {
                prompt_per_mtok: config.openai_price_prompt.max(0.0),
                completion_per_mtok: config.openai_price_completion.max(0.0),
            },
        )]
        .into_iter()
        .collect(),
    }
}

/// Starts `count` ingestion workers sharing one tokenizer; they stop when `stop` is cancelled.
pub fn spawn_workers(
    engine: &Engine,
    data_dir: PathBuf,
    config: &IngestConfig,
    count: usize,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let tokenizer = config.tokenizer_path();
    let chunker = Chunker::from_file(&tokenizer).with_context(|| {
        format!(
            "loading the tokenizer at {} (run scripts/fetch-models.sh)",
            tokenizer.display()
        )
    })?;
    let settings = WorkerSettings {
        lease: Duration::from_secs(config.job_lease_secs.max(1)),
        poll_interval: Duration::from_millis(config.job_poll_ms.max(10)),
        embed_batch: usize::from(config.embed_batch.max(1)),
        parse: crate::ingest::isolate::ParseLimits::from_config(config),
    };
    let indexing = Indexing {
        embedder: engine.embedder.clone(),
        vectors: engine.vectors.clone(),
    };
    Ok((0..count)
        .map(|_| {
            let worker = Worker::new(
                engine.store.clone(),
                data_dir.clone(),
                chunker.clone(),
                indexing.clone(),
                settings.clone(),
                wake.clone(),
            );
            tokio::spawn(worker.run(stop.clone()))
        })
        .collect())
}

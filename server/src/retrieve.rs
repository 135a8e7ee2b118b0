//! Retrieval: dense (embedding nearest neighbours), keyword (full text) and hybrid (both, fused
//! by relative score fusion), with limits, filters, `min_score` and a result cache keyed by
//! the space's version so a cached answer is never stale.

use crate::cache::TieredCache;
use crate::embed::{Embedder, Lane};
use crate::redis_link::RedisLink;
use crate::store::{ChunkHit, MetadataStore, StoreError};
use crate::text::search_terms;
use crate::vector::{VectorHit, VectorQuery, VectorStore};
use kenning_api::{SearchHit, SearchMode, SearchResponse};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Results returned when the request names no limit.
pub const DEFAULT_LIMIT: usize = 10;
/// Most results one search may return.
pub const MAX_LIMIT: usize = 50;
/// The dense side's share of a hybrid score; the keyword side has the rest. Equal shares beat
/// reciprocal rank fusion on every book of the evaluation set (docs/BENCHMARKS.md), untuned.
pub const DENSE_WEIGHT: f64 = 0.5;
/// Longest accepted query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;

/// Why a search could not run.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

/// A validated search.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub space_id: Uuid,
    pub query: String,
    pub mode: SearchMode,
    pub limit: usize,
    pub min_score: Option<f64>,
    pub document_id: Option<Uuid>,
}

impl Search {
    /// Checks a request's values.
    pub fn parse(space_id: Uuid, req: &kenning_api::SearchRequest) -> Result<Self, SearchError> {
        let query = req.query.trim();
        if query.is_empty() {
            return Err(SearchError::Invalid("The query must not be empty.".into()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchError::Invalid(format!(
                "The query must be at most {MAX_QUERY_CHARS} characters."
            )));
        }
        let limit = match req.limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as usize,
            Some(_) => {
                return Err(SearchError::Invalid(format!(
                    "limit must be between 1 and {MAX_LIMIT}."
                )))
            }
        };
        if let Some(m) = req.min_score {
            if !m.is_finite() {
                return Err(SearchError::Invalid(
                    "min_score must be a finite number.".into(),
                ));
            }
        }
        let document_id = match &req.document_id {
            None => None,
            Some(d) => Some(
                Uuid::parse_str(d)
                    .map_err(|_| SearchError::Invalid("document_id is not a valid id.".into()))?,
            ),
        };
        Ok(Self {
            space_id,
            query: query.to_string(),
            mode: req.mode,
            limit,
            min_score: req.min_score,
            document_id,
        })
    }
}

type CacheKey = (
    Uuid,
    i64,
    String,
    SearchMode,
    usize,
    Option<u64>,
    Option<Uuid>,
);

/// Runs searches over the metadata store (keyword) and the vector store (dense).
pub struct Retriever {
    store: Arc<dyn MetadataStore>,
    vectors: Option<Arc<dyn VectorStore>>,
    embedder: Arc<dyn Embedder>,
    cache: TieredCache<Vec<SearchHit>>,
    query_vectors: TieredCache<Vec<f32>>,
}

/// How many entries each of the retriever's caches holds at most.
#[derive(Debug, Clone, Copy)]
pub struct CacheSizes {
    pub results: u64,
    pub query_vectors: u64,
}

impl Default for CacheSizes {
    fn default() -> Self {
        Self {
            results: 10_000,
            query_vectors: 10_000,
        }
    }
}

impl Retriever {
    /// A retriever with bounded caches: results for 30 minutes, query embeddings for an hour.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        vectors: Option<Arc<dyn VectorStore>>,
        embedder: Arc<dyn Embedder>,
        sizes: CacheSizes,
    ) -> Self {
        Self {
            store,
            vectors,
            embedder,
            cache: TieredCache::new(
                "search_results",
                "search_results_redis",
                sizes.results,
                Duration::from_secs(30 * 60),
            ),
            query_vectors: TieredCache::new(
                "query_embeddings",
                "query_embeddings_redis",
                sizes.query_vectors,
                Duration::from_secs(60 * 60),
            ),
        }
    }

    /// Shares search results and query embeddings with other instances through Redis.
    pub fn with_redis(mut self, link: Arc<RedisLink>) -> Self {
        self.cache = self.cache.with_redis(link.clone());
        self.query_vectors = self.query_vectors.with_redis(link);
        self
    }

    /// Runs a search; dense and hybrid fall back to keyword (with a notice) when no vector store
    /// is configured.
    pub async fn search(&self, search: &Search) -> Result<SearchResponse, SearchError> {
        Ok(self.search_versioned(search).await?.0)
    }

    /// A search with the space version it was read at, so a caller that caches what it builds
    /// on the results (an answer) keys it by that version without reading it again.
    pub async fn search_versioned(
        &self,
        search: &Search,
    ) -> Result<(SearchResponse, i64), SearchError> {
        let started = Instant::now();
        let version = self.store.space_version(search.space_id).await?;
        let pending = self.store.pending_documents(search.space_id).await?;
        let mut notice = (pending > 0).then(|| {
            format!("{pending} document(s) of this space are still being indexed; their passages are not searched yet.")
        });
        let mode = match (search.mode, &self.vectors) {
            (SearchMode::Keyword, _) | (_, Some(_)) => search.mode,
            (_, None) => {
                notice = Some(
                    "Semantic search is not available on this server; showing keyword results."
                        .into(),
                );
                SearchMode::Keyword
            }
        };
        let key: CacheKey = (
            search.space_id,
            version,
            search.query.clone(),
            mode,
            search.limit,
            search.min_score.map(f64::to_bits),
            search.document_id,
        );
        let key = format!("{key:?}");
        if let Some(hits) = self.cache.get(&key).await {
            let response = SearchResponse {
                mode,
                results: hits.as_ref().clone(),
                took_ms: started.elapsed().as_secs_f64() * 1000.0,
                cached: true,
                pending_documents: pending,
                notice,
            };
            return Ok((response, version));
        }
        // Each side fetches more than the limit so fusion has candidates to agree on.
        let depth = (search.limit * 4).max(20);
        let dense = match mode {
            SearchMode::Dense | SearchMode::Hybrid => self.dense(search, depth).await?,
            SearchMode::Keyword => Vec::new(),
        };
        let keyword = match mode {
            SearchMode::Keyword | SearchMode::Hybrid => self.keyword(search, depth).await?,
            SearchMode::Dense => Vec::new(),
        };
        let mut hits = fuse(mode, dense, keyword);
        if let Some(min) = search.min_score {
            hits.retain(|h| h.score >= min);
        }
        hits.truncate(search.limit);
        self.cache.insert(key, Arc::new(hits.clone())).await;
        let response = SearchResponse {
            mode,
            results: hits,
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            cached: false,
            pending_documents: pending,
            notice,
        };
        Ok((response, version))
    }

    async fn dense(&self, search: &Search, depth: usize) -> Result<Vec<ChunkHit>, SearchError> {
        let Some(vectors) = &self.vectors else {
            return Ok(Vec::new());
        };
        let cache_key = format!("{}\u{0}{}", self.embedder.model_id(), search.query);
        let vector = match self.query_vectors.get(&cache_key).await {
            Some(v) => v,
            None => {
                let mut v = self
                    .embedder
                    .embed(vec![search.query.clone()], Lane::Query)
                    .await
                    .map_err(|e| SearchError::Unavailable(e.to_string()))?;
                let v = Arc::new(v.pop().unwrap_or_default());
                self.query_vectors.insert(cache_key, v.clone()).await;
                v
            }
        };
        let started = Instant::now();
        let hits = vectors
            .search(VectorQuery {
                space_id: search.space_id,
                vector: vector.as_ref().clone(),
                document_id: search.document_id,
                limit: depth,
            })
            .await
            .map_err(|e| SearchError::Unavailable(e.to_string()))?;
        crate::metrics::global().record_vector_search(vectors.backend_name(), started.elapsed());
        self.passages(search.space_id, hits).await
    }

    /// Keyword matches from the vector store's own keyword index when it keeps one (Qdrant
    /// Edge's BM25), else from the metadata store's full text.
    async fn keyword(&self, search: &Search, depth: usize) -> Result<Vec<ChunkHit>, SearchError> {
        if let Some(vectors) = &self.vectors {
            let found = vectors
                .keyword(search.space_id, &search.query, search.document_id, depth)
                .await
                .map_err(|e| SearchError::Unavailable(e.to_string()))?;
            if let Some(hits) = found {
                return self.passages(search.space_id, hits).await;
            }
        }
        let terms = search_terms(&search.query);
        Ok(self
            .store
            .keyword_search(search.space_id, &terms, search.document_id, depth as i64)
            .await?)
    }

    /// The passages of a vector store's hits, in its order and with its scores.
    async fn passages(
        &self,
        space_id: Uuid,
        hits: Vec<VectorHit>,
    ) -> Result<Vec<ChunkHit>, SearchError> {
        let ids: Vec<Uuid> = hits.iter().map(|h| h.chunk_id).collect();
        let mut rows: HashMap<String, ChunkHit> = self
            .store
            .chunks_by_ids(space_id, &ids)
            .await?
            .into_iter()
            .map(|c| (c.chunk.id.clone(), c))
            .collect();
        // Vectors whose chunk is gone (or not ready) drop out here.
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                rows.remove(&h.chunk_id.to_string()).map(|mut c| {
                    c.score = f64::from(h.score);
                    c
                })
            })
            .collect())
    }
}

/// Combines the ranked lists: a single mode passes its list through with its own scores; hybrid
/// scores each passage by relative score fusion: each side's score divided by that side's best
/// (so both run from 0 to 1), weighted by [`DENSE_WEIGHT`] and summed. Unlike rank fusion, a
/// passage far ahead on one side keeps its lead, and a close second stays close.
pub fn fuse(mode: SearchMode, dense: Vec<ChunkHit>, keyword: Vec<ChunkHit>) -> Vec<SearchHit> {
    // A passage as one list ranked it: `rank` 1-based, the stage's own score kept beside.
    let hit = |c: ChunkHit, score: f64, rank: usize, dense: bool| SearchHit {
        score,
        dense_rank: dense.then_some(rank),
        keyword_rank: (!dense).then_some(rank),
        dense_score: dense.then_some(c.score),
        keyword_score: (!dense).then_some(c.score),
        chunk: c.chunk,
        filename: c.filename,
    };
    match mode {
        SearchMode::Dense => dense
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let s = c.score;
                hit(c, s, i + 1, true)
            })
            .collect(),
        SearchMode::Keyword => keyword
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let s = c.score;
                hit(c, s, i + 1, false)
            })
            .collect(),
        SearchMode::Hybrid => {
            let best = |list: &[ChunkHit]| list.iter().map(|c| c.score).fold(0.0, f64::max);
            let (dense_best, keyword_best) = (best(&dense), best(&keyword));
            // Scores at or below zero (a cosine pointing away) add nothing.
            let relative = |score: f64, best: f64| {
                if best > 0.0 {
                    (score / best).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            };
            let mut fused: HashMap<String, SearchHit> = HashMap::new();
            for (i, c) in dense.into_iter().enumerate() {
                let id = c.chunk.id.clone();
                let score = DENSE_WEIGHT * relative(c.score, dense_best);
                fused.insert(id, hit(c, score, i + 1, true));
            }
            for (i, c) in keyword.into_iter().enumerate() {
                let add = (1.0 - DENSE_WEIGHT) * relative(c.score, keyword_best);
                match fused.get_mut(&c.chunk.id) {
                    Some(h) => {
                        h.score += add;
                        h.keyword_rank = Some(i + 1);
                        h.keyword_score = Some(c.score);
                    }
                    None => {
                        fused.insert(c.chunk.id.clone(), hit(c, add, i + 1, false));
                    }
                }
            }
            let mut out: Vec<SearchHit> = fused.into_values().collect();
            out.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then_with(|| a.chunk.id.cmp(&b.chunk.id))
            });
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kenning_api::Chunk;

    fn c(id: &str, score: f64) -> ChunkHit {
        ChunkHit {
            chunk: Chunk {
                id: id.into(),
                document_id: "d".into(),
                position: 0,
                text: id.into(),
                heading_path: String::new(),
                char_start: 0,
                char_end: 1,
                token_count: 1,
            },
            filename: "f".into(),
            score,
        }
    }

    #[test]
    fn a_passage_both_lists_agree_on_wins_the_fusion() {
        let dense = vec![c("a", 0.9), c("b", 0.8), c("c", 0.7)];
        let keyword = vec![c("c", 5.0), c("d", 4.0), c("b", 3.0)];
        let fused = fuse(SearchMode::Hybrid, dense, keyword);
        let order: Vec<&str> = fused.iter().map(|h| h.chunk.id.as_str()).collect();
        // c: dense 3rd + keyword 1st beats b: dense 2nd + keyword 3rd; both beat single-list hits.
        assert_eq!(order, vec!["c", "b", "a", "d"]);
        assert_eq!(fused[0].dense_rank, Some(3));
        assert_eq!(fused[0].keyword_rank, Some(1));
        // Each stage's own score is kept beside the fused one.
        assert_eq!(fused[0].dense_score, Some(0.7));
        assert_eq!(fused[0].keyword_score, Some(5.0));
        assert_eq!(fused[3].dense_score, None);
        assert_eq!(fused[3].keyword_score, Some(4.0));
        let expected = 0.5 * 0.7 / 0.9 + 0.5 * 5.0 / 5.0;
        assert!((fused[0].score - expected).abs() < 1e-12);
    }

    #[test]
    fn a_clear_winner_on_one_side_keeps_its_lead() {
        // Dense is sure of a (far ahead); keyword barely prefers b to a. Rank fusion would tie
        // them; relative scores keep a first.
        let dense = vec![c("a", 0.9), c("b", 0.3)];
        let keyword = vec![c("b", 10.0), c("a", 9.5)];
        let fused = fuse(SearchMode::Hybrid, dense, keyword);
        assert_eq!(fused[0].chunk.id, "a");
        assert!(fused[0].score > fused[1].score + 0.2);
        // Negative cosines count as nothing, never as a penalty below zero.
        let fused = fuse(SearchMode::Hybrid, vec![c("x", -0.2)], vec![c("y", 1.0)]);
        assert_eq!(fused[0].chunk.id, "y");
        assert_eq!(fused[1].score, 0.0);
    }

    #[test]
    fn single_modes_keep_their_own_order_and_scores() {
        let fused = fuse(
            SearchMode::Dense,
            vec![c("x", 0.5), c("y", 0.4)],
            vec![c("z", 9.0)],
        );
        assert_eq!(fused.len(), 2);
        assert_eq!(fused[0].score, 0.5);
        assert_eq!(fused[1].dense_rank, Some(2));
    }

    #[test]
    fn fusion_of_nothing_is_nothing() {
        assert!(fuse(SearchMode::Hybrid, vec![], vec![]).is_empty());
    }

    #[test]
    fn requests_are_validated() {
        let space = Uuid::now_v7();
        let req = |q: &str, limit: Option<i64>| kenning_api::SearchRequest {
            query: q.into(),
            mode: SearchMode::Hybrid,
            limit,
            min_score: None,
            document_id: None,
        };
        assert!(Search::parse(space, &req("  ", None)).is_err());
        assert!(Search::parse(space, &req("ok", Some(0))).is_err());
        assert!(Search::parse(space, &req("ok", Some(51))).is_err());
        assert_eq!(
            Search::parse(space, &req("ok", None)).map(|s| s.limit).ok(),
            Some(DEFAULT_LIMIT)
        );
        let mut bad = req("ok", None);
        bad.min_score = Some(f64::NAN);
        assert!(Search::parse(space, &bad).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        /// A ranked list of distinct ids drawn from a small pool, so the lists overlap.
        fn ranked() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::hash_set(0u8..30, 0..20)
                .prop_map(|s| s.into_iter().map(|i| format!("p{i}")).collect::<Vec<_>>())
                .prop_shuffle()
        }

        proptest! {
            #[test]
            fn hybrid_fusion_is_ordered_complete_and_unique(dense in ranked(), keyword in ranked()) {
                // Scores falling with rank, on different scales, as cosines and BM25 are.
                let d: Vec<ChunkHit> = dense.iter().enumerate().map(|(i, id)| c(id, 0.9 - 0.02 * i as f64)).collect();
                let k: Vec<ChunkHit> = keyword.iter().enumerate().map(|(i, id)| c(id, 40.0 - 1.5 * i as f64)).collect();
                let fused = fuse(SearchMode::Hybrid, d, k);
                let ids: Vec<&str> = fused.iter().map(|h| h.chunk.id.as_str()).collect();
                let unique: HashSet<&str> = ids.iter().copied().collect();
                prop_assert_eq!(unique.len(), ids.len(), "no passage twice");
                let expected: HashSet<&str> = dense.iter().chain(keyword.iter()).map(String::as_str).collect();
                prop_assert_eq!(unique, expected, "every passage of either list, nothing else");
                for w in fused.windows(2) {
                    prop_assert!(w[0].score >= w[1].score, "sorted by fused score");
                }
                for h in &fused {
                    let expect = h.dense_rank.map_or(0.0, |r| DENSE_WEIGHT * (0.9 - 0.02 * (r - 1) as f64) / 0.9)
                        + h.keyword_rank.map_or(0.0, |r| (1.0 - DENSE_WEIGHT) * (40.0 - 1.5 * (r - 1) as f64) / 40.0);
                    prop_assert!((h.score - expect).abs() < 1e-12);
                    prop_assert_eq!(h.dense_rank.map(|r| dense[r - 1].as_str()), h.dense_rank.map(|_| h.chunk.id.as_str()));
                }
                // First in both lists means first overall.
                if let (Some(a), Some(b)) = (dense.first(), keyword.first()) {
                    if a == b {
                        prop_assert_eq!(ids[0], a.as_str());
                    }
                }
            }
        }
    }
}

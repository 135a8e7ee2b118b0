//! Search requests and their ranked hits.

use crate::content::Chunk;
use serde::{Deserialize, Serialize};

/// How a search finds passages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest neighbours of the query's embedding.
    Dense,
    /// Full-text ranking of the query's words.
    Keyword,
    /// Both, fused by relative score: each side's score over its best, averaged.
    #[default]
    Hybrid,
}

/// A search over one space. Unknown fields are refused, so a misspelt or unsupported filter
/// (`"documentid"`, `"filter"`) is a 400 rather than a search that silently ignores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Not blank, at most 2,000 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 2000, pattern = r"\S")
    )]
    pub query: String,
    #[serde(default)]
    pub mode: SearchMode,
    /// Results wanted (default 10, at most 50).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 50))]
    pub limit: Option<i64>,
    /// Drop results scoring below this (the score's scale depends on the mode).
    pub min_score: Option<f64>,
    /// Only passages of this document.
    pub document_id: Option<String>,
}

/// One passage found by a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    pub chunk: Chunk,
    pub filename: String,
    /// Cosine similarity (dense), text rank (keyword) or fused relative score, 0 to 1 (hybrid).
    pub score: f64,
    /// 1-based rank in the dense list, when it was there.
    pub dense_rank: Option<usize>,
    /// 1-based rank in the keyword list, when it was there.
    pub keyword_rank: Option<usize>,
    /// Its cosine similarity in the dense list, when it was there: what the semantic stage
    /// thought of it, apart from the fusion.
    #[serde(default)]
    pub dense_score: Option<f64>,
    /// Its text rank (BM25 or full-text rank) in the keyword list, when it was there.
    #[serde(default)]
    pub keyword_score: Option<f64>,
}

/// Search results with what produced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    pub mode: SearchMode,
    pub results: Vec<SearchHit>,
    pub took_ms: f64,
    /// Served from the result cache (same query on the same space version).
    pub cached: bool,
    /// Documents of the space still being ingested: their passages are not searchable yet.
    pub pending_documents: i64,
    /// Something the user should know about these results.
    pub notice: Option<String>,
}

//! Wire types shared by the server, the REST API and the browser, so both sides agree on one shape.

use serde::{Deserialize, Serialize};

/// A knowledge space: the unit of tenancy that documents, chunks and answers belong to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Space {
    pub id: String,
    pub name: String,
    pub description: String,
    pub document_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// An uploaded file and where it stands on its way into the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    pub id: String,
    pub space_id: String,
    pub filename: String,
    pub mime: String,
    pub size_bytes: i64,
    pub content_hash: String,
    /// `pending` (queued), `processing`, `ready` or `failed`.
    pub status: String,
    /// Why ingestion failed (or why it is being retried).
    pub error: Option<String>,
    /// Passages the document was split into, once ready.
    pub chunk_count: i64,
    /// The latest ingestion job, to poll for progress.
    pub job_id: Option<String>,
    /// What that job is doing now: `parsing`, `chunking`, `embedding`, `indexing`, `done`.
    pub phase: Option<String>,
    /// How far that job is, from 0 to 1.
    pub progress: f64,
    /// The source a sync read it from; none for uploads.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Its path or URL: a newer upload or sync under the same key replaces this document once
    /// the new version is indexed.
    #[serde(default)]
    pub source_key: Option<String>,
    /// 1 for the first version under its key, counting up with each changed one.
    #[serde(default = "first_version")]
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

fn first_version() -> i64 {
    1
}

/// Where a space's documents come from and how they are kept current: a folder on the server's
/// disk (under an admin-configured root), one web page, or a site crawled from its start page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    pub id: String,
    pub space_id: String,
    /// `folder`, `url` or `site`.
    pub kind: String,
    /// The folder's path on the server, or the page's URL.
    pub location: String,
    /// Synced every this many minutes; none means on demand only.
    pub interval_minutes: Option<i64>,
    /// A folder synced a moment after anything in it changes.
    #[serde(default)]
    pub watch: bool,
    /// Pages a site sync reads at most.
    pub max_pages: i64,
    /// `idle` or `syncing`.
    pub status: String,
    /// What a running sync is doing: `listing`, `reading`, `removing`.
    pub phase: Option<String>,
    /// How far a running sync is, from 0 to 1.
    pub progress: f64,
    pub last_sync_at: Option<String>,
    /// What the last finished sync did.
    pub last_result: Option<SyncResult>,
    /// Why the last sync failed; it is retried with a growing delay.
    pub last_error: Option<String>,
    /// Failed syncs in a row.
    pub failures: i64,
    pub next_sync_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What one sync did, file by file (or page by page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncResult {
    /// New keys, queued for ingestion.
    pub added: u64,
    /// Changed content, queued as a new version that replaces the old one once indexed.
    pub updated: u64,
    /// Same size and time, or same bytes: nothing read again, nothing embedded.
    pub unchanged: u64,
    /// Gone from the source, so their documents were deleted.
    pub deleted: u64,
    /// Could not be read or stored; the reasons are in `errors` (the first few).
    pub failed: u64,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A source to add to a space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    /// `folder`, `url` or `site`.
    pub kind: String,
    /// A folder path under one of the server's source roots, or an `http(s)` URL.
    pub location: String,
    /// Sync every this many minutes (1 to 10,080); omit for on demand only.
    #[serde(default)]
    pub interval_minutes: Option<i64>,
    /// Folders only: also sync a moment after anything in the folder changes.
    #[serde(default)]
    pub watch: Option<bool>,
    /// Pages a site sync reads at most (1 to 10,000; default 100).
    #[serde(default)]
    pub max_pages: Option<i64>,
}

/// A unit of background work (ingesting one document), with its progress and retry state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: String,
    pub space_id: String,
    pub document_id: Option<String>,
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    pub phase: Option<String>,
    pub progress: f64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A passage of a document, with where it sits so a citation can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Chunk {
    pub id: String,
    pub document_id: String,
    pub position: i64,
    pub text: String,
    /// Headings above the passage, outermost first, joined by " › ".
    pub heading_path: String,
    /// Character offsets (Unicode scalar values) into the document's extracted text.
    pub char_start: i64,
    pub char_end: i64,
    pub token_count: i64,
}

/// One page of a longer list, with what a client needs to fetch the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> Page<T> {
    /// Offset of the next page, if there is one.
    pub fn next_offset(&self) -> Option<i64> {
        let next = self.offset + self.limit;
        (next < self.total).then_some(next)
    }

    /// Offset of the previous page, if this is not the first.
    pub fn prev_offset(&self) -> Option<i64> {
        (self.offset > 0).then(|| (self.offset - self.limit).max(0))
    }
}

/// The body of every error response: `{ "error": { "code", "message" } }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable code plus a message safe to show to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorDetail {}

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

/// A question to a space, answered as a stream of events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChatRequest {
    /// The question: not blank, at most 4,000 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 4000, pattern = r"\S")
    )]
    pub question: String,
    /// Continue this conversation; a new one is started when absent.
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub mode: SearchMode,
    /// Passages to retrieve and number as sources (default by server configuration, 1 to 20).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 20))]
    pub max_sources: Option<i64>,
    /// Drop passages scoring below this.
    pub min_score: Option<f64>,
    /// Skip the answer cache and generate afresh.
    #[serde(default)]
    pub regenerate: bool,
}

impl ChatRequest {
    /// A new question with every choice left to the server (hybrid search, default sources).
    pub fn new(question: String) -> Self {
        Self {
            question,
            conversation_id: None,
            mode: SearchMode::default(),
            max_sources: None,
            min_score: None,
            regenerate: false,
        }
    }
}

/// A numbered passage an answer may cite as `[n]`, with where it sits in its document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Citation {
    pub n: usize,
    pub chunk_id: String,
    pub document_id: String,
    pub filename: String,
    pub heading_path: String,
    /// 0-based position of the passage in its document.
    pub position: i64,
    pub char_start: i64,
    pub char_end: i64,
    pub score: f64,
    pub text: String,
}

/// First event of an answer: what it will be based on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SourcesEvent {
    pub conversation_id: String,
    pub sources: Vec<Citation>,
    /// Documents still being indexed: the answer cannot use them yet.
    pub pending_documents: i64,
    pub notice: Option<String>,
}

/// A piece of the answer's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEvent {
    pub text: String,
}

/// Token counts of one answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Where an answer's time went, in milliseconds since the request arrived.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// Embedding the question and searching.
    pub retrieval_ms: f64,
    /// When the `sources` event was sent.
    pub sources_ms: f64,
    /// When the first token was sent.
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// Last event of a successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoneEvent {
    pub conversation_id: String,
    pub message_id: String,
    /// The generator that wrote the answer (`local`, `openai`, `extractive`; `none` when the
    /// answer was declined before any was asked).
    pub generator: String,
    /// True when a preferred generator failed and a later one in the chain answered.
    pub degraded: bool,
    pub notice: Option<String>,
    /// Served from the answer cache.
    pub cached: bool,
    /// The length limit, not the model, ended the answer (OpenAI's `finish_reason: "length"`).
    #[serde(default)]
    pub truncated: bool,
    /// The answer sentence by sentence, each with the sources the server found to support it:
    /// the citations to show, in place of those the generator wrote.
    #[serde(default)]
    pub sentences: Vec<AttributedSentence>,
    /// Sentences that make a claim no source supports.
    #[serde(default)]
    pub unsupported: usize,
    /// Why the answer is "I don't know" without any generator asked: no passage was relevant
    /// enough to answer from.
    #[serde(default)]
    pub declined: Option<String>,
    /// The checked answer as HTML that is safe to insert into a page: Markdown rendered, raw
    /// HTML escaped, citations linking their passages in Kenning's UI (relative links),
    /// unsupported sentences in `<span class="unsupported">`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// One sentence of an answer and the sources that support it, checked by the server rather
/// than taken on the generator's word.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributedSentence {
    /// The sentence, without citation markers.
    pub text: String,
    /// The whitespace that followed it (a space, a line break), so the sentences join back
    /// into the answer.
    pub separator: String,
    /// Sources whose passage supports it: the citations shown. Empty when none does.
    pub sources: Vec<usize>,
    /// Sources the generator cited for it, supported or not.
    pub claimed: Vec<usize>,
    /// False when it makes a claim that no source supports.
    pub supported: bool,
}

/// A conversation with a space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    pub id: String,
    pub space_id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
    pub citations: Vec<Citation>,
    pub generator: Option<String>,
    pub created_at: String,
    /// An answer as HTML for the chat page (Markdown rendered, raw HTML escaped, citations as
    /// links, unsupported sentences marked); filled for the UI only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// What the metrics dashboard shows: recent per-second history and current state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSnapshot {
    pub uptime_seconds: u64,
    /// Seconds of history in `points` (one point per second, oldest first).
    pub window_seconds: u64,
    pub points: Vec<MetricsPoint>,
    /// Aggregates over the last minute.
    pub last_minute: WindowStat,
    /// Per route template since start, busiest first.
    pub routes: Vec<RouteStat>,
    pub caches: Vec<CacheStat>,
    pub breakers: Vec<BreakerStat>,
    pub jobs: JobStat,
    pub memory_bytes: u64,
    pub cpu_percent: f64,
}

/// One second of activity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsPoint {
    /// Unix time, seconds.
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub tokens: u64,
    pub search_p95_ms: Option<f64>,
    /// Metadata store calls (every operation), 95th percentile.
    #[serde(default)]
    pub db_p95_ms: Option<f64>,
    pub passages: u64,
}

/// Aggregates over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowStat {
    pub requests_per_second: f64,
    pub error_ratio: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub tokens_per_second: f64,
    pub search_p95_ms: Option<f64>,
    /// Metadata store calls (every operation), 95th percentile.
    #[serde(default)]
    pub db_p95_ms: Option<f64>,
    pub passages_per_second: f64,
}

/// Requests to one route template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStat {
    pub method: String,
    pub route: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// Hits and misses of one cache since start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStat {
    pub name: String,
    pub hits: u64,
    pub misses: u64,
}

/// A generator's circuit breaker.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakerStat {
    pub name: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
}

/// Ingestion jobs by state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStat {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// One entry of the audit log: a change someone asked for, whether it went through, and from where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// The user who asked (none while Kenning runs without accounts).
    pub actor: Option<String>,
    /// The method and route template, e.g. `DELETE /api/v1/spaces/{id}`.
    pub action: String,
    /// `space`, `document`, `conversation` or `point`, when the route names one.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The client's address (behind trusted proxies, the one they name).
    pub ip: Option<String>,
    /// `{status, request_id}` of the request.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: serde_json::Value,
}

/// Request body to create a space.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSpaceRequest {
    /// Unique, 1 to 100 characters (after trimming), no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub description: String,
}

/// Request body to rename a space or change its description.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateSpaceRequest {
    /// A new name: unique, 1 to 100 characters (after trimming), no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub name: Option<String>,
    /// A new description, at most 500 characters.
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub description: Option<String>,
}

/// Overall and per-dependency health, as served at `/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthReport {
    pub status: HealthStatus,
    pub version: String,
    pub uptime_seconds: u64,
    pub checks: Vec<DependencyHealth>,
}

/// One dependency's health with how long the probe took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DependencyHealth {
    pub name: String,
    pub kind: String,
    pub status: HealthStatus,
    pub latency_ms: f64,
    pub message: Option<String>,
}

/// Ordered from best to worst so the overall status is the maximum of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

impl HealthStatus {
    /// Lowercase label used in JSON and CSS classes.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_know_their_neighbours() {
        let page = Page::<()> {
            items: vec![],
            total: 120,
            limit: 50,
            offset: 50,
        };
        assert_eq!(page.next_offset(), Some(100));
        assert_eq!(page.prev_offset(), Some(0));
        let last = Page::<()> {
            items: vec![],
            total: 120,
            limit: 50,
            offset: 100,
        };
        assert_eq!(last.next_offset(), None);
    }

    #[test]
    fn overall_health_is_the_worst_check() {
        let worst = [
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Degraded,
        ]
        .into_iter()
        .max();
        assert_eq!(worst, Some(HealthStatus::Unhealthy));
    }
}

/// What a member may do in a space: viewers search and chat, editors also add and remove
/// documents and points, owners also rename, delete and share the space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Owner,
}

impl Role {
    /// The role's name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Owner => "owner",
        }
    }

    /// The role a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// An account. The password never leaves the server, not even as a hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    /// Admins manage accounts, read the audit log and reach every space.
    pub is_admin: bool,
    pub created_at: String,
    /// A disabled account keeps its data but cannot sign in; its sessions and keys stop working.
    #[serde(default)]
    pub disabled: bool,
}

/// Who is asking, as the UI shows it: signed in as someone, or the single-user mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// `none` (single user, loopback only, no sign-in) or `password`.
    pub auth: String,
    /// The signed-in account, if any.
    pub user: Option<User>,
    /// No account exists yet: the first one to be created becomes the admin.
    pub needs_setup: bool,
}

/// Request body to sign in, or to create the first (admin) account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The account's email address (any case).
    #[cfg_attr(feature = "openapi", schema(min_length = 3, max_length = 254))]
    pub email: String,
    /// At least 8 characters when an account is created.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub password: String,
    /// Where the browser goes after a form sign-in (a path on this site).
    #[serde(default)]
    pub next: Option<String>,
    /// Creating the first account from another machine: the setup token from Kenning's log.
    #[serde(default)]
    pub setup_token: Option<String>,
}

/// Request body for an admin to create an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUserRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 3, max_length = 254))]
    pub email: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// Request body for an admin to change another account: disable it, or enable it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub disabled: bool,
}

/// An API key as listed: never the key itself, which is shown once when it is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The key's visible start (`kn_` and 8 characters), to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A key just created: `key` is shown this once and cannot be read again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub info: ApiKey,
    /// Send as `Authorization: Bearer <key>`.
    pub key: String,
}

/// Request body to change the signed-in account's password.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1024))]
    pub current_password: String,
    /// The new password, 8 to 1,024 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub new_password: String,
}

/// Request body to create an API key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateApiKeyRequest {
    /// What the key is for, 1 to 100 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
}

/// A member of a space and their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
}

/// Request body to add a member to a space or change their role.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetMemberRequest {
    /// The account to add, by email.
    #[cfg_attr(feature = "openapi", schema(min_length = 3, max_length = 254))]
    pub email: String,
    pub role: Role,
}

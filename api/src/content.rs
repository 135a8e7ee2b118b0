//! Spaces, their documents, passages, ingestion jobs and sources.

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

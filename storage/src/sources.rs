//! Sources and the versions of their documents: what a sync needs from the metadata store, kept
//! out of the main store trait so that aggregate's rules stay in one place.

use super::{StoreError, Wire};
use chrono::{DateTime, Utc};
use kenning_api::{Source, SyncResult};
use std::time::Duration;
use uuid::Uuid;

/// A source about to be written; the location is already checked and normalised.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub id: Uuid,
    pub space_id: Uuid,
    pub kind: String,
    pub location: String,
    pub interval_minutes: Option<i64>,
    pub watch: bool,
    pub max_pages: i64,
}

/// A document version that a newer one replaced or a sync removed: its rows are gone, its
/// vectors and file are the caller's to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superseded {
    pub id: Uuid,
    pub storage_path: String,
}

/// The newest version under one key of a source, as a sync compares it with what it finds.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub id: Uuid,
    pub key: String,
    pub stamp: Option<String>,
    pub content_hash: String,
}

/// How a sync ended, to record on its source.
#[derive(Debug, Clone)]
pub enum SyncOutcome {
    Done(SyncResult),
    Failed(String),
}

/// Sources, their sync state and their documents' versions.
#[async_trait::async_trait]
pub trait SourceStore: Send + Sync + 'static {
    /// Adds a source; the same kind and location twice in a space is a `Conflict`.
    async fn create_source(&self, source: &NewSource) -> Result<Source, StoreError>;
    /// One source of a space.
    async fn get_source(&self, space_id: Uuid, id: Uuid) -> Result<Source, StoreError>;
    /// A space's sources, oldest first (a space has a handful).
    async fn list_sources(&self, space_id: Uuid) -> Result<Vec<Source>, StoreError>;
    /// Deletes a source with every document it brought, in one transaction.
    async fn delete_source(&self, space_id: Uuid, id: Uuid) -> Result<Vec<Superseded>, StoreError>;
    /// Takes a source for one sync: true when it was idle or its last sync's lease ran out, so two
    /// syncs of one source never run at once, across processes too.
    async fn claim_sync(&self, id: Uuid, lease: Duration) -> Result<bool, StoreError>;
    /// Records a running sync's progress and renews its lease.
    async fn sync_progress(
        &self,
        id: Uuid,
        phase: &str,
        progress: f64,
        lease: Duration,
    ) -> Result<(), StoreError>;
    /// Ends a sync: records what it did or why it failed and when the next one is due.
    async fn finish_sync(
        &self,
        id: Uuid,
        outcome: &SyncOutcome,
        next_sync_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Sources whose scheduled sync is due and that nobody is syncing, as (space, source).
    async fn due_sources(&self, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError>;
    /// Every watched folder source, as (space, source, folder).
    async fn watched_sources(&self) -> Result<Vec<(Uuid, Uuid, String)>, StoreError>;
    /// The newest version under each key a source brought.
    async fn source_entries(
        &self,
        space_id: Uuid,
        source_id: Uuid,
    ) -> Result<Vec<SourceEntry>, StoreError>;
    /// Remembers a file's new size and time when its bytes turned out unchanged.
    async fn set_source_stamp(&self, document_id: Uuid, stamp: &str) -> Result<(), StoreError>;
    /// Deletes every version under a key (the file or page is gone) and bumps the space version.
    async fn delete_key(&self, space_id: Uuid, key: &str) -> Result<Vec<Superseded>, StoreError>;
}

/// Columns selected for a source.
pub(crate) const SOURCE_COLUMNS: &str = "id, space_id, kind, location, interval_minutes, \
    watch, max_pages, status, phase, progress, last_sync_at, last_result, last_error, failures, \
    next_sync_at, created_at, updated_at";

/// A source row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct SourceRow<I, T> {
    id: I,
    space_id: I,
    kind: String,
    location: String,
    interval_minutes: Option<i32>,
    watch: bool,
    max_pages: i32,
    status: String,
    phase: Option<String>,
    progress: f64,
    last_sync_at: Option<T>,
    last_result: Option<String>,
    last_error: Option<String>,
    failures: i32,
    next_sync_at: Option<T>,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<SourceRow<I, T>> for Source {
    fn from(r: SourceRow<I, T>) -> Self {
        Source {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            kind: r.kind,
            location: r.location,
            interval_minutes: r.interval_minutes.map(i64::from),
            watch: r.watch,
            max_pages: i64::from(r.max_pages),
            status: r.status,
            phase: r.phase,
            progress: r.progress,
            last_sync_at: r.last_sync_at.map(Wire::wire),
            last_result: r
                .last_result
                .and_then(|j| serde_json::from_str::<SyncResult>(&j).ok()),
            last_error: r.last_error,
            failures: i64::from(r.failures),
            next_sync_at: r.next_sync_at.map(Wire::wire),
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// The result column and error column of a finished sync.
pub(crate) fn outcome_columns(outcome: &SyncOutcome) -> (Option<String>, Option<String>) {
    match outcome {
        SyncOutcome::Done(r) => (serde_json::to_string(r).ok(), None),
        SyncOutcome::Failed(e) => (None, Some(e.clone())),
    }
}

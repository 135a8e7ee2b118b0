//! The service layer: the one place that knows how spaces and documents behave. The REST API and
//! the UI's server functions both call it, so they cannot drift apart.

use crate::domain::{
    clean_filename, parse_id, Description, InvalidInput, PageRequest, SpaceId, SpaceName,
};
use crate::generate::{BreakerState, Chain};
use crate::points::PointStore;
use crate::retrieve::{Retriever, Search};
use crate::store::{MetadataStore, NewDocument, NewJob, StoreError};
use crate::vector::VectorStore;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use kenning_api::{BreakerStat, JobStat, MetricsSnapshot, SearchRequest, SearchResponse};
use kenning_api::{Chunk, Conversation, Document, Job, Message, Page, Space};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use uuid::Uuid;

pub(crate) use crate::error::{search_error, ServiceError};

mod documents;
mod sources;

pub use documents::Origin;

/// What an upload produced: the document and whether it is new (false: identical content was there).
#[derive(Debug)]
pub struct Uploaded {
    pub document: Document,
    pub created: bool,
}

/// Spaces and documents over a metadata store and a data directory.
pub struct Service {
    store: Arc<dyn MetadataStore>,
    vectors: Option<Arc<dyn VectorStore>>,
    retriever: Arc<Retriever>,
    data_dir: PathBuf,
    max_upload_bytes: u64,
    max_attempts: i32,
    wake: Arc<Notify>,
    started: Instant,
    chain: Option<Arc<Chain>>,
    points: Option<Arc<dyn PointStore>>,
    redis: Option<Arc<crate::redis_link::RedisLink>>,
    auth: Option<Arc<crate::auth::Auth>>,
    max_queued_jobs: Option<u64>,
    /// Spaces seen to exist lately, so a read of points needs no metadata query; bounded, short
    /// lived and dropped on delete in this process (another process's delete is seen within
    /// `KNOWN_SPACE_TTL`, and writes always ask the store).
    known_spaces: moka::future::Cache<Uuid, ()>,
    /// What folder and web sources may read.
    sources: crate::sources::SourceSettings,
    /// Told when sources come or go, so the scheduler watches the right folders at once.
    sources_changed: Arc<Notify>,
}

/// How long a space found to exist is trusted by point reads without asking the store again.
const KNOWN_SPACE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Bytes inspected to decide whether an upload is text.
const SNIFF_BYTES: usize = 8192;

impl Service {
    /// Wires the service; `data_dir` must exist. `wake` is notified whenever a job is queued so
    /// in-process workers start at once instead of at their next poll.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        vectors: Option<Arc<dyn VectorStore>>,
        retriever: Arc<Retriever>,
        data_dir: PathBuf,
        max_upload_bytes: u64,
        max_attempts: i32,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            vectors,
            retriever,
            data_dir,
            max_upload_bytes,
            max_attempts,
            wake,
            started: Instant::now(),
            auth: None,
            max_queued_jobs: None,
            chain: None,
            points: None,
            redis: None,
            known_spaces: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KNOWN_SPACE_TTL)
                .build(),
            sources: crate::sources::SourceSettings::default(),
            sources_changed: Arc::new(Notify::new()),
        }
    }

    /// Sets what folder and web sources may read (off until an admin configures roots).
    pub fn with_sources(mut self, sources: crate::sources::SourceSettings) -> Self {
        self.sources = sources;
        self
    }

    /// Adds the generator chain, so health reports show its circuit breakers.
    pub fn with_chain(mut self, chain: Arc<Chain>) -> Self {
        self.chain = Some(chain);
        self
    }

    /// Caps the ingestion queue: past `cap` jobs waiting, uploads are shed with 503 and
    /// `Retry-After` instead of growing the backlog without bound.
    pub fn with_queue_cap(mut self, cap: u64) -> Self {
        self.max_queued_jobs = Some(cap);
        self
    }

    async fn admit_job(&self) -> Result<(), ServiceError> {
        let Some(cap) = self.max_queued_jobs else {
            return Ok(());
        };
        let counts = self
            .store
            .count_jobs()
            .await
            .map_err(|e| ServiceError::from_store(e, "job"))?;
        if u64::try_from(counts.queued).unwrap_or(0) >= cap {
            crate::metrics::global().record_refused("upload", "overloaded");
            return Err(ServiceError::Overloaded(format!(
                "{} documents are waiting to be ingested already; try again in a moment.",
                counts.queued
            )));
        }
        Ok(())
    }

    /// Adds accounts and roles, so the UI's server functions check them as the API does.
    pub fn with_auth(mut self, auth: Arc<crate::auth::Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The accounts wired in, if any: the UI adapter answers account questions through them.
    pub fn accounts(&self) -> Option<&crate::auth::Auth> {
        self.auth.as_deref()
    }

    /// Refuses unless the caller holds `needed` in the space (see `Auth::authorize`); without
    /// accounts wired in (the CLI), only an all-access caller passes.
    pub async fn authorize(
        &self,
        caller: &crate::auth::Caller,
        space_id: SpaceId,
        needed: kenning_api::Role,
    ) -> Result<(), ServiceError> {
        let id = space_id.uuid();
        match &self.auth {
            Some(auth) => auth.authorize(caller, id, needed).await,
            None if caller.is_admin => Ok(()),
            None => Err(ServiceError::NotFound("space")),
        }
    }

    /// The spaces a caller may see: all of them for admins, else those they are a member of.
    pub async fn list_spaces_for(
        &self,
        caller: &crate::auth::Caller,
        page: PageRequest,
    ) -> Result<Page<Space>, ServiceError> {
        if caller.is_admin {
            return self.list_spaces(page).await;
        }
        let user = crate::auth::caller_account(caller)?;
        self.store
            .list_spaces_of(user, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// Adds the Redis link, so health reports show whether limits and caches are shared.
    pub fn with_redis(mut self, link: Arc<crate::redis_link::RedisLink>) -> Self {
        self.redis = Some(link);
        self
    }

    /// The Redis link, when configured.
    pub fn redis(&self) -> Option<&Arc<crate::redis_link::RedisLink>> {
        self.redis.as_ref()
    }

    /// Adds the points store, so deleting a space also deletes its points.
    pub fn with_points(mut self, points: Arc<dyn PointStore>) -> Self {
        self.points = Some(points);
        self
    }

    /// The generator chain, when answers are configured.
    pub fn chain(&self) -> Option<&Arc<Chain>> {
        self.chain.as_ref()
    }

    /// The metadata store, for health checks.
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Where uploaded files and the embedded database live.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Seconds since the service started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Parses a space id where it arrives as text (a form, a tool's argument): one that is not
    /// a UUID names no space.
    pub(crate) fn space_id(raw: &str) -> Result<SpaceId, ServiceError> {
        SpaceId::parse(raw).ok_or(ServiceError::NotFound("space"))
    }

    fn document_id(raw: &str) -> Result<Uuid, ServiceError> {
        parse_id(raw).ok_or(ServiceError::NotFound("document"))
    }

    /// Lists spaces.
    pub async fn list_spaces(&self, page: PageRequest) -> Result<Page<Space>, ServiceError> {
        self.store
            .list_spaces(page)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// One space.
    pub async fn get_space(&self, id: SpaceId) -> Result<Space, ServiceError> {
        let id = id.uuid();
        self.store
            .get_space(id)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// The id of an existing space, for hot read paths (points search and get): answered from a
    /// short-lived cache when the space was seen lately, from the store otherwise.
    pub async fn existing_space(&self, id: SpaceId) -> Result<Uuid, ServiceError> {
        let id = id.uuid();
        if self.known_spaces.contains_key(&id) {
            return Ok(id);
        }
        self.store
            .get_space(id)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        self.known_spaces.insert(id, ()).await;
        Ok(id)
    }

    /// A space by id or by name (ignoring case), for clients that name spaces.
    pub async fn find_space(&self, id_or_name: &str) -> Result<Space, ServiceError> {
        if let Some(id) = parse_id(id_or_name) {
            match self.store.get_space(id).await {
                Ok(space) => return Ok(space),
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(ServiceError::from_store(e, "space")),
            }
        }
        self.store
            .find_space_by_name(id_or_name.trim())
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?
            .ok_or(ServiceError::NotFound("space"))
    }

    /// Creates a space; names are unique regardless of case.
    pub async fn create_space(
        &self,
        owner: Option<&crate::auth::Caller>,
        name: &str,
        description: &str,
    ) -> Result<Space, ServiceError> {
        let name = SpaceName::parse(name)?;
        let description = Description::parse(description)?;
        let owner = owner
            .and_then(|c| c.user_id.as_deref())
            .and_then(|id| Uuid::parse_str(id).ok());
        self.store
            .create_space(Uuid::now_v7(), &name, &description, owner)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "A space named \"{}\" already exists.",
                    name.as_str()
                )),
                other => ServiceError::from_store(other, "space"),
            })
    }

    /// Renames a space and/or changes its description.
    pub async fn update_space(
        &self,
        id: SpaceId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Space, ServiceError> {
        let id = id.uuid();
        let name = name.map(SpaceName::parse).transpose()?;
        let description = description.map(Description::parse).transpose()?;
        self.store
            .update_space(id, name.as_ref(), description.as_ref())
            .await
            .map_err(|e| match (e, &name) {
                (StoreError::Conflict(_), Some(n)) => ServiceError::Conflict(format!(
                    "A space named \"{}\" already exists.",
                    n.as_str()
                )),
                (other, _) => ServiceError::from_store(other, "space"),
            })
    }

    /// Deletes a space, its rows (by cascade) and its stored files.
    pub async fn delete_space(&self, id: SpaceId) -> Result<(), ServiceError> {
        let id = id.uuid();
        self.store
            .delete_space(id)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        self.known_spaces.invalidate(&id).await;
        if let Some(vectors) = &self.vectors {
            if let Err(e) = vectors.delete_space(id).await {
                tracing::warn!(error = %e, "could not remove a deleted space's vectors");
            }
        }
        if let Some(points) = &self.points {
            if let Err(e) = points.delete_space(id).await {
                tracing::warn!(error = %e, "could not remove a deleted space's points");
            }
        }
        let dir = self.data_dir.join("documents").join(id.to_string());
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %dir.display(), error = %e, "could not remove a deleted space's files");
            }
        }
        Ok(())
    }

    /// The audit log of changes, newest first.
    pub async fn list_audit(
        &self,
        page: PageRequest,
    ) -> Result<Page<kenning_api::AuditEntry>, ServiceError> {
        self.store
            .list_audit(page)
            .await
            .map_err(|e| ServiceError::from_store(e, "audit"))
    }

    /// The caller's conversations in a space, most recently active first: a conversation is
    /// private to whoever started it, so other members (admins included) never see it here.
    pub async fn list_conversations(
        &self,
        caller: &crate::auth::Caller,
        space_id: SpaceId,
        page: PageRequest,
    ) -> Result<Page<Conversation>, ServiceError> {
        let space = space_id.uuid();
        let owner = owner_of(caller)?;
        self.store
            .get_space(space)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        self.store
            .list_conversations(space, owner, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// The messages of one of the caller's conversations, oldest first; another caller's
    /// conversation is not found.
    pub async fn list_messages(
        &self,
        caller: &crate::auth::Caller,
        space_id: SpaceId,
        conversation_id: &str,
        page: PageRequest,
    ) -> Result<Page<Message>, ServiceError> {
        let (space, id) = Self::conversation_ids(space_id, conversation_id)?;
        let owner = owner_of(caller)?;
        // Messages are keyed by conversation alone: this lookup is the ownership check.
        self.store
            .get_conversation(space, owner, id)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))?;
        self.store
            .list_messages(id, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))
    }

    /// Renames one of the caller's conversations; titles are 1–200 characters. Another
    /// caller's conversation is not found, whatever the caller's role in the space.
    pub async fn rename_conversation(
        &self,
        caller: &crate::auth::Caller,
        space_id: SpaceId,
        conversation_id: &str,
        title: &str,
    ) -> Result<Conversation, ServiceError> {
        let (space, id) = Self::conversation_ids(space_id, conversation_id)?;
        let owner = owner_of(caller)?;
        let title = title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ServiceError::Invalid(InvalidInput {
                code: "invalid_title",
                message: "The title must be between 1 and 200 characters.".into(),
            }));
        }
        self.store
            .rename_conversation(space, owner, id, title)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))
    }

    /// Deletes one of the caller's conversations with its messages. Another caller's
    /// conversation is not found, whatever the caller's role in the space.
    pub async fn delete_conversation(
        &self,
        caller: &crate::auth::Caller,
        space_id: SpaceId,
        conversation_id: &str,
    ) -> Result<(), ServiceError> {
        let (space, id) = Self::conversation_ids(space_id, conversation_id)?;
        let owner = owner_of(caller)?;
        self.store
            .delete_conversation(space, owner, id)
            .await
            .map_err(|e| ServiceError::from_store(e, "conversation"))
    }

    fn conversation_ids(space: SpaceId, conversation: &str) -> Result<(Uuid, Uuid), ServiceError> {
        Ok((
            space.uuid(),
            parse_id(conversation).ok_or(ServiceError::NotFound("conversation"))?,
        ))
    }

    /// Breaker states and job counts: the gauges read when metrics are asked for.
    async fn gauges(&self) -> (Vec<BreakerStat>, JobStat) {
        let breakers = self
            .chain
            .as_ref()
            .map(|c| {
                c.breaker_states()
                    .into_iter()
                    .map(|(name, state)| BreakerStat {
                        name: name.to_string(),
                        state: match state {
                            BreakerState::Closed => "closed",
                            BreakerState::Open => "open",
                            BreakerState::HalfOpen => "half_open",
                        }
                        .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A store that does not answer shows no jobs rather than failing the dashboard.
        let jobs = match self.store.count_jobs().await {
            Ok(c) => JobStat {
                queued: c.queued,
                running: c.running,
                done: c.done,
                failed: c.failed,
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not count jobs for metrics");
                JobStat::default()
            }
        };
        (breakers, jobs)
    }

    /// The dashboard's snapshot.
    pub async fn metrics_snapshot(&self) -> MetricsSnapshot {
        let (breakers, jobs) = self.gauges().await;
        crate::metrics::global().snapshot(breakers, jobs)
    }

    /// The Prometheus exposition.
    pub async fn prometheus_metrics(&self) -> String {
        let (breakers, jobs) = self.gauges().await;
        crate::metrics::global().render(&breakers, &jobs)
    }

    /// Upload limit in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }
}

/// Whose conversations a caller may see: their account, or `None` in single-user mode, which
/// owns the conversations stored without an owner. Unlike `auth::caller_account`, single-user
/// mode is not an error here, because it has conversations too. An account id that is not a
/// UUID cannot own any conversation, so the conversation is not found (never a 500, and never
/// the owner-less conversations of single-user mode).
pub fn owner_of(caller: &crate::auth::Caller) -> Result<Option<Uuid>, ServiceError> {
    caller
        .user_id
        .as_deref()
        .map(|id| Uuid::parse_str(id).map_err(|_| ServiceError::NotFound("conversation")))
        .transpose()
}

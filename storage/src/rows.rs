//! Rows as each backend decodes them, generic over its id and time types, and the column lists
//! the portable SQL selects: one conversion to the wire types for both backends.

use super::{ChunkHit, UserRecord};
use kenning_api::{
    ApiKey, AuditEntry, Chunk, Conversation, Document, Job, Member, Message, Role, Space, User,
};
use uuid::Uuid;

/// A user row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow<I, T> {
    id: I,
    email: String,
    display_name: String,
    is_admin: bool,
    created_at: T,
    disabled: bool,
}

impl<I: Wire, T: Wire> From<UserRow<I, T>> for User {
    fn from(r: UserRow<I, T>) -> Self {
        User {
            id: r.id.wire(),
            email: r.email,
            display_name: r.display_name,
            is_admin: r.is_admin,
            created_at: r.created_at.wire(),
            disabled: r.disabled,
        }
    }
}

/// A user row with the password hash.
#[derive(sqlx::FromRow)]
pub(crate) struct UserSecretRow<I, T> {
    #[sqlx(flatten)]
    user: UserRow<I, T>,
    password_hash: Option<String>,
}

impl<I: Wire, T: Wire> From<UserSecretRow<I, T>> for UserRecord {
    fn from(r: UserSecretRow<I, T>) -> Self {
        UserRecord {
            user: r.user.into(),
            password_hash: r.password_hash,
        }
    }
}

/// Columns selected for a user; the table is aliased `u`.
pub(crate) const USER_COLUMNS: &str =
    "u.id, u.email, u.display_name, u.is_admin, u.created_at, (u.disabled_at IS NOT NULL) AS disabled";

/// An API key row.
#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow<I, T> {
    id: I,
    name: String,
    prefix: String,
    created_at: T,
    last_used_at: Option<T>,
    revoked_at: Option<T>,
}

impl<I: Wire, T: Wire> From<ApiKeyRow<I, T>> for ApiKey {
    fn from(r: ApiKeyRow<I, T>) -> Self {
        ApiKey {
            id: r.id.wire(),
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at.wire(),
            last_used_at: r.last_used_at.map(Wire::wire),
            revoked_at: r.revoked_at.map(Wire::wire),
        }
    }
}

/// Columns selected for an API key.
pub(crate) const API_KEY_COLUMNS: &str = "id, name, prefix, created_at, last_used_at, revoked_at";

/// A member row.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow<I> {
    user_id: I,
    email: String,
    role: String,
}

impl<I: Wire> From<MemberRow<I>> for Member {
    fn from(r: MemberRow<I>) -> Self {
        Member {
            user_id: r.user_id.wire(),
            email: r.email,
            // The column's CHECK constraint admits only the three names.
            role: Role::parse(&r.role).unwrap_or(Role::Viewer),
        }
    }
}

/// Members of a space with their emails, owners first.
pub(crate) const MEMBERS_SELECT: &str = "SELECT m.user_id, u.email, m.role FROM space_members m     JOIN users u ON u.id = m.user_id WHERE m.space_id = ";

/// A chunk row joined with its document's file name and a score.
#[derive(sqlx::FromRow)]
pub(crate) struct ChunkHitRow<I> {
    #[sqlx(flatten)]
    chunk: ChunkRow<I>,
    filename: String,
    score: f64,
}

impl<I: Wire> From<ChunkHitRow<I>> for ChunkHit {
    fn from(r: ChunkHitRow<I>) -> Self {
        ChunkHit {
            chunk: r.chunk.into(),
            filename: r.filename,
            score: r.score,
        }
    }
}

/// Columns of a chunk hit, with chunks aliased `c` and documents `d`.
pub(crate) const CHUNK_HIT_COLUMNS: &str =
    "c.id, c.document_id, c.position, c.text, c.heading_path, \
    c.char_start, c.char_end, c.token_count, d.filename";

/// Timestamps go over the wire as RFC 3339 UTC with milliseconds.
pub(crate) fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A column value as a backend decodes it (SQLite text, PostgreSQL UUID or TIMESTAMPTZ), turned
/// into its wire form in one place so both backends answer with identical JSON.
pub(crate) trait Wire {
    fn wire(self) -> String;
}

impl Wire for String {
    fn wire(self) -> String {
        self
    }
}

impl Wire for Uuid {
    fn wire(self) -> String {
        self.to_string()
    }
}

impl Wire for chrono::DateTime<chrono::Utc> {
    fn wire(self) -> String {
        format_time(self)
    }
}

/// Columns selected for a space, with its document count; the table is aliased `s`.
pub(crate) const SPACE_COLUMNS: &str = "s.id, s.name, s.description, \
    (SELECT COUNT(*) FROM documents d WHERE d.space_id = s.id) AS document_count, \
    s.created_at, s.updated_at";

/// Selects documents (aliased `d`) with the progress of each one's latest ingestion job.
pub(crate) const DOCUMENT_SELECT: &str =
    "SELECT d.id, d.space_id, d.filename, d.mime, d.size_bytes, \
    d.content_hash, d.status, d.error, d.chunk_count, d.created_at, d.updated_at, \
    d.source_id, d.source_key, d.version, \
    j.id AS job_id, j.phase AS phase, COALESCE(j.progress, 0.0) AS progress \
    FROM documents d LEFT JOIN ingestion_jobs j ON j.id = (SELECT j2.id FROM ingestion_jobs j2 \
    WHERE j2.document_id = d.id ORDER BY j2.created_at DESC, j2.id DESC LIMIT 1)";

/// Columns selected for a job.
pub(crate) const JOB_COLUMNS: &str = "id, space_id, document_id, kind, status, phase, progress, \
    attempts, max_attempts, last_error, created_at, updated_at";

/// Columns selected for a chunk.
pub(crate) const CHUNK_COLUMNS: &str =
    "id, document_id, position, text, heading_path, char_start, char_end, token_count";

/// An audit row; `T` is the backend's time type, `details` JSON text from both backends.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow<T> {
    id: i64,
    at: T,
    actor: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    details: String,
}

impl<T: Wire> From<AuditRow<T>> for AuditEntry {
    fn from(r: AuditRow<T>) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at.wire(),
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            ip: r.ip,
            details: serde_json::from_str(&r.details).unwrap_or_default(),
        }
    }
}

/// Columns selected for a conversation.
pub(crate) const CONVERSATION_COLUMNS: &str = "id, space_id, title, created_at, updated_at";

/// A conversation row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct ConversationRow<I, T> {
    id: I,
    space_id: I,
    title: String,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<ConversationRow<I, T>> for Conversation {
    fn from(r: ConversationRow<I, T>) -> Self {
        Conversation {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            title: r.title,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A message row; citations arrive as JSON text from both backends.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow<I, T> {
    id: I,
    role: String,
    content: String,
    citations: String,
    generator: Option<String>,
    created_at: T,
}

impl<I: Wire, T: Wire> From<MessageRow<I, T>> for Message {
    fn from(r: MessageRow<I, T>) -> Self {
        Message {
            id: r.id.wire(),
            role: r.role,
            content: r.content,
            // Written by us from `Citation`s; an unreadable value shows as no citations.
            citations: serde_json::from_str(&r.citations).unwrap_or_default(),
            generator: r.generator,
            created_at: r.created_at.wire(),
            html: None,
        }
    }
}

/// A space row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct SpaceRow<I, T> {
    id: I,
    name: String,
    description: String,
    document_count: i64,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<SpaceRow<I, T>> for Space {
    fn from(r: SpaceRow<I, T>) -> Self {
        Space {
            id: r.id.wire(),
            name: r.name,
            description: r.description,
            document_count: r.document_count,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A document row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct DocumentRow<I, T> {
    id: I,
    space_id: I,
    filename: String,
    mime: String,
    size_bytes: i64,
    content_hash: String,
    status: String,
    error: Option<String>,
    chunk_count: i64,
    created_at: T,
    updated_at: T,
    job_id: Option<I>,
    phase: Option<String>,
    progress: f64,
    source_id: Option<I>,
    source_key: Option<String>,
    version: i64,
}

impl<I: Wire, T: Wire> From<DocumentRow<I, T>> for Document {
    fn from(r: DocumentRow<I, T>) -> Self {
        Document {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            filename: r.filename,
            mime: r.mime,
            size_bytes: r.size_bytes,
            content_hash: r.content_hash,
            status: r.status,
            error: r.error,
            chunk_count: r.chunk_count,
            job_id: r.job_id.map(Wire::wire),
            phase: r.phase,
            progress: r.progress,
            source_id: r.source_id.map(Wire::wire),
            source_key: r.source_key,
            version: r.version,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A job row; `I` and `T` are the backend's id and time types.
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow<I, T> {
    id: I,
    space_id: I,
    document_id: Option<I>,
    kind: String,
    status: String,
    phase: Option<String>,
    progress: f64,
    attempts: i32,
    max_attempts: i32,
    last_error: Option<String>,
    created_at: T,
    updated_at: T,
}

impl<I: Wire, T: Wire> From<JobRow<I, T>> for Job {
    fn from(r: JobRow<I, T>) -> Self {
        Job {
            id: r.id.wire(),
            space_id: r.space_id.wire(),
            document_id: r.document_id.map(Wire::wire),
            kind: r.kind,
            status: r.status,
            phase: r.phase,
            progress: r.progress,
            attempts: r.attempts.into(),
            max_attempts: r.max_attempts.into(),
            last_error: r.last_error,
            created_at: r.created_at.wire(),
            updated_at: r.updated_at.wire(),
        }
    }
}

/// A chunk row; `I` is the backend's id type.
#[derive(sqlx::FromRow)]
pub(crate) struct ChunkRow<I> {
    id: I,
    document_id: I,
    position: i32,
    text: String,
    heading_path: String,
    char_start: i64,
    char_end: i64,
    token_count: i32,
}

impl<I: Wire> From<ChunkRow<I>> for Chunk {
    fn from(r: ChunkRow<I>) -> Self {
        Chunk {
            id: r.id.wire(),
            document_id: r.document_id.wire(),
            position: r.position.into(),
            text: r.text,
            heading_path: r.heading_path,
            char_start: r.char_start,
            char_end: r.char_end,
            token_count: r.token_count.into(),
        }
    }
}

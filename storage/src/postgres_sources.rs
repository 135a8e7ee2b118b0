//! Sources on PostgreSQL.

use super::sources::{outcome_columns, SourceRow, SOURCE_COLUMNS};
use super::{
    lease_millis, NewSource, PostgresStore, SourceEntry, SourceStore, StoreError, Superseded,
    SyncOutcome,
};
use chrono::{DateTime, Utc};
use kenning_api::Source;
use sqlx::{Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

type Row = SourceRow<Uuid, DateTime<Utc>>;

fn superseded(rows: Vec<(Uuid, String)>) -> Vec<Superseded> {
    rows.into_iter()
        .map(|(id, storage_path)| Superseded { id, storage_path })
        .collect()
}

fn lease_end(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(lease_millis(lease))
}

/// Deletes the versions under the document's key older than it, inside the completing
/// transaction.
pub(super) async fn delete_older_versions(
    tx: &mut Transaction<'_, Postgres>,
    document_id: Uuid,
) -> Result<Vec<Superseded>, StoreError> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "DELETE FROM documents o USING documents n \
         WHERE n.id = $1 AND o.space_id = n.space_id AND o.source_key = n.source_key \
         AND o.version < n.version RETURNING o.id, o.storage_path",
    )
    .bind(document_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(superseded(rows))
}

#[async_trait::async_trait]
impl SourceStore for PostgresStore {
    async fn create_source(&self, s: &NewSource) -> Result<Source, StoreError> {
        sqlx::query(
            "INSERT INTO sources (id, space_id, kind, location, interval_minutes, watch, max_pages, \
             next_sync_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $5 IS NULL AND NOT $6 THEN NULL ELSE now() END, now(), now())",
        )
        .bind(s.id)
        .bind(s.space_id)
        .bind(&s.kind)
        .bind(&s.location)
        .bind(s.interval_minutes.and_then(|m| i32::try_from(m).ok()))
        .bind(s.watch)
        .bind(i32::try_from(s.max_pages).unwrap_or(i32::MAX))
        .execute(&self.pool())
        .await?;
        self.get_source(s.space_id, s.id).await
    }

    async fn get_source(&self, space_id: Uuid, id: Uuid) -> Result<Source, StoreError> {
        let row: Row = sqlx::query_as(&format!(
            "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = $1 AND id = $2"
        ))
        .bind(space_id)
        .bind(id)
        .fetch_one(&self.pool())
        .await?;
        Ok(row.into())
    }

    async fn list_sources(&self, space_id: Uuid) -> Result<Vec<Source>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = $1 ORDER BY created_at, id"
        ))
        .bind(space_id)
        .fetch_all(&self.pool())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_source(&self, space_id: Uuid, id: Uuid) -> Result<Vec<Superseded>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "DELETE FROM documents WHERE space_id = $1 AND source_id = $2 RETURNING id, storage_path",
        )
        .bind(space_id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM sources WHERE space_id = $1 AND id = $2")
            .bind(space_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
            .bind(space_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(superseded(rows))
    }

    async fn claim_sync(&self, id: Uuid, lease: Duration) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sources SET status = 'syncing', phase = 'listing', progress = 0, \
             lease_expires_at = $1, updated_at = now() \
             WHERE id = $2 AND (status = 'idle' OR lease_expires_at < now())",
        )
        .bind(lease_end(lease))
        .bind(id)
        .execute(&self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn sync_progress(
        &self,
        id: Uuid,
        phase: &str,
        progress: f64,
        lease: Duration,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sources SET phase = $1, progress = $2, lease_expires_at = $3, updated_at = now() \
             WHERE id = $4 AND status = 'syncing'",
        )
        .bind(phase)
        .bind(progress)
        .bind(lease_end(lease))
        .bind(id)
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        outcome: &SyncOutcome,
        next_sync_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let (result, error) = outcome_columns(outcome);
        let failed = error.is_some();
        sqlx::query(
            "UPDATE sources SET status = 'idle', phase = NULL, \
             progress = CASE WHEN $1 THEN progress ELSE 1 END, \
             lease_expires_at = NULL, last_sync_at = now(), \
             last_result = COALESCE($2, last_result), last_error = $3, \
             failures = CASE WHEN $1 THEN failures + 1 ELSE 0 END, next_sync_at = $4, \
             updated_at = now() WHERE id = $5",
        )
        .bind(failed)
        .bind(result)
        .bind(error)
        .bind(next_sync_at)
        .bind(id)
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    async fn due_sources(&self, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT space_id, id FROM sources WHERE next_sync_at IS NOT NULL AND next_sync_at <= now() \
             AND (status = 'idle' OR lease_expires_at < now()) ORDER BY next_sync_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool())
        .await?)
    }

    async fn watched_sources(&self) -> Result<Vec<(Uuid, Uuid, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT space_id, id, location FROM sources WHERE watch AND kind = 'folder'",
        )
        .fetch_all(&self.pool())
        .await?)
    }

    async fn source_entries(
        &self,
        space_id: Uuid,
        source_id: Uuid,
    ) -> Result<Vec<SourceEntry>, StoreError> {
        let rows: Vec<(Uuid, String, Option<String>, String)> = sqlx::query_as(
            "SELECT d.id, d.source_key, d.source_stamp, d.content_hash FROM documents d \
             WHERE d.space_id = $1 AND d.source_id = $2 AND d.source_key IS NOT NULL \
             AND d.version = (SELECT MAX(v.version) FROM documents v \
             WHERE v.space_id = d.space_id AND v.source_key = d.source_key)",
        )
        .bind(space_id)
        .bind(source_id)
        .fetch_all(&self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, key, stamp, content_hash)| SourceEntry {
                id,
                key,
                stamp,
                content_hash,
            })
            .collect())
    }

    async fn set_source_stamp(&self, document_id: Uuid, stamp: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE documents SET source_stamp = $1 WHERE id = $2")
            .bind(stamp)
            .bind(document_id)
            .execute(&self.pool())
            .await?;
        Ok(())
    }

    async fn delete_key(&self, space_id: Uuid, key: &str) -> Result<Vec<Superseded>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "DELETE FROM documents WHERE space_id = $1 AND source_key = $2 RETURNING id, storage_path",
        )
        .bind(space_id)
        .bind(key)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
            .bind(space_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(superseded(rows))
    }
}

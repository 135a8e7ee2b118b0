//! Sources on SQLite.

use super::sources::{outcome_columns, SourceRow, SOURCE_COLUMNS};
use super::sqlite::{later, now, superseded, uuid};
use super::{
    NewSource, SourceEntry, SourceStore, SqliteStore, StoreError, Superseded, SyncOutcome,
};
use chrono::{DateTime, Utc};
use kenning_api::Source;
use std::time::Duration;
use uuid::Uuid;

type Row = SourceRow<String, String>;

#[async_trait::async_trait]
impl SourceStore for SqliteStore {
    async fn create_source(&self, s: &NewSource) -> Result<Source, StoreError> {
        let now = now();
        sqlx::query(
            "INSERT INTO sources (id, space_id, kind, location, interval_minutes, watch, max_pages, \
             next_sync_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id.to_string())
        .bind(s.space_id.to_string())
        .bind(&s.kind)
        .bind(&s.location)
        .bind(s.interval_minutes)
        .bind(s.watch)
        .bind(s.max_pages)
        .bind((s.interval_minutes.is_some() || s.watch).then(|| now.clone()))
        .bind(&now)
        .bind(&now)
        .execute(&self.pool())
        .await?;
        self.get_source(s.space_id, s.id).await
    }

    async fn get_source(&self, space_id: Uuid, id: Uuid) -> Result<Source, StoreError> {
        let row: Row = sqlx::query_as(&format!(
            "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = ? AND id = ?"
        ))
        .bind(space_id.to_string())
        .bind(id.to_string())
        .fetch_one(&self.pool())
        .await?;
        Ok(row.into())
    }

    async fn list_sources(&self, space_id: Uuid) -> Result<Vec<Source>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = ? ORDER BY created_at, id"
        ))
        .bind(space_id.to_string())
        .fetch_all(&self.pool())
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_source(&self, space_id: Uuid, id: Uuid) -> Result<Vec<Superseded>, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM documents WHERE space_id = ? AND source_id = ? RETURNING id, storage_path",
        )
        .bind(space_id.to_string())
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM sources WHERE space_id = ? AND id = ?")
            .bind(space_id.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = ?")
            .bind(space_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        superseded(rows)
    }

    async fn claim_sync(&self, id: Uuid, lease: Duration) -> Result<bool, StoreError> {
        let now = now();
        let r = sqlx::query(
            "UPDATE sources SET status = 'syncing', phase = 'listing', progress = 0, \
             lease_expires_at = ?, updated_at = ? \
             WHERE id = ? AND (status = 'idle' OR lease_expires_at < ?)",
        )
        .bind(later(lease))
        .bind(&now)
        .bind(id.to_string())
        .bind(&now)
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
            "UPDATE sources SET phase = ?, progress = ?, lease_expires_at = ?, updated_at = ? \
             WHERE id = ? AND status = 'syncing'",
        )
        .bind(phase)
        .bind(progress)
        .bind(later(lease))
        .bind(now())
        .bind(id.to_string())
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
            "UPDATE sources SET status = 'idle', phase = NULL, progress = CASE WHEN ? THEN progress ELSE 1 END, \
             lease_expires_at = NULL, last_sync_at = ?, \
             last_result = COALESCE(?, last_result), last_error = ?, \
             failures = CASE WHEN ? THEN failures + 1 ELSE 0 END, next_sync_at = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(failed)
        .bind(now())
        .bind(result)
        .bind(error)
        .bind(failed)
        .bind(next_sync_at.map(super::format_time))
        .bind(now())
        .bind(id.to_string())
        .execute(&self.pool())
        .await?;
        Ok(())
    }

    async fn due_sources(&self, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let now = now();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT space_id, id FROM sources WHERE next_sync_at IS NOT NULL AND next_sync_at <= ? \
             AND (status = 'idle' OR lease_expires_at < ?) ORDER BY next_sync_at LIMIT ?",
        )
        .bind(&now)
        .bind(&now)
        .bind(limit)
        .fetch_all(&self.pool())
        .await?;
        rows.iter()
            .map(|(space, id)| Ok((uuid(space)?, uuid(id)?)))
            .collect()
    }

    async fn watched_sources(&self) -> Result<Vec<(Uuid, Uuid, String)>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT space_id, id, location FROM sources WHERE watch AND kind = 'folder'",
        )
        .fetch_all(&self.pool())
        .await?;
        rows.into_iter()
            .map(|(space, id, location)| Ok((uuid(&space)?, uuid(&id)?, location)))
            .collect()
    }

    async fn source_entries(
        &self,
        space_id: Uuid,
        source_id: Uuid,
    ) -> Result<Vec<SourceEntry>, StoreError> {
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT d.id, d.source_key, d.source_stamp, d.content_hash FROM documents d \
             WHERE d.space_id = ? AND d.source_id = ? AND d.source_key IS NOT NULL \
             AND d.version = (SELECT MAX(v.version) FROM documents v \
             WHERE v.space_id = d.space_id AND v.source_key = d.source_key)",
        )
        .bind(space_id.to_string())
        .bind(source_id.to_string())
        .fetch_all(&self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, key, stamp, content_hash)| {
                Ok(SourceEntry {
                    id: uuid(&id)?,
                    key,
                    stamp,
                    content_hash,
                })
            })
            .collect()
    }

    async fn set_source_stamp(&self, document_id: Uuid, stamp: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE documents SET source_stamp = ? WHERE id = ?")
            .bind(stamp)
            .bind(document_id.to_string())
            .execute(&self.pool())
            .await?;
        Ok(())
    }

    async fn delete_key(&self, space_id: Uuid, key: &str) -> Result<Vec<Superseded>, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM documents WHERE space_id = ? AND source_key = ? RETURNING id, storage_path",
        )
        .bind(space_id.to_string())
        .bind(key)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = ?")
            .bind(space_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        superseded(rows)
    }
}

//! Watched folders and crawled sites, and the documents they keep, in portable SQL.

/// Implements [`crate::SourceStore`] for a backend (see [`crate::portable`]).
macro_rules! sources {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl SourceStore for $store {
            async fn create_source(&self, s: &NewSource) -> Result<Source, StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO sources (id, space_id, kind, location, interval_minutes, watch, \
                     max_pages, next_sync_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, \
                     CASE WHEN $5 IS NULL AND NOT $6 THEN NULL ELSE {NOW} END, {NOW}, {NOW})"
                ))
                .bind(id(s.id))
                .bind(id(s.space_id))
                .bind(&s.kind)
                .bind(&s.location)
                .bind(s.interval_minutes.and_then(|m| i32::try_from(m).ok()))
                .bind(s.watch)
                .bind(i32::try_from(s.max_pages).unwrap_or(i32::MAX))
                .execute(&self.pool)
                .await?;
                self.get_source(s.space_id, s.id).await
            }

            async fn get_source(&self, space: Uuid, source: Uuid) -> Result<Source, StoreError> {
                let row: SourceRow = sqlx::query_as(&format!(
                    "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = $1 AND id = $2"
                ))
                .bind(id(space))
                .bind(id(source))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn list_sources(&self, space: Uuid) -> Result<Vec<Source>, StoreError> {
                let rows: Vec<SourceRow> = sqlx::query_as(&format!(
                    "SELECT {SOURCE_COLUMNS} FROM sources WHERE space_id = $1 ORDER BY created_at, id"
                ))
                .bind(id(space))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_source(
                &self,
                space: Uuid,
                source: Uuid,
            ) -> Result<Vec<Superseded>, StoreError> {
                let mut tx = self.write_tx().await?;
                let rows: Vec<(Id, String)> = sqlx::query_as(
                    "DELETE FROM documents WHERE space_id = $1 AND source_id = $2 \
                     RETURNING id, storage_path",
                )
                .bind(id(space))
                .bind(id(source))
                .fetch_all(&mut *tx)
                .await?;
                let r = sqlx::query("DELETE FROM sources WHERE space_id = $1 AND id = $2")
                    .bind(id(space))
                    .bind(id(source))
                    .execute(&mut *tx)
                    .await?;
                $crate::found(r.rows_affected())?;
                sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
                    .bind(id(space))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                superseded(rows)
            }

            async fn claim_sync(&self, source: Uuid, lease: Duration) -> Result<bool, StoreError> {
                let r = sqlx::query(&format!(
                    "UPDATE sources SET status = 'syncing', phase = 'listing', progress = 0, \
                     lease_expires_at = $1, updated_at = {NOW} \
                     WHERE id = $2 AND (status = 'idle' OR lease_expires_at < {NOW})"
                ))
                .bind(later(lease))
                .bind(id(source))
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn sync_progress(
                &self,
                source: Uuid,
                phase: &str,
                progress: f64,
                lease: Duration,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "UPDATE sources SET phase = $1, progress = $2, lease_expires_at = $3, \
                     updated_at = {NOW} WHERE id = $4 AND status = 'syncing'"
                ))
                .bind(phase)
                .bind(progress)
                .bind(later(lease))
                .bind(id(source))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn finish_sync(
                &self,
                source: Uuid,
                outcome: &SyncOutcome,
                next_sync_at: Option<DateTime<Utc>>,
            ) -> Result<(), StoreError> {
                let (result, error) = outcome_columns(outcome);
                let failed = error.is_some();
                sqlx::query(&format!(
                    "UPDATE sources SET status = 'idle', phase = NULL, \
                     progress = CASE WHEN $1 THEN progress ELSE 1 END, \
                     lease_expires_at = NULL, last_sync_at = {NOW}, \
                     last_result = COALESCE($2, last_result), last_error = $3, \
                     failures = CASE WHEN $1 THEN failures + 1 ELSE 0 END, next_sync_at = $4, \
                     updated_at = {NOW} WHERE id = $5"
                ))
                .bind(failed)
                .bind(result)
                .bind(error)
                .bind(next_sync_at.map(time))
                .bind(id(source))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn due_sources(&self, limit: i64) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
                let rows: Vec<(Id, Id)> = sqlx::query_as(&format!(
                    "SELECT space_id, id FROM sources \
                     WHERE next_sync_at IS NOT NULL AND next_sync_at <= {NOW} \
                     AND (status = 'idle' OR lease_expires_at < {NOW}) \
                     ORDER BY next_sync_at LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(space, source)| Ok((uuid_of(space)?, uuid_of(source)?)))
                    .collect()
            }

            async fn watched_sources(&self) -> Result<Vec<(Uuid, Uuid, String)>, StoreError> {
                let rows: Vec<(Id, Id, String)> = sqlx::query_as(
                    "SELECT space_id, id, location FROM sources WHERE watch AND kind = 'folder'",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(space, source, location)| {
                        Ok((uuid_of(space)?, uuid_of(source)?, location))
                    })
                    .collect()
            }

            async fn source_entries(
                &self,
                space: Uuid,
                source: Uuid,
            ) -> Result<Vec<SourceEntry>, StoreError> {
                let rows: Vec<(Id, String, Option<String>, String)> = sqlx::query_as(
                    "SELECT d.id, d.source_key, d.source_stamp, d.content_hash FROM documents d \
                     WHERE d.space_id = $1 AND d.source_id = $2 AND d.source_key IS NOT NULL \
                     AND d.version = (SELECT MAX(v.version) FROM documents v \
                     WHERE v.space_id = d.space_id AND v.source_key = d.source_key)",
                )
                .bind(id(space))
                .bind(id(source))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(document, key, stamp, content_hash)| {
                        Ok(SourceEntry {
                            id: uuid_of(document)?,
                            key,
                            stamp,
                            content_hash,
                        })
                    })
                    .collect()
            }

            async fn set_source_stamp(&self, document: Uuid, stamp: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE documents SET source_stamp = $1 WHERE id = $2")
                    .bind(stamp)
                    .bind(id(document))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_key(&self, space: Uuid, key: &str) -> Result<Vec<Superseded>, StoreError> {
                let mut tx = self.write_tx().await?;
                let rows: Vec<(Id, String)> = sqlx::query_as(
                    "DELETE FROM documents WHERE space_id = $1 AND source_key = $2 \
                     RETURNING id, storage_path",
                )
                .bind(id(space))
                .bind(key)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("UPDATE spaces SET version = version + 1 WHERE id = $1")
                    .bind(id(space))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                superseded(rows)
            }
        }
    };
}

pub(crate) use sources;

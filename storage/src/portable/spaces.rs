//! Spaces and their members, in portable SQL.

/// Implements [`crate::Spaces`] for a backend (see [`crate::portable`]).
macro_rules! spaces {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl Spaces for $store {
            async fn create_space(
                &self,
                space: Uuid,
                name: &SpaceName,
                description: &Description,
                owner: Option<Uuid>,
            ) -> Result<Space, StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query(&format!(
                    "INSERT INTO spaces (id, name, description, created_at, updated_at) \
                     VALUES ($1, $2, $3, {NOW}, {NOW})"
                ))
                .bind(id(space))
                .bind(name.as_str())
                .bind(description.as_str())
                .execute(&mut *tx)
                .await?;
                if let Some(owner) = owner {
                    sqlx::query(&format!(
                        "INSERT INTO space_members (space_id, user_id, role, created_at) \
                         VALUES ($1, $2, 'owner', {NOW})"
                    ))
                    .bind(id(space))
                    .bind(id(owner))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                self.get_space(space).await
            }

            async fn get_space(&self, space: Uuid) -> Result<Space, StoreError> {
                let row: SpaceRow = sqlx::query_as(&format!(
                    "SELECT {SPACE_COLUMNS} FROM spaces s WHERE s.id = $1"
                ))
                .bind(id(space))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn find_space_by_name(&self, name: &str) -> Result<Option<Space>, StoreError> {
                let row: Option<SpaceRow> = sqlx::query_as(&format!(
                    "SELECT {SPACE_COLUMNS} FROM spaces s WHERE {SPACE_NAME_IS}"
                ))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn list_spaces(&self, page: PageRequest) -> Result<Page<Space>, StoreError> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM spaces")
                    .fetch_one(&self.pool)
                    .await?;
                let rows: Vec<SpaceRow> = sqlx::query_as(&format!(
                    "SELECT {SPACE_COLUMNS} FROM spaces s \
                     ORDER BY s.created_at DESC, s.id DESC LIMIT $1 OFFSET $2"
                ))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn update_space(
                &self,
                space: Uuid,
                name: Option<&SpaceName>,
                description: Option<&Description>,
            ) -> Result<Space, StoreError> {
                let result = sqlx::query(&format!(
                    "UPDATE spaces SET name = COALESCE($1, name), \
                     description = COALESCE($2, description), updated_at = {NOW} WHERE id = $3"
                ))
                .bind(name.map(SpaceName::as_str))
                .bind(description.map(Description::as_str))
                .bind(id(space))
                .execute(&self.pool)
                .await?;
                $crate::found(result.rows_affected())?;
                self.get_space(space).await
            }

            async fn delete_space(&self, space: Uuid) -> Result<(), StoreError> {
                let mut tx = self.write_tx().await?;
                // Lock order job → space → document, the same as a finishing worker's, so a
                // delete during ingestion waits for it instead of deadlocking with it.
                sqlx::query(&format!(
                    "SELECT id FROM ingestion_jobs WHERE space_id = $1{FOR_UPDATE}"
                ))
                .bind(id(space))
                .execute(&mut *tx)
                .await?;
                let result = sqlx::query("DELETE FROM spaces WHERE id = $1")
                    .bind(id(space))
                    .execute(&mut *tx)
                    .await?;
                $crate::found(result.rows_affected())?;
                tx.commit().await?;
                Ok(())
            }

            async fn space_version(&self, space: Uuid) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT version FROM spaces WHERE id = $1")
                    .bind(id(space))
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn record_embedding_model(
                &self,
                space: Uuid,
                model: &str,
                dimensions: i64,
            ) -> Result<(), StoreError> {
                let dimensions = i32::try_from(dimensions)
                    .map_err(|_| StoreError::Other(anyhow::anyhow!("{dimensions} dimensions")))?;
                sqlx::query(
                    "UPDATE spaces SET embedding_model = $1, embedding_dim = $2 \
                     WHERE id = $3 AND embedding_model IS NULL",
                )
                .bind(model)
                .bind(dimensions)
                .bind(id(space))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn spaces_embedded_by_other_models(
                &self,
                model: &str,
            ) -> Result<Vec<StaleSpace>, StoreError> {
                let rows: Vec<(Id, String, String)> = sqlx::query_as(
                    "SELECT id, name, embedding_model FROM spaces \
                     WHERE embedding_model IS NOT NULL AND embedding_model <> $1 ORDER BY name",
                )
                .bind(model)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(space, name, embedding_model)| {
                        Ok(StaleSpace {
                            id: uuid_of(space)?,
                            name,
                            embedding_model,
                        })
                    })
                    .collect()
            }

            async fn requeue_space_for_new_model(
                &self,
                space: Uuid,
                previous_model: &str,
                max_attempts: i32,
            ) -> Result<usize, StoreError> {
                let mut tx = self.write_tx().await?;
                let r = sqlx::query(&format!(
                    "UPDATE spaces SET embedding_model = NULL, embedding_dim = NULL, \
                     version = version + 1, updated_at = {NOW} \
                     WHERE id = $1 AND embedding_model = $2"
                ))
                .bind(id(space))
                .bind(previous_model)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(0);
                }
                let documents: Vec<(Id,)> = sqlx::query_as(&format!(
                    "SELECT id FROM documents WHERE space_id = $1 AND status = 'ready'{FOR_UPDATE}"
                ))
                .bind(id(space))
                .fetch_all(&mut *tx)
                .await?;
                for (document_id,) in &documents {
                    sqlx::query(&format!(
                        "INSERT INTO ingestion_jobs (id, space_id, document_id, kind, status, phase, \
                         max_attempts, run_after, created_at, updated_at) \
                         VALUES ($1, $2, $3, 'reembed', 'queued', 'queued', $4, {NOW}, {NOW}, {NOW})"
                    ))
                    .bind(id(Uuid::now_v7()))
                    .bind(id(space))
                    .bind(document_id)
                    .bind(max_attempts)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(&format!(
                    "UPDATE documents SET status = 'pending', updated_at = {NOW} \
                     WHERE space_id = $1 AND status = 'ready'"
                ))
                .bind(id(space))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(documents.len())
            }
        }
    };
}

/// Implements [`crate::Members`] for a backend (see [`crate::portable`]).
macro_rules! members {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl Members for $store {
            async fn member_role(
                &self,
                space: Uuid,
                user: Uuid,
            ) -> Result<Option<Role>, StoreError> {
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM space_members WHERE space_id = $1 AND user_id = $2",
                )
                .bind(id(space))
                .bind(id(user))
                .fetch_optional(&self.pool)
                .await?;
                Ok(role.as_deref().and_then(Role::parse))
            }

            async fn set_member(&self, space: Uuid, user: Uuid, role: Role) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO space_members (space_id, user_id, role, created_at) \
                     VALUES ($1, $2, $3, {NOW}) \
                     ON CONFLICT (space_id, user_id) DO UPDATE SET role = excluded.role"
                ))
                .bind(id(space))
                .bind(id(user))
                .bind(role.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_member(&self, space: Uuid, user: Uuid) -> Result<(), StoreError> {
                let done =
                    sqlx::query("DELETE FROM space_members WHERE space_id = $1 AND user_id = $2")
                        .bind(id(space))
                        .bind(id(user))
                        .execute(&self.pool)
                        .await?;
                $crate::found(done.rows_affected())?;
                Ok(())
            }

            async fn list_members(&self, space: Uuid) -> Result<Vec<Member>, StoreError> {
                let rows: Vec<MemberRow> = sqlx::query_as(&format!(
                    "{MEMBERS_SELECT}$1 ORDER BY CASE m.role WHEN 'owner' THEN 0 \
                     WHEN 'editor' THEN 1 ELSE 2 END, u.email LIMIT 1000"
                ))
                .bind(id(space))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn list_spaces_of(
                &self,
                user: Uuid,
                page: PageRequest,
            ) -> Result<Page<Space>, StoreError> {
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM space_members WHERE user_id = $1")
                        .bind(id(user))
                        .fetch_one(&self.pool)
                        .await?;
                let rows: Vec<SpaceRow> = sqlx::query_as(&format!(
                    "SELECT {SPACE_COLUMNS} FROM spaces s JOIN space_members m ON m.space_id = s.id \
                     WHERE m.user_id = $1 ORDER BY s.created_at DESC, s.id DESC LIMIT $2 OFFSET $3"
                ))
                .bind(id(user))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }
        }
    };
}

pub(crate) use {members, spaces};

//! Accounts, sessions and API keys, in portable SQL; creating the first account atomically is
//! each backend's own.

/// Implements [`crate::Accounts`] for a backend (see [`crate::portable`]).
macro_rules! accounts {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl Accounts for $store {
            async fn count_users(&self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn create_user(
                &self,
                user: &NewUser,
                only_if_first: bool,
            ) -> Result<User, StoreError> {
                self.insert_user(user, only_if_first).await
            }

            async fn find_user_by_email(
                &self,
                email: &str,
            ) -> Result<Option<UserRecord>, StoreError> {
                let row: Option<UserSecretRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
                     WHERE {EMAIL_IS} AND u.disabled_at IS NULL"
                ))
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn get_user(&self, user: Uuid) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
                ))
                .bind(id(user))
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                let rows: Vec<UserRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users u ORDER BY u.created_at, u.id LIMIT $1 OFFSET $2"
                ))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn set_user_disabled(&self, user: Uuid, disabled: bool) -> Result<(), StoreError> {
                let at = if disabled { NOW } else { "NULL" };
                let done = sqlx::query(&format!("UPDATE users SET disabled_at = {at} WHERE id = $1"))
                    .bind(id(user))
                    .execute(&self.pool)
                    .await?;
                $crate::found(done.rows_affected())?;
                Ok(())
            }

            async fn delete_user(&self, user: Uuid) -> Result<(), StoreError> {
                let mut tx = self.write_tx().await?;
                // Conversations would outlive their owner, unreadable by anyone: they go with it.
                sqlx::query("DELETE FROM conversations WHERE user_id = $1")
                    .bind(id(user))
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id(user))
                    .execute(&mut *tx)
                    .await?;
                $crate::found(done.rows_affected())?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_password_hash(
                &self,
                user: Uuid,
                password_hash: &str,
            ) -> Result<(), StoreError> {
                let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(password_hash)
                    .bind(id(user))
                    .execute(&self.pool)
                    .await?;
                $crate::found(done.rows_affected())?;
                Ok(())
            }

            async fn create_session(
                &self,
                token_hash: &str,
                user: Uuid,
                expires_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_ms) \
                     VALUES ($1, $2, {NOW}, $3)"
                ))
                .bind(token_hash)
                .bind(id(user))
                .bind(expires_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session_user(
                &self,
                token_hash: &str,
                now_ms: i64,
            ) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_ms > $2 AND u.disabled_at IS NULL"
                ))
                .bind(token_hash)
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
                Ok(sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1")
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn delete_sessions_of(&self, user: Uuid) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id(user))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey, StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5, {NOW})"
                ))
                .bind(id(key.id))
                .bind(id(key.user_id))
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.key_hash)
                .execute(&self.pool)
                .await?;
                let row: ApiKeyRow = sqlx::query_as(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
                ))
                .bind(id(key.id))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn api_key_user(&self, key_hash: &str) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM api_keys k JOIN users u ON u.id = k.user_id \
                     WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND u.disabled_at IS NULL"
                ))
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
                if row.is_some() {
                    // At most one write a minute per key, and a failed write (a busy or
                    // read-only database) never refuses the request it only records.
                    if let Err(e) = sqlx::query(&format!(
                        "UPDATE api_keys SET last_used_at = {NOW} WHERE key_hash = $1 \
                         AND (last_used_at IS NULL OR last_used_at < {MINUTE_AGO})"
                    ))
                    .bind(key_hash)
                    .execute(&self.pool)
                    .await
                    {
                        tracing::warn!(error = %e, "recording an API key's last use failed");
                    }
                }
                Ok(row.map(Into::into))
            }

            async fn list_api_keys(&self, user: Uuid) -> Result<Vec<ApiKey>, StoreError> {
                let rows: Vec<ApiKeyRow> = sqlx::query_as(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE user_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT 1000"
                ))
                .bind(id(user))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn revoke_api_key(&self, user: Uuid, key: Uuid) -> Result<(), StoreError> {
                let done = sqlx::query(&format!(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, {NOW}) \
                     WHERE id = $1 AND user_id = $2"
                ))
                .bind(id(key))
                .bind(id(user))
                .execute(&self.pool)
                .await?;
                $crate::found(done.rows_affected())?;
                Ok(())
            }
        }
    };
}

pub(crate) use accounts;

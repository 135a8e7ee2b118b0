//! Conversations and the audit log, in portable SQL.

/// Implements [`crate::Conversations`] for a backend (see [`crate::portable`]).
macro_rules! conversations {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl Conversations for $store {
            async fn create_conversation(
                &self,
                conversation: Uuid,
                space: Uuid,
                owner: Option<Uuid>,
                title: &str,
            ) -> Result<Conversation, StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO conversations (id, space_id, user_id, title, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, {NOW}, {NOW})"
                ))
                .bind(id(conversation))
                .bind(id(space))
                .bind(opt_id(owner))
                .bind(title)
                .execute(&self.pool)
                .await?;
                self.get_conversation(space, owner, conversation).await
            }

            // `IS NOT DISTINCT FROM` rather than `=`: it matches a NULL owner (single-user
            // mode) to NULL.
            async fn get_conversation(
                &self,
                space: Uuid,
                owner: Option<Uuid>,
                conversation: Uuid,
            ) -> Result<Conversation, StoreError> {
                let row: ConversationRow = sqlx::query_as(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations \
                     WHERE id = $1 AND space_id = $2 AND user_id IS NOT DISTINCT FROM $3"
                ))
                .bind(id(conversation))
                .bind(id(space))
                .bind(opt_id(owner))
                .fetch_one(&self.pool)
                .await?;
                Ok(row.into())
            }

            async fn list_conversations(
                &self,
                space: Uuid,
                owner: Option<Uuid>,
                page: PageRequest,
            ) -> Result<Page<Conversation>, StoreError> {
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM conversations \
                     WHERE space_id = $1 AND user_id IS NOT DISTINCT FROM $2",
                )
                .bind(id(space))
                .bind(opt_id(owner))
                .fetch_one(&self.pool)
                .await?;
                let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations \
                     WHERE space_id = $1 AND user_id IS NOT DISTINCT FROM $2 \
                     ORDER BY updated_at DESC, id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(id(space))
                .bind(opt_id(owner))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn rename_conversation(
                &self,
                space: Uuid,
                owner: Option<Uuid>,
                conversation: Uuid,
                title: &str,
            ) -> Result<Conversation, StoreError> {
                let result = sqlx::query(
                    "UPDATE conversations SET title = $1 \
                     WHERE id = $2 AND space_id = $3 AND user_id IS NOT DISTINCT FROM $4",
                )
                .bind(title)
                .bind(id(conversation))
                .bind(id(space))
                .bind(opt_id(owner))
                .execute(&self.pool)
                .await?;
                $crate::found(result.rows_affected())?;
                self.get_conversation(space, owner, conversation).await
            }

            async fn delete_conversation(
                &self,
                space: Uuid,
                owner: Option<Uuid>,
                conversation: Uuid,
            ) -> Result<(), StoreError> {
                let result = sqlx::query(
                    "DELETE FROM conversations \
                     WHERE id = $1 AND space_id = $2 AND user_id IS NOT DISTINCT FROM $3",
                )
                .bind(id(conversation))
                .bind(id(space))
                .bind(opt_id(owner))
                .execute(&self.pool)
                .await?;
                $crate::found(result.rows_affected())?;
                Ok(())
            }

            async fn add_message(
                &self,
                conversation: Uuid,
                message: &NewMessage,
            ) -> Result<(), StoreError> {
                let mut tx = self.write_tx().await?;
                sqlx::query(&format!(
                    "INSERT INTO messages (id, conversation_id, role, content, citations, generator, \
                     created_at) VALUES ($1, $2, $3, $4, $5{JSONB}, $6, {NOW})"
                ))
                .bind(id(message.id))
                .bind(id(conversation))
                .bind(message.role)
                .bind(&message.content)
                .bind(&message.citations_json)
                .bind(message.generator.as_deref())
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "UPDATE conversations SET updated_at = {NOW} WHERE id = $1"
                ))
                .bind(id(conversation))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_messages(
                &self,
                conversation: Uuid,
                page: PageRequest,
            ) -> Result<Page<Message>, StoreError> {
                let total: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = $1")
                        .bind(id(conversation))
                        .fetch_one(&self.pool)
                        .await?;
                let rows: Vec<MessageRow> = sqlx::query_as(
                    "SELECT id, role, content, CAST(citations AS TEXT) AS citations, generator, \
                     created_at FROM messages WHERE conversation_id = $1 \
                     ORDER BY created_at, id LIMIT $2 OFFSET $3",
                )
                .bind(id(conversation))
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }
        }
    };
}

/// Implements [`crate::AuditLog`] for a backend (see [`crate::portable`]).
macro_rules! audit_log {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl AuditLog for $store {
            async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
                // The actor is an account id; anything else is recorded as no actor.
                let actor = entry.actor.as_deref().and_then(|a| Uuid::parse_str(a).ok());
                sqlx::query(&format!(
                    "INSERT INTO audit_log (at, actor_user_id, action, target_type, target_id, ip, \
                     details) VALUES ({NOW}, $1, $2, $3, $4, $5, $6{JSONB})"
                ))
                .bind(opt_id(actor))
                .bind(&entry.action)
                .bind(entry.target_type)
                .bind(&entry.target_id)
                .bind(&entry.ip)
                .bind(entry.details.to_string())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditEntry>, StoreError> {
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
                    .fetch_one(&self.pool)
                    .await?;
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, CAST(actor_user_id AS TEXT) AS actor, action, target_type, \
                     target_id, ip, CAST(details AS TEXT) AS details FROM audit_log \
                     ORDER BY id DESC LIMIT $1 OFFSET $2",
                )
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(&self.pool)
                .await?;
                Ok(page_of(rows, total, page))
            }

            async fn delete_audit_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
                    .bind(time(before))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use {audit_log, conversations};

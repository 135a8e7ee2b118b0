//! The UI's server functions reach the service through `app::backend::Backend`: this adapter
//! turns service errors into the UI's error details.

use crate::domain::PageRequest;
use crate::error::ServiceError;
use crate::service::Service;
use kenning_api::{Chunk, Conversation, Document, ErrorDetail, HealthReport, Message, Page, Space};
use kenning_api::{MetricsSnapshot, SearchRequest, SearchResponse};

/// A space id as the UI sends it, parsed at this edge: one that is not a UUID names no space.
fn space(raw: &str) -> Result<crate::domain::SpaceId, ErrorDetail> {
    detail(Service::space_id(raw))
}

/// A service result as the UI's server functions take it.
fn detail<T>(r: Result<T, ServiceError>) -> Result<T, ErrorDetail> {
    r.map_err(|e| e.to_detail())
}

/// Accounts, which every running server has (only the CLI builds a service without).
fn accounts(service: &Service) -> Result<&crate::auth::Auth, ErrorDetail> {
    service.accounts().ok_or_else(|| {
        ServiceError::Internal(anyhow::anyhow!("accounts are not wired into this service"))
            .to_detail()
    })
}

#[async_trait::async_trait]
impl app::backend::Backend for Service {
    async fn list_spaces(
        &self,
        caller: &crate::auth::Caller,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Space>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        Service::list_spaces_for(self, caller, page)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn authorize(
        &self,
        caller: &crate::auth::Caller,
        space_id: &str,
        needed: kenning_api::Role,
    ) -> Result<(), ErrorDetail> {
        Service::authorize(self, caller, space(space_id)?, needed)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_api_keys(
        &self,
        caller: &crate::auth::Caller,
    ) -> Result<Vec<kenning_api::ApiKey>, ErrorDetail> {
        detail(accounts(self)?.list_keys(caller).await)
    }

    async fn create_api_key(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
    ) -> Result<kenning_api::CreatedApiKey, ErrorDetail> {
        detail(accounts(self)?.create_key(caller, name).await)
    }

    async fn revoke_api_key(
        &self,
        caller: &crate::auth::Caller,
        id: &str,
    ) -> Result<(), ErrorDetail> {
        detail(accounts(self)?.revoke_key(caller, id).await)
    }

    async fn list_members(&self, space_id: &str) -> Result<Vec<kenning_api::Member>, ErrorDetail> {
        let id = space(space_id)?.uuid();
        detail(accounts(self)?.members(id).await)
    }

    async fn set_member(
        &self,
        space_id: &str,
        email: &str,
        role: kenning_api::Role,
    ) -> Result<kenning_api::Member, ErrorDetail> {
        let id = space(space_id)?.uuid();
        detail(accounts(self)?.set_member(id, email, role).await)
    }

    async fn remove_member(&self, space_id: &str, user_id: &str) -> Result<(), ErrorDetail> {
        let id = space(space_id)?.uuid();
        detail(accounts(self)?.remove_member(id, user_id).await)
    }

    async fn list_users(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Page<kenning_api::User>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        detail(accounts(self)?.list_users(page).await)
    }

    async fn create_user(
        &self,
        email: &str,
        password: &str,
        is_admin: bool,
    ) -> Result<kenning_api::User, ErrorDetail> {
        detail(
            accounts(self)?
                .create_user(email, password, "", is_admin, false)
                .await,
        )
    }

    async fn set_user_disabled(
        &self,
        caller: &crate::auth::Caller,
        id: &str,
        disabled: bool,
    ) -> Result<kenning_api::User, ErrorDetail> {
        detail(accounts(self)?.set_disabled(caller, id, disabled).await)
    }

    async fn delete_user(&self, caller: &crate::auth::Caller, id: &str) -> Result<(), ErrorDetail> {
        detail(accounts(self)?.delete_user(caller, id).await)
    }

    async fn list_audit(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Page<kenning_api::AuditEntry>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        detail(Service::list_audit(self, page).await)
    }

    async fn session_info(&self, caller: Option<&crate::auth::Caller>) -> kenning_api::SessionInfo {
        match self.accounts() {
            Some(auth) => auth.session_info(caller).await,
            None => kenning_api::SessionInfo {
                auth: "none".into(),
                user: None,
                needs_setup: false,
            },
        }
    }

    async fn get_space(&self, id: &str) -> Result<Space, ErrorDetail> {
        Service::get_space(self, space(id)?)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn create_space(
        &self,
        caller: &crate::auth::Caller,
        name: &str,
        description: &str,
    ) -> Result<Space, ErrorDetail> {
        Service::create_space(self, Some(caller), name, description)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn update_space(
        &self,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Space, ErrorDetail> {
        Service::update_space(self, space(id)?, name, description)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn delete_space(&self, id: &str) -> Result<(), ErrorDetail> {
        Service::delete_space(self, space(id)?)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_documents(
        &self,
        space_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Document>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        Service::list_documents(self, space(space_id)?, page)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn delete_document(&self, space_id: &str, document_id: &str) -> Result<(), ErrorDetail> {
        Service::delete_document(self, space(space_id)?, document_id)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_sources(&self, space_id: &str) -> Result<Vec<kenning_api::Source>, ErrorDetail> {
        Service::list_sources(self, space(space_id)?)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn health(&self) -> HealthReport {
        crate::health::report(self).await
    }

    fn max_upload_bytes(&self) -> u64 {
        Service::max_upload_bytes(self)
    }

    async fn search(
        &self,
        space_id: &str,
        req: SearchRequest,
    ) -> Result<SearchResponse, ErrorDetail> {
        Service::search(self, space(space_id)?, &req)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn metrics_snapshot(&self) -> MetricsSnapshot {
        Service::metrics_snapshot(self).await
    }

    async fn get_document(
        &self,
        space_id: &str,
        document_id: &str,
    ) -> Result<Document, ErrorDetail> {
        Service::get_document(self, space(space_id)?, document_id)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_chunks(
        &self,
        space_id: &str,
        document_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Chunk>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        Service::list_chunks(self, space(space_id)?, document_id, page)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_conversations(
        &self,
        caller: &crate::auth::Caller,
        space_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Conversation>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        Service::list_conversations(self, caller, space(space_id)?, page)
            .await
            .map_err(|e| e.to_detail())
    }

    async fn list_messages(
        &self,
        caller: &crate::auth::Caller,
        space_id: &str,
        conversation_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Message>, ErrorDetail> {
        let page = PageRequest::parse(Some(limit), Some(offset))
            .map_err(|e| ServiceError::from(e).to_detail())?;
        let mut page =
            Service::list_messages(self, caller, space(space_id)?, conversation_id, page)
                .await
                .map_err(|e| e.to_detail())?;
        for m in page.items.iter_mut().filter(|m| m.role == "assistant") {
            m.html = Some(stored_html(&m.content, &m.citations, space_id));
        }
        Ok(page)
    }
}

/// A stored answer as the chat page shows it: checked again against its sources (the check is
/// deterministic, so its verdicts are those the answer got when it was written) and rendered,
/// unsupported sentences marked.
fn stored_html(text: &str, sources: &[kenning_api::Citation], space_id: &str) -> String {
    let checked = crate::generate::attribute::Attribution::of(text, sources);
    app::markdown::checked_html(&checked.sentences, sources, space_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::attribute::Attribution;
    use kenning_api::{AttributedSentence, Citation};

    fn source(n: usize, text: &str) -> Citation {
        Citation {
            n,
            chunk_id: format!("c{n}"),
            document_id: "d".into(),
            filename: "f.md".into(),
            heading_path: String::new(),
            position: 0,
            char_start: 0,
            char_end: text.len() as i64,
            score: 1.0,
            text: text.into(),
        }
    }

    fn sources() -> Vec<Citation> {
        vec![
            source(
                1,
                "Employees receive 25 vacation days per year. Unused days expire in March.",
            ),
            source(
                2,
                "The cafeteria serves lunch from noon until two o'clock on weekdays.",
            ),
        ]
    }

    #[test]
    fn a_stored_answer_shows_the_marks_it_was_given() {
        let written = Attribution::of(
            "Employees receive 25 vacation days per year [2]. The moon is made of cheese [1].",
            &sources(),
        );
        let stored = written.text();
        let html = stored_html(&stored, &sources(), "s");
        assert!(html.contains("per year. <a class=\"cite\""), "{html}");
        assert!(
            html.contains("<span class=\"unsupported\" title=\"No source supports this sentence\">The moon is made of cheese.</span>"),
            "{html}"
        );
        assert_eq!(
            Attribution::of(&stored, &sources()).sentences,
            written
                .sentences
                .iter()
                .map(|s| AttributedSentence {
                    claimed: s.sources.clone(),
                    ..s.clone()
                })
                .collect::<Vec<_>>(),
            "checking the stored text again gives the same verdicts"
        );
    }
}

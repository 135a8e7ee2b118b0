//! What a signed-in account does to itself: its API keys, its password, and its sessions
//! everywhere. Keys and the password are managed from a session only, never with a key.

use super::{
    caller_account, check_password_length, digest, invalid, password, random_hex, Auth, Caller,
    KEY_PREFIX,
};
use crate::error::ServiceError;
use crate::store::NewApiKey;
use kenning_api::{ApiKey, CreatedApiKey};
use uuid::Uuid;

impl Auth {
    /// Creates an API key for the caller; the key itself is returned this once.
    pub async fn create_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<CreatedApiKey, ServiceError> {
        let user_id = key_manager(caller)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_key_name",
                "A key name needs 1 to 100 characters, without control characters.",
            ));
        }
        let key = format!("{KEY_PREFIX}{}", random_hex(20)?);
        let info = self
            .store
            .create_api_key(&NewApiKey {
                id: Uuid::now_v7(),
                user_id,
                name: name.to_string(),
                prefix: key[..KEY_PREFIX.len() + 8].to_string(),
                key_hash: digest(&key),
            })
            .await
            .map_err(|e| ServiceError::from_store(e, "API key"))?;
        Ok(CreatedApiKey { info, key })
    }

    /// The caller's API keys.
    pub async fn list_keys(&self, caller: &Caller) -> Result<Vec<ApiKey>, ServiceError> {
        self.store
            .list_api_keys(key_manager(caller)?)
            .await
            .map_err(|e| ServiceError::from_store(e, "API key"))
    }

    /// Revokes one of the caller's keys; another account's key is "not found".
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let id = Uuid::parse_str(id).map_err(|_| ServiceError::NotFound("API key"))?;
        self.store
            .revoke_api_key(key_manager(caller)?, id)
            .await
            .map_err(|e| ServiceError::from_store(e, "API key"))
    }

    /// Changes the caller's password, checked against the current one (a stolen session alone
    /// cannot change it), then ends every session of the account and opens a fresh one, whose
    /// token is returned. Only from a session: a key cannot change its owner's password.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: &str,
        new: &str,
    ) -> Result<String, ServiceError> {
        let user_id = key_manager(caller)?;
        if let Some(wait) = self.failures.wait(&caller.email).await {
            return Err(ServiceError::TooManyAttempts {
                wait_secs: wait.as_secs().max(1),
            });
        }
        let record = self
            .store
            .find_user_by_email(&caller.email)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?
            .filter(|r| r.user.id == user_id.to_string())
            .ok_or(ServiceError::NotFound("user"))?;
        if !self.password_matches(Some(&record), current).await {
            self.failures.record(&caller.email).await;
            return Err(ServiceError::Unauthenticated(
                "invalid_credentials",
                "The current password is wrong.".into(),
            ));
        }
        check_password_length(new)?;
        let hash = password::hash(new).await?;
        self.store
            .set_password_hash(user_id, &hash)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?;
        self.sign_out_everywhere(caller).await?;
        self.open_session(&record.user).await
    }

    /// Ends every session of the caller's account, on every device; API keys stay valid (they
    /// are revoked one by one).
    pub async fn sign_out_everywhere(&self, caller: &Caller) -> Result<u64, ServiceError> {
        let user_id = caller_account(caller)?;
        self.store
            .delete_sessions_of(user_id)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))
    }
}

/// The account of a caller managing API keys: only from a session, never with a key.
fn key_manager(caller: &Caller) -> Result<Uuid, ServiceError> {
    if caller.via_key {
        return Err(ServiceError::Forbidden(
            "API keys are managed from a signed-in session, not with an API key.".into(),
        ));
    }
    caller_account(caller)
}

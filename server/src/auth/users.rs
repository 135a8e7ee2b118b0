//! What an admin does to other accounts: disable or enable them, and delete them. Never to
//! their own, so a server always keeps an admin who can sign in.

use super::{caller_account, invalid, Auth, Caller};
use crate::error::ServiceError;
use kenning_api::User;
use uuid::Uuid;

impl Auth {
    /// Disables an account (its sessions end, its keys stop working, sign-in is refused) or
    /// enables it again; its spaces, memberships and conversations stay.
    pub async fn set_disabled(
        &self,
        caller: &Caller,
        id: &str,
        disabled: bool,
    ) -> Result<User, ServiceError> {
        let target = other_account(caller, id)?;
        self.store
            .set_user_disabled(target, disabled)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?;
        if disabled {
            self.store
                .delete_sessions_of(target)
                .await
                .map_err(|e| ServiceError::from_store(e, "user"))?;
        }
        self.store
            .get_user(target)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?
            .ok_or(ServiceError::NotFound("user"))
    }

    /// Deletes an account with its sessions, keys, memberships and conversations; spaces it
    /// owned stay, for admins and their other members.
    pub async fn delete_user(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let target = other_account(caller, id)?;
        self.store
            .delete_user(target)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))
    }
}

/// The account `id` names, when it is not the caller's own.
fn other_account(caller: &Caller, id: &str) -> Result<Uuid, ServiceError> {
    let me = caller_account(caller)?;
    let target = Uuid::parse_str(id).map_err(|_| ServiceError::NotFound("user"))?;
    if target == me {
        return Err(invalid(
            "own_account",
            "An admin cannot disable or delete their own account; another admin can.",
        ));
    }
    Ok(target)
}

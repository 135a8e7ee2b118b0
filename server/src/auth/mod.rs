//! Accounts and permissions: argon2id passwords, server-side sessions behind an HttpOnly
//! cookie, hashed API keys, per-space roles, the
//! HTTP guard (`http::guard`) builds on them.

mod account;
mod failures;
mod local;
pub mod password;
mod users;

pub use app::backend::Caller;
pub use local::{from_this_machine, single_user_refusal};

use crate::domain::PageRequest;
use crate::error::ServiceError;
use crate::store::{MetadataStore, NewUser, StoreError, UserRecord};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use kenning_api::{Member, Page, Role, SessionInfo, User};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The cookie that carries a browser's session token.
pub const SESSION_COOKIE: &str = "kenning_session";
/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// What every API key starts with, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "kn_";

pub use crate::config::AuthMode;

/// Sign-in, sessions, keys and roles over the metadata store.
pub struct Auth {
    store: Arc<dyn MetadataStore>,
    required: bool,
    session_ttl: Duration,
    decoy: String,
    /// The port Kenning is bound to: single-user mode answers only to loopback hosts on it.
    port: u16,
    /// The digest of the one-time token that creates the first account from another machine.
    setup_token: Option<String>,
    failures: failures::Failures,
}

impl Auth {
    /// `required` false is single-user mode: every request acts as the one local user, and only
    /// from this machine on `port`. `setup_token`, when set, lets the first account be created
    /// from elsewhere; without it only this machine may create it.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        required: bool,
        session_ttl: Duration,
        port: u16,
        setup_token: Option<&str>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            required,
            session_ttl,
            decoy: password::decoy()?,
            port,
            setup_token: setup_token
                .filter(|t| !t.trim().is_empty())
                .map(|t| digest(t.trim())),
            failures: failures::Failures::new(),
        })
    }

    /// The port single-user mode answers on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh random setup token, for a networked server that has no account yet.
    pub fn new_setup_token() -> anyhow::Result<String> {
        random_hex(16).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Whether requests need credentials (false: single-user mode).
    pub fn required(&self) -> bool {
        self.required
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// The request's caller: from its API key, else its session cookie; `None` when it has
    /// neither. A key that is presented but unknown or revoked is refused outright.
    pub async fn resolve(&self, headers: &HeaderMap) -> Result<Option<Caller>, ServiceError> {
        if !self.required {
            return Ok(Some(Caller::single_user()));
        }
        // Only the Bearer scheme carries Kenning's keys; another scheme (a proxy's `Basic`
        // credentials, say) is not for us and is ignored rather than refused.
        if let Some(value) = headers.get(AUTHORIZATION).filter(|v| bearer(v).is_some()) {
            let key = bearer(value)
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    ServiceError::Unauthenticated(
                        "invalid_api_key",
                        "The Authorization header must be `Bearer <API key>`.".into(),
                    )
                })?;
            let user = self
                .store
                .api_key_user(&digest(key))
                .await
                .map_err(|e| ServiceError::from_store(e, "user"))?;
            return match user {
                Some(user) => Ok(Some(caller_of(&user, true))),
                None => Err(ServiceError::Unauthenticated(
                    "invalid_api_key",
                    "The API key is unknown or has been revoked.".into(),
                )),
            };
        }
        let Some(token) = session_token(headers) else {
            return Ok(None);
        };
        let user = self
            .store
            .session_user(&digest(token), now_ms())
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?;
        Ok(user.as_ref().map(|u| caller_of(u, false)))
    }

    /// Checks an email and password and opens a session; the same error, after the same
    /// work, whether the email is unknown or the password wrong.
    /// After a few failures an account's next attempts wait longer and longer, whichever
    /// address they come from, so spreading guesses over many addresses gains nothing.
    pub async fn login(&self, email: &str, password: &str) -> Result<(User, String), ServiceError> {
        if let Some(wait) = self.failures.wait(email).await {
            return Err(ServiceError::TooManyAttempts {
                wait_secs: wait.as_secs().max(1),
            });
        }
        let record = if password.chars().count() > MAX_PASSWORD_CHARS {
            None
        } else {
            self.store
                .find_user_by_email(email.trim())
                .await
                .map_err(|e| ServiceError::from_store(e, "user"))?
        };
        let matches = self.password_matches(record.as_ref(), password).await;
        match record {
            Some(r) if matches => {
                self.failures.forget(email).await;
                let token = self.open_session(&r.user).await?;
                Ok((r.user, token))
            }
            _ => {
                self.failures.record(email).await;
                Err(ServiceError::Unauthenticated(
                    "invalid_credentials",
                    "Wrong email or password.".into(),
                ))
            }
        }
    }

    /// Creates the first account, as admin, and signs it in; refused once any account exists
    /// (checked before any hashing), and unless the request came from this machine or carries
    /// the setup token: on a networked server the first visitor must not become the admin.
    pub async fn setup(
        &self,
        email: &str,
        password: &str,
        token: Option<&str>,
        from_this_machine: bool,
    ) -> Result<(User, String), ServiceError> {
        let exists = self
            .store
            .count_users()
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?
            > 0;
        if exists {
            return Err(ServiceError::Conflict(
                "Kenning has its admin account already; sign in instead.".into(),
            ));
        }
        let token_ok = match (
            token.map(str::trim).filter(|t| !t.is_empty()),
            &self.setup_token,
        ) {
            (Some(given), Some(expected)) => digest(given) == *expected,
            _ => false,
        };
        if !token_ok && !from_this_machine {
            return Err(ServiceError::Forbidden(
                "Creating the first account from another machine needs the setup token that \
                 Kenning printed in its log at start (or KENNING_SETUP_TOKEN)."
                    .into(),
            ));
        }
        let user = self
            .create_user(email, password, "", true, true)
            .await
            .map_err(|e| match e {
                ServiceError::Conflict(_) => ServiceError::Conflict(
                    "Kenning has its admin account already; sign in instead.".into(),
                ),
                other => other,
            })?;
        let token = self.open_session(&user).await?;
        Ok((user, token))
    }

    /// Creates an account (by an admin, or `kenning user create`).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
        is_admin: bool,
        only_if_first: bool,
    ) -> Result<User, ServiceError> {
        let email = parse_email(email)?;
        let display_name = display_name.trim();
        if display_name.chars().count() > 100 || display_name.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_display_name",
                "A display name is at most 100 characters, without control characters.",
            ));
        }
        check_password_length(password)?;
        let password_hash = password::hash(password).await?;
        self.store
            .create_user(
                &NewUser {
                    id: Uuid::now_v7(),
                    email: email.clone(),
                    display_name: display_name.to_string(),
                    password_hash,
                    is_admin,
                },
                only_if_first,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) if !only_if_first => {
                    ServiceError::Conflict(format!("An account for {email} exists already."))
                }
                other => ServiceError::from_store(other, "user"),
            })
    }

    /// Whether `password` is the record's. An unknown account, one without a password, or an
    /// over-long password is checked against the decoy, so every refusal costs the same work.
    async fn password_matches(&self, record: Option<&UserRecord>, password: &str) -> bool {
        let hash = record
            .and_then(|r| r.password_hash.as_deref())
            .filter(|_| password.chars().count() <= MAX_PASSWORD_CHARS);
        let matches = password::verify(password, hash.unwrap_or(&self.decoy)).await;
        matches && hash.is_some()
    }

    async fn open_session(&self, user: &User) -> Result<String, ServiceError> {
        let now = now_ms();
        // Each sign-in sweeps the expired sessions, so the table stays bounded by live ones.
        let _ = self.store.delete_expired_sessions(now).await;
        let token = random_hex(32)?;
        let ttl = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        self.store
            .create_session(
                &digest(&token),
                account_id(&user.id)?,
                now.saturating_add(ttl),
            )
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?;
        Ok(token)
    }

    /// Ends the session the request's cookie names, if any.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<(), ServiceError> {
        if let Some(token) = session_token(headers) {
            self.store
                .delete_session(&digest(token))
                .await
                .map_err(|e| ServiceError::from_store(e, "session"))?;
        }
        Ok(())
    }

    /// What the UI shows about sign-in.
    pub async fn session_info(&self, caller: Option<&Caller>) -> SessionInfo {
        if !self.required {
            return SessionInfo {
                auth: "none".into(),
                user: None,
                needs_setup: false,
            };
        }
        let user = match caller.and_then(|c| c.user_id.as_deref()) {
            Some(id) => match Uuid::parse_str(id) {
                Ok(id) => self.store.get_user(id).await.ok().flatten(),
                Err(_) => None,
            },
            None => None,
        };
        let needs_setup = user.is_none() && self.store.count_users().await.unwrap_or(1) == 0;
        SessionInfo {
            auth: "password".into(),
            user,
            needs_setup,
        }
    }

    /// Accounts, for admins.
    pub async fn list_users(&self, page: PageRequest) -> Result<Page<User>, ServiceError> {
        self.store
            .list_users(page)
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))
    }

    /// The caller's role in a space: admins (and the single user) act as owners everywhere.
    pub async fn role_in(
        &self,
        caller: &Caller,
        space_id: Uuid,
    ) -> Result<Option<Role>, ServiceError> {
        if caller.is_admin {
            return Ok(Some(Role::Owner));
        }
        let Some(user) = caller.user_id.as_deref() else {
            return Ok(None);
        };
        self.store
            .member_role(space_id, account_id(user)?)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// Refuses unless the caller holds at least `needed` in the space. A space the caller is
    /// no member of does not exist for them (404), so ids of others' spaces reveal nothing.
    pub async fn authorize(
        &self,
        caller: &Caller,
        space_id: Uuid,
        needed: Role,
    ) -> Result<(), ServiceError> {
        match self.role_in(caller, space_id).await? {
            None => Err(ServiceError::NotFound("space")),
            Some(role) if role < needed => Err(ServiceError::Forbidden(format!(
                "Your role in this space is {}; this needs {} or above.",
                role.as_str(),
                needed.as_str()
            ))),
            Some(_) => Ok(()),
        }
    }

    /// A space's members.
    pub async fn members(&self, space_id: Uuid) -> Result<Vec<Member>, ServiceError> {
        self.store
            .list_members(space_id)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))
    }

    /// Adds an account to a space or changes its role; a space keeps at least one owner.
    pub async fn set_member(
        &self,
        space_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<Member, ServiceError> {
        // The space in the path exists; an unknown email is a fault of the body, not a missing
        // resource, so it is a 400 that says what to do rather than a 404 about the space.
        let user = self
            .store
            .find_user_by_email(email.trim())
            .await
            .map_err(|e| ServiceError::from_store(e, "user"))?
            .ok_or_else(|| {
                ServiceError::Invalid(crate::domain::InvalidInput {
                    code: "unknown_user",
                    message: "No account has this email; an admin creates the account first."
                        .into(),
                })
            })?
            .user;
        let user_id = account_id(&user.id)?;
        if role != Role::Owner {
            self.keep_an_owner(space_id, user_id).await?;
        }
        self.store
            .set_member(space_id, user_id, role)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        Ok(Member {
            user_id: user.id,
            email: user.email,
            role,
        })
    }

    /// Removes an account from a space; the last owner cannot be removed.
    pub async fn remove_member(&self, space_id: Uuid, user_id: &str) -> Result<(), ServiceError> {
        let user_id = Uuid::parse_str(user_id).map_err(|_| ServiceError::NotFound("member"))?;
        self.keep_an_owner(space_id, user_id).await?;
        self.store
            .remove_member(space_id, user_id)
            .await
            .map_err(|e| ServiceError::from_store(e, "member"))
    }

    async fn keep_an_owner(&self, space_id: Uuid, leaving: Uuid) -> Result<(), ServiceError> {
        let members = self.members(space_id).await?;
        let owners: Vec<&Member> = members.iter().filter(|m| m.role == Role::Owner).collect();
        let leaving = leaving.to_string();
        if owners.len() == 1 && owners[0].user_id == leaving {
            return Err(ServiceError::Conflict(
                "A space needs an owner: make someone else owner first.".into(),
            ));
        }
        Ok(())
    }
}

/// The account id behind a caller; single-user mode has none.
pub fn caller_account(caller: &Caller) -> Result<Uuid, ServiceError> {
    caller
        .user_id
        .as_deref()
        .map(account_id)
        .transpose()?
        .ok_or_else(|| {
            invalid(
                "no_accounts",
                "Single-user mode has no accounts; start Kenning with --auth password to use them.",
            )
        })
}

/// The key in an `Authorization: Bearer <key>` value (the scheme in any case), if that is its
/// scheme.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    scheme.eq_ignore_ascii_case("bearer").then_some(rest)
}

fn account_id(id: &str) -> Result<Uuid, ServiceError> {
    Uuid::parse_str(id).map_err(|_| ServiceError::NotFound("user"))
}

fn caller_of(user: &User, via_key: bool) -> Caller {
    Caller {
        user_id: Some(user.id.clone()),
        email: user.email.clone(),
        is_admin: user.is_admin,
        via_key,
    }
}

/// A new password's length: long enough to resist guessing, short enough to bound the hashing.
fn check_password_length(password: &str) -> Result<(), ServiceError> {
    let count = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&count) {
        return Ok(());
    }
    Err(invalid(
        "invalid_password",
        format!("A password needs {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters."),
    ))
}

fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
    crate::domain::InvalidInput::new(code, message.into()).into()
}

/// An email address, trimmed: one `@` between non-empty parts, no spaces, at most 254 characters.
pub fn parse_email(raw: &str) -> Result<String, ServiceError> {
    let email = raw.trim();
    let ok = email.chars().count() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if ok {
        Ok(email.to_string())
    } else {
        Err(invalid(
            "invalid_email",
            "An email address like name@example.com is needed.",
        ))
    }
}

/// Tokens and keys are stored by their SHA-256: they carry 160+ random bits, so a fast hash
/// is enough, and a stolen database holds nothing that signs anyone in.
fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, ServiceError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("random bytes: {e}")))?;
    Ok(hex::encode(buf))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The session token in the request's cookies, if any.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that hands a browser its session: HttpOnly (no script reads it),
/// SameSite=Lax (not sent on cross-site posts), Secure when the request came over TLS.
pub fn session_cookie(token: &str, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        ttl.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("kenning_session=; Path=/"))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("kenning_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// Whether the client reached us over TLS (a terminating proxy says so in `X-Forwarded-Proto`).
pub fn came_over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_user_mode_is_refused_off_loopback() {
        let lan: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:3000".parse().unwrap();
        assert!(AuthMode::None.requires_sign_in(lan).is_err());
        assert!(!AuthMode::None.requires_sign_in(local).unwrap());
        assert!(AuthMode::Auto.requires_sign_in(lan).unwrap());
        assert!(!AuthMode::Auto.requires_sign_in(local).unwrap());
        assert!(AuthMode::Password.requires_sign_in(local).unwrap());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; kenning_session=abc ; b=2"),
        );
        assert_eq!(session_token(&headers), Some("abc"));
        headers.insert(COOKIE, HeaderValue::from_static("kenning_session_x=1"));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn emails_need_one_at_between_two_parts() {
        assert_eq!(parse_email(" Ann@Example.org ").unwrap(), "Ann@Example.org");
        for bad in ["", "ann", "@x", "ann@", "a b@x", "a@b@c", "a@\u{7}b"] {
            assert!(parse_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_cookies_are_http_only_and_lax_and_secure_over_tls() {
        let plain = session_cookie("t", Duration::from_secs(60), false);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax"));
        assert!(!plain.contains("Secure"));
        let tls = session_cookie("t", Duration::from_secs(60), true);
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
    }
}

//! `/api/v1/auth` (sign-in, sign-out, first account, API keys), `/api/v1/users` (accounts, for
//! admins) and `/api/v1/spaces/{id}/members` (who may do what in a space). Sign-in and sign-out
//! take JSON from programs or a plain HTML form from the login page, which works without
//! JavaScript; a form gets a redirect, JSON gets JSON.

use super::error::Errors;
use super::extract::InSpace;
use super::extract::PageQuery;
use super::extract::{ApiJson, ApiQuery};
use super::limits::RouteClass;
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::{self, Caller};
use crate::error::ServiceError;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use kenning_api::Role;
use kenning_api::{
    ApiKey, ChangePasswordRequest, CreateApiKeyRequest, CreateUserRequest, CreatedApiKey,
    LoginRequest, Member, Page, SessionInfo, SetMemberRequest, UpdateUserRequest, User,
};
use std::net::SocketAddr;

pub fn router() -> Routes {
    let sign_in = Policy::public().class(RouteClass::SignIn);
    Routes::new()
        .post("/auth/login", sign_in, login)
        .post("/auth/setup", sign_in, setup)
        .post("/auth/logout", Policy::public(), logout)
        .post(
            "/auth/logout-everywhere",
            Policy::signed(),
            logout_everywhere,
        )
        .post("/auth/password", Policy::signed(), change_password)
        .get("/auth/session", Policy::public(), session)
        .get("/auth/keys", Policy::signed(), list_keys)
        .post("/auth/keys", Policy::signed(), create_key)
        .delete("/auth/keys/{key_id}", Policy::signed(), revoke_key)
        .get("/users", Policy::admin(), list_users)
        .post("/users", Policy::admin(), create_user)
        .patch("/users/{user_id}", Policy::admin(), update_user)
        .delete("/users/{user_id}", Policy::admin(), delete_user)
        .get("/spaces/{id}/members", Policy::space(Role::Viewer), members)
        .put(
            "/spaces/{id}/members",
            Policy::space(Role::Owner),
            set_member,
        )
        .delete(
            "/spaces/{id}/members/{user_id}",
            Policy::space(Role::Owner),
            remove_member,
        )
}

/// A sign-in body, and whether it came from a form (answered with a redirect).
struct Credentials {
    body: LoginRequest,
    form: bool,
}

/// Whether the body is an HTML form (the login page), answered with a redirect, not JSON.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

async fn credentials(req: Request) -> Result<Credentials, ApiError> {
    let (body, form) = form_or_json::<LoginRequest>(req).await?;
    Ok(Credentials { body, form })
}

/// A body sent as JSON or as an HTML form (the pages post forms and get redirects back), and
/// which of the two it was.
async fn form_or_json<T: serde::de::DeserializeOwned + Send>(
    req: Request,
) -> Result<(T, bool), ApiError> {
    if is_form(req.headers()) {
        let body = Form::<T>::from_request(req, &()).await.map_err(|r| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_fields",
                r.body_text(),
            )
        })?;
        Ok((body.0, true))
    } else {
        Ok((ApiJson::<T>::from_request(req, &()).await?.0, false))
    }
}

/// Where a form sends the browser afterwards: a path on this site only, never another site.
/// Browsers drop tabs and newlines from a URL and read `\\` as `/`, so `/\t/evil.example`
/// would become `//evil.example`: any whitespace or control character refuses the path.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            p
        }
        _ => "/",
    }
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The answer to a successful sign-in: the session cookie, and the user or a redirect.
fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    creds: &Credentials,
    status: StatusCode,
    user: User,
    token: &str,
) -> Response {
    let cookie = auth::session_cookie(
        token,
        state.auth.session_ttl(),
        auth::came_over_tls(headers),
    );
    let mut response = if creds.form {
        redirect(local_path(creds.body.next.as_deref()))
    } else {
        (status, Json(user)).into_response()
    };
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// A refused form sign-in goes back to the login page with the reason.
fn form_refusal(creds: &Credentials, e: ServiceError) -> Response {
    let next = local_path(creds.body.next.as_deref());
    let error = crate::http::guard::encode(&e.to_string());
    redirect(&format!(
        "/login?error={error}&next={}",
        crate::http::guard::encode(next)
    ))
}

/// Signs in with email and password; sets the session cookie. Unknown email and wrong password
/// get the same 401 after the same work.
#[utoipa::path(post, operation_id = "auth_login", path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in; the session cookie is set", body = User),
              (status = 303, description = "Form sign-in: redirected to `next`, or back to the login page with an error"), Errors))]
#[tracing::instrument(skip(state, req))]
pub(super) async fn login(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let creds = match credentials(req).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match state
        .auth
        .login(&creds.body.email, &creds.body.password)
        .await
    {
        Ok((user, token)) => signed_in(&state, &headers, &creds, StatusCode::OK, user, &token),
        Err(e) if creds.form => form_refusal(&creds, e),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Creates the first account, which becomes the admin, and signs it in; 409 once any exists.
#[utoipa::path(post, operation_id = "auth_setup", path = "/api/v1/auth/setup", tag = "auth", request_body = LoginRequest,
    responses((status = 201, description = "The admin account, signed in", body = User), Errors))]
#[tracing::instrument(skip(state, req))]
pub(super) async fn setup(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let local = auth::from_this_machine(peer, &headers);
    let creds = match credentials(req).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !state.auth.required() {
        return ApiError::from(ServiceError::Conflict(
            "Kenning runs in single-user mode (no sign-in); start it with --auth password to use accounts.".into(),
        ))
        .into_response();
    }
    match state
        .auth
        .setup(
            &creds.body.email,
            &creds.body.password,
            creds.body.setup_token.as_deref(),
            local,
        )
        .await
    {
        Ok((user, token)) => signed_in(&state, &headers, &creds, StatusCode::CREATED, user, &token),
        Err(e) if creds.form => form_refusal(&creds, e),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Ends the session and clears its cookie (a form is sent to the login page).
#[utoipa::path(post, operation_id = "auth_logout", path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out"), (status = 303, description = "Form sign-out: to the login page"), Errors))]
#[tracing::instrument(skip(state, headers))]
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.logout(&headers).await?;
    let mut response = if is_form(&headers) {
        redirect("/login")
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::clear_session_cookie());
    Ok(response)
}

/// Ends every session of the caller's account, on every device (API keys stay valid), and
/// clears this browser's cookie.
#[utoipa::path(post, operation_id = "auth_logout_everywhere", path = "/api/v1/auth/logout-everywhere", tag = "auth",
    responses((status = 204, description = "Every session of the account ended"), (status = 303, description = "Form sign-out: to the login page"), Errors))]
#[tracing::instrument(skip(state, caller))]
pub(super) async fn logout_everywhere(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.sign_out_everywhere(&caller).await?;
    let mut response = if is_form(&headers) {
        redirect("/login")
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, auth::clear_session_cookie());
    Ok(response)
}

/// Changes the signed-in account's password (from a session, with the current password); every
/// other session ends, and this browser gets a fresh one.
#[utoipa::path(post, operation_id = "auth_password", path = "/api/v1/auth/password", tag = "auth", request_body = ChangePasswordRequest,
    responses((status = 204, description = "Changed; every other session ended, a new session cookie set"), (status = 303, description = "Form change: back to the account page"), Errors))]
#[tracing::instrument(skip(state, caller, req))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let (body, form) = form_or_json::<ChangePasswordRequest>(req).await?;
    let changed = state
        .auth
        .change_password(&caller, &body.current_password, &body.new_password)
        .await;
    let token = match changed {
        Ok(token) => token,
        // The account page shows the reason where the form was.
        Err(e) if form => {
            let error = crate::http::guard::encode(&e.to_string());
            return Ok(redirect(&format!("/account?error={error}")));
        }
        Err(e) => return Err(e.into()),
    };
    let mut response = if form {
        redirect("/account?done=password")
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::session_cookie(
            &token,
            state.auth.session_ttl(),
            auth::came_over_tls(&headers),
        ),
    );
    Ok(response)
}

/// Who is signed in, whether sign-in is on, and whether the first account is still to be made.
#[utoipa::path(get, operation_id = "auth_session", path = "/api/v1/auth/session", tag = "auth",
    responses((status = 200, description = "The session", body = SessionInfo), Errors))]
pub(super) async fn session(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<SessionInfo> {
    Json(state.auth.session_info(caller.as_ref().map(|c| &c.0)).await)
}

/// The caller's API keys (never the keys themselves).
#[utoipa::path(get, operation_id = "auth_keys_list", path = "/api/v1/auth/keys", tag = "auth",
    responses((status = 200, description = "The caller's keys, newest first", body = Vec<ApiKey>), Errors))]
pub(super) async fn list_keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    Ok(Json(state.auth.list_keys(&caller).await?))
}

/// Creates an API key; the key is in this answer only.
#[utoipa::path(post, operation_id = "auth_keys_create", path = "/api/v1/auth/keys", tag = "auth", request_body = CreateApiKeyRequest,
    responses((status = 201, description = "The key, shown this once", body = CreatedApiKey), Errors))]
#[tracing::instrument(skip(state, caller, body))]
pub(super) async fn create_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.auth.create_key(&caller, &body.name).await?),
    ))
}

/// Revokes one of the caller's API keys; it stops working at once.
#[utoipa::path(delete, operation_id = "auth_keys_revoke", path = "/api/v1/auth/keys/{key_id}", tag = "auth",
    params(("key_id" = String, Path, description = "Key id")),
    responses((status = 204, description = "Revoked"), Errors))]
#[tracing::instrument(skip(state, caller))]
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.auth.revoke_key(&caller, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accounts, oldest first (admins only).
#[utoipa::path(get, operation_id = "users_list", path = "/api/v1/users", tag = "auth", params(PageQuery),
    responses((status = 200, description = "A page of accounts", body = Page<User>), Errors))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<User>>, ApiError> {
    Ok(Json(state.auth.list_users(q.parse()?).await?))
}

/// Creates an account (admins only); share spaces with it through their members.
#[utoipa::path(post, operation_id = "users_create", path = "/api/v1/users", tag = "auth", request_body = CreateUserRequest,
    responses((status = 201, description = "The account", body = User), Errors))]
#[tracing::instrument(skip(state, body))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = state
        .auth
        .create_user(
            &body.email,
            &body.password,
            &body.display_name,
            body.is_admin,
            false,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Disables another account (its sessions end and its keys stop working at once) or enables
/// it again (admins only; never their own account).
#[utoipa::path(patch, operation_id = "users_update", path = "/api/v1/users/{user_id}", tag = "auth", request_body = UpdateUserRequest,
    params(("user_id" = String, Path, description = "Account id")),
    responses((status = 200, description = "The account", body = User), Errors))]
#[tracing::instrument(skip(state, caller, body))]
pub(super) async fn update_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        state
            .auth
            .set_disabled(&caller, &user_id, body.disabled)
            .await?,
    ))
}

/// Deletes another account with its sessions, keys, memberships and conversations; the spaces
/// it owned stay (admins only; never their own account).
#[utoipa::path(delete, operation_id = "users_delete", path = "/api/v1/users/{user_id}", tag = "auth",
    params(("user_id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Deleted"), Errors))]
#[tracing::instrument(skip(state, caller))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.auth.delete_user(&caller, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A space's members and their roles.
#[utoipa::path(get, operation_id = "members_list", path = "/api/v1/spaces/{id}/members", tag = "spaces",
    params(("id" = String, Path, description = "Space id")),
    responses((status = 200, description = "Members, owners first", body = Vec<Member>), Errors))]
pub(super) async fn members(
    State(state): State<AppState>,
    InSpace(space): InSpace,
) -> Result<Json<Vec<Member>>, ApiError> {
    state.service.get_space(space).await?;
    Ok(Json(state.auth.members(space.uuid()).await?))
}

/// Adds an account to the space, or changes its role (owners only).
#[utoipa::path(put, operation_id = "members_set", path = "/api/v1/spaces/{id}/members", tag = "spaces",
    params(("id" = String, Path, description = "Space id")), request_body = SetMemberRequest,
    responses((status = 200, description = "The member", body = Member), Errors))]
#[tracing::instrument(skip(state, body))]
pub(super) async fn set_member(
    State(state): State<AppState>,
    InSpace(space): InSpace,
    ApiJson(body): ApiJson<SetMemberRequest>,
) -> Result<Json<Member>, ApiError> {
    state.service.get_space(space).await?;
    Ok(Json(
        state
            .auth
            .set_member(space.uuid(), &body.email, body.role)
            .await?,
    ))
}

/// Removes an account from the space (owners only); the last owner stays.
#[utoipa::path(delete, operation_id = "members_remove", path = "/api/v1/spaces/{id}/members/{user_id}", tag = "spaces",
    params(("id" = String, Path, description = "Space id"), ("user_id" = String, Path, description = "Account id")),
    responses((status = 204, description = "Removed"), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    InSpace(space): InSpace,
    Path((_, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.auth.remove_member(space.uuid(), &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_plain_paths_on_this_site_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/spaces?x=1")), "/spaces?x=1");
        for evil in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "/ /evil.example",
            "/\u{0}/x",
            "",
        ] {
            assert_eq!(local_path(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}

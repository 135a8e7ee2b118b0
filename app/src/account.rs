//! The account page (API keys; accounts for admins), the audit log (admins) and the members
//! panel of a space page.

use crate::api::{ApiKey, AuditEntry, Member, Page, SessionInfo, User};
use crate::components::{error_text, ErrorNotice, PageHeader};
use crate::server_fns::*;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{components::A, lazy_route, LazyRoute};

/// The caller's API keys and, for admins, the accounts.
pub struct AccountPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct AccountData {
    info: Resource<Result<SessionInfo, ServerFnError>>,
    create: ServerAction<CreateApiKey>,
    revoke: ServerAction<RevokeApiKey>,
    keys: Resource<Result<Vec<ApiKey>, ServerFnError>>,
    add_user: ServerAction<CreateUser>,
    disable_user: ServerAction<SetUserDisabled>,
    remove_user: ServerAction<DeleteUser>,
    users: Resource<Result<Page<User>, ServerFnError>>,
}

impl AccountData {
    fn load() -> Self {
        let create = ServerAction::<CreateApiKey>::new();
        let revoke = ServerAction::<RevokeApiKey>::new();
        let add_user = ServerAction::<CreateUser>::new();
        let disable_user = ServerAction::<SetUserDisabled>::new();
        let remove_user = ServerAction::<DeleteUser>::new();
        Self {
            info: Resource::new(|| (), |_| session_info()),
            keys: Resource::new(
                move || (create.version().get(), revoke.version().get()),
                |_| list_api_keys(),
            ),
            users: Resource::new(
                move || {
                    (
                        add_user.version().get(),
                        disable_user.version().get(),
                        remove_user.version().get(),
                    )
                },
                |_| list_users(0),
            ),
            create,
            revoke,
            add_user,
            disable_user,
            remove_user,
        }
    }
}

#[lazy_route]
impl LazyRoute for AccountPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = AccountData::load();
        let AccountData {
            info,
            create,
            revoke,
            keys,
            add_user,
            disable_user,
            remove_user,
            users,
        } = this;
        let query = leptos_router::hooks::use_query_map();
        // What the password form (a plain form post) came back with.
        let outcome = move || {
            let q = query.get();
            if let Some(error) = q.get("error") {
                Some(view! { <ErrorNotice message=error/> }.into_any())
            } else if q.get("done").as_deref() == Some("password") {
                Some(view! { <p class="notice" role="status" id="password-changed">"Password changed. Every other session has ended."</p> }.into_any())
            } else {
                None
            }
        };
        let user_changed = move || {
            let failed = match (disable_user.value().get(), remove_user.value().get()) {
                (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e),
                _ => None,
            };
            failed.map(|e| view! { <ErrorNotice message=error_text(&e)/> })
        };
        let created = move || match create.value().get() {
            Some(Ok(k)) => Some(
                view! {
                    <div class="notice" role="status" id="new-key">
                        <p>"Your new key, shown this once — copy it now:"</p>
                        <code class="key" id="new-key-value">{k.key}</code>
                    </div>
                }
                .into_any(),
            ),
            Some(Err(e)) => Some(view! { <ErrorNotice message=error_text(&e)/> }.into_any()),
            None => None,
        };
        let user_added = move || match add_user.value().get() {
            Some(Ok(u)) => Some(
                view! { <p class="notice" role="status">{format!("Created {}.", u.email)}</p> }
                    .into_any(),
            ),
            Some(Err(e)) => Some(view! { <ErrorNotice message=error_text(&e)/> }.into_any()),
            None => None,
        };
        view! {
            <Title text="Account"/>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match info.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(i) if i.auth == "none" => view! {
                            <PageHeader title="Account" subtitle="Single-user mode: there are no accounts or API keys. Start Kenning with --auth password to use them."/>
                        }.into_any(),
                        Ok(i) => {
                            let user = i.user.clone();
                            let is_admin = user.as_ref().is_some_and(|u| u.is_admin);
                            let subtitle = user.map(|u| format!("Signed in as {}{}.", u.email, if u.is_admin { " (admin)" } else { "" })).unwrap_or_default();
                            view! {
                                <PageHeader title="Account" subtitle=subtitle/>
                                <section class="panel">
                                    <h2>"Password and sessions"</h2>
                                    {outcome}
                                    <form class="form-row" method="post" action="/api/v1/auth/password" id="change-password">
                                        <label><span>"Current password"</span>
                                            <input type="password" name="current_password" required autocomplete="current-password"/>
                                        </label>
                                        <label><span>"New password"</span>
                                            <input type="password" name="new_password" required minlength="8" maxlength="1024" autocomplete="new-password"/>
                                        </label>
                                        <button type="submit">"Change password"</button>
                                    </form>
                                    <form method="post" action="/api/v1/auth/logout-everywhere" id="sign-out-everywhere">
                                        <p class="muted small">"Ends every session of this account, on every device, this one included. API keys keep working."</p>
                                        <button class="secondary" type="submit">"Sign out everywhere"</button>
                                    </form>
                                </section>
                                <section class="panel">
                                    <h2>"API keys"</h2>
                                    <p class="muted small">"Programs send a key as Authorization: Bearer <key>. A key acts as you, in every space you can reach."</p>
                                    <ActionForm action=create attr:class="form-row" attr:id="create-key">
                                        <label class="grow"><span>"Name"</span>
                                            <input type="text" name="name" required maxlength="100" placeholder="e.g. laptop script"/>
                                        </label>
                                        <button type="submit" disabled=move || create.pending().get()>"Create key"</button>
                                    </ActionForm>
                                    {created}
                                    <Transition fallback=|| ()>
                                        {move || Suspend::new(async move {
                                            match keys.await {
                                                Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                                                Ok(list) if list.is_empty() => view! { <p class="muted">"No keys yet."</p> }.into_any(),
                                                Ok(list) => view! {
                                                    <table class="table" id="key-list">
                                                        <thead><tr><th>"Name"</th><th>"Key"</th><th>"Created"</th><th>"Last used"</th><th></th></tr></thead>
                                                        <tbody>
                                                            {list.into_iter().map(|k| {
                                                                let id = k.id.clone();
                                                                view! {
                                                                    <tr>
                                                                        <td>{k.name}</td>
                                                                        <td><code>{format!("{}…", k.prefix)}</code></td>
                                                                        <td class="muted small">{k.created_at}</td>
                                                                        <td class="muted small">{k.last_used_at.unwrap_or_else(|| "never".into())}</td>
                                                                        <td>{match k.revoked_at {
                                                                            Some(_) => view! { <span class="muted">"revoked"</span> }.into_any(),
                                                                            None => view! {
                                                                                <button class="secondary small" on:click=move |_| { revoke.dispatch(RevokeApiKey { id: id.clone() }); }>"Revoke"</button>
                                                                            }.into_any(),
                                                                        }}</td>
                                                                    </tr>
                                                                }
                                                            }).collect_view()}
                                                        </tbody>
                                                    </table>
                                                }.into_any(),
                                            }
                                        })}
                                    </Transition>
                                </section>
                                {is_admin.then(|| view! {
                                    <section class="panel">
                                        <h2>"Accounts"</h2>
                                        <p class="muted small">"Share a space with an account from the space's page. "<A href="/audit">"The audit log"</A>" records every change."</p>
                                        <ActionForm action=add_user attr:class="form-row" attr:id="create-user">
                                            <label><span>"Email"</span><input type="email" name="email" required/></label>
                                            <label><span>"Password"</span><input type="password" name="password" required minlength="8" autocomplete="new-password"/></label>
                                            <label class="check"><input type="checkbox" name="is_admin" value="true"/><span>"Admin"</span></label>
                                            <button type="submit" disabled=move || add_user.pending().get()>"Create account"</button>
                                        </ActionForm>
                                        {user_added}
                                        {user_changed}
                                        <Transition fallback=|| ()>
                                            {move || Suspend::new(async move {
                                                match users.await {
                                                    Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                                                    Ok(page) => view! {
                                                        <table class="table" id="user-list">
                                                            <thead><tr><th>"Account"</th><th>"Status"</th><th></th></tr></thead>
                                                            <tbody>
                                                                {page.items.into_iter().map(|u| {
                                                                    let (id, again) = (u.id.clone(), u.id.clone());
                                                                    let disabled = u.disabled;
                                                                    view! {
                                                                        <tr>
                                                                            <td>{u.email}{u.is_admin.then_some(" · admin")}</td>
                                                                            <td class="small">{if disabled { "disabled" } else { "active" }}</td>
                                                                            <td>
                                                                                <button class="secondary small" on:click=move |_| { disable_user.dispatch(SetUserDisabled { id: id.clone(), disabled: !disabled }); }>
                                                                                    {if disabled { "Enable" } else { "Disable" }}
                                                                                </button>
                                                                                " "
                                                                                <button class="secondary small danger" on:click=move |_| {
                                                                                    let sure = window().confirm_with_message("Delete this account, its keys, sessions and conversations?").unwrap_or(false);
                                                                                    if sure { remove_user.dispatch(DeleteUser { id: again.clone() }); }
                                                                                }>"Delete"</button>
                                                                            </td>
                                                                        </tr>
                                                                    }
                                                                }).collect_view()}
                                                            </tbody>
                                                        </table>
                                                    }.into_any(),
                                                }
                                            })}
                                        </Transition>
                                    </section>
                                })}
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

/// Every recorded change, newest first, a page at a time (admins only).
pub struct AuditPage;

/// The page's resources, built by its view (not `data()`) so their code ships in its chunk.
struct AuditData {
    entries: Resource<Result<Page<AuditEntry>, ServerFnError>>,
}

impl AuditData {
    fn load() -> Self {
        let offset = crate::components::offset_from_query();
        Self {
            entries: Resource::new(move || offset.get(), list_audit),
        }
    }
}

#[lazy_route]
impl LazyRoute for AuditPage {
    fn data() -> Self {
        Self
    }

    fn view(_page: Self) -> AnyView {
        let this = AuditData::load();
        let entries = this.entries;
        view! {
            <Title text="Audit log"/>
            <PageHeader title="Audit log" subtitle="Every change asked of Kenning — who, what, when, from where and how it ended. Searches and questions are not recorded."/>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match entries.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(page) => {
                            let (prev, next, total, shown) = (page.prev_offset(), page.next_offset(), page.total, page.items.len());
                            view! {
                                <table class="table" id="audit-list">
                                    <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Target"</th><th>"From"</th><th>"Status"</th></tr></thead>
                                    <tbody>
                                        {page.items.into_iter().map(|e| view! {
                                            <tr>
                                                <td class="muted small">{e.at}</td>
                                                <td class="small">{e.actor.unwrap_or_else(|| "—".into())}</td>
                                                <td><code>{e.action}</code></td>
                                                <td class="small">{e.target_type.map(|t| format!("{t} {}", e.target_id.unwrap_or_default()))}</td>
                                                <td class="small">{e.ip}</td>
                                                <td>{e.details.get("status").map(|s| s.to_string())}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                <crate::components::Pager base="/audit".to_string() prev next total shown/>
                            }.into_any()
                        }
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

/// Who may do what in a space; owners add members by email and remove them.
#[component]
pub fn MembersPanel(#[prop(into)] space_id: Signal<String>) -> impl IntoView {
    let info = Resource::new(|| (), |_| session_info());
    let add = ServerAction::<SetMember>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let members = Resource::new(
        move || (space_id.get(), add.version().get(), remove.version().get()),
        |(id, _, _)| list_members(id),
    );
    let outcome = move || {
        let failed = add
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| remove.value().get().and_then(|r| r.err()));
        failed.map(|e| view! { <ErrorNotice message=error_text(&e)/> })
    };
    // Without accounts (single-user mode) there is nobody to share with.
    let with_accounts = move || {
        info.get()
            .and_then(|r| r.ok())
            .is_some_and(|i| i.auth == "password")
    };
    view! {
        <Show when=with_accounts>
        <section class="panel" id="members">
            <h2>"Members"</h2>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match members.await {
                        Err(e) => view! { <ErrorNotice message=error_text(&e)/> }.into_any(),
                        Ok(list) if list.is_empty() => view! {
                            <p class="muted small">"No members: only admins reach this space."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="plain" id="member-list">
                                {list.into_iter().map(|m: Member| {
                                    let user_id = m.user_id.clone();
                                    view! {
                                        <li>
                                            {m.email}" · "<span class="muted">{m.role.as_str()}</span>" "
                                            <button class="secondary small" on:click=move |_| {
                                                remove.dispatch(RemoveMember { space_id: space_id.get_untracked(), user_id: user_id.clone() });
                                            }>"Remove"</button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                    }
                })}
            </Transition>
            <ActionForm action=add attr:class="form-row" attr:id="add-member">
                <input type="hidden" name="space_id" prop:value=move || space_id.get()/>
                <label class="grow"><span>"Email"</span><input type="email" name="email" required/></label>
                <label><span>"Role"</span>
                    <select name="role">
                        <option value="viewer">"viewer — search and ask"</option>
                        <option value="editor">"editor — also add and remove documents"</option>
                        <option value="owner">"owner — also rename, delete and share"</option>
                    </select>
                </label>
                <button type="submit" disabled=move || add.pending().get()>"Share"</button>
            </ActionForm>
            {outcome}
        </section>
        </Show>
    }
}

//! The Model Context Protocol server at `/mcp` (Streamable HTTP, stateless), so agent clients
//! (Claude, Cursor, IDEs) use a caller's spaces and memories as tools: list spaces, search one,
//! ask one (an answer with its sources), remember and recall. Requests pass the same sign-in,
//! rate limits and audit as the REST API; each tool acts as the caller, who sees only their
//! own spaces and memories.

use super::extract::ApiJson;
use super::{memories, openai, ApiError, AppState};
use crate::auth::Caller;
use crate::chat::ClientTurns;
use crate::domain::PageRequest;
use crate::http::audit::Audit;
use axum::http::request::Parts;
use axum::{Extension, Json};
use kenning_api::{ChatRequest, Citation, SearchMode, SearchRequest};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension as RequestParts;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Where agent clients connect.
pub const PATH: &str = "/mcp";

/// Any signed-in caller; a tool call may ask a question, so the dearest class covers every tool.
/// Each tool checks the space it names with the same `authorize` as REST, and audits itself.
pub const POLICY: super::Policy = super::Policy::signed()
    .class(super::limits::RouteClass::Chat)
    .reads();

/// Most results one `search` or `recall` returns.
const MAX_RESULTS: u32 = 20;

/// The `/mcp` endpoint as a tower service; `max_body_bytes` caps each JSON-RPC message.
pub fn service(
    state: AppState,
    audit: Arc<Audit>,
    max_body_bytes: usize,
) -> StreamableHttpService<Tools, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        // No sessions: any instance behind a load balancer answers any request.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        // Hosts and origins are checked by Kenning's own guard and cross-site layer, which
        // know the configured names; rmcp's list would only know loopback.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(max_body_bytes);
    StreamableHttpService::new(
        move || Ok(Tools::new(state.clone(), audit.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// The tools, acting for the caller the sign-in layer put on each request.
#[derive(Clone)]
pub struct Tools {
    state: AppState,
    audit: Arc<Audit>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ListSpacesArgs {
    /// Spaces to skip, for the next page (default 0).
    #[serde(default)]
    offset: Option<u32>,
    /// Spaces wanted (default and most 100).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// The space's name or id, as list_spaces gives them.
    space: String,
    /// What to look for, in words.
    query: String,
    /// Passages wanted (default 5, at most 20).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AskArgs {
    /// The space's name or id, as list_spaces gives them.
    space: String,
    /// The question, answered only from the space's documents.
    question: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RememberArgs {
    /// What to remember (up to 8,000 characters).
    text: String,
    /// Optional labels (a JSON object; not the key `text`) to filter recall by.
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct RecallArgs {
    /// Text to find memories like.
    query: String,
    /// Memories wanted (default 5, at most 20).
    #[serde(default)]
    limit: Option<u32>,
}

/// A refusal the model can read and act on, rather than a protocol error.
struct Refusal {
    code: String,
    message: String,
}

impl Refusal {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.detail.code,
            message: e.detail.message,
        }
    }
}

impl From<crate::error::ServiceError> for Refusal {
    fn from(e: crate::error::ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

/// A tool's outcome as MCP carries it: refusals are results flagged `isError`.
fn finish(outcome: Result<CallToolResult, Refusal>) -> CallToolResult {
    outcome.unwrap_or_else(|r| {
        CallToolResult::structured_error(json!({
            "error": { "code": r.code, "message": r.message },
        }))
    })
}

/// The caller the sign-in layer found; every `/mcp` request has one, as the route needs it.
fn caller_of(parts: &Parts) -> Result<Caller, Refusal> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Refusal::new("unauthenticated", "Sign in with an API key."))
}

/// The space a tool names, by name or id, if the caller may read it; to a caller, one they may
/// not read does not exist.
async fn readable(
    state: &AppState,
    caller: &Caller,
    space: &str,
) -> Result<kenning_api::Space, Refusal> {
    openai::readable_space(state, caller, space)
        .await
        .map_err(|e| match e.status {
            axum::http::StatusCode::NOT_FOUND => Refusal::new(
                "space_not_found",
                format!("You have no space named \"{space}\"; list_spaces lists yours."),
            ),
            _ => e.into(),
        })
}

/// A source as an agent reads it: its number, where it is from and its text.
fn source_line(c: &Citation) -> String {
    let place = if c.heading_path.is_empty() {
        c.filename.clone()
    } else {
        format!("{} › {}", c.filename, c.heading_path)
    };
    format!(
        "[{}] {place}: {}",
        c.n,
        c.text.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

#[tool_router]
impl Tools {
    fn new(state: AppState, audit: Arc<Audit>) -> Self {
        Self {
            state,
            audit,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "List the knowledge spaces you can read, with their names and ids.")]
    async fn list_spaces(
        &self,
        RequestParts(parts): RequestParts<Parts>,
        Parameters(args): Parameters<ListSpacesArgs>,
    ) -> CallToolResult {
        finish(self.spaces(&parts, args).await)
    }

    #[tool(
        description = "Search one space's documents for passages about a query (hybrid \
        keyword and meaning search). Returns the best passages with their document and heading."
    )]
    async fn search(
        &self,
        RequestParts(parts): RequestParts<Parts>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> CallToolResult {
        finish(self.passages(&parts, args).await)
    }

    #[tool(
        description = "Ask a question of one space. The answer comes only from the space's \
        documents and cites its numbered sources like [1]; the sources follow the answer."
    )]
    async fn ask(
        &self,
        RequestParts(parts): RequestParts<Parts>,
        Parameters(args): Parameters<AskArgs>,
    ) -> CallToolResult {
        finish(self.answer(&parts, args).await)
    }

    #[tool(
        description = "Remember a short text for later (a preference, a fact about a \
        project). Only you can recall it."
    )]
    async fn remember(
        &self,
        RequestParts(parts): RequestParts<Parts>,
        Parameters(args): Parameters<RememberArgs>,
    ) -> CallToolResult {
        finish(self.keep(&parts, args).await)
    }

    #[tool(description = "Find the memories you stored that are nearest a text in meaning.")]
    async fn recall(
        &self,
        RequestParts(parts): RequestParts<Parts>,
        Parameters(args): Parameters<RecallArgs>,
    ) -> CallToolResult {
        finish(self.memories(&parts, args).await)
    }
}

/// What each tool does, as the caller on the request.
impl Tools {
    async fn spaces(&self, parts: &Parts, args: ListSpacesArgs) -> Result<CallToolResult, Refusal> {
        let caller = caller_of(parts)?;
        let page = PageRequest {
            limit: i64::from(args.limit.unwrap_or(100).clamp(1, 100)),
            offset: i64::from(args.offset.unwrap_or(0)),
        };
        let page = self.state.service.list_spaces_for(&caller, page).await?;
        Ok(CallToolResult::structured(json!({
            "spaces": page.items.iter().map(|s| json!({
                "id": s.id, "name": s.name, "description": s.description,
            })).collect::<Vec<_>>(),
            "total": page.total,
            "next_offset": page.next_offset(),
        })))
    }

    async fn passages(&self, parts: &Parts, args: SearchArgs) -> Result<CallToolResult, Refusal> {
        let caller = caller_of(parts)?;
        let space = readable(&self.state, &caller, &args.space).await?;
        let request = SearchRequest {
            query: args.query,
            mode: SearchMode::Hybrid,
            limit: Some(i64::from(args.limit.unwrap_or(5).clamp(1, MAX_RESULTS))),
            min_score: None,
            document_id: None,
        };
        let found = self
            .state
            .service
            .search(crate::service::Service::space_id(&space.id)?, &request)
            .await?;
        Ok(CallToolResult::structured(json!({
            "space": space.name,
            "passages": found.results.iter().map(|h| json!({
                "document": h.filename,
                "document_id": h.chunk.document_id,
                "heading": h.chunk.heading_path,
                "text": h.chunk.text,
                "score": h.score,
            })).collect::<Vec<_>>(),
            "pending_documents": found.pending_documents,
            "notice": found.notice,
        })))
    }

    async fn answer(&self, parts: &Parts, args: AskArgs) -> Result<CallToolResult, Refusal> {
        let caller = caller_of(parts)?;
        let space = readable(&self.state, &caller, &args.space).await?;
        let asked = self
            .state
            .chat
            .ask_with(
                &caller,
                crate::service::Service::space_id(&space.id)?,
                ChatRequest::new(args.question),
                // An agent keeps its own context; nothing is stored.
                Some(ClientTurns {
                    previous_question: None,
                    keep: false,
                    guidance: None,
                    max_tokens: None,
                }),
            )
            .await?;
        let whole = asked
            .whole()
            .await
            .map_err(|e| Refusal::new(&e.code, e.message))?;
        let answer = whole.text.trim();
        let mut shown = answer.to_string();
        if !whole.sources.is_empty() {
            shown.push_str("\n\nSources:\n");
            let lines: Vec<String> = whole.sources.iter().map(source_line).collect();
            shown.push_str(&lines.join("\n"));
        }
        let mut result = CallToolResult::structured(json!({
            "answer": answer,
            "sources": whole.sources,
            "generator": whole.done.generator,
            "notice": whole.done.notice,
        }));
        result.content = vec![ContentBlock::text(shown)];
        Ok(result)
    }

    async fn keep(&self, parts: &Parts, args: RememberArgs) -> Result<CallToolResult, Refusal> {
        let caller = caller_of(parts)?;
        let body = memories::UpsertBody::one(args.text, args.metadata.unwrap_or_default());
        let outcome = memories::upsert(
            axum::extract::State(self.state.clone()),
            Extension(caller.clone()),
            ApiJson(body),
        )
        .await;
        let status = match &outcome {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        };
        let id = outcome
            .as_ref()
            .ok()
            .and_then(|Json(u)| u.ids.first())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        self.audit
            .note(parts, &caller, "MCP remember", "memory", id, status);
        let Json(upserted) = outcome?;
        Ok(CallToolResult::structured(json!({ "ids": upserted.ids })))
    }

    async fn memories(&self, parts: &Parts, args: RecallArgs) -> Result<CallToolResult, Refusal> {
        let caller = caller_of(parts)?;
        let limit = args.limit.unwrap_or(5).clamp(1, MAX_RESULTS);
        let Json(found) = memories::search(
            axum::extract::State(self.state.clone()),
            Extension(caller),
            ApiJson(memories::SearchBody::nearest(args.query, limit)),
        )
        .await?;
        Ok(CallToolResult::structured(json!(found)))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("kenning", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Kenning answers from a team's documents. Call list_spaces first; then search a \
                 space for passages or ask it a question (answers cite their sources as [n]). \
                 remember and recall keep your own notes.",
            )
    }
}

//! One answer as it streams: sources first, then tokens from the generator chain, then the
//! checked text, saved to the conversation even when the client goes away.

use super::*;

/// Everything one answer's stream needs, owned so the stream can outlive the request handler.
pub(super) struct Run {
    pub(super) store: Arc<dyn MetadataStore>,
    pub(super) chain: Arc<Chain>,
    pub(super) answers: Arc<TieredCache<CachedAnswer>>,
    pub(super) settings: ChatSettings,
    pub(super) key: AnswerKey,
    pub(super) conversation: String,
    pub(super) conversation_id: Uuid,
    /// Whether turns are stored (not for a client that keeps the conversation itself).
    pub(super) keep: bool,
    pub(super) question: String,
    /// The question this one follows up on, when retrieval combined them.
    pub(super) previous: Option<String>,
    /// The client's system message, read under Kenning's own.
    pub(super) guidance: Option<String>,
    /// Why the answer is "I don't know" without asking a generator, when it is.
    pub(super) declined: Option<String>,
    /// Longest answer, in tokens.
    pub(super) max_tokens: usize,
    pub(super) started: Instant,
    pub(super) retrieval_ms: f64,
}

impl Run {
    /// The checked answer as the chat page shows it.
    pub(super) fn html(&self, attribution: &Attribution, citations: &[Citation]) -> String {
        app::markdown::checked_html(&attribution.sentences, citations, &self.key.0.to_string())
    }

    pub(super) fn events(
        self,
        sources: SourcesEvent,
        cached: Option<Arc<CachedAnswer>>,
    ) -> impl Stream<Item = ChatEvent> + Send {
        async_stream::stream! {
            let citations = sources.sources.clone();
            yield ChatEvent::Sources(sources);
            let sources_ms = ms(self.started);
            if let Some(hit) = cached {
                // Checked again rather than cached: the check is cheap and always current.
                let attribution = Attribution::of(&hit.text, &citations);
                let text = attribution.text();
                yield ChatEvent::Token(TokenEvent { text: text.clone() });
                let first_token_ms = Some(ms(self.started));
                match self.save(&text, &citations, &hit.generator).await {
                    Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                        conversation_id: self.conversation.clone(),
                        message_id,
                        generator: hit.generator.clone(),
                        degraded: false,
                        notice: checked_notice(&attribution, &citations, hit.truncated),
                        cached: true,
                        truncated: hit.truncated,
                        declined: None,
                        unsupported: attribution.unsupported(),
                        html: Some(self.html(&attribution, &citations)),
                        sentences: attribution.sentences,
                        usage: hit.usage.clone(),
                        timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                    }),
                    Err(e) => yield ChatEvent::Error(e),
                }
                return;
            }

            if let Some(reason) = &self.declined {
                crate::metrics::global().record_declined();
                let text = format!("{DECLINE}: {reason}.");
                yield ChatEvent::Token(TokenEvent { text: text.clone() });
                let first_token_ms = Some(ms(self.started));
                match self.save(&text, &[], NO_GENERATOR).await {
                    Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                        conversation_id: self.conversation.clone(),
                        message_id,
                        generator: NO_GENERATOR.into(),
                        degraded: false,
                        notice: None,
                        cached: false,
                        truncated: false,
                        declined: Some(reason.clone()),
                        unsupported: 0,
                        html: Some(app::markdown::answer_html(&text, &[], &self.key.0.to_string())),
                        sentences: Vec::new(),
                        usage: Usage::default(),
                        timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                    }),
                    Err(e) => yield ChatEvent::Error(e),
                }
                return;
            }
            let mut prompt = Prompt::build(&self.question, citations.clone(), self.settings.max_source_chars);
            if let Some(previous) = &self.previous {
                prompt = prompt.following(previous);
            }
            if let Some(guidance) = &self.guidance {
                prompt = prompt.guided(guidance);
            }
            let deadline = tokio::time::Instant::from_std(self.started + self.settings.answer_timeout);
            let started = match tokio::time::timeout_at(deadline, self.chain.start(&prompt, self.max_tokens)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    yield ChatEvent::Error(error("generation_failed", format!("No generator could answer: {e}")));
                    return;
                }
                Err(_) => {
                    yield ChatEvent::Error(error("answer_timeout", "The answer took too long to start."));
                    return;
                }
            };
            let first_token_ms = Some(ms(self.started));
            let mut unfinished = Unfinished {
                store: self.store.clone(),
                conversation_id: self.conversation_id,
                citations: citations.clone(),
                generator: started.generator,
                text: started.first.clone(),
                // Nothing to keep for a client that keeps the conversation itself.
                finished: !self.keep,
            };
            // Pieces seen, for generators that do not count their tokens.
            let mut completion_tokens = 1u64;
            let mut ending = Ending::default();
            yield ChatEvent::Token(TokenEvent { text: started.first });
            let mut rest = started.rest;
            loop {
                match tokio::time::timeout_at(deadline, rest.next()).await {
                    Ok(None) => break,
                    Ok(Some(Ok(Piece::End(end)))) => ending = end,
                    Ok(Some(Ok(Piece::Text(piece)))) => {
                        if piece.is_empty() {
                            continue;
                        }
                        completion_tokens += 1;
                        unfinished.text.push_str(&piece);
                        yield ChatEvent::Token(TokenEvent { text: piece });
                    }
                    Ok(Some(Err(e))) => {
                        self.chain.report_failure(started.generator);
                        crate::metrics::global().record_llm(started.generator, "error", None, started.prompt_tokens, completion_tokens, 0.0);
                        yield ChatEvent::Error(error("generation_failed", format!("The answer broke off: {e}")));
                        return;
                    }
                    Err(_) => {
                        yield ChatEvent::Error(error("answer_timeout", "The answer took too long and was stopped."));
                        return;
                    }
                }
            }
            // Free the generator (a local model's context) before the bookkeeping.
            drop(rest);
            unfinished.finished = true;
            let text = std::mem::take(&mut unfinished.text);
            let usage = Usage {
                prompt_tokens: ending.prompt_tokens.unwrap_or(started.prompt_tokens),
                completion_tokens: ending.completion_tokens.unwrap_or(completion_tokens),
            };
            let price = self.settings.prices.get(started.generator).copied().unwrap_or_default();
            crate::metrics::global().record_llm(
                started.generator,
                "ok",
                first_token_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                usage.prompt_tokens,
                usage.completion_tokens,
                price.cost(&usage),
            );
            let attribution = Attribution::of(&text, &citations);
            let unsupported = attribution.unsupported();
            let backed = attribution.sentences.iter().filter(|s| !s.sources.is_empty()).count();
            crate::metrics::global().record_answer_check(backed, unsupported);
            let notice = started.notice.or_else(|| checked_notice(&attribution, &citations, ending.truncated));
            if !started.degraded {
                self.answers.insert(format!("{:?}", self.key), Arc::new(CachedAnswer {
                    text: text.clone(),
                    generator: started.generator.to_string(),
                    usage: usage.clone(),
                    truncated: ending.truncated,
                })).await;
            }
            // The turn keeps the verified citations, not the ones the generator wrote.
            match self.save(&attribution.text(), &citations, started.generator).await {
                Ok(message_id) => yield ChatEvent::Done(DoneEvent {
                    conversation_id: self.conversation.clone(),
                    message_id,
                    generator: started.generator.to_string(),
                    degraded: started.degraded,
                    notice,
                    cached: false,
                    truncated: ending.truncated,
                    declined: None,
                    unsupported,
                    html: Some(self.html(&attribution, &citations)),
                    sentences: attribution.sentences,
                    usage,
                    timings: Timings { retrieval_ms: self.retrieval_ms, sources_ms, first_token_ms, total_ms: ms(self.started) },
                }),
                Err(e) => yield ChatEvent::Error(e),
            }
        }
    }

    /// Stores the answer as the conversation's next turn; returns its id.
    pub(super) async fn save(
        &self,
        text: &str,
        citations: &[Citation],
        generator: &str,
    ) -> Result<String, ErrorDetail> {
        let message = assistant_message(text, citations, generator);
        let id = message.id;
        if !self.keep {
            return Ok(id.to_string());
        }
        // In its own task: a reader who leaves while the answer is being written drops this
        // stream, and the write must neither stop half-way nor be lost.
        let store = self.store.clone();
        let conversation = self.conversation_id;
        tokio::spawn(async move { store.add_message(conversation, &message).await })
            .await
            .map_err(|e| ServiceError::Internal(e.into()).to_detail())?
            .map_err(|e| ServiceError::from_store(e, "conversation").to_detail())?;
        Ok(id.to_string())
    }
}

/// An answer as a conversation turn, keeping only the sources it cites.
pub(super) fn assistant_message(text: &str, citations: &[Citation], generator: &str) -> NewMessage {
    let cited: Vec<&Citation> = citations.iter().filter(|c| cites(text, c)).collect();
    NewMessage {
        id: Uuid::now_v7(),
        role: "assistant",
        content: text.to_string(),
        citations_json: serde_json::to_string(&cited).unwrap_or_else(|_| "[]".into()),
        generator: Some(generator.to_string()),
    }
}

/// What a client that keeps its own conversation (the OpenAI API) sends with a question.
pub struct ClientTurns {
    /// The user's question before this one, so a follow-up is searched with it.
    pub previous_question: Option<String>,
    /// Whether the exchange is stored as a conversation of the caller's.
    pub keep: bool,
    /// The client's system message: guidance the model reads under Kenning's own rules.
    pub guidance: Option<String>,
    /// The client's cap on the answer's length, in tokens; never above the server's.
    pub max_tokens: Option<usize>,
}

/// An answer being streamed. If the stream is dropped before it finishes (Stop, a client that
/// left, a broken provider), what was already shown is kept as the turn, marked as cut off.
pub(super) struct Unfinished {
    store: Arc<dyn MetadataStore>,
    conversation_id: Uuid,
    citations: Vec<Citation>,
    generator: &'static str,
    text: String,
    finished: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.finished || self.text.trim().is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let message = assistant_message(
            &format!("{} …", self.text.trim_end()),
            &self.citations,
            &format!("{} (stopped)", self.generator),
        );
        let store = self.store.clone();
        let conversation = self.conversation_id;
        runtime.spawn(async move {
            if let Err(e) = store.add_message(conversation, &message).await {
                tracing::warn!(error = %e, "could not keep a stopped answer");
            }
        });
    }
}

/// Whether `text` cites `source` as `[n]`.
pub(super) fn cites(text: &str, source: &Citation) -> bool {
    text.contains(&format!("[{}]", source.n))
}

/// The generator named for answers declined before any generator was asked.
pub const NO_GENERATOR: &str = "none";

/// What a reader should know about a finished answer once its sentences are checked.
pub(super) fn checked_notice(
    attribution: &Attribution,
    sources: &[Citation],
    truncated: bool,
) -> Option<String> {
    let unsupported = attribution.unsupported();
    let declined = attribution
        .sentences
        .first()
        .is_some_and(|s| s.text.starts_with(DECLINE));
    if truncated {
        Some("The answer reached the length limit and was cut off.".into())
    } else if unsupported > 0 {
        Some(format!(
            "{unsupported} sentence(s) of this answer are supported by none of the sources and \
             are marked; check them before relying on them."
        ))
    } else if !sources.is_empty() && !attribution.cites() && !declined {
        Some(
            "This answer cites none of the sources; check it against them before relying on it."
                .into(),
        )
    } else {
        None
    }
}

pub(super) fn citation(n: usize, hit: SearchHit) -> Citation {
    Citation {
        n,
        chunk_id: hit.chunk.id,
        document_id: hit.chunk.document_id,
        filename: hit.filename,
        heading_path: hit.chunk.heading_path,
        position: hit.chunk.position,
        char_start: hit.chunk.char_start,
        char_end: hit.chunk.char_end,
        score: hit.score,
        text: hit.chunk.text,
    }
}

pub(super) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub(super) fn invalid(code: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(InvalidInput {
        code,
        message: message.into(),
    })
}

pub(super) fn error(code: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code: code.to_string(),
        message: message.into(),
    }
}

//! Any OpenAI-compatible `/v1/chat/completions` server (OpenAI, Ollama, vLLM, the llama.cpp
//! server), streamed: each `chat.completion.chunk`'s delta becomes a text piece.

use super::{Ending, GenerateError, Generator, Piece, Prompt, TokenStream};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// How to reach the provider.
#[derive(Clone, Debug)]
pub struct OpenAiSettings {
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<SecretString>,
    pub model: String,
    pub connect_timeout: Duration,
    /// Longest silence between two pieces of a stream before it counts as hung.
    pub read_timeout: Duration,
    /// Sent only when set: newer (reasoning) models refuse any sampling temperature.
    pub temperature: Option<f32>,
}

/// Streams answers from an OpenAI-compatible server.
pub struct OpenAiGenerator {
    client: reqwest::Client,
    url: String,
    settings: OpenAiSettings,
}

impl OpenAiGenerator {
    /// A generator for `settings`; fails only if the HTTP client cannot be built.
    pub fn new(settings: OpenAiSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .build()?;
        let url = format!(
            "{}/chat/completions",
            settings.base_url.trim_end_matches('/')
        );
        Ok(Self {
            client,
            url,
            settings,
        })
    }
}

#[async_trait::async_trait]
impl Generator for OpenAiGenerator {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn generate(
        &self,
        prompt: &Prompt,
        max_tokens: usize,
    ) -> Result<TokenStream, GenerateError> {
        // `max_completion_tokens`, not the older `max_tokens`, which reasoning models refuse.
        let mut body = serde_json::json!({
            "model": self.settings.model,
            "stream": true,
            "max_completion_tokens": max_tokens,
            // The provider's own token counts, in a last chunk, instead of an estimate.
            "stream_options": { "include_usage": true },
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
        });
        if let (Some(t), Some(fields)) = (self.settings.temperature, body.as_object_mut()) {
            fields.insert("temperature".into(), serde_json::json!(t));
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                GenerateError::Timeout("connecting to the provider")
            } else {
                GenerateError::Unreachable(e.without_url().to_string())
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(GenerateError::Status {
                status: status.as_u16(),
                body: refusal(&text),
            });
        }
        let events = response.bytes_stream().eventsource();
        let state = (events, Some(Ending::default()));
        let stream = futures::stream::unfold(state, |(mut events, ending)| async move {
            // `None` once the stream has ended or failed.
            let mut ending = ending?;
            loop {
                match events.next().await {
                    None => {
                        // A stream must end with [DONE]; one cut short is a failure.
                        let cut =
                            GenerateError::Malformed("the stream ended without [DONE]".into());
                        return Some((Err(cut), (events, None)));
                    }
                    Some(Err(e)) => {
                        return Some((
                            Err(GenerateError::Unreachable(e.to_string())),
                            (events, None),
                        ))
                    }
                    Some(Ok(event)) => {
                        let data = event.data.trim();
                        if data == "[DONE]" {
                            return Some((Ok(Piece::End(ending)), (events, None)));
                        }
                        if data.is_empty() {
                            continue;
                        }
                        match read_chunk(data, &mut ending) {
                            Ok(Some(text)) if !text.is_empty() => {
                                return Some((Ok(Piece::Text(text)), (events, Some(ending))))
                            }
                            Ok(_) => continue,
                            Err(e) => return Some((Err(e), (events, None))),
                        }
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

/// What a provider's error body says, naming the parameter it refused when it names one (a
/// model that takes no `temperature`, say), so the log and the degraded notice tell why.
fn refusal(body: &str) -> String {
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let message = error
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str());
    let param = error
        .as_ref()
        .and_then(|e| e.get("param"))
        .and_then(|p| p.as_str());
    let text = match (param, message) {
        (Some(p), Some(m)) => format!("refused the parameter `{p}`: {m}"),
        (None, Some(m)) => m.to_string(),
        _ => body.to_string(),
    };
    text.chars().take(300).collect()
}

/// The text of one streamed chunk (`None` for chunks that carry none: role, finish, usage);
/// a finish reason or usage it reports goes into `ending`.
fn read_chunk(data: &str, ending: &mut Ending) -> Result<Option<String>, GenerateError> {
    let value: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| GenerateError::Malformed(format!("not JSON ({e})")))?;
    if let Some(err) = value.get("error") {
        return Err(GenerateError::Failed(
            err.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("the provider reported an error")
                .to_string(),
        ));
    }
    let choices = value
        .get("choices")
        .and_then(|c| c.as_array())
        .ok_or_else(|| GenerateError::Malformed("a chunk without choices".into()))?;
    if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
        let count = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        ending.prompt_tokens = count("prompt_tokens").or(ending.prompt_tokens);
        ending.completion_tokens = count("completion_tokens").or(ending.completion_tokens);
    }
    let choice = choices.first();
    if let Some(reason) = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(|r| r.as_str())
    {
        ending.truncated = reason == "length";
    }
    Ok(choice
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(|t| t.as_str())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta_text(data: &str) -> Result<Option<String>, GenerateError> {
        read_chunk(data, &mut Ending::default())
    }

    #[test]
    fn chunks_yield_their_delta_text() {
        let chunk = r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hé"},"finish_reason":null}]}"#;
        assert_eq!(delta_text(chunk).unwrap().as_deref(), Some("Hé"));
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#;
        assert_eq!(delta_text(role).unwrap(), None);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3}}"#;
        assert_eq!(delta_text(usage).unwrap(), None);
    }

    #[test]
    fn the_finish_reason_and_usage_chunks_tell_how_the_answer_ended() {
        let mut ending = Ending::default();
        let cut = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#;
        assert_eq!(read_chunk(cut, &mut ending).unwrap(), None);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":812,"completion_tokens":64,"total_tokens":876}}"#;
        assert_eq!(read_chunk(usage, &mut ending).unwrap(), None);
        assert_eq!(
            ending,
            Ending {
                truncated: true,
                prompt_tokens: Some(812),
                completion_tokens: Some(64),
            }
        );
        let stop = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#;
        read_chunk(stop, &mut ending).unwrap();
        assert!(!ending.truncated);
        assert_eq!(
            ending.completion_tokens,
            Some(64),
            "a null usage changes nothing"
        );
    }

    #[test]
    fn a_refusal_names_the_parameter() {
        let body = r#"{"error":{"message":"Unsupported value: 'temperature' does not support 0.2.","type":"invalid_request_error","param":"temperature","code":"unsupported_value"}}"#;
        assert_eq!(
            refusal(body),
            "refused the parameter `temperature`: Unsupported value: 'temperature' does not support 0.2."
        );
        assert_eq!(
            refusal(r#"{"error":{"message":"overloaded"}}"#),
            "overloaded"
        );
        assert_eq!(refusal("Bad Gateway"), "Bad Gateway");
        assert_eq!(refusal(&"x".repeat(1000)).len(), 300);
    }

    #[test]
    fn garbage_and_errors_are_failures() {
        assert!(matches!(
            delta_text("{oops"),
            Err(GenerateError::Malformed(_))
        ));
        assert!(matches!(
            delta_text(r#"{"id":1}"#),
            Err(GenerateError::Malformed(_))
        ));
        assert!(matches!(
            delta_text(r#"{"error":{"message":"overloaded"}}"#),
            Err(GenerateError::Failed(m)) if m == "overloaded"
        ));
    }
}

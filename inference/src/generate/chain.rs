//! The generator chain: providers in a configured order, each behind a circuit breaker. A
//! provider is retried (with backoff and jitter) only until its first token; after that the
//! answer is committed to it. When every provider fails the caller hears why.

use super::{GenerateError, Generator, Piece, Prompt, TokenStream};
use futures::StreamExt;
use kenning_core::resilience::{backoff, Admission, CircuitBreaker, Probe};
use std::sync::Arc;
use std::time::Duration;

pub use kenning_core::resilience::BreakerState;

/// How hard the chain tries each provider.
#[derive(Clone, Debug)]
pub struct ChainSettings {
    /// Extra attempts per provider before moving on (only before the first token).
    pub retries: u32,
    pub backoff_base: Duration,
    /// Longest wait for a provider's first token, per attempt.
    pub first_token_timeout: Duration,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before letting a probe through.
    pub breaker_reset: Duration,
}

struct Link {
    generator: Arc<dyn Generator>,
    breaker: CircuitBreaker,
}

/// An answer that has begun: the provider that produced its first token, and the rest.
pub struct Started {
    pub generator: &'static str,
    /// True when an earlier provider in the chain failed or was skipped.
    pub degraded: bool,
    /// What went wrong before this provider answered, for the user.
    pub notice: Option<String>,
    pub prompt_tokens: u64,
    pub first: String,
    pub rest: TokenStream,
}

/// Providers in order of preference.
pub struct Chain {
    links: Vec<Link>,
    settings: ChainSettings,
}

impl Chain {
    /// A chain over `generators`, first preferred.
    pub fn new(generators: Vec<Arc<dyn Generator>>, settings: ChainSettings) -> Self {
        let links = generators
            .into_iter()
            .map(|generator| Link {
                generator,
                breaker: CircuitBreaker::new(settings.breaker_threshold, settings.breaker_reset),
            })
            .collect();
        Self { links, settings }
    }

    /// Names in order, e.g. `["local", "extractive"]`.
    pub fn names(&self) -> Vec<&'static str> {
        self.links.iter().map(|l| l.generator.name()).collect()
    }

    /// Each provider's breaker state, for `/health` and metrics.
    pub fn breaker_states(&self) -> Vec<(&'static str, BreakerState)> {
        self.links
            .iter()
            .map(|l| (l.generator.name(), l.breaker.state()))
            .collect()
    }

    /// A provider failed after its first token (the stream broke): its breaker hears of it.
    pub fn report_failure(&self, name: &str) {
        if let Some(l) = self.links.iter().find(|l| l.generator.name() == name) {
            l.breaker.record_failure();
        }
    }

    /// Tries each provider in order until one produces a first token.
    pub async fn start(
        &self,
        prompt: &Prompt,
        max_tokens: usize,
    ) -> Result<Started, GenerateError> {
        let mut problems: Vec<String> = Vec::new();
        for link in &self.links {
            let name = link.generator.name();
            let admission = link.breaker.admit();
            if admission == Admission::Refused {
                problems.push(format!("{name} is paused after repeated failures"));
                continue;
            }
            let half_open = admission == Admission::Probe;
            // Given back if this call is dropped before its outcome is recorded.
            let mut probe = half_open.then(|| Probe::new(&link.breaker));
            // A half-open breaker admits a single probe, never a burst of retries.
            let attempts = if half_open {
                1
            } else {
                self.settings.retries + 1
            };
            let mut last = String::new();
            for attempt in 0..attempts {
                if attempt > 0 {
                    tokio::time::sleep(backoff(
                        self.settings.backoff_base,
                        attempt - 1,
                        Duration::from_secs(5),
                    ))
                    .await;
                }
                // Fitted per attempt: the budget follows the speed measured meanwhile.
                let fitted = link.generator.prompt_budget().map(|budget| {
                    super::budget::fit(prompt, budget, |p| link.generator.prompt_tokens(p))
                });
                let prompt = fitted.as_ref().unwrap_or(prompt);
                let first = tokio::time::timeout(
                    self.settings.first_token_timeout,
                    first_piece(link.generator.as_ref(), prompt, max_tokens),
                )
                .await;
                match first {
                    Ok(Ok((first, rest))) => {
                        link.breaker.record_success();
                        probe.as_mut().map(Probe::settle);
                        let degraded = !problems.is_empty();
                        return Ok(Started {
                            generator: name,
                            degraded,
                            notice: degraded.then(|| {
                                format!("Answered by {name} because {}.", problems.join("; "))
                            }),
                            prompt_tokens: link.generator.prompt_tokens(prompt),
                            first,
                            rest,
                        });
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "no first token in time".to_string(),
                }
                tracing::warn!(generator = name, attempt, error = %last, "generator attempt failed");
            }
            link.breaker.record_failure();
            probe.as_mut().map(Probe::settle);
            kenning_metrics::global().record_llm(name, "error", None, 0, 0, 0.0);
            problems.push(format!("{name} failed ({last})"));
        }
        Err(GenerateError::Failed(if problems.is_empty() {
            "no generator is configured".into()
        } else {
            problems.join("; ")
        }))
    }
}

/// Starts a generator and waits for its first non-empty piece.
async fn first_piece(
    generator: &dyn Generator,
    prompt: &Prompt,
    max_tokens: usize,
) -> Result<(String, TokenStream), GenerateError> {
    let mut stream = generator.generate(prompt, max_tokens).await?;
    loop {
        match stream.next().await {
            None => return Err(GenerateError::Failed("the answer was empty".into())),
            Some(Err(e)) => return Err(e),
            Some(Ok(Piece::Text(t))) if !t.is_empty() => return Ok((t, stream)),
            // Nothing said yet: an ending before any text is an empty answer, caught above.
            Some(Ok(_)) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Extractive;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `failures` calls, then answers "ok".
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
    }

    #[async_trait::async_trait]
    impl Generator for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        async fn generate(&self, _: &Prompt, _: usize) -> Result<TokenStream, GenerateError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(GenerateError::Unreachable("down".into()));
            }
            Ok(Box::pin(futures::stream::iter(vec![Ok(Piece::text("ok"))])))
        }
    }

    /// Accepts the request and never sends a piece.
    struct Hung;

    #[async_trait::async_trait]
    impl Generator for Hung {
        fn name(&self) -> &'static str {
            "hung"
        }
        async fn generate(&self, _: &Prompt, _: usize) -> Result<TokenStream, GenerateError> {
            Ok(Box::pin(futures::stream::pending()))
        }
    }

    fn settings(retries: u32) -> ChainSettings {
        ChainSettings {
            retries,
            backoff_base: Duration::from_millis(1),
            first_token_timeout: Duration::from_millis(200),
            breaker_threshold: 2,
            breaker_reset: Duration::from_secs(60),
        }
    }

    fn prompt() -> Prompt {
        Prompt::build("question", vec![], 100)
    }

    #[tokio::test]
    async fn a_retry_before_the_first_token_rescues_the_answer() {
        let flaky = Arc::new(Flaky {
            failures: 1,
            calls: AtomicU32::new(0),
        });
        let chain = Chain::new(vec![flaky.clone(), Arc::new(Extractive)], settings(1));
        let s = chain.start(&prompt(), 10).await.unwrap();
        assert_eq!(s.generator, "flaky");
        assert!(!s.degraded);
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failing_provider_degrades_to_the_next_and_its_breaker_opens() {
        let flaky = Arc::new(Flaky {
            failures: 100,
            calls: AtomicU32::new(0),
        });
        let chain = Chain::new(vec![flaky.clone(), Arc::new(Extractive)], settings(0));
        for _ in 0..2 {
            let s = chain.start(&prompt(), 10).await.unwrap();
            assert_eq!(s.generator, "extractive");
            assert!(s.degraded);
            assert!(s.notice.unwrap().contains("flaky failed"));
        }
        assert_eq!(chain.breaker_states()[0], ("flaky", BreakerState::Open));
        // Open: the provider is not even called.
        let s = chain.start(&prompt(), 10).await.unwrap();
        assert!(s.notice.unwrap().contains("paused"));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_hung_provider_is_abandoned_at_the_first_token_timeout() {
        let chain = Chain::new(vec![Arc::new(Hung), Arc::new(Extractive)], settings(0));
        let started = std::time::Instant::now();
        let s = chain.start(&prompt(), 10).await.unwrap();
        assert_eq!(s.generator, "extractive");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_abandoned_half_open_trial_lets_the_next_answer_try_again() {
        let mut s = settings(0);
        s.breaker_threshold = 1;
        s.breaker_reset = Duration::ZERO;
        s.first_token_timeout = Duration::from_secs(30);
        let chain = Chain::new(vec![Arc::new(Hung), Arc::new(Extractive)], s);
        chain.report_failure("hung");
        // The probe's answer is abandoned (Stop, a client that left) long before its timeout.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), chain.start(&prompt(), 10)).await;
        assert!(abandoned.is_err(), "still waiting for the hung provider");
        assert_eq!(
            chain.links[0].breaker.admit(),
            kenning_core::resilience::Admission::Probe,
            "the probe was given back, not left out for good"
        );
    }

    #[tokio::test]
    async fn when_everything_fails_the_error_says_why() {
        let flaky = Arc::new(Flaky {
            failures: 100,
            calls: AtomicU32::new(0),
        });
        let chain = Chain::new(vec![flaky], settings(0));
        let Err(e) = chain.start(&prompt(), 10).await else {
            panic!("expected failure")
        };
        assert!(e.to_string().contains("flaky failed"), "{e}");
    }
}

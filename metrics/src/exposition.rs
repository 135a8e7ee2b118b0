//! The Prometheus side of the metrics: names (all `kenning_`-prefixed, with the standard
//! `process_*` family from `metrics-process`), their help texts, and the few families the
//! `metrics` crate cannot express, written into the exposition by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// HELP lines for every metric, so the exposition is self-describing (and passes promtool).
pub(super) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        family!("http_requests_total"),
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        family!("http_request_duration_seconds"),
        "Time to the response head, by method and route template."
    );
    describe_counter!(
        family!("answer_sentences_total"),
        "Sentences of generated answers shown with a supporting source, or marked unsupported."
    );
    describe_counter!(
        family!("answers_declined_total"),
        "Answers declined without a generator: no passage was close enough to the question."
    );
    describe_counter!(
        family!("llm_calls_total"),
        "Generator calls, by provider and outcome."
    );
    describe_counter!(
        family!("llm_tokens_total"),
        "Tokens sent to and produced by generators, by provider and kind."
    );
    describe_histogram!(
        family!("llm_time_to_first_token_seconds"),
        "From a generator call to its first token, by provider."
    );
    describe_counter!(
        family!("embed_requests_total"),
        "Embedding batches run, by lane (query, ingest)."
    );
    describe_histogram!(
        family!("embed_batch_size"),
        "Texts per embedding batch, by lane."
    );
    describe_counter!(
        family!("db_queries_total"),
        "Metadata store calls, by operation."
    );
    describe_histogram!(
        family!("db_query_duration_seconds"),
        "Metadata store call duration including pool wait, by operation."
    );
    describe_histogram!(
        family!("vector_search_duration_seconds"),
        "Nearest-neighbour search duration, by backend."
    );
    describe_counter!(
        family!("cache_operations_total"),
        "Cache lookups and evictions, by cache and result."
    );
    describe_gauge!(
        family!("circuit_breaker_state"),
        "Generator circuit breakers: 1 for the state each provider's breaker is in, 0 for the others."
    );
    describe_gauge!(
        family!("build_info"),
        "Always 1; the running build's version as a label."
    );
    describe_gauge!(
        family!("ingest_jobs"),
        "Ingestion jobs in the durable queue, by state."
    );
    describe_histogram!(
        family!("ingest_queue_wait_seconds"),
        "From upload to the first attempt of its ingestion job."
    );
    describe_counter!(family!("ingest_passages_total"), "Passages indexed.");
    describe_counter!(
        family!("rate_limited_total"),
        "API requests refused with 429 by a rate limit, by route class."
    );
    describe_counter!(
        family!("requests_shed_total"),
        "Questions refused with 503 because the answer concurrency cap was reached."
    );
    describe_counter!(
        family!("audit_dropped_total"),
        "Audit log entries not written: the queue was full or the store refused them."
    );
}

/// Dollars spent on generation, per provider: a counter of fractional dollars, which the
/// `metrics` crate's integer counters cannot hold, so it is written into the exposition here.
#[derive(Default)]
pub(super) struct Costs(BTreeMap<&'static str, f64>);

impl Costs {
    pub(super) fn add(&mut self, provider: &'static str, usd: f64) {
        if usd.is_finite() && usd > 0.0 {
            *self.0.entry(provider).or_default() += usd;
        }
    }

    /// The family in the text exposition format, to follow the recorder's own.
    pub(super) fn render(&self, out: &mut String) {
        let name = family!("llm_cost_usd_total");
        let _ = writeln!(
            out,
            "# HELP {name} US dollars spent on generation since start, by provider (local generation is free)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        // Provider names are fixed identifiers (`openai`, `local`): nothing to escape.
        for (provider, usd) in &self.0 {
            let _ = writeln!(out, "{name}{{provider=\"{provider}\"}} {usd}");
        }
    }
}

/// The states a circuit breaker can be in, as its gauge's `state` label spells them.
pub(super) const BREAKER_STATES: [&str; 3] = ["closed", "half_open", "open"];

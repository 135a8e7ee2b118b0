//! The generator that needs no model: it answers with the retrieved sentences that share the
//! most words with the question, each followed by its citation. Always available, instant, and
//! never says anything the sources do not.

use super::{Ending, GenerateError, Generator, Piece, Prompt, TokenStream};
use kenning_core::text::{content_words, search_terms};
use std::collections::HashSet;

/// Sentences an extractive answer picks by score; the sentence after the best one comes too.
const MAX_SENTENCES: usize = 4;

/// Weight of a source's rank in a sentence's score: `RANK_PRIOR / (rank + 1)` is added, so
/// retrieval's order counts about as much as one or two rare shared words.
const RANK_PRIOR: f64 = 2.0;

/// How every answer that declines begins, so readers, clients and attribution can tell.
pub const DECLINE: &str = "I don't know";

/// What an extractive answer says when no sentence shares a word with the question.
pub const NO_ANSWER: &str = "I don't know: none of the retrieved passages seems to answer this.";

/// Composes answers from the best sentences of the sources.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extractive;

#[async_trait::async_trait]
impl Generator for Extractive {
    fn name(&self) -> &'static str {
        "extractive"
    }

    async fn generate(
        &self,
        prompt: &Prompt,
        max_tokens: usize,
    ) -> Result<TokenStream, GenerateError> {
        let answer = compose(prompt);
        // Streamed word by word like a model's answer, so clients handle one code path; each
        // word counts as a token, for the cap as for the usage. The prompt keeps its estimate.
        let words = split_keeping_spaces(&answer);
        let truncated = words.len() > max_tokens;
        let mut pieces: Vec<Result<Piece, GenerateError>> = words
            .into_iter()
            .take(max_tokens)
            .map(|w| Ok(Piece::Text(w)))
            .collect();
        let sent = pieces.len() as u64;
        pieces.push(Ok(Piece::End(Ending {
            truncated,
            prompt_tokens: None,
            completion_tokens: Some(sent),
        })));
        Ok(Box::pin(futures::stream::iter(pieces)))
    }
}

/// A sentence of a source and how well it matches the question.
pub(crate) struct Scored {
    /// The source's place in retrieval order.
    pub rank: usize,
    /// The sentence's place in its source.
    pub index: usize,
    pub score: f64,
}

/// The sentences of a prompt's sources (per source, in order), and those sharing a word with
/// the question, best first: each shared word weighted by how rare it is among the sentences,
/// better ranked sources preferred; equal scores keep source order.
pub(crate) fn scored_sentences(prompt: &Prompt) -> (Vec<Vec<String>>, Vec<Scored>) {
    // A follow-up ("and how fast?") is matched together with the question it follows.
    let asked = match &prompt.previous {
        Some(p) => format!("{p} {}", prompt.question),
        None => prompt.question.clone(),
    };
    let terms = question_terms(&asked);
    let by_source: Vec<Vec<String>> = prompt.sources.iter().map(|s| sentences(&s.text)).collect();
    let words: Vec<Vec<HashSet<String>>> = by_source
        .iter()
        .map(|list| {
            list.iter()
                .map(|text| content_words(text).map(|w| stem(&w)).collect())
                .collect()
        })
        .collect();
    let count = words.iter().map(Vec::len).sum::<usize>().max(1) as f64;
    let idf: Vec<f64> = terms
        .iter()
        .map(|t| {
            let df = words.iter().flatten().filter(|w| w.contains(t)).count() as f64;
            (1.0 + count / (1.0 + df)).ln()
        })
        .collect();
    let mut scored: Vec<Scored> = Vec::new();
    for (rank, list) in words.iter().enumerate() {
        for (index, w) in list.iter().enumerate() {
            let shared: f64 = terms
                .iter()
                .zip(&idf)
                .filter(|(t, _)| w.contains(*t))
                .map(|(_, weight)| weight)
                .sum();
            if shared > 0.0 {
                let score = shared + RANK_PRIOR / (rank as f64 + 1.0);
                scored.push(Scored { rank, index, score });
            }
        }
    }
    // Stable: equal scores keep source order.
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    (by_source, scored)
}

/// The answer text: the sentences of the sources that share the most telling words with the
/// question ([`scored_sentences`]), plus the sentence that follows the best one, since an
/// answer often goes on there; in source order, each cited. Measured on the evaluation set
/// (BENCHMARKS.md).
pub fn compose(prompt: &Prompt) -> String {
    if prompt.sources.is_empty() {
        return "I don't know: this space has no passages that match the question.".into();
    }
    let (by_source, scored) = scored_sentences(prompt);
    let Some(best) = scored.first() else {
        return NO_ANSWER.into();
    };
    let mut chosen: std::collections::BTreeSet<(usize, usize)> = scored
        .iter()
        .take(MAX_SENTENCES)
        .map(|c| (c.rank, c.index))
        .collect();
    if best.index + 1 < by_source[best.rank].len() {
        chosen.insert((best.rank, best.index + 1));
    }
    chosen
        .into_iter()
        .map(|(rank, index)| format!("{} [{}]", by_source[rank][index], prompt.sources[rank].n))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stems a question is matched on, each once: "days" and "day" are one term, or it would
/// count twice.
fn question_terms(asked: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for t in search_terms(asked).iter().map(|t| stem(t)) {
        if !terms.contains(&t) {
            terms.push(t);
        }
    }
    terms
}

/// Splits passage text into sentences, dropping blank lines, code fences, rules and the block
/// syntax lines start with (heading marks, quotes, list markers): the answer joins sentences
/// from anywhere into one paragraph, where a leading `- ` or a fence would turn all of it into
/// a list or a code block.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = without_block_syntax(line);
        let rule = line
            .chars()
            .all(|c| matches!(c, '-' | '*' | '_' | '=' | ' '));
        if rule || line.starts_with("```") || line.starts_with("~~~") {
            continue;
        }
        let mut start = 0;
        let bytes: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, c)) in bytes.iter().enumerate() {
            let next_is_space = bytes.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
            if matches!(c, '.' | '!' | '?') && next_is_space {
                let s = line[start..i + c.len_utf8()].trim();
                if s.chars().count() > 3 {
                    out.push(s.to_string());
                }
                start = i + c.len_utf8();
            }
        }
        let rest = line[start..].trim();
        if rest.chars().count() > 3 {
            out.push(rest.to_string());
        }
    }
    out
}

/// A line without the Markdown block syntax it starts with: indentation, heading marks, quote
/// markers, list markers and task boxes.
fn without_block_syntax(line: &str) -> &str {
    let mut line = line.trim();
    loop {
        let before = line.len();
        line = line.trim_start_matches(['#', '>']).trim_start();
        for bullet in ["- ", "* ", "+ ", "[ ] ", "[x] ", "[X] "] {
            if let Some(rest) = line.strip_prefix(bullet) {
                line = rest.trim_start();
            }
        }
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        if (1..=9).contains(&digits) {
            let rest = &line[digits..];
            if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
                line = rest.trim_start();
            }
        }
        if line.len() == before {
            return line;
        }
    }
}

/// A crude English stem so "days" matches "day" and "carried" matches "carry".
pub(crate) fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    for suffix in ["ing", "ied", "ies", "ed", "es", "s"] {
        if w.len() > suffix.len() + 2 && w.ends_with(suffix) {
            let base = &w[..w.len() - suffix.len()];
            return if suffix.starts_with('i') {
                format!("{base}y")
            } else {
                base.to_string()
            };
        }
    }
    w
}

/// Splits text into words, each keeping the whitespace that precedes it.
pub fn split_keeping_spaces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() && !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::prompt::test_source as source;
    use futures::StreamExt;

    /// Every piece of an answer to `p` under a cap of `max_tokens`.
    async fn pieces(p: &Prompt, max_tokens: usize) -> Vec<Piece> {
        let stream = Extractive.generate(p, max_tokens).await.expect("stream");
        stream.map(|r| r.expect("piece")).collect().await
    }

    #[tokio::test]
    async fn the_cap_cuts_the_answer_and_the_ending_says_so() {
        let p = Prompt::build(
            "How many vacation days?",
            vec![source(1, "Employees get 25 vacation days a year.")],
            1000,
        );
        let whole = pieces(&p, 1000).await;
        let words = whole.len() - 1;
        assert_eq!(
            whole.last(),
            Some(&Piece::End(Ending {
                truncated: false,
                prompt_tokens: None,
                completion_tokens: Some(words as u64),
            }))
        );
        let cut = pieces(&p, 3).await;
        assert_eq!(cut[..3], whole[..3]);
        assert_eq!(
            cut[3],
            Piece::End(Ending {
                truncated: true,
                prompt_tokens: None,
                completion_tokens: Some(3),
            })
        );
        assert_eq!(cut.len(), 4);
    }

    #[test]
    fn the_answer_quotes_matching_sentences_with_their_citations() {
        let p = Prompt::build(
            "How many vacation days do employees get?",
            vec![
                source(
                    1,
                    "# Leave\nThe office has plants. Employees get 25 vacation days a year.",
                ),
                source(2, "Unused vacation days carry over until March."),
            ],
            1000,
        );
        let a = compose(&p);
        assert!(
            a.contains("Employees get 25 vacation days a year. [1]"),
            "{a}"
        );
        assert!(a.contains("carry over until March. [2]"), "{a}");
        assert!(!a.contains("plants"), "{a}");
    }

    #[test]
    fn the_sentence_after_the_best_one_comes_with_it() {
        let p = Prompt::build(
            "What does the borrow checker reject?",
            vec![source(
                1,
                "Lunch is at noon. The borrow checker rejects two mutable references. \
                 Only one may exist at a time. Plants need water.",
            )],
            1000,
        );
        assert_eq!(
            compose(&p),
            "The borrow checker rejects two mutable references. [1] \
             Only one may exist at a time. [1]"
        );
    }

    #[test]
    fn rare_shared_words_count_more_than_common_ones() {
        let p = Prompt::build(
            "Which flag enables incremental compilation?",
            vec![source(
                1,
                "Compilation is slow. Compilation takes time. Compilation uses memory. \
                 Compilation runs often. The incremental flag speeds it up.",
            )],
            1000,
        );
        let a = compose(&p);
        assert!(a.starts_with("Compilation is slow. [1]"), "{a}");
        assert!(a.contains("The incremental flag speeds it up. [1]"), "{a}");
    }

    #[test]
    fn a_word_asked_in_two_forms_is_one_term() {
        assert_eq!(
            question_terms("How many days of leave, per day of work?"),
            vec!["many", "day", "leave", "per", "work"]
        );
    }

    #[test]
    fn no_shared_words_means_no_answer() {
        let p = Prompt::build(
            "What is the wifi password?",
            vec![source(1, "Lunch is at noon.")],
            1000,
        );
        assert_eq!(compose(&p), NO_ANSWER);
    }

    #[test]
    fn block_syntax_never_reaches_the_one_paragraph_answer() {
        let text = "## Leave\n\n- Every employee gets 25 days.\n> 2. [x] Requests go to HR.\n\n\
                    ```rust\nfn main() {}\n```\n---\n12) Twelve is a number here.";
        assert_eq!(
            sentences(text),
            vec![
                "Leave",
                "Every employee gets 25 days.",
                "Requests go to HR.",
                "fn main() {}",
                "Twelve is a number here."
            ]
        );
    }

    #[test]
    fn pieces_join_back_to_the_text() {
        let t = "Employees get 25  days. [1]\nNext";
        assert_eq!(split_keeping_spaces(t).concat(), t);
        assert_eq!(stem("days"), "day");
        assert_eq!(stem("carried"), "carry");
    }
}

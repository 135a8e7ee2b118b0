//! The prompt budget: a generator whose first token waits on reading the prompt (a local model
//! on a CPU) gets the sources cut to what it can read in time: the sentences that match the
//! question best, from as few passages as they come from, instead of whole chunks.

use super::extractive::scored_sentences;
use super::prompt::Prompt;
use kenning_api::Citation;
use std::collections::BTreeSet;

/// Source text a fitted prompt keeps however small the budget: one or two sentences, or no
/// answer could be grounded at all.
const MIN_SOURCE_CHARS: usize = 200;

/// `prompt` with its sources cut to fit `max_tokens` as `count` counts them; unchanged when it
/// fits already.
pub fn fit(prompt: &Prompt, max_tokens: u64, count: impl Fn(&Prompt) -> u64) -> Prompt {
    let whole = count(prompt);
    if whole <= max_tokens || prompt.sources.is_empty() {
        return prompt.clone();
    }
    let base = count(&prompt.with_sources(Vec::new()));
    let source_chars: usize = prompt.sources.iter().map(|s| s.text.len()).sum();
    let source_tokens = whole.saturating_sub(base).max(1);
    // Characters per token of these sources, to turn the room left into characters.
    let room = max_tokens.saturating_sub(base);
    let mut chars = ((room as f64 / source_tokens as f64) * source_chars as f64) as usize;
    let mut fitted = prompt.with_sources(supporting(prompt, chars.max(MIN_SOURCE_CHARS)));
    // The ratio is an estimate: shrink until the count agrees (rarely more than once).
    for _ in 0..3 {
        let tokens = count(&fitted);
        if tokens <= max_tokens || chars <= MIN_SOURCE_CHARS {
            break;
        }
        chars = (chars as f64 * max_tokens as f64 / tokens as f64 * 0.95) as usize;
        fitted = prompt.with_sources(supporting(prompt, chars.max(MIN_SOURCE_CHARS)));
    }
    fitted
}

/// The sources cut to the sentences that match the question best, about `max_chars` of them
/// in all, each source keeping its number and its sentences in order (`…` where some were
/// left out); sources with no such sentence are left out. With no sentence matching, the best
/// ranked sources' first sentences.
pub fn supporting(prompt: &Prompt, max_chars: usize) -> Vec<Citation> {
    let (by_source, scored) = scored_sentences(prompt);
    let mut order: Vec<(usize, usize)> = scored.iter().map(|s| (s.rank, s.index)).collect();
    if order.is_empty() {
        order = by_source
            .iter()
            .enumerate()
            .flat_map(|(rank, list)| (0..list.len()).map(move |index| (rank, index)))
            .collect();
    }
    let mut chosen = BTreeSet::new();
    let mut used = 0;
    for (rank, index) in order {
        let len = by_source[rank][index].len() + 1;
        if used + len > max_chars && !chosen.is_empty() {
            continue;
        }
        chosen.insert((rank, index));
        used += len;
    }
    let mut out = Vec::new();
    for (rank, source) in prompt.sources.iter().enumerate() {
        let mut text = String::new();
        let mut last: Option<usize> = None;
        for &(_, index) in chosen.range((rank, 0)..(rank + 1, 0)) {
            if !text.is_empty() {
                text.push_str(if last == Some(index - 1) {
                    " "
                } else {
                    " … "
                });
            }
            text.push_str(&by_source[rank][index]);
            last = Some(index);
        }
        if !text.is_empty() {
            out.push(Citation {
                text,
                ..source.clone()
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::prompt::test_source as source;

    fn prompt() -> Prompt {
        Prompt::build(
            "How many vacation days do employees get?",
            vec![
                source(
                    1,
                    "The office opens at nine. Employees get 25 vacation days a year. Parking \
                     is free for cyclists. Unused vacation days expire in March.",
                ),
                source(
                    2,
                    "Lunch is served at noon in the cafeteria on the ground floor.",
                ),
                source(3, "Vacation requests go to your manager two weeks ahead."),
            ],
            10_000,
        )
    }

    /// Four characters a token, as the estimate counts.
    fn count(p: &Prompt) -> u64 {
        p.estimated_tokens()
    }

    #[test]
    fn a_prompt_that_fits_is_unchanged() {
        let p = prompt();
        let fitted = fit(&p, count(&p), count);
        assert_eq!(fitted.user, p.user);
    }

    #[test]
    fn a_tight_budget_keeps_the_matching_sentences_and_the_numbers() {
        let p = prompt();
        let base = count(&p.with_sources(Vec::new()));
        let fitted = fit(&p, base + 60, count);
        assert!(count(&fitted) <= base + 60, "{}", fitted.user);
        let kept: Vec<(usize, &str)> = fitted
            .sources
            .iter()
            .map(|s| (s.n, s.text.as_str()))
            .collect();
        assert!(
            kept.iter()
                .any(|(n, t)| *n == 1 && t.contains("Employees get 25 vacation days a year.")),
            "{kept:?}"
        );
        assert!(!fitted.user.contains("Lunch"), "{}", fitted.user);
        assert!(!fitted.user.contains("Parking"), "{}", fitted.user);
        assert!(fitted.user.contains(&p.question), "{}", fitted.user);
    }

    #[test]
    fn sentences_left_out_between_kept_ones_are_marked() {
        let p = prompt();
        let cut = supporting(&p, 80);
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(
            cut[0].text,
            "Employees get 25 vacation days a year. … Unused vacation days expire in March."
        );
        let wide = supporting(&p, 10_000);
        assert_eq!(
            wide.iter().map(|s| s.n).collect::<Vec<_>>(),
            vec![1, 3],
            "a source with no matching sentence is left out"
        );
    }

    #[test]
    fn no_matching_sentence_still_leaves_the_best_sources_first_sentences() {
        let p = Prompt::build(
            "Zebra?",
            vec![source(1, "Alpha one. Beta two."), source(2, "Gamma three.")],
            1000,
        );
        let cut = supporting(&p, 12);
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].text, "Alpha one.");
    }
}

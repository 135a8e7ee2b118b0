//! Attribution by the server: every sentence of a finished answer is checked against the
//! numbered sources, so the citations readers see are those a passage really supports, whoever
//! wrote the answer (the local model, a provider or the extractive composer). A `[n]` the
//! generator wrote for a passage that does not support its sentence is replaced by one that
//! does, or dropped; a sentence no passage supports is marked.

use super::extractive::{stem, DECLINE};
use kenning_api::{AttributedSentence, Citation};
use kenning_core::text::content_words;
use std::collections::HashSet;

/// Share of a sentence's content words (stemmed) a passage must hold to support it. Every
/// number in the sentence must be in the passage as well.
pub const SUPPORT_SHARE: f64 = 0.6;

/// Sentences with fewer content words than this make no claim to check ("In short:").
const MIN_CLAIM_WORDS: usize = 3;

/// An answer split into sentences, each with the sources that support it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub sentences: Vec<AttributedSentence>,
}

impl Attribution {
    /// Checks each sentence of `answer` against `sources`.
    pub fn of(answer: &str, sources: &[Citation]) -> Self {
        let passages: Vec<(usize, Words)> =
            sources.iter().map(|s| (s.n, Words::of(&s.text))).collect();
        let mut lines = Lines::default();
        let sentences = split(answer)
            .into_iter()
            .map(|(raw, separator)| {
                if lines.verbatim(&raw, &separator) {
                    // Code and table rows are kept as written: not claims in sentences, and a
                    // marker there is part of the code.
                    return AttributedSentence {
                        text: raw,
                        separator,
                        sources: Vec::new(),
                        claimed: Vec::new(),
                        supported: true,
                    };
                }
                let (text, claimed) = take_markers(&raw);
                let claim = Words::of(&text);
                if text.trim_start().starts_with(DECLINE) || claim.words.len() < MIN_CLAIM_WORDS {
                    // Too short to check by share ("See `cargo fix`."): a citation stays only
                    // when its passage holds every word; nothing is held against it.
                    let kept = claimed
                        .iter()
                        .copied()
                        .filter(|n| {
                            passages
                                .iter()
                                .any(|(p, words)| p == n && claim.within(words))
                        })
                        .collect();
                    return AttributedSentence {
                        text,
                        separator,
                        sources: kept,
                        claimed,
                        supported: true,
                    };
                }
                let support: Vec<(usize, f64)> = passages
                    .iter()
                    .filter_map(|(n, p)| claim.supported_by(p).map(|share| (*n, share)))
                    .collect();
                let kept: Vec<usize> = claimed
                    .iter()
                    .copied()
                    .filter(|n| support.iter().any(|(s, _)| s == n))
                    .collect();
                let shown = if kept.is_empty() {
                    // The best supporting passage instead (earlier sources win ties).
                    support
                        .iter()
                        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                        .map(|(n, _)| vec![*n])
                        .unwrap_or_default()
                } else {
                    kept
                };
                AttributedSentence {
                    supported: !shown.is_empty(),
                    sources: shown,
                    text,
                    separator,
                    claimed,
                }
            })
            .collect();
        Self { sentences }
    }

    /// Sentences that make a claim no source supports.
    pub fn unsupported(&self) -> usize {
        self.sentences.iter().filter(|s| !s.supported).count()
    }

    /// Whether any sentence is shown with a source.
    pub fn cites(&self) -> bool {
        self.sentences.iter().any(|s| !s.sources.is_empty())
    }

    /// The answer as readers keep it: the generator's markers replaced by the verified ones.
    pub fn text(&self) -> String {
        render(&self.sentences)
    }
}

/// An answer's text from its attributed sentences, each followed by its verified citations.
pub fn render(sentences: &[AttributedSentence]) -> String {
    let mut out = String::new();
    for s in sentences {
        out.push_str(&s.text);
        for n in &s.sources {
            out.push_str(&format!(" [{n}]"));
        }
        out.push_str(&s.separator);
    }
    out
}

/// Where the split answer is in its Markdown: code fences and table rows are not prose.
#[derive(Default)]
struct Lines {
    /// Whether the next piece starts a line (the first one does).
    mid_line: bool,
    in_fence: bool,
    /// Whether the current line is code or a table row, for every piece of it.
    verbatim: bool,
}

impl Lines {
    /// Whether `piece` (followed by `separator`) is code or part of a table row.
    fn verbatim(&mut self, piece: &str, separator: &str) -> bool {
        if !self.mid_line {
            let lead = piece.trim_start();
            let fence = lead.starts_with("```") || lead.starts_with("~~~");
            self.verbatim = fence || self.in_fence || lead.starts_with('|');
            if fence {
                self.in_fence = !self.in_fence;
            }
        }
        self.mid_line = !separator.contains('\n');
        self.verbatim
    }
}

/// The stemmed content words of a text, and the numbers among them.
struct Words {
    words: HashSet<String>,
    numbers: HashSet<String>,
}

impl Words {
    fn of(text: &str) -> Self {
        let mut words = HashSet::new();
        let mut numbers = HashSet::new();
        for w in content_words(text) {
            if w.chars().all(|c| c.is_ascii_digit()) {
                numbers.insert(w.clone());
            }
            words.insert(stem(&w));
        }
        Self { words, numbers }
    }

    /// Whether `passage` holds every word and number of this one.
    fn within(&self, passage: &Words) -> bool {
        !self.words.is_empty()
            && self.words.is_subset(&passage.words)
            && self.numbers.is_subset(&passage.numbers)
    }

    /// The share of this claim's words `passage` holds, when that is enough to support it.
    fn supported_by(&self, passage: &Words) -> Option<f64> {
        if !self.numbers.is_subset(&passage.numbers) {
            return None;
        }
        let held = self.words.intersection(&passage.words).count();
        let share = held as f64 / self.words.len().max(1) as f64;
        (share >= SUPPORT_SHARE).then_some(share)
    }
}

/// Splits an answer into sentences, each with the whitespace after it, so joining them gives
/// the answer back. A sentence ends at `.`, `!` or `?` before whitespace, or at a line break;
/// citation markers written after the stop (`… days. [1]`) stay with the sentence they follow.
fn split(answer: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    // The end of the whitespace that starts at byte `at`.
    let spaces_end = |at: usize| {
        answer[at..]
            .find(|c: char| !c.is_whitespace())
            .map_or(answer.len(), |n| at + n)
    };
    let (mut start, mut i) = (0, 0);
    while let Some(c) = answer[i..].chars().next() {
        let next = answer[i + c.len_utf8()..].chars().next();
        let stop = matches!(c, '.' | '!' | '?') && next.is_none_or(char::is_whitespace);
        if c == '\n' || stop {
            let end = if stop { i + c.len_utf8() } else { i };
            let mut text = answer[start..end].to_string();
            let (mut gap, mut after) = (end, spaces_end(end));
            // Markers right after the stop belong to this sentence.
            let taken = leading_markers(&answer[after..]);
            if taken > 0 {
                text.push(' ');
                text.push_str(&answer[after..after + taken]);
                gap = after + taken;
                after = spaces_end(gap);
            }
            out.push((text, answer[gap..after].to_string()));
            (start, i) = (after, after);
            continue;
        }
        if c == '[' {
            // Markers followed by a new sentence (not by a lower-case word) end this one,
            // stop or no stop: `… (os error 9) [1] In particular, …`.
            let end = i + leading_markers(&answer[i..]);
            let rest = &answer[end..];
            let spaced = rest.starts_with(char::is_whitespace);
            let next = rest.trim_start().chars().next();
            if end > i && spaced && next.is_some_and(|n| !n.is_lowercase()) {
                let after = spaces_end(end);
                out.push((
                    answer[start..end].to_string(),
                    answer[end..after].to_string(),
                ));
                (start, i) = (after, after);
                continue;
            }
        }
        i += c.len_utf8();
    }
    // Whitespace the answer ends with is kept, as the separator of its last sentence.
    let rest = &answer[start..];
    if !rest.is_empty() {
        let text = rest.trim_end();
        out.push((text.to_string(), rest[text.len()..].to_string()));
    }
    out.retain(|(s, sep)| !(s.trim().is_empty() && sep.is_empty()));
    out
}

/// Bytes of the citation markers at the start of `text`, spaces between them included (all
/// ASCII, so as many characters).
fn leading_markers(text: &str) -> usize {
    let mut taken = 0;
    let mut rest = text;
    loop {
        let Some(len) = marker_len(rest) else {
            return taken;
        };
        let skipped = rest[len..].len() - rest[len..].trim_start_matches(' ').len();
        let next = &rest[len + skipped..];
        taken += len;
        if marker_len(next).is_some() {
            taken += skipped;
            rest = next;
        } else {
            return taken;
        }
    }
}

/// Bytes of the citation marker (`[3]`, `[1, 2]`) at the start of `text`, if one is there.
fn marker_len(text: &str) -> Option<usize> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find(']')?;
    let body = &inner[..close];
    let numbers = body.split(',').map(str::trim);
    (!body.is_empty()
        && numbers
            .clone()
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
    .then_some(close + 2)
}

/// A sentence without its citation markers, and the source numbers they named.
fn take_markers(raw: &str) -> (String, Vec<usize>) {
    let mut text = String::new();
    let mut claimed = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let at = &rest[open..];
        match marker_len(at) {
            Some(len) => {
                for n in at[1..len - 1].split(',') {
                    if let Ok(n) = n.trim().parse::<usize>() {
                        if !claimed.contains(&n) {
                            claimed.push(n);
                        }
                    }
                }
                rest = &at[len..];
            }
            None => {
                text.push('[');
                rest = &at[1..];
            }
        }
    }
    text.push_str(rest);
    // Removing a marker leaves a space before the stop or doubled spaces: tidy them.
    let mut tidy = String::with_capacity(text.len());
    for c in text.trim().chars() {
        if (matches!(c, '.' | ',' | ';' | ':' | '!' | '?') || c == ' ') && tidy.ends_with(' ') {
            tidy.pop();
        }
        tidy.push(c);
    }
    (tidy, claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: usize, text: &str) -> Citation {
        Citation {
            n,
            chunk_id: format!("c{n}"),
            document_id: "d".into(),
            filename: "f.md".into(),
            heading_path: String::new(),
            position: 0,
            char_start: 0,
            char_end: text.len() as i64,
            score: 1.0,
            text: text.into(),
        }
    }

    fn sources() -> Vec<Citation> {
        vec![
            source(
                1,
                "Employees receive 25 vacation days per year. Unused days expire in March.",
            ),
            source(
                2,
                "The cafeteria serves lunch from noon until two o'clock on weekdays.",
            ),
        ]
    }

    #[test]
    fn a_citation_of_the_wrong_passage_is_corrected() {
        let a = Attribution::of(
            "Employees receive 25 vacation days each year [2].",
            &sources(),
        );
        assert_eq!(a.sentences.len(), 1);
        let s = &a.sentences[0];
        assert_eq!(s.claimed, vec![2]);
        assert_eq!(s.sources, vec![1]);
        assert!(s.supported);
        assert_eq!(
            a.text(),
            "Employees receive 25 vacation days each year. [1]"
        );
    }

    #[test]
    fn a_wrong_number_is_not_supported_by_a_passage_with_the_right_one() {
        let a = Attribution::of("Employees receive 1 vacation day per year. [1]", &sources());
        assert_eq!(a.unsupported(), 1);
        assert!(a.sentences[0].sources.is_empty());
        assert_eq!(a.text(), "Employees receive 1 vacation day per year.");
    }

    #[test]
    fn uncited_sentences_are_attributed_and_unsupported_ones_marked() {
        let answer = "Lunch is served from noon until two on weekdays. \
                      Threads share memory through scoped borrows. Unused days expire in March [1]";
        let a = Attribution::of(answer, &sources());
        let shown: Vec<(Vec<usize>, bool)> = a
            .sentences
            .iter()
            .map(|s| (s.sources.clone(), s.supported))
            .collect();
        assert_eq!(
            shown,
            vec![(vec![2], true), (vec![], false), (vec![1], true)],
            "{:?}",
            a.sentences
        );
        assert_eq!(a.unsupported(), 1);
        assert!(a.cites());
    }

    #[test]
    fn markers_after_the_stop_and_lists_of_markers_stay_with_their_sentence() {
        let answer =
            "Unused days expire in March. [1][2]\n\nLunch starts at noon on weekdays [1, 2].";
        let a = Attribution::of(answer, &sources());
        assert_eq!(a.sentences.len(), 2, "{:?}", a.sentences);
        assert_eq!(a.sentences[0].claimed, vec![1, 2]);
        assert_eq!(a.sentences[0].sources, vec![1]);
        assert_eq!(a.sentences[0].separator, "\n\n");
        assert_eq!(a.sentences[1].claimed, vec![1, 2]);
        assert_eq!(a.sentences[1].sources, vec![2]);
        assert_eq!(
            a.text(),
            "Unused days expire in March. [1]\n\nLunch starts at noon on weekdays. [2]"
        );
    }

    #[test]
    fn short_lines_and_declines_make_no_claim() {
        let answer =
            "In short:\nI don't know: none of the retrieved passages seems to answer this.";
        let a = Attribution::of(answer, &sources());
        assert_eq!(a.unsupported(), 0);
        assert!(!a.cites());
        assert_eq!(a.text(), answer);
    }

    #[test]
    fn a_short_sentence_keeps_a_citation_only_of_a_passage_holding_all_of_it() {
        let a = Attribution::of("Unused days expire. [1] Lunch expires. [1]", &sources());
        assert_eq!(a.sentences[0].sources, vec![1]);
        assert!(a.sentences[1].sources.is_empty());
        assert_eq!(a.unsupported(), 0);
    }

    #[test]
    fn markers_before_a_new_sentence_end_one_without_a_stop() {
        let answer = "Unused days expire in March [1] Lunch starts at noon on weekdays [2] and \
                      ends at two [2]";
        let a = Attribution::of(answer, &sources());
        let split: Vec<(&str, Vec<usize>)> = a
            .sentences
            .iter()
            .map(|s| (s.text.as_str(), s.claimed.clone()))
            .collect();
        assert_eq!(
            split,
            vec![
                ("Unused days expire in March", vec![1]),
                ("Lunch starts at noon on weekdays and ends at two", vec![2]),
            ]
        );
    }

    #[test]
    fn an_unfinished_sentence_keeps_the_whitespace_it_ends_with() {
        let a = Attribution::of("One two ", &sources());
        assert_eq!(a.text(), "One two ");
    }

    #[test]
    fn brackets_that_are_not_markers_are_kept() {
        let (text, claimed) = take_markers("Index with v[i] or [a, b] arrays [3].");
        assert_eq!(text, "Index with v[i] or [a, b] arrays.");
        assert_eq!(claimed, vec![3]);
    }

    #[test]
    fn code_and_table_rows_are_kept_as_written_and_not_judged() {
        let answer = "Employees receive 25 vacation days per year. [1]\n\n```text\n\
                      let  days = v[2];  // Made up claim about the moon. [2] Really.\n```\n\n\
                      | Who | Days. | Pets |\n|---|---|---|\n\
                      - Unused days expire in March. [2]\n";
        let a = Attribution::of(answer, &sources());
        assert_eq!(
            a.text(),
            "Employees receive 25 vacation days per year. [1]\n\n```text\n\
             let  days = v[2];  // Made up claim about the moon. [2] Really.\n```\n\n\
             | Who | Days. | Pets |\n|---|---|---|\n\
             - Unused days expire in March. [1]\n"
        );
        assert_eq!(a.unsupported(), 0);
    }

    #[test]
    fn joining_the_sentences_gives_the_answer_back_when_nothing_changes() {
        let answer =
            "Employees receive 25 vacation days per year. [1] Unused days expire in March. [1]";
        let a = Attribution::of(answer, &sources());
        assert_eq!(a.text(), answer);
    }
}

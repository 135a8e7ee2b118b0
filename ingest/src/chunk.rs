//! Splitting extracted text into passages sized in the embedder's own tokens, Markdown-aware,
//! each passage keeping its heading path and character offsets so a citation can point at it.

use std::path::Path;
use std::sync::Arc;
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

/// Separator between the headings of a path.
pub const HEADING_SEPARATOR: &str = " › ";

/// A passage before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub position: usize,
    pub text: String,
    pub heading_path: String,
    /// Offsets in Unicode scalar values (chars) into the extracted text.
    pub char_start: usize,
    pub char_end: usize,
    pub token_count: usize,
}

/// Why chunking settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChunkError(pub String);

/// Splits text with a tokenizer loaded once and shared by all workers.
#[derive(Clone)]
pub struct Chunker {
    tokenizer: Arc<Tokenizer>,
}

impl Chunker {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", path.display()))?;
        // The model's file truncates at 128 tokens and pads; sizing needs the true length.
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow::anyhow!("configuring tokenizer: {e}"))?;
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer: Arc::new(tokenizer),
        })
    }

    /// Counts tokens the way the embedder will see them (without special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .unwrap_or(0)
    }

    /// Splits `text` into passages of at most `size` tokens overlapping by `overlap` tokens.
    pub fn split(
        &self,
        text: &str,
        markdown: bool,
        size: usize,
        overlap: usize,
    ) -> Result<Vec<Passage>, ChunkError> {
        if size == 0 || overlap >= size {
            return Err(ChunkError(format!(
                "chunk size must be positive and larger than the overlap (size {size}, overlap {overlap})"
            )));
        }
        let config = ChunkConfig::new(size)
            .with_overlap(overlap)
            .map_err(|e| ChunkError(e.to_string()))?
            .with_sizer(&*self.tokenizer);
        let pieces: Vec<(usize, &str)> = if markdown {
            MarkdownSplitter::new(config).chunk_indices(text).collect()
        } else {
            TextSplitter::new(config).chunk_indices(text).collect()
        };

        let headings = if markdown { headings(text) } else { Vec::new() };
        let mut path: Vec<(usize, &str)> = Vec::new();
        let mut next_heading = 0;
        let (mut last_byte, mut last_char) = (0usize, 0usize);
        let mut out = Vec::with_capacity(pieces.len());
        for (position, (byte_start, piece)) in pieces.into_iter().enumerate() {
            // Chunk starts only move forward, so offsets and headings advance incrementally.
            if byte_start >= last_byte {
                last_char += text[last_byte..byte_start].chars().count();
            } else {
                last_char -= text[byte_start..last_byte].chars().count();
            }
            last_byte = byte_start;
            while next_heading < headings.len() && headings[next_heading].0 <= byte_start {
                let (_, level, title) = headings[next_heading];
                path.retain(|(l, _)| *l < level);
                path.push((level, title));
                next_heading += 1;
            }
            let chars = piece.chars().count();
            out.push(Passage {
                position,
                text: piece.to_string(),
                heading_path: path
                    .iter()
                    .map(|(_, t)| *t)
                    .collect::<Vec<_>>()
                    .join(HEADING_SEPARATOR),
                char_start: last_char,
                char_end: last_char + chars,
                token_count: self.count_tokens(piece),
            });
        }
        Ok(out)
    }
}

/// ATX headings (`# Title`) outside fenced code blocks: byte offset, level, title.
fn headings(text: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut fence: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent > 3 {
            continue;
        }
        let trimmed = line.trim();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") {
            fence = Some("```");
            continue;
        }
        if trimmed.starts_with("~~~") {
            fence = Some("~~~");
            continue;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&level) {
            let rest = &trimmed[level..];
            if rest.is_empty() || rest.starts_with([' ', '\t']) {
                let title = rest.trim().trim_end_matches('#').trim();
                if !title.is_empty() {
                    out.push((start, level, title));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunker() -> Chunker {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2/tokenizer.json");
        Chunker::from_file(&path).expect("tokenizer present (scripts/fetch-models.sh fetches it)")
    }

    fn corpus() -> String {
        let mut s = String::from("# Handbook\n\nWelcome to the team. Ünïcödé is welcome too.\n\n");
        for section in 1..=4 {
            s.push_str(&format!("## Section {section}\n\n"));
            for p in 0..6 {
                s.push_str(&format!(
                    "Paragraph {p} of section {section} explains how requests are routed, retried and logged \
                     so that nobody has to guess what happened to a document. "
                ));
                s.push_str("\n\n");
            }
            s.push_str("```\n# not a heading\n```\n\n");
        }
        s
    }

    #[test]
    fn offsets_always_point_at_the_passage_text() {
        let text = corpus();
        let chars: Vec<char> = text.chars().collect();
        let passages = chunker().split(&text, true, 64, 8).unwrap();
        assert!(passages.len() > 4);
        for p in &passages {
            let slice: String = chars[p.char_start..p.char_end].iter().collect();
            assert_eq!(slice, p.text, "passage {}", p.position);
        }
    }

    #[test]
    fn passages_respect_the_token_budget_and_cover_the_text() {
        let text = corpus();
        let passages = chunker().split(&text, true, 64, 8).unwrap();
        for p in &passages {
            assert!(
                p.token_count <= 64,
                "passage {} has {} tokens",
                p.position,
                p.token_count
            );
        }
        // Every non-blank character is inside some passage.
        let mut covered = vec![false; text.chars().count()];
        for p in &passages {
            covered[p.char_start..p.char_end]
                .iter_mut()
                .for_each(|c| *c = true);
        }
        for (i, c) in text.chars().enumerate() {
            assert!(
                covered[i] || c.is_whitespace(),
                "char {i} {c:?} not covered"
            );
        }
    }

    #[test]
    fn passages_carry_their_heading_path() {
        let text = corpus();
        let passages = chunker().split(&text, true, 64, 8).unwrap();
        assert_eq!(passages[0].heading_path, "Handbook");
        let in_section_3 = passages
            .iter()
            .find(|p| p.text.contains("section 3"))
            .unwrap();
        assert_eq!(
            in_section_3.heading_path,
            format!("Handbook{HEADING_SEPARATOR}Section 3")
        );
        assert!(passages
            .iter()
            .all(|p| !p.heading_path.contains("not a heading")));
    }

    #[test]
    fn overlap_must_be_smaller_than_the_size() {
        assert!(chunker().split("text", false, 32, 32).is_err());
        assert!(chunker().split("text", false, 0, 0).is_err());
    }

    #[test]
    fn headings_inside_code_fences_are_ignored() {
        let h = headings("# A\n```\n# B\n```\n## C\n####### too deep\n#nospace\n");
        let titles: Vec<_> = h.iter().map(|(_, l, t)| (*l, *t)).collect();
        assert_eq!(titles, vec![(1, "A"), (2, "C")]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        fn shared() -> &'static Chunker {
            static CHUNKER: OnceLock<Chunker> = OnceLock::new();
            CHUNKER.get_or_init(chunker)
        }

        /// Documents made of words, punctuation, Markdown headings, code fences, blank lines
        /// and non-ASCII text: the shapes real uploads have.
        fn document() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                "[a-z]{1,12}",
                Just(" ".to_string()),
                Just(". ".to_string()),
                Just("\n".to_string()),
                Just("\n\n".to_string()),
                Just("\n# Title\n".to_string()),
                Just("\n## Sub section\n".to_string()),
                Just("\n```\ncode # x\n```\n".to_string()),
                Just("Ünïcödé ✓ 漢字 ".to_string()),
                Just("- item\n".to_string()),
            ];
            proptest::collection::vec(piece, 0..400).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn offsets_point_at_the_text_and_nothing_is_lost(
                text in document(),
                markdown in any::<bool>(),
                size in 16usize..96,
                overlap_part in 0usize..4,
            ) {
                let overlap = size * overlap_part / 10;
                let chars: Vec<char> = text.chars().collect();
                let passages = shared().split(&text, markdown, size, overlap).unwrap();
                let mut covered = vec![false; chars.len()];
                for (i, p) in passages.iter().enumerate() {
                    prop_assert_eq!(p.position, i);
                    prop_assert!(p.char_start < p.char_end && p.char_end <= chars.len());
                    let slice: String = chars[p.char_start..p.char_end].iter().collect();
                    prop_assert_eq!(&slice, &p.text);
                    prop_assert!(p.token_count <= size, "{} tokens > {}", p.token_count, size);
                    covered[p.char_start..p.char_end].iter_mut().for_each(|c| *c = true);
                }
                for (i, c) in chars.iter().enumerate() {
                    prop_assert!(c.is_whitespace() || covered[i], "character {} ({:?}) is in no passage", i, c);
                }
                // Passages advance through the text: overlap never makes one start before the last.
                for w in passages.windows(2) {
                    prop_assert!(w[0].char_start <= w[1].char_start);
                }
            }
        }
    }
}

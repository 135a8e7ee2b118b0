//! Guards the chunker: any extracted text, Markdown or plain, with any chunk size and overlap,
//! is split without panicking into passages whose character offsets select exactly their text,
//! that stay within the token budget, advance through the text and leave no non-blank character
//! out (the invariants of `ingest::chunk::tests::properties`). Bad settings are refused with an
//! error.
//!
//! Input: a flags byte (bit 0: Markdown; bit 1: take the overlap as given, which may be invalid),
//! a size byte, an overlap byte, then the text as UTF-8 (other input is skipped).
//!
//! Uses the real tokenizer, from `$KENNING_MODELS_DIR` or the repository's `models/`
//! (`scripts/fetch-models.sh` fetches it).

#![no_main]

use kenning::ingest::chunk::Chunker;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::LazyLock;

static CHUNKER: LazyLock<Chunker> = LazyLock::new(|| {
    let models = std::env::var_os("KENNING_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let path = models.join("all-MiniLM-L6-v2/tokenizer.json");
    Chunker::from_file(&path)
        .unwrap_or_else(|e| panic!("{e:#} (run scripts/fetch-models.sh or set KENNING_MODELS_DIR)"))
});

fuzz_target!(|data: &[u8]| {
    let [flags, size, overlap, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let markdown = flags & 1 == 1;
    // 8 to 263 tokens, around the default of 256 that spaces use.
    let size = 8 + usize::from(*size);
    let overlap = if flags & 2 == 2 {
        usize::from(*overlap) * 2
    } else {
        usize::from(*overlap) % size
    };

    let result = CHUNKER.split(text, markdown, size, overlap);
    if overlap >= size {
        assert!(result.is_err(), "overlap {overlap} >= size {size} accepted");
        return;
    }
    let passages = match result {
        Ok(p) => p,
        Err(e) => panic!("valid settings (size {size}, overlap {overlap}) refused: {e}"),
    };

    let chars: Vec<char> = text.chars().collect();
    let mut covered = vec![false; chars.len()];
    for (i, p) in passages.iter().enumerate() {
        assert_eq!(p.position, i);
        assert!(
            p.char_start < p.char_end && p.char_end <= chars.len(),
            "passage {i}: offsets {}..{} in {} chars",
            p.char_start,
            p.char_end,
            chars.len()
        );
        let slice: String = chars[p.char_start..p.char_end].iter().collect();
        assert_eq!(slice, p.text, "passage {i}: offsets select other text");
        assert!(
            p.token_count <= size,
            "passage {i}: {} tokens > {size}",
            p.token_count
        );
        covered[p.char_start..p.char_end]
            .iter_mut()
            .for_each(|c| *c = true);
    }
    for (i, c) in chars.iter().enumerate() {
        assert!(
            c.is_whitespace() || covered[i],
            "character {i} ({c:?}) is in no passage"
        );
    }
    for w in passages.windows(2) {
        assert!(w[0].char_start <= w[1].char_start, "passages go backwards");
    }
});

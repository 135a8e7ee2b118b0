//! Guards the upload path's document handling: content detection and every document parser
//! (text, Markdown, HTML, PDF, DOCX, CSV, JSON) take arbitrary bytes and either return text or a
//! `ParseError`. They must never panic, hang or exhaust memory: an upload is untrusted input and
//! a parser failure must fail its job, not the worker.
//!
//! The first byte picks the file name and declared type given to `detect` and the format handed
//! to `parse`; the rest is the file.

#![no_main]

use kenning::ingest::parse::{detect, parse, Format};
use libfuzzer_sys::fuzz_target;
use std::cell::Cell;
use std::sync::Once;

const FORMATS: [Format; 7] = [
    Format::Text,
    Format::Markdown,
    Format::Html,
    Format::Pdf,
    Format::Docx,
    Format::Csv,
    Format::Json,
];

/// Names and declared types an upload may arrive with; they only break ties in `detect`.
const NAMES: [(&str, Option<&str>); 8] = [
    ("notes.txt", None),
    ("notes.md", Some("text/markdown")),
    ("page.html", None),
    ("report.pdf", Some("application/pdf")),
    ("letter.docx", None),
    ("data.csv", Some("text/csv")),
    ("data", Some("application/json")),
    (
        "upload",
        Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ),
];

/// How much of an upload the server sniffs before choosing a format (`service::SNIFF_BYTES`).
const SNIFF_BYTES: usize = 8192;

thread_local! {
    /// Set while the PDF parser runs: Kenning wraps that third-party parser in `catch_unwind`
    /// and turns its panics into a `ParseError`, so a panic there is handled, not a crash.
    static IN_PDF: Cell<bool> = const { Cell::new(false) };
}

/// libFuzzer's panic hook aborts on every panic, even one that would be caught. Keep that for
/// all panics except those the PDF parser's `catch_unwind` is there to contain.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PDF.with(Cell::get) {
                abort_hook(info);
            }
        }));
    });
}

fn run(format: Format, bytes: &[u8]) {
    IN_PDF.with(|c| c.set(format == Format::Pdf));
    let result = parse(format, bytes);
    IN_PDF.with(|c| c.set(false));
    let Ok(parsed) = result else { return };
    assert!(
        !parsed.text.trim().is_empty(),
        "{format:?}: blank text accepted"
    );
    match format {
        Format::Text | Format::Csv | Format::Markdown => {
            // Plain formats come through unchanged, less a byte-order mark.
            let original = std::str::from_utf8(bytes).expect("accepted text is UTF-8");
            assert_eq!(parsed.text, original.trim_start_matches('\u{feff}'));
            assert_eq!(parsed.markdown, format == Format::Markdown);
        }
        Format::Json => {
            // Pretty-printing keeps the value (numbers up to float rounding: serde_json's
            // default number parsing is not correctly rounded past 15 significant digits).
            let before: serde_json::Value =
                serde_json::from_slice(bytes).expect("accepted JSON parses");
            let after: serde_json::Value =
                serde_json::from_str(&parsed.text).expect("pretty-printed JSON parses");
            assert!(same_json(&before, &after), "{before} became {after}");
        }
        Format::Html | Format::Pdf | Format::Docx => {}
    }
}

/// Equal JSON values, floats compared to a few units in the last place.
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same_json(vx, vy))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    install_panic_hook();
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (name, declared) = NAMES[usize::from(selector >> 5)];
    let head = &bytes[..bytes.len().min(SNIFF_BYTES)];
    let detected = detect(name, declared, head, head.len() == bytes.len());
    if let Ok(format) = detected {
        match format {
            Format::Pdf => assert!(head.starts_with(b"%PDF-")),
            Format::Docx => assert!(head.starts_with(b"PK\x03\x04")),
            _ => assert!(!head.contains(&0), "{format:?} detected for bytes with NUL"),
        }
        assert_eq!(Format::from_mime(format.mime()), Some(format));
    }
    // Low bits: one format, or (7) the one detected, as an upload would be parsed.
    match selector & 0x07 {
        7 => {
            if let Ok(format) = detected {
                run(format, bytes);
            }
        }
        i => run(FORMATS[usize::from(i)], bytes),
    }
});

//! Turning an uploaded file into text: format detection by content (names and declared types
//! only break ties between text formats) and one parser per format. Parsers return Markdown-ish
//! text so headings survive into chunking and citations.

use std::io::{Cursor, Read};

/// The formats Kenning can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Json,
}

/// The MIME type recorded for DOCX files.
pub const DOCX_MIME: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

impl Format {
    /// The MIME type stored with the document.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => DOCX_MIME,
            Format::Csv => "text/csv",
            Format::Json => "application/json",
        }
    }

    /// The format a stored MIME type stands for.
    pub fn from_mime(mime: &str) -> Option<Self> {
        [
            Format::Text,
            Format::Markdown,
            Format::Html,
            Format::Pdf,
            Format::Docx,
            Format::Csv,
            Format::Json,
        ]
        .into_iter()
        .find(|f| f.mime() == mime)
    }
}

/// Why an upload is refused before it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// Why a stored file could not be read; permanent, so the job fails without retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Text extracted from a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub text: String,
    /// Whether the text carries Markdown structure (headings) worth splitting on.
    pub markdown: bool,
}

fn has_extension(name: &str, exts: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    exts.iter().any(|e| lower.ends_with(e))
}

/// Decides the format from the first bytes of the file, then the name and declared type.
pub fn detect(
    filename: &str,
    declared: Option<&str>,
    head: &[u8],
    head_is_whole_file: bool,
) -> Result<Format, Unsupported> {
    let declared = declared.unwrap_or_default().to_ascii_lowercase();
    if head.starts_with(b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if head.starts_with(b"PK\x03\x04") {
        if has_extension(filename, &[".docx"]) || declared.contains("wordprocessingml") {
            return Ok(Format::Docx);
        }
        return Err(Unsupported(
            "ZIP archives are not supported; DOCX files should end in .docx.".into(),
        ));
    }
    let text = !head.contains(&0)
        && match std::str::from_utf8(head) {
            Ok(_) => true,
            // A multi-byte character cut at the end of the sniffed prefix is still text.
            Err(e) => e.error_len().is_none() && !head_is_whole_file,
        };
    if !text {
        return Err(Unsupported(
            "Unsupported file type: Kenning reads text, Markdown, HTML, PDF, DOCX, CSV and JSON."
                .into(),
        ));
    }
    let start = String::from_utf8_lossy(&head[..head.len().min(512)])
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html")
        || start.starts_with("<html")
        || has_extension(filename, &[".html", ".htm", ".xhtml"])
        || declared.starts_with("text/html")
    {
        return Ok(Format::Html);
    }
    if has_extension(filename, &[".json"]) || declared.starts_with("application/json") {
        return Ok(Format::Json);
    }
    if has_extension(filename, &[".csv"]) || declared.starts_with("text/csv") {
        return Ok(Format::Csv);
    }
    if has_extension(filename, &[".md", ".markdown", ".mdown", ".mkd"])
        || declared.starts_with("text/markdown")
        || declared.starts_with("text/x-markdown")
    {
        return Ok(Format::Markdown);
    }
    Ok(Format::Text)
}

/// Extracts the text of a file in the given format.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Parsed, ParseError> {
    let parsed = match format {
        Format::Text | Format::Csv => Parsed {
            text: utf8(bytes)?,
            markdown: false,
        },
        Format::Markdown => Parsed {
            text: utf8(bytes)?,
            markdown: true,
        },
        Format::Json => {
            let value: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| ParseError(format!("The JSON is not valid: {e}.")))?;
            let text =
                serde_json::to_string_pretty(&value).map_err(|e| ParseError(e.to_string()))?;
            Parsed {
                text,
                markdown: false,
            }
        }
        Format::Html => Parsed {
            text: html(bytes)?,
            markdown: true,
        },
        Format::Pdf => Parsed {
            text: pdf(bytes)?,
            markdown: false,
        },
        Format::Docx => Parsed {
            text: docx(bytes)?,
            markdown: true,
        },
    };
    // NUL carries no meaning in text, and PostgreSQL cannot store it (every retry would fail the
    // same way): it goes here, once, for every format.
    let parsed = if parsed.text.contains('\0') {
        Parsed {
            text: parsed.text.replace('\0', ""),
            ..parsed
        }
    } else {
        parsed
    };
    if parsed.text.trim().is_empty() {
        return Err(ParseError(match format {
            Format::Pdf => "The PDF has no text layer (scanned pages would need OCR).".into(),
            _ => "The document contains no text.".into(),
        }));
    }
    Ok(parsed)
}

fn utf8(bytes: &[u8]) -> Result<String, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ParseError(format!(
            "The file is not valid UTF-8 text (byte {}).",
            e.valid_up_to()
        ))
    })?;
    Ok(text.trim_start_matches('\u{feff}').to_string())
}

/// Page chrome that is never the content: navigation, menus, sidebars, site headers and
/// footers, search forms, buttons, dialogs, hidden elements, "skip to content" links, and the
/// help, theme and chapter-arrow widgets of mdBook (which most documentation sites use).
/// (html2text's CSS parser needs the `;` after each declaration.)
const CHROME_CSS: &str = "
nav, aside, form, button, dialog, template, noscript, svg, iframe, select, input, label { display: none; }
body > header, body > footer { display: none; }
[role=navigation], [role=banner], [role=contentinfo], [role=search], [role=menu] { display: none; }
[role=dialog], [aria-hidden=true], [hidden], .hidden { display: none; }
.skip-link, .skip-to-content, .sr-only, .visually-hidden { display: none; }
a[href='#content'], a[href='#main'], a[href='#main-content'] { display: none; }
.sidebar, .menu-bar, .nav-chapters, .nav-wrapper, .mobile-nav-chapters { display: none; }
#mdbook-help-container, #mdbook-menu-bar, #mdbook-sidebar, #mdbook-search-wrapper { display: none; }
.rule-link, .header-anchor, .anchor, .headerlink { display: none; }
";

fn html(bytes: &[u8]) -> Result<String, ParseError> {
    let failed = |e: html2text::Error| ParseError(format!("The HTML could not be read: {e}."));
    // A wide wrap width keeps paragraphs on one line: wrapping would only add line breaks.
    html2text::config::with_decorator(ContentDecorator)
        .add_css(CHROME_CSS)
        .map_err(failed)?
        .string_from_read(bytes, 10_000)
        .map_err(failed)
}

/// Renders HTML as the Markdown the chunker reads: headings as `#`, lists, quotes and inline
/// code kept; links as their text alone (no `[text][1]` references or footnote list, which
/// would look like the `[n]` citations answers use); emphasis and images dropped.
#[derive(Clone, Copy, Debug)]
struct ContentDecorator;

impl html2text::render::TextDecorator for ContentDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, _url: &str) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_link_end(&mut self) -> String {
        String::new()
    }
    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        ("`".into(), ())
    }
    fn decorate_code_end(&self) -> String {
        "`".into()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        (title.to_string(), ())
    }
    fn header_prefix(&self, level: usize) -> String {
        format!("{} ", "#".repeat(level.clamp(1, 6)))
    }
    fn quote_prefix(&self) -> String {
        "> ".into()
    }
    fn unordered_item_prefix(&self) -> String {
        "* ".into()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        *self
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<html2text::render::TaggedLine<()>> {
        Vec::new()
    }
}

fn pdf(bytes: &[u8]) -> Result<String, ParseError> {
    // The PDF parser can panic on malformed files; a bad upload must fail its job, not the worker.
    // What `pdf_extract::extract_text_from_mem` does, with the page tree checked in between.
    let result = std::panic::catch_unwind(|| {
        let mut doc = pdf_extract::Document::load_mem(bytes)?;
        if doc.is_encrypted() {
            doc.decrypt("")?;
        }
        if page_tree_loops(&doc) {
            return Ok(None);
        }
        let mut text = String::new();
        pdf_extract::output_doc(&doc, &mut pdf_extract::PlainTextOutput::new(&mut text))?;
        Ok::<_, pdf_extract::OutputError>(Some(text))
    });
    match result {
        Ok(Ok(Some(text))) => Ok(text),
        Ok(Ok(None)) => Err(ParseError(
            "The PDF is damaged: its page tree loops.".into(),
        )),
        Ok(Err(e)) => Err(ParseError(format!("The PDF could not be read: {e}."))),
        Err(_) => Err(ParseError(
            "The PDF is damaged and could not be read.".into(),
        )),
    }
}

/// Whether following `/Parent` up from some page comes back round or goes deeper than any real
/// page tree. pdf-extract looks inherited page attributes (`MediaBox`, `Resources`) up that
/// chain without a bound, so a page that is its own ancestor would keep a worker busy forever.
fn page_tree_loops(doc: &pdf_extract::Document) -> bool {
    use std::collections::HashSet;
    // pdfium's limit on page tree depth.
    const MAX_DEPTH: usize = 1024;
    let mut reach_root = HashSet::new();
    for &page in doc.get_pages().values() {
        let mut path = Vec::new();
        let mut on_path = HashSet::new();
        let mut id = page;
        while !reach_root.contains(&id) {
            if !on_path.insert(id) || path.len() >= MAX_DEPTH {
                return true;
            }
            path.push(id);
            let parent = doc
                .get_dictionary(id)
                .and_then(|d| d.get(b"Parent"))
                .and_then(|p| p.as_reference());
            match parent {
                Ok(parent) => id = parent,
                Err(_) => break,
            }
        }
        reach_root.extend(path);
    }
    false
}

fn docx(bytes: &[u8]) -> Result<String, ParseError> {
    use quick_xml::events::Event;

    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ParseError(format!("The DOCX file is damaged: {e}.")))?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|_| ParseError("The DOCX file has no document body.".into()))?
        .take(256 * 1024 * 1024)
        .read_to_string(&mut xml)
        .map_err(|e| ParseError(format!("The DOCX body could not be read: {e}.")))?;

    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = String::new();
    let mut paragraph = String::new();
    let mut heading: Option<usize> = None;
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"w:t" => in_text = true,
                b"w:tab" => paragraph.push('\t'),
                b"w:br" => paragraph.push('\n'),
                b"w:pStyle" => {
                    for attr in e.attributes().flatten() {
                        if attr.key.as_ref() == b"w:val" {
                            heading = heading_level(&String::from_utf8_lossy(&attr.value));
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                let decoded = t
                    .decode()
                    .map_err(|e| ParseError(format!("The DOCX body is damaged: {e}.")))?;
                paragraph
                    .push_str(&quick_xml::escape::unescape(&decoded).unwrap_or(decoded.clone()));
            }
            Ok(Event::GeneralRef(r)) if in_text => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                if let Ok(s) = quick_xml::escape::unescape(&format!("&{name};")) {
                    paragraph.push_str(&s);
                }
            }
            Ok(Event::End(e)) => match e.name().as_ref() {
                b"w:t" => in_text = false,
                b"w:p" => {
                    let line = paragraph.trim();
                    if !line.is_empty() {
                        if let Some(level) = heading {
                            out.push_str(&"#".repeat(level));
                            out.push(' ');
                        }
                        out.push_str(line);
                        out.push_str("\n\n");
                    }
                    paragraph.clear();
                    heading = None;
                }
                _ => {}
            },
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(ParseError(format!("The DOCX body is damaged: {e}."))),
        }
    }
    Ok(out)
}

/// `Heading1`…`Heading6` and `Title` styles become Markdown heading levels.
fn heading_level(style: &str) -> Option<usize> {
    if style.eq_ignore_ascii_case("title") {
        return Some(1);
    }
    let n = style
        .strip_prefix("Heading")
        .or_else(|| style.strip_prefix("heading"))?;
    n.trim().parse::<usize>().ok().map(|l| l.clamp(1, 6))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn docx_bytes(body: &str) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buf);
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file("word/document.xml", options).unwrap();
            zip.write_all(body.as_bytes()).unwrap();
            zip.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn formats_are_detected_by_content_before_name() {
        assert_eq!(
            detect("report.txt", None, b"%PDF-1.7\n", false),
            Ok(Format::Pdf)
        );
        assert_eq!(
            detect("page.txt", None, b"  <!DOCTYPE html><html>", true),
            Ok(Format::Html)
        );
        assert_eq!(
            detect("notes.md", None, b"# Notes", true),
            Ok(Format::Markdown)
        );
        assert_eq!(detect("data.csv", None, b"a,b\n1,2", true), Ok(Format::Csv));
        assert_eq!(
            detect("data", Some("application/json"), b"{}", true),
            Ok(Format::Json)
        );
        assert_eq!(
            detect("letter.docx", None, b"PK\x03\x04rest", false),
            Ok(Format::Docx)
        );
        assert_eq!(detect("plain", None, b"hello", true), Ok(Format::Text));
    }

    #[test]
    fn binary_and_other_archives_are_refused() {
        assert!(detect("photo.md", None, b"\x89PNG\r\n\x1a\n\0\0", true).is_err());
        assert!(detect("bundle.zip", None, b"PK\x03\x04", false).is_err());
    }

    #[test]
    fn nul_characters_are_dropped_from_every_format() {
        let p = parse(Format::Text, b"before\0after").unwrap();
        assert_eq!(p.text, "beforeafter");
        assert!(
            parse(Format::Text, b"\0\0").is_err(),
            "nothing but NUL is no text"
        );
    }

    #[test]
    fn markdown_and_text_come_through_unchanged() {
        let p = parse(Format::Markdown, "\u{feff}# Title\n\nBody".as_bytes()).unwrap();
        assert_eq!(p.text, "# Title\n\nBody");
        assert!(p.markdown);
    }

    #[test]
    fn html_keeps_headings_and_drops_markup() {
        let p = parse(
            Format::Html,
            b"<html><body><h1>Guide</h1><p>Use <b>care</b>.</p><script>x()</script></body></html>",
        )
        .unwrap();
        assert!(p.text.contains("# Guide"), "{}", p.text);
        assert!(p.text.contains("care"));
        assert!(!p.text.contains("<b>"));
    }

    #[test]
    fn html_chrome_goes_and_links_keep_only_their_text() {
        let page = br##"<!DOCTYPE html><html><body>
            <a class="skip-link" href="#content">Skip to main content</a>
            <div id="mdbook-help-container"><h2>Keyboard shortcuts</h2><p>Press S to search</p></div>
            <header><nav><a href="/">Home</a> <a href="/docs">Docs</a></nav></header>
            <nav id="mdbook-sidebar" class="sidebar"><ol><li><a href="a.html">Chapter one</a></li></ol></nav>
            <div class="menu-bar"><ul class="theme-popup" role="menu"><li><button>Coal</button></li></ul>
              <h1 class="menu-title">The Book</h1></div>
            <main>
              <h1 id="own"><a class="header" href="#own">What Is Ownership?</a></h1>
              <p>Read <a href="ch04.html">the ownership chapter</a> and <em>then</em> the
                 <a href="ch05.html">next one</a>.</p>
              <pre><code>let x = 5;</code></pre>
            </main>
            <nav class="nav-wrapper"><a rel="next" href="b.html">Next chapter</a></nav>
            <footer>Copyright 2026</footer>
            <div hidden>secret</div>
          </body></html>"##;
        let p = parse(Format::Html, page).unwrap();
        let text = p.text;
        assert!(text.contains("# What Is Ownership?"), "{text}");
        assert!(
            text.contains("Read the ownership chapter and then the next one."),
            "{text}"
        );
        assert!(text.contains("let x = 5;"), "code is kept: {text}");
        for chrome in [
            "Skip to",
            "Keyboard shortcuts",
            "Press S",
            "Home",
            "Chapter one",
            "Coal",
            "The Book",
            "Next chapter",
            "Copyright",
            "secret",
        ] {
            assert!(!text.contains(chrome), "{chrome:?} left in: {text}");
        }
        // No reference-style links or footnote list: `[n]` is how answers cite.
        assert!(!text.contains('['), "{text}");
    }

    #[test]
    fn json_is_pretty_printed_and_invalid_json_fails() {
        let p = parse(Format::Json, br#"{"a":[1,2]}"#).unwrap();
        assert!(p.text.contains("\"a\": ["));
        assert!(parse(Format::Json, b"{\"a\":").is_err());
    }

    #[test]
    fn json_numbers_past_float_precision_are_kept_as_floats() {
        // Found by fuzzing (fuzz/corpus/parse/regression-json-long-number): such a number is
        // read as the nearest float, so the text holds it in exponent form, not its digits.
        let p = parse(Format::Json, "6".repeat(45).as_bytes()).unwrap();
        let v: f64 = p.text.trim().parse().unwrap();
        assert!(
            (v / 6.666_666_666_666_667e44 - 1.0).abs() < 1e-14,
            "{}",
            p.text
        );
    }

    #[test]
    fn docx_paragraphs_and_heading_styles_are_read() {
        let body = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Leave policy</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Staff get 25 days &amp; </w:t></w:r><w:r><w:t>public holidays.</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let p = parse(Format::Docx, &docx_bytes(body)).unwrap();
        assert_eq!(
            p.text,
            "# Leave policy\n\nStaff get 25 days & public holidays.\n\n"
        );
    }

    /// A PDF of the given objects (numbered from 1, the first the catalog) with a correct
    /// cross-reference table.
    fn pdf_bytes(objects: &[&str]) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, obj) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{obj}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn one_page_pdf(page: &str) -> Vec<u8> {
        let content = "BT /F1 18 Tf 72 720 Td (Quarterly revenue grew) Tj ET";
        pdf_bytes(&[
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            page,
            &format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        ])
    }

    #[test]
    fn pdf_text_layers_are_read() {
        let p = parse(
            Format::Pdf,
            &one_page_pdf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"),
        )
        .unwrap();
        assert!(p.text.contains("Quarterly revenue grew"), "{}", p.text);
    }

    #[test]
    fn a_pdf_page_that_is_its_own_parent_fails_instead_of_hanging() {
        // Found by fuzzing (fuzz/corpus/parse/regression-pdf-parent-loop): with no MediaBox on
        // the page, pdf-extract looked for one up the /Parent chain forever.
        let bytes = one_page_pdf(
            "<< /Type /Page /Parent 3 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        );
        let e = parse(Format::Pdf, &bytes).unwrap_err();
        assert!(e.0.contains("page tree loops"), "{e}");
        // A longer loop through the page tree node is refused the same way.
        let bytes = pdf_bytes(&[
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 3 0 R >>",
            "<< /Type /Page /Parent 2 0 R >>",
        ]);
        assert!(parse(Format::Pdf, &bytes).is_err());
    }

    #[test]
    fn damaged_files_fail_with_a_reason() {
        assert!(parse(Format::Docx, b"PK\x03\x04not really a zip").is_err());
        let e = parse(Format::Pdf, b"%PDF-1.4\ngarbage that is not a pdf").unwrap_err();
        assert!(e.0.contains("PDF"), "{e}");
        assert!(parse(Format::Text, b"   \n  ").is_err());
        assert!(parse(Format::Text, &[0x66, 0xff, 0x66]).is_err());
    }
}

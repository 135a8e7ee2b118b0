//! Answers as Markdown: lists, code, tables and emphasis rendered to HTML that is safe to put
//! on the page. Raw HTML in an answer is shown as text, links go only to web addresses, images
//! are shown as their alt text (an answer must not make the browser fetch anything), and every
//! `[n]` that names a source becomes a link to its passage. It runs on the server (answers carry
//! their HTML to the page), so the browser bundle holds no parser: its entity tables alone would
//! add 70 KB to the main bundle, since lazy loading splits code but not data.

use crate::api::{AttributedSentence, Citation};
use crate::format::passage_href;
use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd, TextMergeStream};

/// Starts a sentence no source supports (a private-use character no answer carries).
const OPEN_MARK: char = '\u{E000}';
/// Ends it.
const CLOSE_MARK: char = '\u{E001}';

/// A citation marker's target: its link and the text shown on hover.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CiteLink {
    href: String,
    title: String,
}

/// Renders an answer's text (as stored, or unchecked) for the chat page of space `space_id`.
pub fn answer_html(answer: &str, sources: &[Citation], space_id: &str) -> String {
    to_html(&strip_marks(answer), cite_links(sources, space_id))
}

/// Renders a finished answer as the server checked it: verified citations, and the sentences
/// no source supports marked.
pub fn checked_html(
    sentences: &[AttributedSentence],
    sources: &[Citation],
    space_id: &str,
) -> String {
    to_html(&from_sentences(sentences), cite_links(sources, space_id))
}

/// Where each `[n]` leads: the passage of source `n` on its document's page, named on hover.
fn cite_links(sources: &[Citation], space_id: &str) -> impl Fn(usize) -> Option<CiteLink> {
    let targets: Vec<(usize, CiteLink)> = sources
        .iter()
        .map(|s| {
            let title = if s.heading_path.is_empty() {
                s.filename.clone()
            } else {
                format!("{} — {}", s.filename, s.heading_path)
            };
            let href = passage_href(space_id, s);
            (s.n, CiteLink { href, title })
        })
        .collect();
    move |n| {
        targets
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, t)| t.clone())
    }
}

/// Renders Markdown whose marks (if any) were put there by [`from_sentences`].
fn to_html(markdown: &str, cite: impl Fn(usize) -> Option<CiteLink>) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut out: Vec<Event<'_>> = Vec::new();
    let mut state = State::default();
    // Raw HTML is text: an answer (or a document it quotes) must not inject markup.
    let parsed = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Event::Text(text),
        other => other,
    });
    for event in TextMergeStream::new(parsed) {
        match event {
            Event::Text(text) if state.in_code_block => {
                out.push(Event::Text(strip_marks(&text).into()));
            }
            Event::Text(text) => {
                state.text(&text, &cite, &mut out);
            }
            Event::Code(code) => {
                let code = CowStr::from(strip_marks(&code));
                state.wrap(&mut out, Event::Code(code));
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                state.in_code_block = true;
                out.push(Event::Start(Tag::CodeBlock(kind)));
            }
            Event::End(TagEnd::CodeBlock) => {
                state.in_code_block = false;
                out.push(Event::End(TagEnd::CodeBlock));
            }
            Event::Start(Tag::Link {
                dest_url, title, ..
            }) => {
                let safe = safe_url(&dest_url);
                if safe {
                    let title = if title.is_empty() {
                        String::new()
                    } else {
                        format!(" title=\"{}\"", escape(&title))
                    };
                    out.push(Event::Html(
                        format!(
                            "<a href=\"{}\"{title} rel=\"nofollow noopener noreferrer\">",
                            escape(&dest_url)
                        )
                        .into(),
                    ));
                }
                state.links.push(safe);
            }
            Event::End(TagEnd::Link) => {
                if state.links.pop() == Some(true) {
                    out.push(Event::Html("</a>".into()));
                }
            }
            // An image is its alt text (the Text events between these two).
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            other => out.push(other),
        }
    }
    let mut html_out = String::new();
    html::push_html(&mut html_out, out.into_iter());
    html_out
}

/// The Markdown of a checked answer: each sentence followed by its verified citations, and
/// the sentences no source supports marked for [`to_html`] to show as such.
fn from_sentences(sentences: &[AttributedSentence]) -> String {
    let mut out = String::new();
    let mut line_start = true;
    for s in sentences {
        let text = strip_marks(&s.text);
        let verbatim = text.trim_start().starts_with('|')
            || text.trim_start().starts_with("```")
            || text.trim_start().starts_with("~~~");
        if s.supported || verbatim || text.trim().is_empty() {
            out.push_str(&text);
        } else {
            // The mark goes after the line's block syntax (`- `, `1. `, `> `, `## `), which it
            // would otherwise break.
            let prefix = if line_start { block_prefix(&text) } else { 0 };
            let (syntax, words) = text.split_at(prefix);
            out.push_str(syntax);
            out.push(OPEN_MARK);
            out.push_str(words);
            out.push(CLOSE_MARK);
        }
        for n in &s.sources {
            out.push_str(&format!(" [{n}]"));
        }
        let separator = strip_marks(&s.separator);
        line_start = separator.contains('\n');
        out.push_str(&separator);
    }
    out
}

/// Where the rendering is: inside a code block, links, or a sentence marked unsupported.
#[derive(Default)]
struct State {
    in_code_block: bool,
    /// For each open link, whether it was kept (a safe address) and so needs closing.
    links: Vec<bool>,
    marking: bool,
}

impl State {
    /// Adds text, turning citation markers into links and wrapping marked stretches.
    fn text<'a>(
        &mut self,
        text: &str,
        cite: &impl Fn(usize) -> Option<CiteLink>,
        out: &mut Vec<Event<'a>>,
    ) {
        let mut plain = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match c {
                OPEN_MARK | CLOSE_MARK => {
                    self.flush(&mut plain, out);
                    self.marking = c == OPEN_MARK;
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
                '[' if self.links.is_empty() => {
                    if let Some((n, len)) = marker(rest) {
                        if let Some(link) = cite(n) {
                            self.flush(&mut plain, out);
                            out.push(Event::Html(
                                format!(
                                    "<a class=\"cite\" href=\"{}\" title=\"{}\">[{n}]</a>",
                                    escape(&link.href),
                                    escape(&link.title)
                                )
                                .into(),
                            ));
                            rest = &rest[len..];
                            continue;
                        }
                    }
                }
                _ => {}
            }
            plain.push(c);
            rest = &rest[c.len_utf8()..];
        }
        self.flush(&mut plain, out);
    }

    /// Emits the text gathered so far, marked when inside an unsupported sentence.
    fn flush<'a>(&self, plain: &mut String, out: &mut Vec<Event<'a>>) {
        if !plain.is_empty() {
            let text = Event::Text(std::mem::take(plain).into());
            self.wrap(out, text);
        }
    }

    /// Emits `event`, inside the unsupported mark when one is open.
    fn wrap<'a>(&self, out: &mut Vec<Event<'a>>, event: Event<'a>) {
        if self.marking {
            out.push(Event::Html(
                "<span class=\"unsupported\" title=\"No source supports this sentence\">".into(),
            ));
            out.push(event);
            out.push(Event::Html("</span>".into()));
        } else {
            out.push(event);
        }
    }
}

/// A citation marker `[n]` at the start of `text`: its number and length in bytes.
fn marker(text: &str) -> Option<(usize, usize)> {
    let digits = text[1..].bytes().take_while(u8::is_ascii_digit).count();
    let closes = digits > 0 && text.as_bytes().get(1 + digits) == Some(&b']');
    if !closes {
        return None;
    }
    let n = text[1..1 + digits].parse().ok()?;
    Some((n, digits + 2))
}

/// The length of the block syntax a line starts with: indentation, quote markers, a list
/// marker (and a task box), or a heading's hashes.
fn block_prefix(line: &str) -> usize {
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        let spaced = |at: usize| bytes.get(at).is_some_and(|b| *b == b' ');
        match bytes.get(i) {
            Some(b'>') => i += if spaced(i + 1) { 2 } else { 1 },
            Some(b'-' | b'*' | b'+') if spaced(i + 1) => {
                i += 2;
                for task in ["[ ] ", "[x] ", "[X] "] {
                    if line[i..].starts_with(task) {
                        i += task.len();
                    }
                }
            }
            Some(b'#') => {
                let hashes = bytes[i..].iter().take_while(|b| **b == b'#').count();
                if hashes <= 6 && spaced(i + hashes) {
                    i += hashes + 1;
                }
            }
            Some(b'0'..=b'9') => {
                let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits <= 9
                    && matches!(bytes.get(i + digits), Some(b'.' | b')'))
                    && spaced(i + digits + 1)
                {
                    i += digits + 2;
                }
            }
            _ => {}
        }
        if i == start {
            return i;
        }
    }
}

/// Whether a link may be followed: web and mail addresses and links within Kenning, never
/// `javascript:` or `data:`.
fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    match lower.find(':') {
        // A colon after the first `/`, `?` or `#` is not a scheme (`/a:b`, `?t=1:2`).
        Some(colon) if !lower[..colon].contains(['/', '?', '#']) => {
            matches!(&lower[..colon], "http" | "https" | "mailto")
        }
        _ => !lower.starts_with("//"),
    }
}

/// Removes the private-use characters that mark unsupported sentences from generated text.
fn strip_marks(text: &str) -> String {
    text.chars()
        .filter(|c| *c != OPEN_MARK && *c != CLOSE_MARK)
        .collect()
}

/// Escapes text for an HTML attribute value or body.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cite(n: usize) -> Option<CiteLink> {
        (n <= 2).then(|| CiteLink {
            href: format!("/spaces/s/documents/d?chunk={n}&x=\"y\""),
            title: format!("doc {n} <b>"),
        })
    }

    fn sentence(
        text: &str,
        separator: &str,
        sources: &[usize],
        supported: bool,
    ) -> AttributedSentence {
        AttributedSentence {
            text: text.into(),
            separator: separator.into(),
            sources: sources.to_vec(),
            claimed: vec![],
            supported,
        }
    }

    #[test]
    fn lists_code_and_tables_render() {
        let html = to_html(
            "Steps:\n\n1. Build it.\n2. Run it.\n\n- one\n- two\n\n```rust\nfn main() {}\n```\n\n| a | b |\n| - | - |\n| 1 | 2 |\n\nUse `cargo run` **now**.",
            cite,
        );
        assert!(
            html.contains("<ol>") && html.contains("<li>Build it.</li>"),
            "{html}"
        );
        assert!(
            html.contains("<ul>") && html.contains("<li>one</li>"),
            "{html}"
        );
        assert!(
            html.contains("<pre><code class=\"language-rust\">fn main() {}"),
            "{html}"
        );
        assert!(
            html.contains("<table>") && html.contains("<td>2</td>"),
            "{html}"
        );
        assert!(
            html.contains("<code>cargo run</code> <strong>now</strong>"),
            "{html}"
        );
    }

    #[test]
    fn raw_html_is_shown_as_text_never_as_markup() {
        for attack in [
            "<script>alert(1)</script>",
            "Hi <img src=x onerror=alert(1)> there",
            "<div onclick=\"x()\">block</div>\n\ntext",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<!-- comment --> <iframe src=//evil>",
        ] {
            let html = to_html(attack, cite);
            for tag in [
                "<script",
                "<img",
                "<div",
                "<iframe",
                "<a href=\"javascript",
                "<!--",
            ] {
                assert!(!html.contains(tag), "{attack} rendered as {html}");
            }
            assert!(html.contains("&lt;"), "{attack} lost its text: {html}");
        }
    }

    #[test]
    fn links_go_only_to_web_addresses_and_images_are_their_alt_text() {
        let html = to_html(
            "[ok](https://example.com/a?b=1&c=2) [rel](/spaces) [bad](javascript:alert(1)) \
             [data](data:text/html,x) [vb](  JavaScript:x) ![tracker](https://evil.example/p.png)",
            cite,
        );
        assert!(html.contains("<a href=\"https://example.com/a?b=1&amp;c=2\" rel=\"nofollow noopener noreferrer\">ok</a>"), "{html}");
        assert!(html.contains("<a href=\"/spaces\""), "{html}");
        assert!(!html.to_lowercase().contains("href=\"javascript"), "{html}");
        assert!(!html.contains("data:"), "{html}");
        assert!(
            html.contains("bad") && html.contains("data"),
            "link text is kept: {html}"
        );
        assert!(!html.contains("<img") && html.contains("tracker"), "{html}");
        assert!(!html.contains("evil.example"), "{html}");
    }

    #[test]
    fn citation_markers_link_to_their_passages() {
        let html = to_html("Twenty-five days [1][2], not [3], see [x] and [1 ].", cite);
        assert!(html.contains("<a class=\"cite\" href=\"/spaces/s/documents/d?chunk=1&amp;x=&quot;y&quot;\" title=\"doc 1 &lt;b&gt;\">[1]</a><a class=\"cite\""), "{html}");
        assert!(
            html.contains("[3]") && !html.contains(">[3]</a>"),
            "an unknown source stays text: {html}"
        );
        assert!(html.contains("[x]") && html.contains("[1 ]"), "{html}");
        // In code a marker is code, not a link.
        let code = to_html("`a[1]`\n\n```\nb[2]\n```", cite);
        assert!(!code.contains("class=\"cite\""), "{code}");
    }

    #[test]
    fn unsupported_sentences_are_marked_without_breaking_their_block() {
        let md = from_sentences(&[
            sentence("Leave:", "\n", &[], true),
            sentence("- Everyone gets 25 days.", " ", &[1], true),
            sentence("Managers get 40.", "\n", &[], false),
            sentence("- Pets get **100** days.", "\n", &[], false),
            sentence("## Made up heading here", "\n", &[], false),
        ]);
        let html = to_html(&md, cite);
        assert!(
            html.contains("<li>Everyone gets 25 days. <a class=\"cite\""),
            "{html}"
        );
        assert!(html.contains("<span class=\"unsupported\" title=\"No source supports this sentence\">Managers get 40.</span>"), "{html}");
        assert!(html.contains("<li><span class=\"unsupported\" title=\"No source supports this sentence\">Pets get </span><strong><span class=\"unsupported\""), "{html}");
        assert!(html.contains("<h2><span class=\"unsupported\""), "{html}");
        assert_eq!(
            html.matches("<span").count(),
            html.matches("</span>").count()
        );
    }

    #[test]
    fn an_answer_cannot_forge_the_unsupported_mark() {
        let forged = "a \u{E000}forged\u{E001} b";
        let html = answer_html(forged, &[], "s");
        assert_eq!(html, "<p>a forged b</p>\n");
        let checked = checked_html(&[sentence(forged, "", &[], true)], &[], "s");
        assert_eq!(checked, html);
    }

    #[test]
    fn block_prefixes() {
        assert_eq!(block_prefix("- a"), 2);
        assert_eq!(block_prefix("  12. a"), 6);
        assert_eq!(block_prefix("> - [x] a"), 8);
        assert_eq!(block_prefix("### a"), 4);
        assert_eq!(block_prefix("#hashtag"), 0);
        assert_eq!(block_prefix("-5 degrees"), 0);
        assert_eq!(block_prefix("2024. was"), 6);
    }
}

//! The words of a text that carry meaning: what keyword search matches and what the answer
//! checks compare, the same in every store and generator.

/// English words too common to say anything about a passage ("how do I ..."). PostgreSQL's
/// `english` configuration drops these itself; SQLite's FTS5 does not, and matching them makes
/// the keyword side rank passages for words like "do" and "the".
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "before", "but", "by", "can", "could", "did", "do", "does", "for", "from", "get",
    "got", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my",
    "no", "not", "of", "on", "or", "our", "out", "so", "some", "than", "that", "the", "their",
    "them", "then", "there", "these", "they", "this", "to", "up", "us", "was", "we", "were",
    "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your",
];

/// Keeps the meaningful words of a query (letters and digits, no stop words): what a full-text
/// index should match, never syntax.
pub fn search_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for t in content_words(query) {
        if !terms.contains(&t) {
            terms.push(t);
        }
        if terms.len() == 32 {
            break;
        }
    }
    terms
}

/// The words of a text that carry meaning: lowercased, without stop words and punctuation, in
/// order, repeats kept.
pub fn content_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .filter(|t| !STOP_WORDS.contains(&t.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_keep_meaningful_words_once_and_no_syntax() {
        assert_eq!(
            search_terms("How do I get a \"laptop\"? laptop* OR NEAR(x)"),
            vec!["laptop", "near", "x"]
        );
        assert!(search_terms("what is it").is_empty());
    }
}

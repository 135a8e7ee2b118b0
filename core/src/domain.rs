//! Input types parsed once at the edge, so the rest of the code can trust them.

use uuid::Uuid;

/// Why an input was refused; becomes a 4xx with `code` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidInput {
    pub code: &'static str,
    pub message: String,
}

impl InvalidInput {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A space name: trimmed, 1–100 characters, no control characters. Unique case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceName(String);

impl SpaceName {
    /// Longest accepted name, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Parses a user-supplied name.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidInput::new(
                "invalid_name",
                "The space name must not be empty.",
            ));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::new(
                "invalid_name",
                format!(
                    "The space name must be at most {} characters.",
                    Self::MAX_CHARS
                ),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput::new(
                "invalid_name",
                "The space name must not contain control characters.",
            ));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text description, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Longest accepted description, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Parses a user-supplied description; empty is fine.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let d = raw.trim();
        if d.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput::new(
                "invalid_description",
                format!(
                    "The description must be at most {} characters.",
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(d.to_string()))
    }

    /// The description as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Limit and offset of a list request; the limit is capped so no request returns unbounded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
}

impl PageRequest {
    /// Page size when the client does not ask for one.
    pub const DEFAULT_LIMIT: i64 = 50;
    /// Largest page a client may ask for.
    pub const MAX_LIMIT: i64 = 200;

    /// Parses optional query values.
    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<Self, InvalidInput> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(InvalidInput::new(
                "invalid_limit",
                format!("limit must be between 1 and {}.", Self::MAX_LIMIT),
            ));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(InvalidInput::new(
                "invalid_offset",
                "offset must not be negative.",
            ));
        }
        Ok(Self { limit, offset })
    }
}

/// Parses an id from a URL; anything that is not a UUID cannot name an existing resource.
pub fn parse_id(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw.trim()).ok()
}

/// A space's id, parsed once where a request names the space (a URL, a tool's argument), so
/// the services past that edge never take or parse a string for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceId(Uuid);

impl SpaceId {
    /// `None` for anything that is not a UUID: it cannot name an existing space.
    pub fn parse(raw: &str) -> Option<Self> {
        parse_id(raw).map(Self)
    }

    /// The id as the stores key spaces.
    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for SpaceId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl std::fmt::Display for SpaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A file name safe to store and show: the last path component, no control characters,
/// at most 255 bytes; falls back to "document" when nothing usable is left.
pub fn clean_filename(raw: Option<&str>) -> String {
    let last = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        return "document".to_string();
    }
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    out
}

/// The longest source key (a path or URL) a document may carry.
pub const MAX_SOURCE_KEY_BYTES: usize = 2048;

/// A document's source key as given by a client: no control characters, not blank, bounded.
pub fn source_key(raw: &str) -> Result<String, InvalidInput> {
    let key: String = raw.chars().filter(|c| !c.is_control()).collect();
    let key = key.trim();
    if key.is_empty() {
        return Err(InvalidInput {
            code: "invalid_key",
            message:
                "The document key is empty; leave it out to key the document by its file name."
                    .into(),
        });
    }
    if key.len() > MAX_SOURCE_KEY_BYTES {
        return Err(InvalidInput {
            code: "invalid_key",
            message: format!("The document key is longer than {MAX_SOURCE_KEY_BYTES} bytes."),
        });
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_blank_name_is_rejected() {
        assert!(SpaceName::parse("").is_err());
        assert!(SpaceName::parse("   ").is_err());
    }

    #[test]
    fn a_name_longer_than_100_characters_is_rejected() {
        assert!(SpaceName::parse(&"é".repeat(100)).is_ok());
        assert!(SpaceName::parse(&"é".repeat(101)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_control_characters_rejected() {
        assert_eq!(
            SpaceName::parse("  Docs ").map(|n| n.as_str().to_string()),
            Ok("Docs".into())
        );
        assert!(SpaceName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn a_description_longer_than_500_characters_is_rejected() {
        assert!(Description::parse(&"x".repeat(500)).is_ok());
        assert!(Description::parse(&"x".repeat(501)).is_err());
    }

    #[test]
    fn page_limits_are_bounded() {
        assert_eq!(
            PageRequest::parse(None, None),
            Ok(PageRequest {
                limit: 50,
                offset: 0
            })
        );
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(201), None).is_err());
        assert!(PageRequest::parse(Some(10), Some(-1)).is_err());
    }

    #[test]
    fn file_names_lose_their_directories_and_control_characters() {
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("C:\\docs\\notes.md")), "notes.md");
        assert_eq!(clean_filename(Some("a\nb.txt")), "ab.txt");
        assert_eq!(clean_filename(Some("..")), "document");
        assert_eq!(clean_filename(None), "document");
        assert!(clean_filename(Some(&"ü".repeat(300))).len() <= 255);
    }

    #[test]
    fn ids_that_are_not_uuids_are_refused() {
        assert!(parse_id("not-a-uuid").is_none());
        assert!(parse_id("0190f5a2-7c1e-7000-8000-000000000000").is_some());
    }
}

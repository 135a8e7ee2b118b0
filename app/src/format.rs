//! How the UI writes what the API returns: page sizes, links to passages, byte counts.

use crate::api::Citation;

/// Page size for lists in the UI.
pub const PAGE_SIZE: i64 = 25;
/// Where a citation leads in the UI: the passage on its document's page, highlighted and
/// scrolled to.
pub fn passage_href(space_id: &str, c: &Citation) -> String {
    let page = PAGE_SIZE;
    let offset = (c.position / page) * page;
    format!(
        "/spaces/{space_id}/documents/{}?offset={offset}&chunk={}#chunk-{}",
        c.document_id, c.chunk_id, c.chunk_id
    )
}

/// Formats a byte count the way people read file sizes.
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_are_shown_in_the_largest_fitting_unit() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KB");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64.0 MB");
    }
}

//! Pages of results and the error body every endpoint answers with.

use serde::{Deserialize, Serialize};

/// One page of a longer list, with what a client needs to fetch the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> Page<T> {
    /// Offset of the next page, if there is one.
    pub fn next_offset(&self) -> Option<i64> {
        let next = self.offset + self.limit;
        (next < self.total).then_some(next)
    }

    /// Offset of the previous page, if this is not the first.
    pub fn prev_offset(&self) -> Option<i64> {
        (self.offset > 0).then(|| (self.offset - self.limit).max(0))
    }
}

/// The body of every error response: `{ "error": { "code", "message" } }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable code plus a message safe to show to the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorDetail {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_know_their_neighbours() {
        let page = Page::<()> {
            items: vec![],
            total: 120,
            limit: 50,
            offset: 50,
        };
        assert_eq!(page.next_offset(), Some(100));
        assert_eq!(page.prev_offset(), Some(0));
        let last = Page::<()> {
            items: vec![],
            total: 120,
            limit: 50,
            offset: 100,
        };
        assert_eq!(last.next_offset(), None);
    }
}

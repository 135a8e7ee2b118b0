//! Wire types shared by the server, the REST API and the browser, so both sides agree on one shape.
//! One module per resource; everything is re-exported at the crate root, where callers name it.

mod accounts;
mod chat;
mod common;
mod content;
mod ops;
mod search;

pub use accounts::*;
pub use chat::*;
pub use common::*;
pub use content::*;
pub use ops::*;
pub use search::*;

//! Models on this machine or behind an API: passage embedding and answer generation, with the checks that keep answers honest.

pub mod embed;
pub mod generate;

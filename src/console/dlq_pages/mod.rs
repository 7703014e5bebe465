//! Dead letters: an overview of every stage's letters by error class (newest first), a stage's
//! letters with what became of each (outstanding, or redriven and then processed, waiting or
//! dead-lettered again — [`crate::ops::dlq::fate`]), and redrives of one letter or a selection
//! through [`crate::ops::redrive`] — the code and loop guard of `sluice dlq redrive` — always
//! previewing the dry run first, and asking for a confirmation before letters that failed on
//! their content go back.
//!
//! - [`selection`]: the stage, class, document and letter a page or a redrive is about.
//! - [`overview`]: counts per stage and class; which stage the page opens on.
//! - [`letters`]: the page itself (`GET /dead-letters`); [`card`] one letter.
//! - [`redrive`]: `POST /dead-letters/preview` and `/dead-letters/redrive`.

mod card;
mod letters;
mod overview;
mod redrive;
mod selection;

pub use letters::list;
pub use redrive::{execute, preview};

//! The review queue: a review stage's needs-human records as one console replica holds them
//! ([`replica`], started where [`assign`] says, filled and committed by its background
//! [`loops`], held in [`queue`]), decided in log order by the [`ledger`] read from the
//! review-claims topic ([`claims`]) so every replica agrees — one decision per document — and
//! acted on by reviewers ([`actions`]) through the queue's pages ([`pages`], [`item_page`]) and
//! form posts ([`forms`]). [`topics`] names what a stage's queue reads and writes.

pub mod actions;
mod assign;
mod claims;
pub(super) mod forms;
pub(super) mod item_page;
pub mod ledger;
mod loops;
pub(super) mod pages;
pub mod queue;
pub mod replica;
mod topics;

pub use assign::QueueError;
pub use loops::start as run;
pub use replica::{QueueOptions, ReviewQueue};
pub use topics::QueueTopics;

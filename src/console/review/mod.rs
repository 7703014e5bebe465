//! The review queue: a review stage's needs-human records as one console replica holds them
//! ([`replica`], filled and committed by its background [`loops`], held in [`queue`]), decided in
//! log order by the [`ledger`] read from the review-claims topic so every replica agrees — one
//! decision per document — and acted on by reviewers ([`actions`]) through the queue's pages
//! ([`pages`], [`item_page`]) and form posts ([`forms`]).

pub mod actions;
pub(super) mod forms;
pub(super) mod item_page;
pub mod ledger;
mod loops;
pub(super) mod pages;
pub mod queue;
pub mod replica;

pub use loops::start as run;
pub use replica::{QueueError, QueueOptions, QueueTopics, ReviewQueue};

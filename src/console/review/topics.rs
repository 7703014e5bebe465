//! The topics and group of one review stage's queue, as its stage spec names them.

use crate::config::StageSpec;

/// The topics and group of one review stage's queue.
#[derive(Debug, Clone)]
pub struct QueueTopics {
    pub stage: String,
    pub needs_human: String,
    pub approved: String,
    pub rejected: String,
    pub claims: String,
    pub group: String,
}

impl QueueTopics {
    pub fn of(spec: &StageSpec) -> Option<Self> {
        let (needs_human, approved, rejected) = spec.review_queue()?;
        Some(Self {
            stage: spec.name.clone(),
            needs_human: needs_human.to_owned(),
            approved: approved.to_owned(),
            rejected: rejected.to_owned(),
            claims: spec.review_claims_topic()?,
            group: spec.review_queue_group()?,
        })
    }
}

//! Why a replay was not planned or not executed, each reason saying what to do.

use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::presence::{Holder, PresenceError};
use crate::ops::groups::{GroupError, GroupInfo};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error(transparent)]
    Probe(#[from] crate::kafka::ProbeError),
    #[error("the plan file names topic '{found}', but group '{group}' is replayed on '{topic}'")]
    OtherTopic { found: String, group: String, topic: String },
    #[error(
        "group '{group}' has {n} active member(s); offsets can only be moved while it has none, \
         or a running member overwrites them at its next commit:\n{members}\n{how}",
        n = info.members.len(),
        members = info.describe_members(),
        group = info.group
    )]
    ActiveMembers { info: GroupInfo, how: String },
    #[error(
        "the broker refused to commit for group '{group}' ({code}): the group has active \
         members (one joined after the check).\n{how}"
    )]
    Refused { group: String, code: RDKafkaErrorCode, how: String },
    #[error(
        "group '{group}' is held by {n} client(s) that read and commit without joining it \
         (announced as members of '{group}.present'); each would commit its own position again \
         and undo the replay:\n{holders}\nStop them (a console replica, a `sluice dlq redrive` \
         run), then run this again.",
        n = holders.len(),
        holders = holders.iter().map(|h| format!("  {h} (client id {})", h.client_id)).collect::<Vec<_>>().join("\n")
    )]
    Present { group: String, holders: Vec<Holder> },
    #[error("could not ask who holds group '{group}' (its assign-only clients): {error}")]
    PresenceUnknown { group: String, error: PresenceError },
    #[error(
        "group '{group}' committed since the plan was made, so the plan is stale and nothing was \
         committed:\n{}\nSomething still consumes as '{group}' (a stage draining after SIGTERM, \
         another replay); wait until it stopped, then plan again.",
        moved.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n")
    )]
    Moved { group: String, moved: Vec<Moved> },
    #[error("after the commit, group '{group}' resumes at {found:?} instead of {wanted:?}")]
    NotApplied { group: String, wanted: Vec<(i32, i64)>, found: Vec<(i32, i64)> },
}

/// A partition whose committed offset or metadata changed between planning and executing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    pub topic: String,
    pub partition: i32,
    /// The committed offset when planned, and now (`None`: none).
    pub planned: Option<i64>,
    pub now: Option<i64>,
    /// Whether only the commit's metadata changed (the offset is the same).
    pub metadata_only: bool,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |o: Option<i64>| o.map_or("none".to_owned(), |o| o.to_string());
        write!(
            f,
            "{}:{} committed {} when planned, {} now",
            self.topic,
            self.partition,
            show(self.planned),
            show(self.now)
        )?;
        if self.metadata_only {
            write!(f, " (same offset, new commit metadata)")?;
        }
        Ok(())
    }
}

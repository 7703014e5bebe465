//! `sluice replay`: moves a consumer group's committed offsets, in the vocabulary of
//! `kafka-consumer-groups --reset-offsets`.
//!
//! - [`plan`]: per partition the current and new offset and how many records that re-processes
//!   (or skips), with the commit it was made from.
//! - [`execute`]: commits the plan — only while the group has no members (a running member
//!   would overwrite the new offsets at its next commit), only if nothing moved since planning,
//!   and only the partitions that change.
//! - [`cost`]: what re-processing the window will cost, as an interval, from a sample spread
//!   over it ([`cost_sample`]) and each sampled record's own cost events ([`cost_evidence`]).
//! - [`plan_csv`]: a plan as `topic,partition,offset` lines, exported and read back.
//! - [`error`]: why a replay was refused.

pub mod cost;
pub mod cost_evidence;
pub mod cost_sample;
pub mod error;
pub mod execute;
pub mod plan;
pub mod plan_csv;

pub use error::{Moved, ReplayError};
pub use execute::{execute, moved_since, CommittedPartition, Executed};
pub use plan::{
    by_duration_start, new_offset, plan, plan_async, PartitionPlan, Plan, ResetTo, Target,
};

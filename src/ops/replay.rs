//! `sluice replay`: moves a consumer group's committed offsets, in the vocabulary of
//! `kafka-consumer-groups --reset-offsets`. [`plan`] works out, per partition, the current and
//! new offset and how many records that re-processes (or skips); [`execute`] commits the plan,
//! and only while the group has no members — a running member would overwrite the new offsets
//! with its own at its next commit. What re-processing costs is [`super::replay_cost`]'s.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use super::groups::{self, GroupError, GroupInfo, Position};
use super::plan_csv::PlanLine;
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::kafka::require_admin_api;

/// How the new offsets are chosen (one of `kafka-consumer-groups`' reset scenarios).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// The first record at or after this time (ms since the epoch); the end when none is.
    Datetime(i64),
    /// The first record at or after now minus this.
    Duration(Duration),
    /// This offset, clamped to the log.
    Offset(i64),
    /// The current offset plus this (negative: back), clamped to the log.
    ShiftBy(i64),
    Earliest,
    Latest,
    /// The offsets of a plan file; partitions it does not list are left alone.
    File(Vec<PlanLine>),
}

impl ResetTo {
    /// The scenario as `kafka-consumer-groups` names it.
    pub fn describe(&self) -> String {
        match self {
            Self::Datetime(ms) => format!("--to-datetime {}", super::iso8601::rfc3339(*ms)),
            Self::Duration(d) => format!("--by-duration {}", humantime::format_duration(*d)),
            Self::Offset(o) => format!("--to-offset {o}"),
            Self::ShiftBy(n) => format!("--shift-by {n}"),
            Self::Earliest => "--to-earliest".into(),
            Self::Latest => "--to-latest".into(),
            Self::File(lines) => format!("--from-file ({} partitions)", lines.len()),
        }
    }
}

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
         members (one joined after the check, or the group is a KIP-848 one, whose members \
         DescribeGroups does not show).\n{how}"
    )]
    Refused { group: String, code: RDKafkaErrorCode, how: String },
    #[error("after the commit, group '{group}' resumes at {found:?} instead of {wanted:?}")]
    NotApplied { group: String, wanted: Vec<(i32, i64)>, found: Vec<(i32, i64)> },
}

/// One partition's line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    /// Log start and high watermark.
    pub low: i64,
    pub high: i64,
    /// The group's committed offset (`None`: none yet; it would start at the log start).
    pub committed: Option<i64>,
    /// Where the group resumes now, and where it will resume.
    pub current: i64,
    pub new: i64,
}

impl PartitionPlan {
    /// Records processed again (positive) or skipped (negative).
    pub fn records(&self) -> i64 {
        self.current - self.new
    }
}

/// The new offsets for one group on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group: String,
    pub topic: String,
    pub reset: String,
    pub partitions: Vec<PartitionPlan>,
}

impl Plan {
    /// Records the group will process again.
    pub fn reprocessed(&self) -> i64 {
        self.partitions.iter().map(|p| p.records().max(0)).sum()
    }

    /// Records the group will skip and never process.
    pub fn skipped(&self) -> i64 {
        self.partitions.iter().map(|p| (-p.records()).max(0)).sum()
    }

    /// The plan as `topic,partition,offset` lines (for `--export`).
    pub fn lines(&self) -> Vec<PlanLine> {
        let line = |p: &PartitionPlan| PlanLine {
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.new,
        };
        self.partitions.iter().map(line).collect()
    }
}

/// Where one partition's new offset comes from, once times are resolved to offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Offset(i64),
    Shift(i64),
    Earliest,
    Latest,
    /// The offset of the first record at or after a time; `None` when every record is older.
    AtTime(Option<i64>),
}

/// The new offset of a partition, always within its log `[low, high]`.
pub fn new_offset(p: &Position, target: Target) -> i64 {
    let clamp = |o: i64| o.clamp(p.low, p.high);
    match target {
        Target::Offset(o) => clamp(o),
        Target::Shift(n) => clamp(p.current().saturating_add(n)),
        Target::Earliest => p.low,
        Target::Latest => p.high,
        Target::AtTime(Some(o)) => clamp(o),
        Target::AtTime(None) => p.high,
    }
}

/// The time `--by-duration` goes back to from `now_ms`.
pub fn by_duration_start(now_ms: i64, d: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Works out the plan (blocking: call from a blocking thread). `only`: the partitions given by
/// `--partitions`; every partition of the topic (or of the plan file) otherwise.
pub fn plan(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    reset: &ResetTo,
    only: Option<&[i32]>,
) -> Result<Plan, ReplayError> {
    let file_partitions: Option<Vec<i32>> = match reset {
        ResetTo::File(lines) => {
            if let Some(l) = lines.iter().find(|l| l.topic != topic) {
                let (found, group, topic) = (l.topic.clone(), group.to_owned(), topic.to_owned());
                return Err(ReplayError::OtherTopic { found, group, topic });
            }
            let listed = lines.iter().map(|l| l.partition);
            Some(listed.filter(|p| only.is_none_or(|o| o.contains(p))).collect())
        }
        _ => None,
    };
    let positions = groups::positions(settings, group, topic, file_partitions.as_deref().or(only))?;
    let ids: Vec<i32> = positions.iter().map(|p| p.partition).collect();
    let at_time = match reset {
        ResetTo::Datetime(ms) => Some(*ms),
        ResetTo::Duration(d) => Some(by_duration_start(now_ms(), *d)),
        _ => None,
    };
    let by_time = match at_time {
        Some(ms) => groups::offsets_at(settings, topic, &ids, ms)?,
        None => Vec::new(),
    };
    let partitions = positions
        .iter()
        .map(|p| {
            let target = match reset {
                ResetTo::Datetime(_) | ResetTo::Duration(_) => {
                    let found = by_time.iter().find(|(id, _)| *id == p.partition);
                    Target::AtTime(found.and_then(|(_, o)| *o))
                }
                ResetTo::Offset(o) => Target::Offset(*o),
                ResetTo::ShiftBy(n) => Target::Shift(*n),
                ResetTo::Earliest => Target::Earliest,
                ResetTo::Latest => Target::Latest,
                ResetTo::File(lines) => {
                    let line = lines.iter().find(|l| l.partition == p.partition);
                    Target::Offset(line.expect("only listed partitions are planned").offset)
                }
            };
            PartitionPlan {
                topic: topic.to_owned(),
                partition: p.partition,
                low: p.low,
                high: p.high,
                committed: p.committed,
                current: p.current(),
                new: new_offset(p, target),
            }
        })
        .collect();
    Ok(Plan {
        group: group.to_owned(),
        topic: topic.to_owned(),
        reset: reset.describe(),
        partitions,
    })
}

/// [`plan`] on a blocking thread.
pub async fn plan_async(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    reset: &ResetTo,
    only: Option<Vec<i32>>,
) -> Result<Plan, ReplayError> {
    let (s, g, t, r) = (settings.clone(), group.to_owned(), topic.to_owned(), reset.clone());
    tokio::task::spawn_blocking(move || plan(&s, &g, &t, &r, only.as_deref()))
        .await
        .expect("plan thread does not panic")
}

/// Commits the plan's offsets for its group, after checking that the group has no members
/// (DescribeGroups: fails at once on the embedded broker, naming the alternative); reads the
/// offsets back to confirm. `how_to_stop` is added to the refusal.
pub async fn execute(
    settings: &KafkaSettings,
    plan: &Plan,
    how_to_stop: &str,
) -> Result<(), ReplayError> {
    require_admin_api(settings, "`sluice replay --execute`").await?;
    let (s, p, how) = (settings.clone(), plan.clone(), how_to_stop.to_owned());
    tokio::task::spawn_blocking(move || {
        let info = groups::describe(&s, &p.group)?;
        if !info.members.is_empty() {
            return Err(ReplayError::ActiveMembers { info, how });
        }
        let offsets: Vec<(String, i32, i64)> =
            p.partitions.iter().map(|x| (x.topic.clone(), x.partition, x.new)).collect();
        match groups::commit(&s, &p.group, &offsets) {
            Err(GroupError::Kafka(KafkaError::ConsumerCommit(code))) if refused(code) => {
                return Err(ReplayError::Refused { group: p.group.clone(), code, how });
            }
            other => other?,
        }
        let ids: Vec<i32> = p.partitions.iter().map(|x| x.partition).collect();
        let after = groups::positions(&s, &p.group, &p.topic, Some(&ids))?;
        let wanted: Vec<(i32, i64)> = p.partitions.iter().map(|x| (x.partition, x.new)).collect();
        let found: Vec<(i32, i64)> =
            after.iter().map(|x| (x.partition, x.committed.unwrap_or(-1))).collect();
        if wanted != found {
            return Err(ReplayError::NotApplied { group: p.group.clone(), wanted, found });
        }
        Ok(())
    })
    .await
    .expect("execute thread does not panic")
}

/// The answers of a broker that will not take a commit from outside a group with members.
fn refused(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(code, UnknownMemberId | IllegalGeneration | StaleMemberEpoch | RebalanceInProgress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(low: i64, high: i64, committed: Option<i64>) -> Position {
        Position { partition: 0, low, high, committed }
    }

    #[test]
    fn shift_by_is_clamped_to_the_watermarks() {
        let p = pos(100, 500, Some(300));
        assert_eq!(new_offset(&p, Target::Shift(-50)), 250);
        assert_eq!(new_offset(&p, Target::Shift(-1_000)), 100, "not before the log start");
        assert_eq!(new_offset(&p, Target::Shift(1_000)), 500, "not past the end");
        assert_eq!(new_offset(&p, Target::Shift(i64::MIN)), 100, "no overflow");
        let fresh = pos(100, 500, None);
        assert_eq!(new_offset(&fresh, Target::Shift(20)), 120, "from the log start");
    }

    #[test]
    fn absolute_and_time_targets_stay_in_the_log() {
        let p = pos(100, 500, Some(300));
        assert_eq!(new_offset(&p, Target::Offset(7)), 100);
        assert_eq!(new_offset(&p, Target::Offset(9_999)), 500);
        assert_eq!(new_offset(&p, Target::Offset(250)), 250);
        assert_eq!((new_offset(&p, Target::Earliest), new_offset(&p, Target::Latest)), (100, 500));
        assert_eq!(new_offset(&p, Target::AtTime(Some(180))), 180);
        assert_eq!(new_offset(&p, Target::AtTime(None)), 500, "every record is older: the end");
    }

    #[test]
    fn by_duration_goes_back_from_now() {
        let now = 1_800_000_000_000;
        assert_eq!(by_duration_start(now, Duration::from_secs(7_200)), now - 7_200_000);
        assert_eq!(by_duration_start(0, Duration::MAX), -i64::MAX, "no overflow");
    }

    #[test]
    fn a_plan_counts_records_reprocessed_and_skipped() {
        let line = |partition, current, new| PartitionPlan {
            topic: "t".into(),
            partition,
            low: 0,
            high: 100,
            committed: Some(current),
            current,
            new,
        };
        let plan = Plan {
            group: "g".into(),
            topic: "t".into(),
            reset: "--shift-by -10".into(),
            partitions: vec![line(0, 50, 40), line(1, 30, 30), line(2, 20, 35)],
        };
        assert_eq!((plan.reprocessed(), plan.skipped()), (10, 15));
        assert_eq!(plan.lines()[2], PlanLine { topic: "t".into(), partition: 2, offset: 35 });
    }
}

//! The plan of a replay: per partition, the group's current and new offset and how many records
//! that re-processes (or skips), in the vocabulary of `kafka-consumer-groups --reset-offsets`.
//! The plan remembers what the group had committed (offset and metadata) so that
//! [`super::execute`] can tell whether anything moved since.

use std::time::Duration;

use serde::Serialize;

use super::error::ReplayError;
use super::plan_csv::PlanLine;
use crate::call::now_ms;
use crate::config::KafkaSettings;
use crate::kafka::presence::present;
use crate::ops::groups::{self, Position};

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
            Self::Datetime(ms) => format!("--to-datetime {}", crate::time::rfc3339(*ms)),
            Self::Duration(d) => format!("--by-duration {}", humantime::format_duration(*d)),
            Self::Offset(o) => format!("--to-offset {o}"),
            Self::ShiftBy(n) => format!("--shift-by {n}"),
            Self::Earliest => "--to-earliest".into(),
            Self::Latest => "--to-latest".into(),
            Self::File(lines) => format!("--from-file ({} partitions)", lines.len()),
        }
    }
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
    /// The metadata of the group's commit when planned (the runner's completed-offset map);
    /// not shown, only compared at execution.
    #[serde(skip)]
    pub metadata: String,
}

impl PartitionPlan {
    /// Records processed again (positive) or skipped (negative).
    pub fn records(&self) -> i64 {
        self.current - self.new
    }

    /// Whether executing commits this partition: only when its offset changes. A partition left
    /// where it is keeps its commit, metadata (the runner's completed-offset map) included.
    pub fn changes(&self) -> bool {
        self.new != self.current
    }

    /// Whether committing this partition drops a completed-offset map (the commit had metadata:
    /// the records it marked done past the committed offset will be processed again).
    pub fn drops_map(&self) -> bool {
        self.changes() && !self.metadata.is_empty()
    }
}

/// The new offsets for one group on one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group: String,
    pub topic: String,
    pub reset: String,
    pub partitions: Vec<PartitionPlan>,
    /// Why `--execute` would be refused now, or what could not be checked (the dry run's view
    /// of the clients that hold the group without joining it).
    pub warnings: Vec<String>,
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
    let only = file_partitions.as_deref().or(only);
    let positions = groups::positions_with_metadata(settings, group, topic, only)?;
    let ids: Vec<i32> = positions.iter().map(|(p, _)| p.partition).collect();
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
        .map(|(p, metadata)| {
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
                metadata: metadata.clone(),
            }
        })
        .collect();
    Ok(Plan {
        group: group.to_owned(),
        topic: topic.to_owned(),
        reset: reset.describe(),
        partitions,
        warnings: holders_warning(settings, group).into_iter().collect(),
    })
}

/// What the dry run says about the group's assign-only clients: `--execute` refuses while any
/// announces itself.
fn holders_warning(settings: &KafkaSettings, group: &str) -> Option<String> {
    match present(settings, group) {
        Ok(holders) if holders.is_empty() => None,
        Ok(holders) => {
            let names: Vec<String> =
                holders.iter().map(|h| format!("{h} (client id {})", h.client_id)).collect();
            Some(format!(
                "--execute would be refused: group '{group}' is held by client(s) that commit \
                 without joining it: {}",
                names.join(", ")
            ))
        }
        Err(e) => Some(format!(
            "could not check for clients that hold group '{group}' without joining it: {e}"
        )),
    }
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
            metadata: String::new(),
        };
        let plan = Plan {
            group: "g".into(),
            topic: "t".into(),
            reset: "--shift-by -10".into(),
            partitions: vec![line(0, 50, 40), line(1, 30, 30), line(2, 20, 35)],
            warnings: vec![],
        };
        assert_eq!((plan.reprocessed(), plan.skipped()), (10, 15));
        assert_eq!(plan.lines()[2], PlanLine { topic: "t".into(), partition: 2, offset: 35 });
        assert_eq!(plan.partitions.iter().filter(|p| p.changes()).count(), 2);
    }

    #[test]
    fn only_a_moved_partition_with_a_map_drops_it() {
        let p = PartitionPlan {
            topic: "t".into(),
            partition: 0,
            low: 0,
            high: 100,
            committed: Some(50),
            current: 50,
            new: 50,
            metadata: "map".into(),
        };
        assert!(!p.changes() && !p.drops_map(), "left alone: the map survives");
        assert!(PartitionPlan { new: 40, ..p.clone() }.drops_map());
        assert!(!PartitionPlan { new: 40, metadata: String::new(), ..p }.drops_map());
    }
}

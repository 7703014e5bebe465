//! Executing a replay plan: only while the group has no members and no assign-only client holds
//! it ([`crate::kafka::presence`]: a console replica or a redrive run would commit its own
//! position again), only if nothing the plan was
//! based on moved since (the committed offsets and their metadata are read again right before
//! committing), and committing only the partitions whose offset changes — a partition left
//! where it is keeps its commit metadata, the runner's completed-offset map.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use super::error::{Moved, ReplayError};
use super::plan::Plan;
use crate::config::KafkaSettings;
use crate::kafka::presence::present;
use crate::kafka::require_admin_api;
use crate::ops::groups::{self, GroupError};

/// What an execution committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Executed {
    pub committed: Vec<CommittedPartition>,
    /// Partitions whose offset the plan does not change: not committed, their commit (and its
    /// completed-offset map) left as it was.
    pub untouched: Vec<i32>,
}

/// One partition the execution committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommittedPartition {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
    /// Whether its commit carried a completed-offset map, now dropped (the records it marked
    /// done past the old offset are processed again).
    pub map_dropped: bool,
}

impl Executed {
    /// One line per partition, for people.
    pub fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .committed
            .iter()
            .map(|c| {
                let map = if c.map_dropped {
                    "its completed-offset map dropped"
                } else {
                    "no completed-offset map to drop"
                };
                format!("  partition {}: {} -> {} ({map})", c.partition, c.from, c.to)
            })
            .collect();
        if !self.untouched.is_empty() {
            let list: Vec<String> = self.untouched.iter().map(i32::to_string).collect();
            lines.push(format!(
                "  partition(s) {} unchanged: not committed, their commit and map kept",
                list.join(", ")
            ));
        }
        lines.join("\n")
    }
}

/// Commits the plan's changed offsets for its group, after checking that the group has no
/// members (the group description APIs: fail at once on the embedded broker, naming the alternative), that
/// no assign-only client announces itself as holding it, and that its commits are still the
/// ones planned from; reads the offsets back to confirm.
/// `how_to_stop` is added to a refusal.
pub async fn execute(
    settings: &KafkaSettings,
    plan: &Plan,
    how_to_stop: &str,
) -> Result<Executed, ReplayError> {
    require_admin_api(settings, "`sluice replay --execute`").await?;
    let (s, p, how) = (settings.clone(), plan.clone(), how_to_stop.to_owned());
    tokio::task::spawn_blocking(move || execute_blocking(&s, &p, &how))
        .await
        .expect("execute thread does not panic")
}

fn execute_blocking(s: &KafkaSettings, p: &Plan, how: &str) -> Result<Executed, ReplayError> {
    let info = groups::describe(s, &p.group)?;
    if !info.members.is_empty() {
        return Err(ReplayError::ActiveMembers { info, how: how.to_owned() });
    }
    match present(s, &p.group) {
        Ok(holders) if holders.is_empty() => {}
        Ok(holders) => return Err(ReplayError::Present { group: p.group.clone(), holders }),
        Err(error) => return Err(ReplayError::PresenceUnknown { group: p.group.clone(), error }),
    }
    let moved = moved_since(s, p)?;
    if !moved.is_empty() {
        return Err(ReplayError::Moved { group: p.group.clone(), moved });
    }
    let changed: Vec<_> = p.partitions.iter().filter(|x| x.changes()).collect();
    let offsets: Vec<(String, i32, i64)> =
        changed.iter().map(|x| (x.topic.clone(), x.partition, x.new)).collect();
    if !offsets.is_empty() {
        match groups::commit(s, &p.group, &offsets) {
            Err(GroupError::Kafka(KafkaError::ConsumerCommit(code))) if refused(code) => {
                let (group, how) = (p.group.clone(), how.to_owned());
                return Err(ReplayError::Refused { group, code, how });
            }
            other => other?,
        }
    }
    let ids: Vec<i32> = p.partitions.iter().map(|x| x.partition).collect();
    let after = groups::positions(s, &p.group, &p.topic, Some(&ids))?;
    let wanted: Vec<(i32, Option<i64>)> = p
        .partitions
        .iter()
        .map(|x| (x.partition, if x.changes() { Some(x.new) } else { x.committed }))
        .collect();
    let found: Vec<(i32, Option<i64>)> = after.iter().map(|x| (x.partition, x.committed)).collect();
    if wanted != found {
        let show = |v: Vec<(i32, Option<i64>)>| -> Vec<(i32, i64)> {
            v.into_iter().map(|(p, o)| (p, o.unwrap_or(-1))).collect()
        };
        let (wanted, found) = (show(wanted), show(found));
        return Err(ReplayError::NotApplied { group: p.group.clone(), wanted, found });
    }
    Ok(Executed {
        committed: changed
            .iter()
            .map(|x| CommittedPartition {
                partition: x.partition,
                from: x.current,
                to: x.new,
                map_dropped: x.drops_map(),
            })
            .collect(),
        untouched: p.partitions.iter().filter(|x| !x.changes()).map(|x| x.partition).collect(),
    })
}

/// The plan's partitions whose committed offset or commit metadata is no longer what the plan
/// was made from (blocking).
pub fn moved_since(s: &KafkaSettings, p: &Plan) -> Result<Vec<Moved>, ReplayError> {
    let ids: Vec<i32> = p.partitions.iter().map(|x| x.partition).collect();
    let now = groups::positions_with_metadata(s, &p.group, &p.topic, Some(&ids))?;
    Ok(p.partitions
        .iter()
        .zip(now)
        .filter(|(x, (pos, metadata))| x.committed != pos.committed || x.metadata != *metadata)
        .map(|(x, (pos, _))| Moved {
            topic: x.topic.clone(),
            partition: x.partition,
            planned: x.committed,
            now: pos.committed,
            metadata_only: x.committed == pos.committed,
        })
        .collect())
}

/// The answers of a broker that will not take a commit from outside a group with members.
fn refused(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(code, UnknownMemberId | IllegalGeneration | StaleMemberEpoch | RebalanceInProgress)
}

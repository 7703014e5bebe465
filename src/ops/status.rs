//! `sluice status`: per stage, its group's state and members, lag on the input topic (total and
//! the worst partition), the age of the oldest unprocessed record, the backlog on each retry rung
//! and the deferred topic, dead letters in the last hour and day, and spend today. The rules
//! that make the command fail for scripts and probes are here too: a stage with no members, and
//! (with `--watch`) a lag that grew on consecutive samples; and what makes a report incomplete
//! (a topic that does not exist, a group that could not be described), which is said on the
//! stage's row while the other rows stay whole.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::message::Message;
use serde::Serialize;

use super::groups::{self, GroupError, GroupInfo, Member, Position};
use super::ranges::{read_ranges, Range};
use super::spend_today::{SpendError, SpendToday};
use super::survey::Survey;
use crate::call::now_ms;
use crate::config::{StageSpec, Topology};
use crate::kafka::{require_admin_api, ProbeError};
use crate::metering::report::usd;
use crate::metering::Skipped;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Spend(#[from] SpendError),
}

/// Records waiting on a topic the stage's group reads besides its input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub topic: String,
    /// The rung's delay (retry topics only), e.g. `30s`.
    pub delay: Option<String>,
    pub records: i64,
}

/// One stage's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub group: String,
    /// The group's state as the coordinator reports it (`Stable`, `Empty`, `Dead`…).
    pub state: String,
    pub members: Vec<Member>,
    /// True whenever the group was described (both protocols are); kept in the JSON output.
    pub members_known: bool,
    pub input: String,
    /// High watermark minus committed offset, summed over the input's partitions.
    pub lag: i64,
    /// The group's positions on the input, summed over its partitions: the difference between
    /// two reports is what the stage processed between them.
    pub position: i64,
    /// The partition with the largest lag (`None` when no partition lags).
    pub worst_partition: Option<i32>,
    pub worst_partition_lag: i64,
    /// Timestamp (ms since the epoch) of the oldest record not yet processed: the earliest
    /// timestamp of the records at the committed offsets of the lagging partitions.
    pub oldest_unprocessed_ms: Option<i64>,
    /// Its age in seconds when the status was taken.
    pub oldest_unprocessed_age_s: Option<i64>,
    pub retry_backlog: Vec<Backlog>,
    /// `None` when the topology has no budgets (and so no deferred topic).
    pub deferred_backlog: Option<Backlog>,
    pub dead_letter_topic: String,
    /// Dead letters written in the last hour and day that are still outstanding: not redriven
    /// or discarded since ([`crate::ops::dlq::outstanding`]).
    pub dead_letters_last_hour: i64,
    pub dead_letters_last_day: i64,
    /// Cost events of this stage since 00:00 UTC, duplicates removed (micro-USD, and USD).
    pub spend_today_micro_usd: u64,
    pub spend_today_usd: String,
    /// The same per tenant (micro-USD), tenants without spend left out.
    pub spend_today_by_tenant: BTreeMap<String, u64>,
    /// Topics of this stage (input, retry rungs, deferred, dead letters) that do not exist:
    /// their figures are left at zero.
    pub missing_topics: Vec<String>,
    /// What else could not be read for this stage (its group's description or commits).
    pub errors: Vec<String>,
}

impl StageStatus {
    /// Whether part of this row could not be read.
    pub fn incomplete(&self) -> bool {
        !self.missing_topics.is_empty() || !self.errors.is_empty()
    }
}

/// Every stage's status at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub pipeline: String,
    pub taken_ms: i64,
    pub stages: Vec<StageStatus>,
    /// Records on the metering topic today that are not cost events: skipped, so spend may be
    /// under-counted by what they would have said.
    pub metering_skipped: Skipped,
    /// Why today's spend could not be brought up to date (it shows what was read before).
    pub spend_error: Option<String>,
}

impl Report {
    /// Stages without members, as messages; a non-empty list fails the command.
    pub fn problems(&self) -> Vec<String> {
        self.stages
            .iter()
            .filter(|s| s.members_known && s.members.is_empty())
            .map(|s| {
                format!(
                    "stage '{}': group '{}' has no members ({}); lag {}",
                    s.stage, s.group, s.state, s.lag
                )
            })
            .collect()
    }

    /// What could not be read, as messages: each missing topic and failed request, per stage.
    /// A non-empty list makes the report incomplete (`sluice status` exits 4).
    pub fn incomplete(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.stages {
            for topic in &s.missing_topics {
                out.push(format!("stage '{}': topic '{topic}' does not exist", s.stage));
            }
            for e in &s.errors {
                out.push(format!("stage '{}': {e}", s.stage));
            }
        }
        out.extend(self.spend_error.clone());
        out
    }
}

/// Takes the status of every stage. Needs the group description APIs: fails at once on the
/// embedded broker, naming the alternative.
pub async fn report(t: &Topology) -> Result<Report, StatusError> {
    report_with(t, &mut SpendToday::new()).await
}

/// [`report`], with today's spend brought up to date in `spend` (which reads only what was
/// written since its last refresh). Fails only when the cluster cannot be asked at all; a topic
/// that does not exist, or a group that cannot be described, is reported on its stage's row
/// ([`StageStatus::missing_topics`], [`StageStatus::errors`]) and the other rows are whole.
///
/// Every figure comes from a handful of requests: one client surveys every topic's partitions
/// and watermarks ([`Survey`]), the groups are described and their commits fetched on one
/// thread per stage, and today's spend is read at the same time.
pub async fn report_with(t: &Topology, spend: &mut SpendToday) -> Result<Report, StatusError> {
    require_admin_api(&t.kafka, "`sluice status`").await?;
    let taken_ms = now_ms();
    let t2 = t.clone();
    let stages = tokio::task::spawn_blocking(move || stages_status(&t2, taken_ms));
    let spent = spend.refresh(t, taken_ms).await;
    let mut stages = stages.await.expect("status thread does not panic")?;
    for s in &mut stages {
        s.spend_today_by_tenant = spend.stage(&s.stage);
        s.spend_today_micro_usd = s.spend_today_by_tenant.values().sum();
        s.spend_today_usd = usd(s.spend_today_micro_usd);
    }
    let metering_skipped = spend.skipped.clone();
    let spend_error = spent.err().map(|e| format!("spend today: {e}"));
    Ok(Report { pipeline: t.pipeline.clone(), taken_ms, stages, metering_skipped, spend_error })
}

/// The topics a stage's group reads: its input, its retry rungs (with their delays) and, with
/// budgets, its deferred topic.
fn group_topics(t: &Topology, spec: &StageSpec) -> Vec<(String, Option<Duration>)> {
    let mut out = vec![(spec.input.clone(), None)];
    out.extend(spec.retry.retry_topics().into_iter().map(|(topic, delay)| (topic, Some(delay))));
    if t.budgets.is_some() {
        out.push((spec.deferred_topic.clone(), None));
    }
    out
}

/// Every stage's status, spend left at zero (blocking).
fn stages_status(t: &Topology, now: i64) -> Result<Vec<StageStatus>, StatusError> {
    let k = &t.kafka;
    let of_group: Vec<Vec<(String, Option<Duration>)>> =
        t.stages.iter().map(|spec| group_topics(t, spec)).collect();
    let topics = of_group.iter().flatten().map(|(topic, _)| topic.as_str());
    let dlqs = t.stages.iter().map(|spec| spec.dead_letter_topic.as_str());
    let survey = Survey::take(k, topics.chain(dlqs))?;
    let groups: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = t
            .stages
            .iter()
            .zip(&of_group)
            .map(|(spec, of_group)| {
                let survey = &survey;
                scope.spawn(move || {
                    let topics: Vec<&str> = of_group.iter().map(|x| x.0.as_str()).collect();
                    let info = groups::describe(k, &spec.group);
                    let letters = dead_letter_counts(survey, t, spec, now);
                    (info, survey.positions(k, &spec.group, &topics), letters)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("status thread does not panic")).collect()
    });
    let mut rows = Vec::with_capacity(t.stages.len());
    let mut waiting = Vec::new();
    for (i, (spec, (info, positions, letters))) in t.stages.iter().zip(groups).enumerate() {
        let mut errors = Vec::new();
        let info = info.unwrap_or_else(|e| {
            errors.push(format!("group '{}': {e}", spec.group));
            let group = spec.group.clone();
            GroupInfo { group, state: "?".into(), members: vec![], members_known: false }
        });
        let positions = positions.unwrap_or_else(|e| {
            errors.push(format!("group '{}' commits: {e}", spec.group));
            HashMap::new()
        });
        let input = positions.get(&spec.input).cloned().unwrap_or_default();
        let worst = input.iter().filter(|p| p.lag() > 0).max_by_key(|p| (p.lag(), -p.partition));
        for p in input.iter().filter(|p| p.lag() > 0) {
            waiting.push((i, (spec.input.clone(), p.partition, p.current())));
        }
        let backlog = |topic: &str, delay: Option<Duration>| Backlog {
            topic: topic.to_owned(),
            delay: delay.map(|d| humantime::format_duration(d).to_string()),
            records: positions.get(topic).map_or(0, |ps| ps.iter().map(Position::lag).sum()),
        };
        let retry_backlog = of_group[i]
            .iter()
            .filter(|(_, d)| d.is_some())
            .map(|(topic, d)| backlog(topic, *d))
            .collect();
        let deferred_backlog = t.budgets.as_ref().map(|_| backlog(&spec.deferred_topic, None));
        let mut missing_topics: Vec<String> = of_group[i]
            .iter()
            .map(|(topic, _)| topic.as_str())
            .chain([spec.dead_letter_topic.as_str()])
            .filter(|topic| survey.missing.contains(*topic))
            .map(str::to_owned)
            .collect();
        missing_topics.dedup();
        let (dead_letters_last_hour, dead_letters_last_day) = letters.unwrap_or_else(|e| {
            errors.push(e);
            (0, 0)
        });
        rows.push(StageStatus {
            stage: spec.name.clone(),
            group: spec.group.clone(),
            state: info.state,
            members: info.members,
            members_known: info.members_known,
            input: spec.input.clone(),
            lag: input.iter().map(Position::lag).sum(),
            position: input.iter().map(Position::current).sum(),
            worst_partition: worst.map(|p| p.partition),
            worst_partition_lag: worst.map_or(0, Position::lag),
            oldest_unprocessed_ms: None,
            oldest_unprocessed_age_s: None,
            retry_backlog,
            deferred_backlog,
            dead_letter_topic: spec.dead_letter_topic.clone(),
            dead_letters_last_hour,
            dead_letters_last_day,
            spend_today_micro_usd: 0,
            spend_today_usd: usd(0),
            spend_today_by_tenant: BTreeMap::new(),
            missing_topics,
            errors,
        });
    }
    let stamps = timestamps_at(t, waiting.iter().map(|(_, at)| at))?;
    for (i, row) in rows.iter_mut().enumerate() {
        let oldest =
            waiting.iter().filter(|(of, _)| *of == i).filter_map(|(_, at)| stamps.get(at)).min();
        row.oldest_unprocessed_ms = oldest.copied();
        row.oldest_unprocessed_age_s = oldest.map(|ts| (now - ts).max(0) / 1000);
    }
    Ok(rows)
}

/// The timestamp of the record at each `(topic, partition, offset)`, read in one pass.
fn timestamps_at<'a>(
    t: &Topology,
    at: impl Iterator<Item = &'a (String, i32, i64)>,
) -> Result<HashMap<(String, i32, i64), i64>, StatusError> {
    let mut ranges: Vec<Range> = at
        .map(|(topic, partition, offset)| Range {
            topic: topic.clone(),
            partition: *partition,
            from: *offset,
            to: offset + 1,
        })
        .collect();
    ranges.sort_by(|a, b| (&a.topic, a.partition, a.from).cmp(&(&b.topic, b.partition, b.from)));
    ranges.dedup();
    let mut out = HashMap::new();
    read_ranges(&t.kafka, &ranges, Duration::from_secs(5), |m| {
        if let Some(ts) = m.timestamp().to_millis() {
            out.insert((m.topic().to_owned(), m.partition(), m.offset()), ts);
        }
    })?;
    Ok(out)
}

// ---- Dead letters: the one place that counts them for `status` and the pipeline page. ----

/// The stage's outstanding dead letters (not redriven or discarded since) written in the last
/// hour and the last day (by record timestamp): what the rows' "dead letters 1h / 24h" show.
/// A missing dead-letter topic has none (the row names it as missing).
fn dead_letter_counts(
    survey: &Survey,
    t: &Topology,
    spec: &StageSpec,
    now: i64,
) -> Result<(i64, i64), String> {
    if survey.missing.contains(spec.dead_letter_topic.as_str()) {
        return Ok((0, 0));
    }
    crate::ops::dlq::outstanding(&t.kafka, spec, [now - HOUR_MS, now - DAY_MS])
        .map(|[hour, day]| (hour.outstanding, day.outstanding))
        .map_err(|e| format!("dead letters '{}': {e}", spec.dead_letter_topic))
}

/// `--watch`'s rule: a stage fails when its lag was higher than at the sample before on
/// `samples` consecutive samples.
#[derive(Debug, Clone)]
pub struct LagTrend {
    samples: usize,
    /// Per stage: the last lag, and on how many consecutive samples it grew.
    seen: HashMap<String, (i64, usize)>,
}

impl LagTrend {
    pub fn new(samples: usize) -> Self {
        Self { samples: samples.max(1), seen: HashMap::new() }
    }

    /// Adds a sample; returns on how many consecutive samples the lag has grown, and whether
    /// that breaks the rule.
    pub fn push(&mut self, stage: &str, lag: i64) -> (usize, bool) {
        let grew = match self.seen.get(stage) {
            Some((last, n)) if lag > *last => n + 1,
            _ => 0,
        };
        self.seen.insert(stage.to_owned(), (lag, grew));
        (grew, grew >= self.samples)
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

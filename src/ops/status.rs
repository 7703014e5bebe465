//! `sluice status`: per stage, its group's state and members, lag on the input topic (total and
//! the worst partition), the age of the oldest unprocessed record, the backlog on each retry rung
//! and the deferred topic, dead letters in the last hour and day, and spend today. The rules
//! that make the command fail for scripts and probes are here too: a stage with no members, and
//! (with `--watch`) a lag that grew on consecutive samples.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::message::Message;
use serde::Serialize;

use super::groups::{self, GroupError, Member, Position};
use super::ranges::{read_ranges, Range};
use super::spend_today::{SpendError, SpendToday};
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
    /// Dead letters written in the last hour and day that are still outstanding: not redriven
    /// or discarded since ([`crate::ops::dlq::outstanding`]).
    pub dead_letters_last_hour: i64,
    pub dead_letters_last_day: i64,
    /// Cost events of this stage since 00:00 UTC, duplicates removed (micro-USD, and USD).
    pub spend_today_micro_usd: u64,
    pub spend_today_usd: String,
    /// The same per tenant (micro-USD), tenants without spend left out.
    pub spend_today_by_tenant: BTreeMap<String, u64>,
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
}

/// Takes the status of every stage. Needs the group description APIs: fails at once on the embedded broker,
/// naming the alternative.
pub async fn report(t: &Topology) -> Result<Report, StatusError> {
    report_with(t, &mut SpendToday::new()).await
}

/// [`report`], with today's spend brought up to date in `spend` (which reads only what was
/// written since its last refresh).
pub async fn report_with(t: &Topology, spend: &mut SpendToday) -> Result<Report, StatusError> {
    require_admin_api(&t.kafka, "`sluice status`").await?;
    let taken_ms = now_ms();
    spend.refresh(t, taken_ms).await?;
    let mut stages = Vec::with_capacity(t.stages.len());
    for spec in &t.stages {
        let (t2, spec2) = (t.clone(), spec.clone());
        let mut s = tokio::task::spawn_blocking(move || stage_status(&t2, &spec2, taken_ms))
            .await
            .expect("status thread does not panic")?;
        s.spend_today_by_tenant = spend.stage(&spec.name);
        s.spend_today_micro_usd = s.spend_today_by_tenant.values().sum();
        s.spend_today_usd = usd(s.spend_today_micro_usd);
        stages.push(s);
    }
    let metering_skipped = spend.skipped.clone();
    Ok(Report { pipeline: t.pipeline.clone(), taken_ms, stages, metering_skipped })
}

/// One stage's status, spend left at zero (blocking).
pub fn stage_status(t: &Topology, spec: &StageSpec, now: i64) -> Result<StageStatus, StatusError> {
    let k = &t.kafka;
    let info = groups::describe(k, &spec.group)?;
    let input = groups::positions(k, &spec.group, &spec.input, None)?;
    let worst = input.iter().filter(|p| p.lag() > 0).max_by_key(|p| (p.lag(), -p.partition));
    let oldest = oldest_timestamp(t, &spec.input, &input)?;
    let backlog = |topic: &str, delay: Option<Duration>| -> Result<Backlog, StatusError> {
        let records =
            groups::positions(k, &spec.group, topic, None)?.iter().map(Position::lag).sum();
        let delay = delay.map(|d| humantime::format_duration(d).to_string());
        Ok(Backlog { topic: topic.to_owned(), delay, records })
    };
    let retry_backlog = spec
        .retry
        .retry_topics()
        .iter()
        .map(|(topic, delay)| backlog(topic, Some(*delay)))
        .collect::<Result<_, _>>()?;
    let deferred_backlog =
        t.budgets.as_ref().map(|_| backlog(&spec.deferred_topic, None)).transpose()?;
    let dead_letters = crate::ops::dlq::outstanding(k, spec, [now - HOUR_MS, now - DAY_MS])?;
    Ok(StageStatus {
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
        oldest_unprocessed_ms: oldest,
        oldest_unprocessed_age_s: oldest.map(|ts| (now - ts).max(0) / 1000),
        retry_backlog,
        deferred_backlog,
        dead_letters_last_hour: dead_letters[0].outstanding,
        dead_letters_last_day: dead_letters[1].outstanding,
        spend_today_micro_usd: 0,
        spend_today_usd: usd(0),
        spend_today_by_tenant: BTreeMap::new(),
    })
}

/// The earliest timestamp of the records at the group's positions on the lagging partitions.
fn oldest_timestamp(
    t: &Topology,
    topic: &str,
    at: &[Position],
) -> Result<Option<i64>, StatusError> {
    let ranges: Vec<Range> = at
        .iter()
        .filter(|p| p.lag() > 0)
        .map(|p| Range {
            topic: topic.to_owned(),
            partition: p.partition,
            from: p.current(),
            to: p.current() + 1,
        })
        .collect();
    let mut oldest: Option<i64> = None;
    read_ranges(&t.kafka, &ranges, Duration::from_secs(5), |m| {
        if let Some(ts) = m.timestamp().to_millis() {
            oldest = Some(oldest.map_or(ts, |o| o.min(ts)));
        }
    })?;
    Ok(oldest)
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
mod tests {
    use super::*;

    #[test]
    fn lag_fails_the_watch_only_after_growing_on_consecutive_samples() {
        let mut trend = LagTrend::new(3);
        let lags = [10, 20, 30, 30, 40, 50, 60];
        let tripped: Vec<(usize, bool)> = lags.iter().map(|l| trend.push("s", *l)).collect();
        assert_eq!(
            tripped,
            vec![(0, false), (1, false), (2, false), (0, false), (1, false), (2, false), (3, true)]
        );
        assert_eq!(trend.push("other", 1_000), (0, false), "stages are counted apart");
        assert_eq!(trend.push("s", 10), (0, false), "a fall resets the count");
    }

    #[test]
    fn stages_without_members_are_problems() {
        let stage = |name: &str, members: Vec<Member>| StageStatus {
            stage: name.into(),
            group: format!("g-{name}"),
            state: if members.is_empty() { "Empty".into() } else { "Stable".into() },
            members,
            members_known: true,
            input: "in".into(),
            lag: 7,
            position: 0,
            worst_partition: Some(0),
            worst_partition_lag: 7,
            oldest_unprocessed_ms: None,
            oldest_unprocessed_age_s: None,
            retry_backlog: vec![],
            deferred_backlog: None,
            dead_letters_last_hour: 0,
            dead_letters_last_day: 0,
            spend_today_micro_usd: 0,
            spend_today_usd: usd(0),
            spend_today_by_tenant: BTreeMap::new(),
        };
        let member = Member {
            member_id: "m".into(),
            client_id: "sluice".into(),
            host: "/127.0.0.1".into(),
            assigned: vec![],
        };
        let report = Report {
            pipeline: "p".into(),
            taken_ms: 0,
            stages: vec![stage("a", vec![member]), stage("b", vec![]), stage("c", vec![])],
            metering_skipped: Skipped::default(),
        };
        let mut report = report;
        report.stages[2].members_known = false;
        let kip848_unknown_is_no_problem =
            vec!["stage 'b': group 'g-b' has no members (Empty); lag 7"];
        assert_eq!(report.problems(), kip848_unknown_is_no_problem);
    }
}

//! `sluice dlq redrive` and `sluice dlq discard` over one position in a stage's dead-letter
//! topic.
//!
//! - **Redrive** republishes dead letters' original key, value and headers where only their stage
//!   reads them ([`route`]): its first retry rung, due now, or its input when it has no ladder and
//!   no other stage reads the input (refused otherwise). A letter that names anything but the
//!   stage's input, or a partition the input lacks, is refused and reported, never republished.
//! - **Discard** acknowledges the selected letters without republishing them, so the position
//!   moves past letters nobody will redrive (filters, loop guard, single-letter redrives).
//! - **Dry run unless `execute`**: the same walk, producing and committing nothing; the report is
//!   the plan. A dry run opens no producer, so it never fences a running redrive.
//! - **Loop guard**: the republished record carries `sluice-redrive-count` one higher than the
//!   dead letter's `original_headers` had it (a record dead-lettered again brings it back). A dead
//!   letter already redriven `max_redrives` times is left in place and reported.
//! - **Resumable, never twice**: the position lives in a consumer group of its own,
//!   `<stage group>.redrive` ([`position`], [`done_set`]). An executing run announces itself in
//!   `<redrive group>.present` and refuses to start while another is there ([`lease`]); on a
//!   broker with transactions each batch of republished records commits together with the
//!   position ([`sink`]): a crash or a failed delivery aborts the batch, and a second redrive of
//!   the stage fences the first. The walk itself is in [`walk`]. A letter the run leaves in place is *not* committed past; what was finished beyond it travels
//!   in the commit's metadata (bounded: 3,000 bytes, ~200 gaps — discard what is left in place
//!   when a run stops for lack of room). Records that can never be redriven are committed past.
//! - Records dead-lettered while the run goes are past the end it fixed when it began: they wait
//!   for the next run and its loop guard.
//! - Nothing is redacted here: a redacting stage's dead letters already hold redacted values.

pub mod done_set;
mod lease;
pub mod options;
pub mod position;
pub mod report;
pub mod route;
pub mod sink;
mod walk;

pub use options::{Progress, RedriveOptions};
pub use report::{PlanRow, RedriveReport, Skipped};

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};

use super::read::{stage, DlqError};
use crate::avro::Codec;
use crate::config::{KafkaSettings, StageSpec, Topology};
use crate::kafka::{assign_only_config, broker_kind, registry_settings, BrokerKind};
use options::Action;
use position::Position;
use route::{Accepted, Route};
use sink::Sink;
use walk::{Run, Setup};

/// How long reading the input's partition count may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer group holding a stage's redrive position.
pub fn redrive_group(spec: &StageSpec) -> String {
    format!("{}.redrive", spec.group)
}

/// Walks `stage_name`'s dead-letter topic from the redrive group's position to its current end,
/// redriving what `opts` selects (or planning it, in a dry run). Errors before the walk are
/// returned; an error during it ends the walk, is in [`RedriveReport::stopped`], and what was
/// committed before it stands.
pub async fn redrive(
    t: &Topology,
    stage_name: &str,
    opts: &RedriveOptions,
    progress: impl Fn(Progress),
) -> Result<RedriveReport, DlqError> {
    run(t, stage_name, opts, Action::Redrive, progress).await
}

/// [`redrive`]'s walk, acknowledging the selected letters instead of republishing them (the loop
/// guard does not apply: discarding is how a guarded letter is let go).
pub async fn discard(
    t: &Topology,
    stage_name: &str,
    opts: &RedriveOptions,
    progress: impl Fn(Progress),
) -> Result<RedriveReport, DlqError> {
    run(t, stage_name, opts, Action::Discard, progress).await
}

async fn run(
    t: &Topology,
    stage_name: &str,
    opts: &RedriveOptions,
    action: Action,
    progress: impl Fn(Progress),
) -> Result<RedriveReport, DlqError> {
    let spec = stage(t, stage_name)?;
    let route = match action {
        Action::Redrive => Some(Route::of(t, spec).map_err(DlqError::Refused)?),
        Action::Discard => None,
    };
    let group = redrive_group(spec);
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let consumer: Arc<StreamConsumer> = Arc::new(assign_only_config(&t.kafka, &group).create()?);
    let partitions = partition_count(consumer.clone(), &spec.input).await?;
    let accepted = Accepted { input: spec.input.clone(), partitions };
    let (sink, lease) = match opts.execute {
        false => (None, None),
        true => {
            let kind = broker_kind_of(&t.kafka).await?;
            let lease = lease::take(&t.kafka, kind, spec, &group, action.name()).await?;
            // Before the position is read: opening the sink fences an older run and aborts its
            // open batch.
            match Sink::open(&t.kafka, kind, &spec.name, &group, &consumer).await {
                Ok(sink) => (Some(sink), Some(lease)),
                Err(e) => {
                    lease.release().await;
                    return Err(e);
                }
            }
        }
    };
    let walked = walk_from_position(
        Walk { opts, action, codec, route, accepted, sink },
        spec,
        group,
        consumer,
        &progress,
    )
    .await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    walked
}

/// What a run walks with, once its lease (when executing) is held.
struct Walk<'o> {
    opts: &'o RedriveOptions,
    action: Action,
    codec: Codec,
    route: Option<Route>,
    accepted: Accepted,
    sink: Option<Sink>,
}

async fn walk_from_position(
    w: Walk<'_>,
    spec: &StageSpec,
    group: String,
    consumer: Arc<StreamConsumer>,
    progress: &impl Fn(Progress),
) -> Result<RedriveReport, DlqError> {
    let Walk { opts, action, codec, route, accepted, sink } = w;
    let position = Position::load(consumer.clone(), &spec.dead_letter_topic, &group).await?;
    consumer.assign(&position.assignment()?)?;
    let report = RedriveReport {
        action: action.name(),
        done_before: finished_before(&position, &opts.filter.at),
        stage: spec.name.clone(),
        dead_letter_topic: spec.dead_letter_topic.clone(),
        group,
        executed: opts.execute,
        republish_to: route.as_ref().map(|r| r.topic().to_owned()),
        transactional: sink.as_ref().is_some_and(Sink::transactional),
        ..RedriveReport::default()
    };
    let run = Run::new(Setup { opts, action, codec, route, accepted, position, sink, report });
    Ok(run.go(&consumer, progress).await)
}

/// Letters finished by earlier runs before this run's start: with `--at`, those of the positions
/// named (the walk counts the ones past its start); without, every one.
fn finished_before(position: &Position, at: &[(i32, i64)]) -> usize {
    if at.is_empty() {
        return position.finished_before() as usize;
    }
    let named: std::collections::BTreeSet<&(i32, i64)> = at.iter().collect();
    named
        .into_iter()
        .filter(|(p, o)| {
            position.parts.get(p).is_some_and(|part| (part.low..part.start).contains(o))
        })
        .count()
}

/// What kind of broker the topology's Kafka is.
async fn broker_kind_of(kafka: &KafkaSettings) -> Result<BrokerKind, DlqError> {
    let settings = kafka.clone();
    tokio::task::spawn_blocking(move || broker_kind(&settings))
        .await
        .expect("the probe thread does not panic")
        .map_err(|e| DlqError::Broker(e.to_string()))
}

/// How many partitions `topic` has (0 when it does not exist).
async fn partition_count(consumer: Arc<StreamConsumer>, topic: &str) -> Result<i32, DlqError> {
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&name), METADATA_TIMEOUT))
            .await
            .expect("the metadata thread does not panic")?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    Ok(found.filter(|t| t.error().is_none()).map_or(0, |t| t.partitions().len() as i32))
}

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
//!   broker with transactions each
//!   batch of republished records commits together with the position ([`sink`]): a crash or a
//!   failed delivery aborts the batch, and a second redrive of the stage fences the first. A
//!   letter the run leaves in place is *not* committed past; what was finished beyond it travels
//!   in the commit's metadata (bounded: 3,000 bytes, ~200 gaps — discard what is left in place
//!   when a run stops for lack of room). Records that can never be redriven are committed past.
//! - Records dead-lettered while the run goes are past the end it fixed when it began: they wait
//!   for the next run and its loop guard.
//! - Nothing is redacted here: a redacting stage's dead letters already hold redacted values.

pub mod done_set;
mod lease;
pub mod position;
pub mod report;
pub mod route;
pub mod sink;

pub use report::{PlanRow, RedriveReport, Skipped};

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::DeliveryFuture;
use rdkafka::types::RDKafkaErrorCode;

use super::read::{decode_letter, redrive_count, stage, DlqError, Filter};
use crate::avro::{Codec, DeadLetter};
use crate::call::now_ms;
use crate::config::{KafkaSettings, StageSpec, Topology};
use crate::kafka::{assign_only_config, broker_kind, registry_settings, BrokerKind};
use position::Position;
use route::{republish, Accepted, Route};
use sink::Sink;

/// Records awaited together and committed in one batch (one transaction).
const BATCH: usize = 256;
/// A batch is committed once it is this old, however small (a rate-limited run): the broker
/// aborts a transaction open longer than `transaction.timeout.ms` (60 s by default).
const BATCH_AGE: Duration = Duration::from_secs(30);
/// A run stops reading after this long without a record before the end it fixed.
const IDLE: Duration = Duration::from_secs(10);
/// How long reading the input's partition count may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub filter: Filter,
    /// A dead letter redriven this often before is left in place.
    pub max_redrives: u32,
    /// Records republished per second at most.
    pub rate_per_second: Option<NonZeroU32>,
    /// Produce and commit; otherwise a dry run.
    pub execute: bool,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        Self { filter: Filter::default(), max_redrives: 3, rate_per_second: None, execute: false }
    }
}

/// How far a run is, after each record read.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub read: u64,
    pub total: u64,
    pub redriven: u64,
}

/// The consumer group holding a stage's redrive position.
pub fn redrive_group(spec: &StageSpec) -> String {
    format!("{}.redrive", spec.group)
}

/// What a run does with the letters it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Redrive,
    Discard,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::Discard => "discard",
        }
    }
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
    let (sink, _presence) = match opts.execute {
        false => (None, None),
        true => {
            let kind = broker_kind_of(&t.kafka).await?;
            let presence = lease::take(&t.kafka, kind, spec, &group, action.name()).await?;
            // Before the position is read: opening the sink fences an older run and aborts its
            // open batch.
            let sink = Sink::open(&t.kafka, kind, &spec.name, &group, &consumer).await?;
            (Some(sink), presence)
        }
    };
    let position = Position::load(consumer.clone(), &spec.dead_letter_topic, &group).await?;
    consumer.assign(&position.assignment()?)?;
    let done_before = position.finished_before() as usize;
    let mut run = Run {
        opts,
        action,
        codec,
        route,
        accepted,
        position,
        limiter: opts.rate_per_second.map(|r| RateLimiter::direct(Quota::per_second(r))),
        pending: Vec::new(),
        batch_started: Instant::now(),
        report: RedriveReport {
            action: action.name(),
            done_before,
            stage: spec.name.clone(),
            dead_letter_topic: spec.dead_letter_topic.clone(),
            group,
            executed: opts.execute,
            transactional: sink.as_ref().is_some_and(Sink::transactional),
            ..RedriveReport::default()
        },
        sink,
    };
    run.report.republish_to = run.route.as_ref().map(|r| r.topic().to_owned());
    let walked = run.walk(&consumer, &progress).await;
    let settled = run.settle().await;
    if let Err(e) = walked.and(settled) {
        run.report.stop(e.to_string());
    }
    Ok(run.report)
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

/// A letter handled in the open batch: republished (waiting for its acknowledgement) or to be
/// discarded.
struct Pending {
    partition: i32,
    offset: i64,
    topic: String,
    delivery: Option<DeliveryFuture>,
}

struct Run<'o> {
    opts: &'o RedriveOptions,
    action: Action,
    codec: Codec,
    /// Where a redrive republishes; None for a discard.
    route: Option<Route>,
    accepted: Accepted,
    position: Position,
    /// Set when executing.
    sink: Option<Sink>,
    limiter: Option<DefaultDirectRateLimiter>,
    pending: Vec<Pending>,
    /// When the first record of the open batch was handled.
    batch_started: Instant,
    report: RedriveReport,
}

impl Run<'_> {
    /// Reads every partition up to the end it had when the run began.
    async fn walk(
        &mut self,
        consumer: &StreamConsumer,
        progress: &impl Fn(Progress),
    ) -> Result<(), DlqError> {
        let mut open: BTreeSet<i32> =
            self.position.parts.iter().filter(|(_, p)| p.start < p.end).map(|(p, _)| *p).collect();
        let (total, mut read) = (self.position.total(), 0);
        while !open.is_empty() {
            let Ok(next) = tokio::time::timeout(IDLE, consumer.recv()).await else {
                self.report.stop(format!(
                    "no record for {IDLE:?} before the end of partition(s) {open:?}; run again"
                ));
                return Ok(());
            };
            let m = next?;
            let (p, o) = (m.partition(), m.offset());
            let end = self.position.parts.get(&p).map_or(0, |part| part.end);
            if o + 1 >= end {
                open.remove(&p);
            }
            if o >= end {
                continue;
            }
            read += 1;
            self.handle(p, o, m.payload()).await?;
            let redriven = (self.report.redriven + self.report.discarded) as u64;
            progress(Progress { read, total, redriven });
        }
        Ok(())
    }

    /// Marks letter `o` of partition `p` finished for good (it can never be redriven), reporting
    /// why.
    fn unredrivable(&mut self, p: i32, o: i64, letter: Option<&DeadLetter>, reason: String) {
        if let Some(part) = self.position.parts.get_mut(&p) {
            part.done.insert(o);
        }
        self.report.unredrivable.push(Skipped::new(p, o, letter, reason));
    }

    /// Decides what to do with dead letter `o` of partition `p`, and does it.
    async fn handle(&mut self, p: i32, o: i64, payload: Option<&[u8]>) -> Result<(), DlqError> {
        let part = self.position.parts.get(&p).expect("only assigned partitions are read");
        if part.done.contains(o) {
            self.report.done_before += 1;
            return Ok(());
        }
        if !self.opts.filter.at.is_empty() && !self.opts.filter.at.contains(&(p, o)) {
            self.report.passed_over += 1;
            return Ok(());
        }
        let letter = match decode_letter(&self.codec, payload).await? {
            Ok(letter) => letter,
            Err(reason) => {
                self.unredrivable(p, o, None, format!("not a dead letter: {reason}"));
                return Ok(());
            }
        };
        if !self.opts.filter.selects(&self.codec, &letter).await? {
            self.report.passed_over += 1;
            return Ok(());
        }
        let count = match self.action {
            Action::Discard => 0,
            Action::Redrive => match self.redrivable(&letter) {
                Ok(count) => count,
                Err(reason) => {
                    self.unredrivable(p, o, Some(&letter), reason);
                    return Ok(());
                }
            },
        };
        if self.action == Action::Redrive && count >= self.opts.max_redrives {
            let reason = format!("redriven {count} time(s) already (--max-redrives)");
            let skipped =
                Skipped { redrive_count: Some(count), ..Skipped::new(p, o, Some(&letter), reason) };
            self.report.loop_guarded.push(skipped);
            return Ok(());
        }
        self.report.add_to_plan(&letter);
        let part = self.position.parts.get(&p).expect("only assigned partitions are read");
        let pending = self.pending.iter().filter(|q| q.partition == p).map(|q| q.offset);
        if self.sink.is_none() || !part.done.has_room_for(pending.chain([o])) {
            if self.sink.is_some() {
                self.report.stop(format!(
                    "partition {p}: too many records left in place between finished ones for \
                     the commit metadata; discard (`sluice dlq discard`) or redrive the ones \
                     left in place, then run again"
                ));
            }
            self.report.remaining += 1;
            return Ok(());
        }
        let delivery = match self.action {
            Action::Discard => None,
            Action::Redrive => Some(self.send(p, o, &letter, count + 1).await?),
        };
        let topic = self.report.republish_to.clone().unwrap_or_default();
        if self.pending.is_empty() {
            self.batch_started = Instant::now();
        }
        self.pending.push(Pending { partition: p, offset: o, topic, delivery });
        if self.pending.len() >= BATCH || self.batch_started.elapsed() >= BATCH_AGE {
            self.settle().await?;
        }
        Ok(())
    }

    /// The letter's redrive count, or why it can never be redriven.
    fn redrivable(&self, letter: &DeadLetter) -> Result<u32, String> {
        if let Some(refusal) = self.accepted.refusal(letter) {
            return Err(refusal);
        }
        if letter.original_value.is_none() {
            return Err("the value was withheld (a redacting stage)".to_owned());
        }
        redrive_count(&letter.original_headers)
    }

    /// Hands the republished record to the producer; a full queue is emptied by settling first.
    async fn send(
        &mut self,
        p: i32,
        o: i64,
        letter: &DeadLetter,
        count: u32,
    ) -> Result<DeliveryFuture, DlqError> {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let route = self.route.as_ref().expect("a redrive has a route");
        let record = republish(route, letter, count, now_ms());
        for first_try in [true, false] {
            let sink = self.sink.as_mut().expect("only an execute run sends");
            match sink.send(&record) {
                Ok(delivery) => return Ok(delivery),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) if first_try => {
                    self.settle().await?
                }
                Err(error) => {
                    let topic = record.topic.clone();
                    return Err(sink.explain(DlqError::Produce {
                        partition: p,
                        offset: o,
                        topic,
                        error,
                    }));
                }
            }
        }
        unreachable!("the second try returns")
    }

    /// Ends the open batch: waits for every acknowledgement, marks the batch's letters finished
    /// and commits them with the position (one transaction where the broker has them). A failed
    /// delivery aborts the batch (on the embedded broker: leaves its record for a later run) and
    /// ends the walk.
    async fn settle(&mut self) -> Result<(), DlqError> {
        let Some(sink) = self.sink.as_mut() else { return Ok(()) };
        let mut failed = None;
        let mut acked = Vec::new();
        for Pending { partition, offset, topic, delivery } in std::mem::take(&mut self.pending) {
            let result = match delivery {
                None => Ok(()),
                Some(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(error),
                    Err(_) => Err(KafkaError::Canceled),
                },
            };
            match result {
                Ok(()) => acked.push((partition, offset)),
                Err(error) => {
                    self.report.remaining += 1;
                    let e = DlqError::Produce { partition, offset, topic, error };
                    failed.get_or_insert(sink.explain(e));
                }
            }
        }
        if failed.is_some() && sink.transactional() {
            sink.abort().await;
            self.report.remaining += acked.len();
            return failed.map_or(Ok(()), Err);
        }
        for (partition, offset) in &acked {
            if let Some(part) = self.position.parts.get_mut(partition) {
                part.done.insert(*offset);
            }
        }
        let committed = sink.commit(&mut self.position).await;
        let counted = match (&committed, sink.transactional()) {
            (Ok(()), _) | (Err(_), false) => acked.len(),
            (Err(_), true) => {
                self.report.remaining += acked.len();
                0
            }
        };
        match self.action {
            Action::Redrive => self.report.redriven += counted,
            Action::Discard => self.report.discarded += counted,
        }
        committed?;
        failed.map_or(Ok(()), Err)
    }
}

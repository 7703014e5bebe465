//! `sluice dlq redrive`: republishes dead letters' original key, value and headers to their
//! original topic and partition, so the stage processes them again once what failed them is fixed.
//!
//! - **Dry run unless `execute`**: the same walk over the dead-letter topic, producing and
//!   committing nothing; the report is the plan.
//! - **Loop guard**: the republished record carries `sluice-redrive-count` one higher than the
//!   dead letter's `original_headers` had it (a record dead-lettered again brings it back). A dead
//!   letter already redriven `max_redrives` times is left in place and reported.
//! - **Resumable, never twice**: the position lives in a consumer group of its own,
//!   `<stage group>.redrive`, committed only after the republished records are acknowledged (in
//!   batches). A record the run leaves in place — not selected by the filters, or held by the
//!   loop guard — is *not* committed past, so a later run with other filters or a higher
//!   `--max-redrives` still sees it; what was redriven beyond it travels in the commit's
//!   metadata ([`super::done_set`]), so no later run redrives it again. Records that can never be
//!   redriven (value withheld by a redacting stage, not a dead letter) are committed past.
//!   The metadata is bounded (3,000 bytes, ~200 gaps); a record that would not fit stays for a
//!   later run and the summary says so.
//! - Records dead-lettered while the run goes (a redriven record failing again) are past the
//!   end the run fixed when it began: they wait for the next run and its loop guard.
//! - Nothing is redacted here: a redacting stage's dead letters already hold redacted values.
//!
//! Works on any broker with produce, fetch and group offset commits: no admin API is used, so
//! the embedded broker will do.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::dlq_read::{decode_letter, redrive_count, stage, DlqError, Filter, REDRIVE_COUNT};
use super::redrive_position::Position;
use super::redrive_report::{RedriveReport, Skipped};
use crate::avro::{Codec, DeadLetter};
use crate::config::{KafkaSettings, StageSpec, Topology};
use crate::kafka::{producer_config, reader_config, registry_settings};

/// Republished records awaited together before the position is committed.
const BATCH: usize = 256;
/// A run stops reading after this long without a record before the end it fixed.
const IDLE: Duration = Duration::from_secs(10);

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

/// An assign-only consumer of the redrive group. It never joins the group, so the group protocol
/// of the topology's stages does not apply: commits without a member work on every broker.
fn redrive_consumer(kafka: &KafkaSettings, group: &str) -> rdkafka::ClientConfig {
    let mut config = reader_config(kafka);
    config.remove("group.protocol");
    config.set("group.id", group);
    config.set("enable.auto.commit", "false");
    config.set("enable.auto.offset.store", "false");
    config.set("enable.partition.eof", "false");
    config.set("auto.offset.reset", "earliest");
    config
}

/// Walks `stage_name`'s dead-letter topic from the redrive group's position to its current end,
/// redriving what `opts` selects (or planning it, in a dry run). Errors before the walk are
/// returned; an error during it ends the walk, is in [`RedriveReport::stopped`], and what was
/// acknowledged before it is committed.
pub async fn redrive(
    t: &Topology,
    stage_name: &str,
    opts: &RedriveOptions,
    progress: impl Fn(Progress),
) -> Result<RedriveReport, DlqError> {
    let spec = stage(t, stage_name)?;
    let group = redrive_group(spec);
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let consumer: Arc<StreamConsumer> = Arc::new(redrive_consumer(&t.kafka, &group).create()?);
    let position = Position::load(consumer.clone(), &spec.dead_letter_topic, &group).await?;
    consumer.assign(&position.assignment()?)?;
    let producer = if opts.execute { Some(producer_config(&t.kafka).create()?) } else { None };
    let done_before = position.finished_before() as usize;
    let mut run = Run {
        opts,
        codec,
        position,
        producer,
        limiter: opts.rate_per_second.map(|r| RateLimiter::direct(Quota::per_second(r))),
        pending: Vec::new(),
        report: RedriveReport {
            done_before,
            stage: spec.name.clone(),
            dead_letter_topic: spec.dead_letter_topic.clone(),
            group,
            executed: opts.execute,
            ..RedriveReport::default()
        },
    };
    let walked = run.walk(&consumer, &progress).await;
    let settled = run.settle().await;
    if let Err(e) = walked.and(settled) {
        run.report.stop(e.to_string());
    }
    Ok(run.report)
}

/// A republished record waiting for its acknowledgement.
struct Pending {
    partition: i32,
    offset: i64,
    topic: String,
    delivery: DeliveryFuture,
}

struct Run<'o> {
    opts: &'o RedriveOptions,
    codec: Codec,
    position: Position,
    producer: Option<FutureProducer>,
    limiter: Option<DefaultDirectRateLimiter>,
    pending: Vec<Pending>,
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
            let redriven = self.report.redriven as u64;
            progress(Progress { read, total, redriven });
        }
        Ok(())
    }

    /// Decides what to do with dead letter `o` of partition `p`, and does it.
    async fn handle(&mut self, p: i32, o: i64, payload: Option<&[u8]>) -> Result<(), DlqError> {
        let part = self.position.parts.get_mut(&p).expect("only assigned partitions are read");
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
                part.done.insert(o);
                let reason = format!("not a dead letter: {reason}");
                self.report.unredrivable.push(Skipped::new(p, o, None, reason));
                return Ok(());
            }
        };
        if !self.opts.filter.selects(&self.codec, &letter).await? {
            self.report.passed_over += 1;
            return Ok(());
        }
        let part = self.position.parts.get_mut(&p).expect("only assigned partitions are read");
        let count = match (&letter.original_value, redrive_count(&letter.original_headers)) {
            (None, _) => Err("the value was withheld (a redacting stage)".to_owned()),
            (Some(_), Err(reason)) => Err(reason),
            (Some(_), Ok(count)) => Ok(count),
        };
        let count = match count {
            Ok(count) => count,
            Err(reason) => {
                part.done.insert(o);
                self.report.unredrivable.push(Skipped::new(p, o, Some(&letter), reason));
                return Ok(());
            }
        };
        if count >= self.opts.max_redrives {
            let reason = format!("redriven {count} time(s) already (--max-redrives)");
            let skipped =
                Skipped { redrive_count: Some(count), ..Skipped::new(p, o, Some(&letter), reason) };
            self.report.loop_guarded.push(skipped);
            return Ok(());
        }
        self.report.add_to_plan(&letter);
        let pending = self.pending.iter().filter(|q| q.partition == p).map(|q| q.offset);
        if self.producer.is_none() || !part.done.has_room_for(pending.chain([o])) {
            if self.producer.is_some() {
                self.report.stop(format!(
                    "partition {p}: too many records left in place between redriven ones for \
                     the commit metadata; redrive the ones left in place, then run again"
                ));
            }
            self.report.remaining += 1;
            return Ok(());
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let delivery = self.send(p, o, &letter, count + 1).await?;
        let topic = letter.original_topic.clone();
        self.pending.push(Pending { partition: p, offset: o, topic, delivery });
        if self.pending.len() >= BATCH {
            self.settle().await?;
        }
        Ok(())
    }

    /// Hands the record to the producer; a full queue is emptied by settling first.
    async fn send(
        &mut self,
        p: i32,
        o: i64,
        letter: &DeadLetter,
        count: u32,
    ) -> Result<DeliveryFuture, DlqError> {
        for first_try in [true, false] {
            let producer = self.producer.as_ref().expect("only an execute run sends");
            match producer.send_result(record(letter, count)) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if first_try =>
                {
                    self.settle().await?
                }
                Err((error, _)) => return Err(produce_error(p, o, letter, error)),
            }
        }
        unreachable!("the second try returns")
    }

    /// Waits for every pending acknowledgement, marks the acknowledged records finished and
    /// commits. A failed delivery leaves its record for a later run and ends the walk.
    async fn settle(&mut self) -> Result<(), DlqError> {
        let mut failed = None;
        for Pending { partition, offset, topic, delivery } in std::mem::take(&mut self.pending) {
            let result = match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error),
                Err(_) => Err(KafkaError::Canceled),
            };
            match result {
                Ok(()) => {
                    self.report.redriven += 1;
                    if let Some(part) = self.position.parts.get_mut(&partition) {
                        part.done.insert(offset);
                    }
                }
                Err(error) => {
                    self.report.remaining += 1;
                    failed.get_or_insert(DlqError::Produce { partition, offset, topic, error });
                }
            }
        }
        self.position.commit().await?;
        failed.map_or(Ok(()), Err)
    }
}

/// The dead letter's original record, its redrive count set to `count`.
fn record(letter: &DeadLetter, count: u32) -> FutureRecord<'_, [u8], [u8]> {
    let count = count.to_string();
    let headers = letter
        .original_headers
        .iter()
        .filter(|(k, _)| k != REDRIVE_COUNT)
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: value.as_deref() })
        })
        .insert(Header { key: REDRIVE_COUNT, value: Some(count.as_bytes()) });
    let value = letter.original_value.as_deref().expect("a withheld value is not redriven");
    let mut r = FutureRecord::to(&letter.original_topic)
        .payload(value)
        .partition(letter.original_partition)
        .headers(headers);
    if let Some(key) = &letter.original_key {
        r = r.key(key.as_slice());
    }
    r
}

fn produce_error(p: i32, o: i64, letter: &DeadLetter, error: KafkaError) -> DlqError {
    DlqError::Produce { partition: p, offset: o, topic: letter.original_topic.clone(), error }
}

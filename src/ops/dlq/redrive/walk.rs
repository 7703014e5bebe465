//! One run's walk over the dead-letter topic: each letter read is passed over, refused, held by
//! the loop guard, or put in the open batch (republished, or to be discarded); a full or old
//! batch is settled — acknowledgements awaited, then committed with the position through the
//! [`Sink`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::DeliveryFuture;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use super::done_set::DoneSet;
use super::options::{Action, Progress, RedriveOptions};
use super::position::Position;
use super::report::{RedriveReport, Skipped};
use super::route::{republish, Accepted, Route};
use super::sink::Sink;
use crate::avro::{Codec, DeadLetter};
use crate::call::now_ms;
use crate::ops::dlq::read::{decode_letter, redrive_count, DlqError};

/// Records awaited together and committed in one batch (one transaction).
const BATCH: usize = 256;
/// A run stops reading after this long without a record before the end it fixed.
const IDLE: Duration = Duration::from_secs(10);
/// How often a run waiting for a record looks whether its position has passed the end.
const SLICE: Duration = Duration::from_millis(200);

/// A letter handled in the open batch: republished (waiting for its acknowledgement) or to be
/// discarded.
struct Pending {
    partition: i32,
    offset: i64,
    topic: String,
    delivery: Option<DeliveryFuture>,
}

/// What a run starts with.
pub struct Setup<'o> {
    pub opts: &'o RedriveOptions,
    pub action: Action,
    pub codec: Codec,
    /// Where a redrive republishes; None for a discard.
    pub route: Option<Route>,
    pub accepted: Accepted,
    pub position: Position,
    /// Set when executing.
    pub sink: Option<Sink>,
    pub report: RedriveReport,
}

pub struct Run<'o> {
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

impl<'o> Run<'o> {
    pub fn new(s: Setup<'o>) -> Self {
        Self {
            opts: s.opts,
            action: s.action,
            codec: s.codec,
            route: s.route,
            accepted: s.accepted,
            position: s.position,
            sink: s.sink,
            limiter: s.opts.rate_per_second.map(|r| RateLimiter::direct(Quota::per_second(r))),
            pending: Vec::new(),
            batch_started: Instant::now(),
            report: s.report,
        }
    }

    /// Walks to the end fixed when the run began, settles the last batch, and reports; an error
    /// on the way ends the walk and is in [`RedriveReport::stopped`].
    pub async fn go(
        mut self,
        consumer: &StreamConsumer,
        progress: &impl Fn(Progress),
    ) -> RedriveReport {
        let walked = self.walk(consumer, progress).await;
        let settled = self.settle().await;
        if let Err(e) = walked.and(settled) {
            self.report.stop(e.to_string());
        }
        self.report
    }

    /// Reads every partition up to the end it had when the run began (with `--at`, only the
    /// partitions named, each up to its last position named). An open batch is settled once it
    /// is [`RedriveOptions::batch_age`] old, whatever the walk reads meanwhile (letters passed
    /// over too) and while it waits for a record.
    async fn walk(
        &mut self,
        consumer: &StreamConsumer,
        progress: &impl Fn(Progress),
    ) -> Result<(), DlqError> {
        let mut last_at: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, o) in &self.opts.filter.at {
            let last = last_at.entry(*p).or_insert(*o);
            *last = (*last).max(*o);
        }
        let mut open: BTreeSet<i32> =
            self.position.parts.iter().filter(|(_, p)| p.start < p.end).map(|(p, _)| *p).collect();
        if !last_at.is_empty() {
            open.retain(|p| last_at.contains_key(p));
        }
        let (total, mut read) = (self.position.total(), 0);
        let mut idle = Duration::ZERO;
        while !open.is_empty() {
            self.passed(consumer, &mut open, &last_at);
            if open.is_empty() {
                break;
            }
            let Some(next) = self.next(consumer, SLICE).await? else {
                idle += SLICE;
                if idle >= IDLE {
                    self.report.stop(format!(
                        "no record for {IDLE:?} before the end of partition(s) {open:?}; run again"
                    ));
                    return Ok(());
                }
                continue;
            };
            idle = Duration::ZERO;
            let m = next?;
            let (p, o) = (m.partition(), m.offset());
            if !open.contains(&p) {
                continue;
            }
            let end = self.position.parts.get(&p).map_or(0, |part| part.end);
            let last = last_at.get(&p).map_or(end - 1, |at| (*at).min(end - 1));
            if o >= last {
                open.remove(&p);
            }
            if o >= end {
                continue;
            }
            read += 1;
            self.handle(p, o, m.payload()).await?;
            if self.batch_is_old() {
                self.settle().await?;
            }
            let redriven = (self.report.redriven + self.report.discarded) as u64;
            progress(Progress { read, total, redriven });
        }
        Ok(())
    }

    /// Whether a batch is open and as old as a batch may get.
    fn batch_is_old(&self) -> bool {
        !self.pending.is_empty() && self.batch_started.elapsed() >= self.opts.batch_age
    }

    /// The next record, or None after `wait` without one; an open batch that gets old while
    /// waiting is settled.
    async fn next<'c>(
        &mut self,
        consumer: &'c StreamConsumer,
        wait: Duration,
    ) -> Result<Option<KafkaResult<BorrowedMessage<'c>>>, DlqError> {
        let left = self.opts.batch_age.saturating_sub(self.batch_started.elapsed());
        let wait = if self.pending.is_empty() { wait } else { wait.min(left) };
        if let Ok(next) = tokio::time::timeout(wait, consumer.recv()).await {
            return Ok(Some(next));
        }
        if self.batch_is_old() {
            self.settle().await?;
        }
        Ok(None)
    }

    /// Closes the partitions whose position has reached the end fixed for them (with `--at`, one
    /// past the last position named) without a record there: the last offsets of a dead-letter
    /// topic written in transactions (an exactly-once stage's) are a commit marker, which a
    /// reader that reads committed is never given but which moves its position past it.
    fn passed(
        &self,
        consumer: &StreamConsumer,
        open: &mut BTreeSet<i32>,
        last_at: &BTreeMap<i32, i64>,
    ) {
        let Ok(positions) = consumer.position() else { return };
        for e in positions.elements() {
            let (p, Offset::Offset(at)) = (e.partition(), e.offset()) else { continue };
            let Some(part) = self.position.parts.get(&p).filter(|_| open.contains(&p)) else {
                continue;
            };
            let target = last_at.get(&p).map_or(part.end, |l| (*l).min(part.end - 1) + 1);
            if at >= target {
                open.remove(&p);
            }
        }
    }

    /// Marks letter `o` of partition `p` finished for good (it can never be redriven), reporting
    /// why.
    fn unredrivable(&mut self, p: i32, o: i64, letter: Option<&DeadLetter>, reason: String) {
        if let Some(part) = self.position.parts.get_mut(&p) {
            part.done.insert(o);
        }
        self.report.refused(Skipped::new(p, o, letter, reason));
    }

    /// Decides what to do with dead letter `o` of partition `p`, and does it.
    async fn handle(&mut self, p: i32, o: i64, payload: Option<&[u8]>) -> Result<(), DlqError> {
        let part = self.position.parts.get(&p).expect("only assigned partitions are read");
        let done = part.done.contains(o);
        if !self.opts.filter.at.is_empty() && !self.opts.filter.at.contains(&(p, o)) {
            // Outside the positions named: counted nowhere when finished already.
            if !done {
                self.report.passed_over += 1;
            }
            return Ok(());
        }
        if done {
            self.report.done_before += 1;
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
            self.report.guarded(skipped);
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
        if self.pending.len() >= BATCH || self.batch_is_old() {
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
        let from = crate::ops::dlq::fate::redriven_from(
            &self.report.dead_letter_topic,
            crate::ops::dlq::at::At::new(p, o),
        );
        let record = republish(route, letter, count, &from, now_ms());
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
        let touched: BTreeSet<i32> = acked.iter().map(|(p, _)| *p).collect();
        let before: Vec<(i32, DoneSet)> = touched
            .iter()
            .filter_map(|p| self.position.parts.get(p).map(|part| (*p, part.done.clone())))
            .collect();
        for (partition, offset) in &acked {
            if let Some(part) = self.position.parts.get_mut(partition) {
                part.done.insert(*offset);
            }
        }
        let committed = sink.commit(&mut self.position).await;
        let counted = match (&committed, sink.transactional()) {
            (Ok(()), _) | (Err(_), false) => acked.len(),
            (Err(_), true) => {
                // The batch was aborted: its letters are not finished, and a later commit (the
                // last settle) must not mark them so.
                for (p, done) in before {
                    if let Some(part) = self.position.parts.get_mut(&p) {
                        part.done = done;
                    }
                }
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

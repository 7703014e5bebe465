//! One record's life in the runner: process it ([`super::attempt`]: decode, the attempt loop) →
//! the records it owes (outputs, a copy on a retry or deferred topic, or a dead letter, plus the
//! cost events of its model calls) → produce them and await every acknowledgement → mark done.
//! Whatever happens — bad headers, undecodable bytes, a permanent error, a panic in the stage, a
//! record the broker refuses — ends in records produced or a stop, never in a stuck slot; and
//! every model call is metered whichever way the record ends.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use tracing::Instrument;

use super::consumer::RunnerContext;
use super::dead_letter::{Cause, DeadLetters};
use super::delivery::{enqueue, produce_all, Delivered, ProduceFailure, Produced};
use super::disposition::{Disposition, OutRecord, Visit};
use super::inbound::Inbound;
use super::partitions::{Job, Partitions};
use crate::avro::{Codec, DeadLetterClass};
use crate::call::{trace_id_of, CallLog};
use crate::config::StageSpec;
use crate::shutdown::Shutdown;
use crate::stage::{Port, Stage};
use crate::telemetry::WorkerStopped;
use crate::telemetry::{self, CostEventsUnsent, Outcome, OutputRejected, RecordDone};

pub struct Worker<S> {
    pub stage: S,
    pub spec: StageSpec,
    pub pipeline: String,
    pub codec: Arc<Codec>,
    pub producer: FutureProducer,
    pub partitions: Arc<Partitions>,
    pub consumer: Arc<BaseConsumer<RunnerContext>>,
    /// Topic of each port this stage emits on.
    pub ports: HashMap<Port, String>,
    pub shutdown: Shutdown,
    /// Set by the first fatal error; the runner stops and reports it.
    pub fatal: Mutex<Option<String>>,
    pub(super) letters: DeadLetters,
    /// Where the cost events of model calls go.
    pub metering_topic: String,
    /// Exactly once: the committer whose transactions carry this stage's writes and offsets.
    pub txn: Option<Arc<super::txn::Transactions>>,
}

/// The stage's in-flight gauge, up while a record is handled here, down however it ends.
struct InFlight<'s>(&'s str);

impl<'s> InFlight<'s> {
    fn new(stage: &'s str) -> Self {
        telemetry::in_flight(stage, 1);
        Self(stage)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        telemetry::in_flight(self.0, -1);
    }
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl<S: Stage> Worker<S> {
    /// Processes one record. `permits` (the stage's and the process's in-flight limits) are held
    /// while the stage works and released before its outputs are awaited: the window, not the
    /// processing limit, bounds records waiting for acknowledgements.
    pub async fn handle<P: Send>(self: Arc<Self>, job: Job, permits: P) {
        let tp = job.tp();
        let stage = self.spec.name.as_str();
        if !self.partitions.is_current(&tp, job.epoch) {
            RecordDone { stage, outcome: Outcome::Skipped, elapsed: Duration::ZERO }.emit();
            return;
        }
        let _in_flight = InFlight::new(stage);
        let started = Instant::now();
        let Job { mut inbound, epoch } = job;
        let span =
            telemetry::record_span(stage, &self.spec.group, &inbound.message, &inbound.headers);
        telemetry::continue_trace(&span, &mut inbound.headers);
        let mut visit = Visit { state: inbound.state_or_fresh(), decoded: false };
        let log = CallLog::new(&self.pipeline, stage, visit.state.origin.clone())
            .with_trace(inbound.traceparent().and_then(trace_id_of));
        // A panic in the stage (or here) must not leave the slot and the offset stuck; what the
        // visit learnt before it (attempts, the redacted value) stays in `visit`.
        let disposition = AssertUnwindSafe(self.dispose(&inbound, &mut visit, &log))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|panic| {
                let reason = format!("the stage panicked: {}", panic_text(&*panic));
                Disposition::DeadLetter { class: DeadLetterClass::Permanent, reason }
            });
        let costs =
            super::cost_events::records(&self.codec, &self.metering_topic, stage, &inbound, &log);
        let (mut outputs, letter) = match disposition {
            Disposition::Outputs(outputs) => (outputs, None),
            Disposition::DeadLetter { class, reason } => {
                match self.letters.letter(&inbound, &visit, Cause::new(class, &reason), Some(&log))
                {
                    Ok(record) => (vec![record], Some((class, reason))),
                    Err(reason) => return self.stop(reason, costs.as_deref().unwrap_or(&[])),
                }
            }
            Disposition::Fatal(reason) => {
                return self.stop(reason, costs.as_deref().unwrap_or(&[]));
            }
            Disposition::Abandoned => return self.meter_anyway(costs.as_deref().unwrap_or(&[])),
        };
        let costs = match costs {
            Ok(costs) => costs,
            Err(reason) => return self.stop(reason, &[]),
        };
        drop(permits);
        self.partitions.processed(&tp, epoch);
        if let Some(txn) = &self.txn {
            let outcome = if letter.is_some() { Outcome::DeadLettered } else { Outcome::Ok };
            let record = (&inbound, &visit, &log);
            let committed = self.commit_record(txn, (tp, epoch), record, outputs, costs, outcome);
            if let Some(outcome) = committed.instrument(span).await {
                RecordDone { stage, outcome, elapsed: started.elapsed() }.emit();
            }
            return;
        }
        outputs.extend(costs);
        let cause = letter.as_ref().map(|(class, reason)| Cause::new(*class, reason));
        let delivered = self.deliver(&inbound, &visit, &log, &outputs, cause).instrument(span);
        let outcome = match delivered.await {
            Delivered::Acked(outcome) => outcome,
            Delivered::Stopped => return self.meter_anyway(&outputs),
            Delivered::Fatal(reason) => return self.stop(reason, &outputs),
        };
        let m = &inbound.message;
        self.partitions.complete(&tp, epoch, m.offset(), m.key(), self.consumer.as_ref());
        RecordDone { stage, outcome, elapsed: started.elapsed() }.emit();
    }

    /// Moves a parked record that holds its partition's committed offset back to the end of
    /// its topic, then completes its offset; a record the broker refuses waits where it was.
    pub async fn requeue(self: Arc<Self>, job: Job, due_ms: i64) {
        if let Some(txn) = &self.txn {
            return self.requeue_in_transaction(txn, job).await;
        }
        let record = super::detours::to_tail(&job.inbound);
        match produce_all(&self.producer, std::slice::from_ref(&record), &self.shutdown).await {
            Produced::Acked => {
                let (tp, m) = (job.tp(), &job.inbound.message);
                self.partitions.complete(&tp, job.epoch, m.offset(), None, self.consumer.as_ref());
            }
            Produced::Stopped => {}
            Produced::Refused(refused) => {
                let error = &refused[0].2;
                OutputRejected { stage: &self.spec.name, topic: &record.topic, error }.emit();
                self.partitions.repark(job, due_ms);
            }
        }
    }

    /// Stops the worker with `reason`; the record stays unfinished, its calls metered.
    pub(super) fn stop(&self, reason: String, owed: &[OutRecord]) {
        WorkerStopped { stage: &self.spec.name, reason: &reason }.emit();
        self.fatal.lock().expect("fatal lock").get_or_insert(reason);
        self.shutdown.request();
        self.meter_anyway(owed);
    }

    /// Queues the cost events among `owed` although the record will not finish here: the
    /// provider billed those calls, so they are metered now (a record redone later makes calls
    /// of its own, with events of their own). Duplicates of events already acknowledged are
    /// removed by id downstream.
    pub(super) fn meter_anyway(&self, owed: &[OutRecord]) {
        let events: Vec<OutRecord> =
            owed.iter().filter(|r| r.topic == self.metering_topic).cloned().collect();
        if let Err(error) = enqueue(&self.producer, &events) {
            CostEventsUnsent { stage: &self.spec.name, events: events.len(), error: &error }.emit();
        }
    }

    /// Produces a record's outputs and waits for their acknowledgements. A dead letter the
    /// broker refuses is sent again slim (without the record's bytes); outputs it refuses are
    /// replaced by a dead letter of the input that names the outputs already delivered (and
    /// cost events acknowledged stay: the calls were made). Only a refusal no record can get
    /// past (authorization, fencing) — or a slim dead letter refused too — stops the worker.
    async fn deliver(
        &self,
        inbound: &Inbound,
        visit: &Visit,
        log: &CallLog,
        outputs: &[OutRecord],
        letter: Option<Cause<'_>>,
    ) -> Delivered {
        let refused = match produce_all(&self.producer, outputs, &self.shutdown).await {
            Produced::Acked if letter.is_some() => return Delivered::Acked(Outcome::DeadLettered),
            Produced::Acked => return Delivered::Acked(Outcome::Ok),
            Produced::Stopped => return Delivered::Stopped,
            Produced::Refused(refused) => refused,
        };
        let mut reasons = Vec::new();
        let mut letter_refused = None;
        for (r, kind, error) in &refused {
            OutputRejected { stage: &self.spec.name, topic: &r.topic, error }.emit();
            if *kind == ProduceFailure::Stop || r.topic == self.metering_topic {
                return Delivered::Fatal(format!(
                    "the broker refuses records for '{}': {error}",
                    r.topic
                ));
            }
            if r.topic == self.letters.topic() {
                letter_refused = Some(error.as_str());
            } else {
                reasons.push(format!("output to '{}' refused by the broker: {error}", r.topic));
            }
        }
        if let (Some(cause), Some(refusal)) = (letter, letter_refused) {
            return self.send_slim(inbound, visit, log, cause, refusal).await;
        }
        let delivered: Vec<String> = outputs
            .iter()
            .filter(|o| o.topic != self.metering_topic)
            .filter(|o| !refused.iter().any(|(r, _, _)| std::ptr::eq(*r, *o)))
            .map(|o| o.topic.clone())
            .collect();
        let reason = reasons.join("; ");
        let cause =
            Cause { delivered: &delivered, ..Cause::new(DeadLetterClass::Permanent, &reason) };
        let record = match self.letters.letter(inbound, visit, cause, Some(log)) {
            Ok(record) => record,
            Err(reason) => return Delivered::Fatal(reason),
        };
        match produce_all(&self.producer, std::slice::from_ref(&record), &self.shutdown).await {
            Produced::Acked => Delivered::Acked(Outcome::DeadLettered),
            Produced::Stopped => Delivered::Stopped,
            Produced::Refused(r) => {
                let refusal = r[0].2.clone();
                self.send_slim(inbound, visit, log, cause, &refusal).await
            }
        }
    }

    /// Sends the slim form of a dead letter the broker refused (`refusal`).
    async fn send_slim(
        &self,
        inbound: &Inbound,
        visit: &Visit,
        log: &CallLog,
        cause: Cause<'_>,
        refusal: &str,
    ) -> Delivered {
        let record = match self.letters.slim(inbound, visit, cause, Some(log), refusal) {
            Ok(record) => record,
            Err(reason) => return Delivered::Fatal(reason),
        };
        match produce_all(&self.producer, std::slice::from_ref(&record), &self.shutdown).await {
            Produced::Acked => Delivered::Acked(Outcome::DeadLettered),
            Produced::Stopped => Delivered::Stopped,
            Produced::Refused(r) => Delivered::Fatal(format!(
                "the broker refuses even a dead letter without the record's bytes on '{}': {}",
                self.letters.topic(),
                r[0].2
            )),
        }
    }
}

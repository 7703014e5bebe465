//! A record's end in an exactly-once stage: its cost events are acknowledged first, outside the
//! transaction (the calls were billed whatever happens to it), then its writes and its offset
//! go to the committer ([`super::txn`]) and the record is done when their transaction commits.
//! A record whose transaction aborted is read again from the last committed position and
//! processed again (its model call too, unless the response cache answers); one whose output the
//! broker refused inside a transaction is dead-lettered on its way back.

use std::time::Duration;

use rdkafka::message::Message;

use super::dead_letter::Cause;
use super::delivery::{produce_all, Produced};
use super::disposition::{OutRecord, Visit};
use super::inbound::Inbound;
use super::partitions::{Job, Tp};
use super::txn::{Finished, Settled, Transactions};
use super::worker::Worker;
use crate::avro::DeadLetterClass;
use crate::call::CallLog;
use crate::shutdown::Phase;
use crate::stage::Stage;
use crate::telemetry::Outcome;

impl<S: Stage> Worker<S> {
    /// Meters the record's calls, then commits its writes with its offset. `None`: the record
    /// is not done here (aborted, stopped).
    pub(super) async fn commit_record(
        &self,
        txn: &Transactions,
        (tp, epoch): (Tp, u64),
        (inbound, visit, log): (&Inbound, &Visit, &CallLog),
        writes: Vec<OutRecord>,
        costs: Vec<OutRecord>,
        outcome: Outcome,
    ) -> Option<Outcome> {
        match produce_all(&self.producer, &costs, &self.shutdown).await {
            Produced::Acked => {}
            Produced::Stopped => {
                self.meter_anyway(&costs);
                return None;
            }
            Produced::Refused(refused) => {
                let (r, _, error) = &refused[0];
                let reason = format!("the broker refuses records for '{}': {error}", r.topic);
                self.stop(reason, &[]);
                return None;
            }
        }
        let m = &inbound.message;
        let (writes, outcome) = match txn.refusal(&tp, m.offset()) {
            None => (writes, outcome),
            Some(refusal) => {
                let reason = format!(
                    "output to '{}' refused by the broker: {}",
                    refusal.topic, refusal.error
                );
                let cause = Cause::new(DeadLetterClass::Permanent, &reason);
                let letter = if refusal.topic == self.letters.topic() {
                    self.letters.slim(inbound, visit, cause, Some(log), &refusal.error)
                } else {
                    self.letters.letter(inbound, visit, cause, Some(log))
                };
                match letter {
                    Ok(letter) => (vec![letter], Outcome::DeadLettered),
                    Err(reason) => {
                        self.stop(reason, &[]);
                        return None;
                    }
                }
            }
        };
        let key = m.key().map(<[u8]>::to_vec);
        let finished = Finished { tp, epoch, offset: m.offset(), key, records: writes };
        self.settle(txn, finished).await.then_some(outcome)
    }

    /// Moves a parked record to the end of its topic inside a transaction, with its offset.
    pub(super) async fn requeue_in_transaction(&self, txn: &Transactions, job: Job) {
        let record = super::detours::to_tail(&job.inbound);
        let (tp, m) = (job.tp(), &job.inbound.message);
        let finished =
            Finished { tp, epoch: job.epoch, offset: m.offset(), key: None, records: vec![record] };
        self.settle(txn, finished).await;
    }

    /// Hands `finished` to the committer until its transaction commits (true) or it is not
    /// done here.
    async fn settle(&self, txn: &Transactions, finished: Finished) -> bool {
        let Finished { tp, epoch, offset, key, mut records } = finished;
        loop {
            let finished = Finished { tp: tp.clone(), epoch, offset, key: key.clone(), records };
            match txn.submit(finished).await {
                Settled::Committed => return true,
                Settled::Aborted => return false,
                Settled::Fatal(reason) => {
                    self.stop(reason, &[]);
                    return false;
                }
                Settled::Full(back) => {
                    // Its partition's map is full behind a slow record: after the next commit.
                    let wait = txn.settings.interval.max(Duration::from_millis(10));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.reached(Phase::Stopped) => return false,
                    }
                    records = back;
                }
            }
        }
    }
}

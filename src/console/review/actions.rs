//! What a reviewer does to an item, each step written to the review-claims topic and decided
//! by the [`super::ledger`] once read back: claim, release, decide. A decision that counts is
//! then *finished*: its `Reviewed` record is produced to the approved or rejected topic and,
//! once acknowledged, a `DONE` step lets the queue's group commit past the item.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use super::ledger::{Decision, DocKey, ItemKey, ItemState};
use super::replica::ReviewQueue;
use crate::avro::{HumanDecision, HumanReview, ReviewEvent, ReviewStep, SchemaKind, Verdict};
use crate::call::now_ms;

/// A decision is refused when the claim has less than this left (or a quarter of the claim's
/// lifetime, if less): it could lapse on the way.
const DECIDE_MARGIN_MS: i64 = 10_000;
/// Header naming the decision (`<claims topic>/0/<offset>`) on the records decisions produce.
pub const DECISION_HEADER: &str = "sluice-review-decision";

/// Who acts: a reviewer's name and the console session acting for them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub reviewer: String,
    pub holder: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("item {0}:{1} is not in the queue (decided already, or not read yet)")]
    Unknown(i32, i64),
    #[error("{reviewer} holds this item until {until}: it is theirs to decide until then")]
    ClaimedBy { reviewer: String, until: String },
    #[error("your claim on this item lapsed and nobody holds it now: claim it again to decide it")]
    NotHolder,
    #[error("your claim on this item ends in a few seconds: claim it again (that renews it), then decide")]
    Lapsing,
    #[error("an approved answer cannot be empty: write the answer, or reject with a note")]
    EmptyAnswer,
    #[error("the item was decided already")]
    Decided,
    #[error("item {0}:{1} cannot be decoded and cannot be decided here: {2}")]
    Undecodable(i32, i64, String),
    #[error("item {0}:{1} decodes: decide it rather than discard it")]
    Decodable(i32, i64),
    #[error("the review-claims topic did not answer: {0}")]
    Claims(String),
    #[error(
        "written to the review-claims topic, but this console has not read it back yet (it is \
         behind): reload in a moment to see whether it counted; do not act again"
    )]
    Unconfirmed,
    #[error("producing the decision: {0}")]
    Produce(String),
}

/// What a reviewer decided, before it is written.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub decision: HumanDecision,
    /// The answer as the reviewer left it; `None` or unchanged text: not edited.
    pub answer: Option<String>,
    pub note: String,
}

impl ReviewQueue {
    /// Claims `key` for `actor` until now + the claim TTL (a renewal when they hold it).
    pub async fn claim(&self, key: ItemKey, actor: &Actor) -> Result<(), ActionError> {
        // An undecodable item may be claimed, to look at it, but not decided.
        let _envelope = self.pending(key)?;
        let now = now_ms();
        let ttl = self.claim_ttl.as_millis() as i64;
        self.step(key, actor, ReviewStep::Claim, now + ttl, None).await?;
        match self.state().item_state(key) {
            s if s.holder_at(now_ms()).is_some_and(|(_, h)| h == actor.holder) => Ok(()),
            held @ ItemState::Claimed { .. } => Err(not_held(&held, actor, now_ms())),
            _ => Err(ActionError::Decided),
        }
    }

    /// Gives `key` back to the queue; only its holder can, and only while nobody decided it
    /// (a release from a stale page must not become an item's last step in the compacted topic).
    pub async fn release(&self, key: ItemKey, actor: &Actor) -> Result<(), ActionError> {
        let _envelope = self.pending(key)?;
        let state = self.state().item_state(key);
        if state.holder_at(now_ms()).is_none_or(|(_, h)| h != actor.holder) {
            return Err(not_held(&state, actor, now_ms()));
        }
        self.step(key, actor, ReviewStep::Release, 0, None).await.map(|_| ())
    }

    /// Decides `key`; when the decision counts, produces its record and waits for it.
    pub async fn decide(
        &self,
        key: ItemKey,
        actor: &Actor,
        verdict: Judgement,
    ) -> Result<(), ActionError> {
        let item = self.pending(key)?;
        let original = item.as_ref().ok().and_then(|e| e.answer.as_ref()).map(|a| a.text.clone());
        if let Err(e) = item {
            return Err(ActionError::Undecodable(key.partition, key.offset, e));
        }
        let margin = DECIDE_MARGIN_MS.min(self.claim_ttl.as_millis() as i64 / 4);
        let state = self.state().item_state(key);
        if state.holder_at(now_ms() + margin).is_none_or(|(_, h)| h != actor.holder) {
            return Err(match not_held(&state, actor, now_ms()) {
                ActionError::NotHolder if state.holder_at(now_ms()).is_some() => {
                    ActionError::Lapsing
                }
                other => other,
            });
        }
        // What would be published: an approval needs an answer with some text in it.
        let published = verdict.answer.as_deref().or(original.as_deref()).unwrap_or_default();
        if verdict.decision == HumanDecision::Approved && published.trim().is_empty() {
            return Err(ActionError::EmptyAnswer);
        }
        // Edited means different text, whatever line endings the browser sent.
        let same =
            |a: &str, b: &str| a.replace("\r\n", "\n").trim() == b.replace("\r\n", "\n").trim();
        let answer = verdict.answer.filter(|a| original.as_deref().is_none_or(|o| !same(a, o)));
        let offset = self
            .step(key, actor, ReviewStep::Decide, 0, Some((verdict.decision, answer, verdict.note)))
            .await?;
        match self.state().item_state(key) {
            ItemState::Decided(d) if d.id == offset => {}
            ItemState::Decided(_) | ItemState::Done => return Err(ActionError::Decided),
            _ => return Err(ActionError::NotHolder),
        }
        self.finish(key).await
    }

    /// Produces the counting decision's record for `key` (the copy that was decided), then its
    /// `DONE`. Called by the deciding replica, and by any replica for decisions left unfinished.
    pub async fn finish(&self, key: ItemKey) -> Result<(), ActionError> {
        /// Takes the item out of `finishing` however the finish ends, a cancellation included.
        struct Finishing<'a>(&'a ReviewQueue, ItemKey);
        impl Drop for Finishing<'_> {
            fn drop(&mut self) {
                self.0.finishing.lock().expect("never poisoned").remove(&self.1);
            }
        }
        if !self.finishing.lock().expect("never poisoned").insert(key) {
            return Ok(());
        }
        let _finishing = Finishing(self, key);
        self.finish_once(key).await
    }

    async fn finish_once(&self, key: ItemKey) -> Result<(), ActionError> {
        let (decision, item) = {
            let state = self.state();
            let ItemState::Decided(d) = state.item_state(key) else { return Ok(()) };
            let key = d.item;
            let Some(item) = state.items.get(&key).cloned() else {
                return Err(ActionError::Unknown(key.partition, key.offset));
            };
            (d, item)
        };
        let envelope =
            item.envelope.map_err(|e| ActionError::Undecodable(key.partition, key.offset, e))?;
        let topic = match decision.decision {
            HumanDecision::Approved => &self.topics.approved,
            HumanDecision::Rejected => &self.topics.rejected,
        };
        let id = format!("{}/0/{}", self.topics.claims, decision.id);
        let record = decided(envelope, &decision, id.clone());
        let value = record
            .to_value(SchemaKind::Reviewed)
            .map_err(|e| ActionError::Produce(e.to_string()))?;
        let bytes =
            self.codec.encode(topic, &value).map_err(|e| ActionError::Produce(e.to_string()))?;
        let mut headers =
            OwnedHeaders::new().insert(Header { key: DECISION_HEADER, value: Some(&id) });
        if let Some(tp) = &item.traceparent {
            headers = headers.insert(Header { key: "traceparent", value: Some(tp) });
        }
        let send =
            FutureRecord::to(topic).key(&record.document.id).payload(&bytes).headers(headers);
        self.producer
            .send(send, Timeout::After(std::time::Duration::from_secs(30)))
            .await
            .map_err(|(e, _)| ActionError::Produce(e.to_string()))?;
        let actor = Actor { reviewer: decision.reviewer.clone(), holder: decision.holder.clone() };
        self.step(key, &actor, ReviewStep::Done, 0, None).await?;
        crate::telemetry::ReviewDecided {
            stage: &self.topics.stage,
            item: &format!("{}:{}", key.partition, key.offset),
            reviewer: &decision.reviewer,
            decision: match decision.decision {
                HumanDecision::Approved => "approved",
                HumanDecision::Rejected => "rejected",
            },
        }
        .emit();
        Ok(())
    }

    /// The item at `key` while it is pending.
    fn pending(&self, key: ItemKey) -> Result<Result<crate::avro::Envelope, String>, ActionError> {
        let state = self.state();
        let item = state.items.get(&key).ok_or(ActionError::Unknown(key.partition, key.offset))?;
        if !state.item_state(key).is_pending() {
            return Err(ActionError::Decided);
        }
        Ok(item.envelope.clone())
    }

    /// Acknowledges a record that cannot be decoded, so the queue's commit moves past it: a
    /// `DONE` step for it alone (no decision is produced). Refused for a record that decodes.
    pub async fn discard(&self, key: ItemKey, actor: &Actor) -> Result<(), ActionError> {
        let error = match self.pending(key)? {
            Ok(_) => return Err(ActionError::Decodable(key.partition, key.offset)),
            Err(e) => e,
        };
        self.step(key, actor, ReviewStep::Done, 0, None).await?;
        crate::console::events::Discarded {
            stage: &self.topics.stage,
            item: &format!("{}:{}", key.partition, key.offset),
            reviewer: &actor.reviewer,
            error: &error,
        }
        .emit();
        Ok(())
    }

    /// Writes one step and waits until the ledger applied it; returns its offset.
    async fn step(
        &self,
        key: ItemKey,
        actor: &Actor,
        step: ReviewStep,
        expires_ms: i64,
        decided: Option<(HumanDecision, Option<String>, String)>,
    ) -> Result<i64, ActionError> {
        let (decision, answer, note) = match decided {
            Some((d, a, n)) => (Some(d), a, Some(n)),
            None => (None, None, None),
        };
        let doc = self.state().items.get(&key).map_or(DocKey::Item(key), |i| i.doc());
        let (document, tenant) = match doc {
            DocKey::Document { tenant, id } => (Some(id), Some(tenant)),
            DocKey::Item(_) => (None, None),
        };
        let event = ReviewEvent {
            document,
            tenant,
            item_partition: key.partition,
            item_offset: key.offset,
            step,
            reviewer: actor.reviewer.clone(),
            holder: actor.holder.clone(),
            at_ms: now_ms(),
            expires_ms,
            decision,
            answer,
            note,
        };
        let claims = &self.topics.claims;
        let bytes = apache_avro::to_value(&event)
            .and_then(|v| v.resolve(SchemaKind::ReviewEvent.schema()))
            .map_err(|e| ActionError::Claims(e.to_string()))
            .and_then(|v| {
                self.codec.encode(claims, &v).map_err(|e| ActionError::Claims(e.to_string()))
            })?;
        let item = format!("{}/{}", key.partition, key.offset);
        let record = FutureRecord::to(claims).key(&item).payload(&bytes).partition(0);
        let offset = self
            .producer
            .send(record, Timeout::After(std::time::Duration::from_secs(10)))
            .await
            .map_err(|(e, _)| ActionError::Claims(e.to_string()))?
            .offset;
        if !self.applied(offset).await {
            return Err(ActionError::Unconfirmed);
        }
        Ok(offset)
    }
}

/// Why `actor` may not act on an item in `state` at `now`: who holds it and until when, or
/// that her claim lapsed.
fn not_held(state: &ItemState, actor: &Actor, now: i64) -> ActionError {
    match state.holder_at(now) {
        Some((reviewer, holder)) if holder != actor.holder => {
            let ItemState::Claimed { expires_ms, .. } = state else {
                return ActionError::NotHolder;
            };
            let until = format!(
                "{} ({})",
                crate::console::html::clock(*expires_ms),
                crate::console::html::left(expires_ms - now)
            );
            ActionError::ClaimedBy { reviewer: reviewer.to_owned(), until }
        }
        _ => ActionError::NotHolder,
    }
}

/// The record a decision produces: the needs-human record with the verdict set by a person,
/// the answer as they left it, and the audit trail.
pub fn decided(
    mut envelope: crate::avro::Envelope,
    d: &Decision,
    id: String,
) -> crate::avro::Envelope {
    let mut original_answer = None;
    if let (Some(answer), Some(edited)) = (envelope.answer.as_mut(), d.answer.as_ref()) {
        original_answer = Some(std::mem::replace(&mut answer.text, edited.clone()));
    }
    if let Some(review) = envelope.review.as_mut() {
        review.verdict = match d.decision {
            HumanDecision::Approved => Verdict::Approved,
            HumanDecision::Rejected => Verdict::Rejected,
        };
    }
    envelope.human_review = Some(HumanReview {
        reviewer: d.reviewer.clone(),
        decision: d.decision,
        note: d.note.clone(),
        decided_at_ms: d.at_ms,
        original_answer,
        decision_id: id,
    });
    envelope
}

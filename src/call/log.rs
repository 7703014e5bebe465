//! A record's call log: where the record came from ([`Origin`]), the cost events of its model
//! calls across attempts, and their ids — deterministic from (input topic, partition, offset,
//! stage, attempt, call index), so the duplicates at-least-once delivery makes are removed by id.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::{stable_hash, CostEvent};

/// Where a record came from — its first coordinates, before any retry topic — which its cost
/// events' ids derive from and its retry headers and dead letter carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp there, when it has one (a document's age counts from it).
    pub timestamp_ms: Option<i64>,
}

/// The cost events of one record's handling, across its attempts.
#[derive(Debug)]
pub struct CallLog {
    pub pipeline: String,
    pub stage: String,
    pub origin: Origin,
    /// The W3C trace id of the record (from its `traceparent` header), for its events.
    pub trace_id: Option<String>,
    /// Calls made in the current attempt (resets per attempt).
    next_index: AtomicU32,
    events: Mutex<Vec<CostEvent>>,
}

/// A call index reserved in a record's log, owned so another task can make the call.
#[derive(Debug, Clone)]
pub struct CallSite {
    pipeline: String,
    stage: String,
    origin: Origin,
    trace_id: Option<String>,
    call_index: u32,
}

impl CallSite {
    /// A log whose first call is the reserved one; its events belong to the record.
    pub fn log(&self) -> CallLog {
        let log = CallLog::new(&self.pipeline, &self.stage, self.origin.clone())
            .with_trace(self.trace_id.clone());
        log.next_index.store(self.call_index, Ordering::SeqCst);
        log
    }
}

/// The id of the call at these coordinates; `salt` separates kinds of events at one call site
/// (a cache hit's own event from the original call it re-emits).
pub fn event_id(origin: &Origin, stage: &str, attempt: u32, call_index: u32, salt: &str) -> String {
    let parts: [&[u8]; 7] = [
        origin.topic.as_bytes(),
        &origin.partition.to_le_bytes(),
        &origin.offset.to_le_bytes(),
        stage.as_bytes(),
        &attempt.to_le_bytes(),
        &call_index.to_le_bytes(),
        salt.as_bytes(),
    ];
    let a = stable_hash(&[&parts[..], &[b"a"]].concat());
    let b = stable_hash(&[&parts[..], &[b"b"]].concat());
    format!("{a:016x}{b:016x}")
}

impl CallLog {
    pub fn new(pipeline: &str, stage: &str, origin: Origin) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            stage: stage.to_owned(),
            origin,
            trace_id: None,
            next_index: AtomicU32::new(0),
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn with_trace(mut self, trace_id: Option<String>) -> Self {
        self.trace_id = trace_id;
        self
    }

    /// Reserves the next call index for a call made on the record's behalf elsewhere (a batch
    /// shared with other records); meter it through [`CallSite::log`].
    pub fn reserve(&self) -> CallSite {
        CallSite {
            pipeline: self.pipeline.clone(),
            stage: self.stage.clone(),
            origin: self.origin.clone(),
            trace_id: self.trace_id.clone(),
            call_index: self.next_call(),
        }
    }

    /// Starts a new attempt: call indexes count from zero again.
    pub fn start_attempt(&self) {
        self.next_index.store(0, Ordering::SeqCst);
    }

    /// The index of the next call in this attempt.
    pub fn next_call(&self) -> u32 {
        self.next_index.fetch_add(1, Ordering::SeqCst)
    }

    pub fn push(&self, event: CostEvent) {
        self.events.lock().expect("call log lock").push(event);
    }

    /// The model (as served, else as requested) and prompt version of the latest call, for a
    /// dead letter to name what failed.
    pub fn last_call(&self) -> Option<(String, Option<String>)> {
        let events = self.events.lock().expect("call log lock");
        events.last().map(|e| {
            let model =
                if e.model_served.is_empty() { &e.model_requested } else { &e.model_served };
            (model.clone(), e.prompt_version.clone())
        })
    }

    /// Every event so far, each id once (a re-emitted original may repeat within a record).
    pub fn take(&self) -> Vec<CostEvent> {
        let mut events = std::mem::take(&mut *self.events.lock().expect("call log lock"));
        let mut seen = std::collections::HashSet::new();
        events.retain(|e| seen.insert(e.event_id.clone()));
        events
    }

    pub fn event_id(&self, attempt: u32, call_index: u32, salt: &str) -> String {
        event_id(&self.origin, &self.stage, attempt, call_index, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_differ_by_every_coordinate() {
        let o = Origin { topic: "t".into(), partition: 1, offset: 7, timestamp_ms: None };
        let id = event_id(&o, "s", 1, 0, "");
        assert_eq!(id, event_id(&o, "s", 1, 0, ""));
        assert_eq!(id.len(), 32);
        let others = [
            event_id(&Origin { offset: 8, ..o.clone() }, "s", 1, 0, ""),
            event_id(&Origin { partition: 2, ..o.clone() }, "s", 1, 0, ""),
            event_id(&o, "s2", 1, 0, ""),
            event_id(&o, "s", 2, 0, ""),
            event_id(&o, "s", 1, 1, ""),
            event_id(&o, "s", 1, 0, "cached"),
        ];
        assert!(others.iter().all(|x| *x != id));
    }
}

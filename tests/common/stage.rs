//! A stage driven by a [`Script`]: it records every call and how many calls ran at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sluice::avro::{Classification, Envelope};
use sluice::stage::{Emit, Stage, StageContext, StageError};

/// What the test stage should do with a document, by id.
#[derive(Clone, Default)]
pub struct Script {
    /// Sleep this long before answering.
    pub delay: HashMap<String, Duration>,
    /// Wait for this gate to open before answering.
    pub gate: HashMap<String, Arc<tokio::sync::Semaphore>>,
    /// Wait for this gate, for every document (a closed gate holds every call).
    pub gate_all: Option<Arc<tokio::sync::Semaphore>>,
    /// Fail with this error (every attempt).
    pub fail: HashMap<String, StageError>,
    /// Fail the first N calls for a document with this error, then succeed.
    pub fail_first: HashMap<String, (usize, StageError)>,
    /// Default delay for every document.
    pub default_delay: Duration,
    /// Panic (a stage bug).
    pub panic: HashSet<String>,
    /// Answer with a document content this many bytes long (an output too large to produce).
    pub huge: HashMap<String, usize>,
    /// Emit the input unclassified: an output that does not fit the stage's output schema.
    pub unclassified: HashSet<String>,
    /// Emit a second output, this many bytes long, after the usual one.
    pub extra_huge: HashMap<String, usize>,
    /// Meter every call: a cost event with id `<doc>/<call>` in the record's call log, as a
    /// model call would leave (before its outcome is known).
    pub bill: bool,
}

/// A stage driven by a [`Script`]; records every call (document id, attempt, time) in order,
/// and the peak number of calls in progress at once.
#[derive(Clone)]
pub struct TestStage {
    pub script: Arc<Script>,
    pub calls: Arc<Mutex<Vec<(String, u32, SystemTime)>>>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// Counts a call as in progress until dropped (also when the call is cancelled).
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TestStage {
    pub fn new(script: Script) -> Self {
        Self {
            script: Arc::new(script),
            calls: Arc::new(Mutex::new(Vec::new())),
            active: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn calls_for(&self, id: &str) -> usize {
        self.calls.lock().expect("calls").iter().filter(|(i, _, _)| i == id).count()
    }

    /// When each call for `id` happened, in order, with its attempt number.
    pub fn call_times(&self, id: &str) -> Vec<(u32, SystemTime)> {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, a, t)| (*a, *t))
            .collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().expect("calls").len()
    }

    /// The most calls that were in progress at the same time.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Stage for TestStage {
    async fn process(
        &self,
        mut input: Envelope,
        cx: StageContext<'_>,
    ) -> Result<Vec<Emit>, StageError> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        let _active = Active(self.active.clone());
        self.peak.fetch_max(now, Ordering::SeqCst);
        let id = input.document.id.clone();
        let nth = {
            let mut calls = self.calls.lock().expect("calls");
            calls.push((id.clone(), cx.attempt, SystemTime::now()));
            calls.iter().filter(|(i, _, _)| *i == id).count()
        };
        if self.script.bill {
            if let Some(log) = cx.log {
                log.push(billed(&log.stage, &id, cx.attempt, nth));
            }
        }
        if let Some(gate) = &self.script.gate_all {
            let _permit = gate.acquire().await.expect("gate");
        }
        if let Some(gate) = self.script.gate.get(&id) {
            let _permit = gate.acquire().await.expect("gate");
        }
        let delay = self.script.delay.get(&id).copied().unwrap_or(self.script.default_delay);
        tokio::time::sleep(delay).await;
        if let Some(e) = self.script.fail.get(&id) {
            return Err(e.clone());
        }
        if let Some((n, e)) = self.script.fail_first.get(&id) {
            if nth <= *n {
                return Err(e.clone());
            }
        }
        if self.script.panic.contains(&id) {
            panic!("stage bug on {id}");
        }
        if self.script.unclassified.contains(&id) {
            return Ok(vec![Emit::main(input)]);
        }
        if let Some(n) = self.script.huge.get(&id) {
            input.document.content = "x".repeat(*n);
        }
        input.classification = Some(Classification {
            label: "a".into(),
            confidence: 1.0,
            model: "test".into(),
            prompt_version: None,
        });
        let mut emits = vec![Emit::main(input.clone())];
        if let Some(n) = self.script.extra_huge.get(&id) {
            input.document.content = "x".repeat(*n);
            emits.push(Emit::main(input));
        }
        Ok(emits)
    }
}

/// The cost event of the `nth` call for document `id`.
pub fn billed(stage: &str, id: &str, attempt: u32, nth: usize) -> sluice::call::CostEvent {
    sluice::call::CostEvent {
        event_id: format!("{id}/{nth}"),
        timestamp_ms: sluice::call::now_ms(),
        tenant: "t".into(),
        pipeline: "p".into(),
        stage: stage.to_owned(),
        document_id: id.to_owned(),
        provider: "sim".into(),
        model_requested: "m".into(),
        model_served: "m".into(),
        prompt_version: None,
        input_tokens: 10,
        output_tokens: 5,
        cached_tokens: 0,
        estimated: false,
        cost_micro_usd: 7,
        latency_ms: 1,
        outcome: "ok".into(),
        trace_id: None,
        operation: "chat".into(),
        cached: false,
        attempt: attempt as i32,
        call_index: 0,
        response_id: None,
        price_set_on: None,
        budget: None,
        purpose: None,
    }
}

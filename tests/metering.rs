//! Cost metering end to end: worker processes on the embedded broker call the mock provider
//! over HTTP with injected 503s and 429s; one worker is killed mid-stream and restarted. The
//! deduplicated cost events must equal the mock's own billing ledger to the micro-dollar, with
//! exactly one event per call it served; replaying the input from the beginning then makes no
//! paid call at all (the response cache answers).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use common::procs::start_worker;
use common::{each_record, unique, wait_until, Harness};
use rdkafka::message::{Headers, Message};
use sluice::config::Price;
use sluice::metering::report::dedup;
use sluice::metering::{read_events, CostEvent};
use sluice::mock_provider::{serve, MockConfig};

const PARTITIONS: i32 = 3;
const DOCS: usize = 400;

fn topology(p: &str, url: &str, cache: &Path, group: &str) -> String {
    topology_with(p, url, cache, group, "")
}

fn topology_with(p: &str, url: &str, cache: &Path, group: &str, extra: &str) -> String {
    format!(
        r#"
pipeline: {p}
kafka:
  partitions: {PARTITIONS}
  consumer:
    auto.commit.interval.ms: "300"
    session.timeout.ms: "6000"
    heartbeat.interval.ms: "500"
    max.poll.interval.ms: "12000"
providers:
  m: {{ kind: openai, base_url: {url}, timeout: 5s }}
prices:
  set_on: 2026-11-01
  models:
    m/cls: {{ input: 0.15, output: 0.6 }}
cache: {{ path: {cache} }}
{extra}
inputs:
  {p}.docs: {{ partitions: {PARTITIONS} }}
stages:
  work:
    kind: classify
    input: {p}.docs
    output: {p}.out
    group: {group}
    model: {{ provider: m, name: cls }}
    classify: {{ labels: [billing, technical, other] }}
    concurrency: {{ max_in_flight: 24, per_partition: 8 }}
    retry: {{ attempts: 8, initial_backoff: 5ms, max_backoff: 40ms }}
    shutdown_grace: 5s
"#,
        cache = cache.display()
    )
}

fn mock_config(latency: Duration) -> MockConfig {
    MockConfig {
        latency,
        prices: BTreeMap::from([(
            "cls".to_owned(),
            Price { input: 150_000, output: 600_000, cached_input: 150_000, per_request: 0 },
        )]),
        ..MockConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicated_cost_events_equal_the_providers_ledger_and_a_replay_pays_nothing() {
    let server = serve(
        "127.0.0.1:0".parse().expect("addr"),
        MockConfig {
            error_rate: 0.1,
            rate_limit_rate: 0.05,
            retry_after: Duration::from_millis(20),
            ..mock_config(Duration::from_millis(20))
        },
    )
    .await
    .expect("mock provider");
    let dir = tempfile::tempdir().expect("dir");
    let p = unique("cost");
    let yaml = topology(&p, &server.openai_url(), &dir.path().join("cache"), &format!("{p}-g1"));
    let path = dir.path().join("cost.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    let h = Harness::start(&yaml).await;
    let (bootstrap, registry) =
        (h.topology.kafka.bootstrap_servers.clone(), h.topology.schema_registry.url.clone());
    h.produce_docs(0..DOCS, None, |_| None).await;

    let mut a = start_worker(&path, &bootstrap, &registry);
    let b = start_worker(&path, &bootstrap, &registry);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(90), || async {
            h.committed(PARTITIONS).iter().sum::<i64>() >= (DOCS / 4) as i64
        })
        .await,
        "workers made no progress"
    );
    // Kill at a moment no answer is on its way to the worker: the provider holds new requests,
    // the ones past its door finish, and every call it billed is metered; then SIGKILL. The
    // held requests fail unbilled.
    server.hold();
    assert!(
        wait_until(Duration::from_secs(30), || async { server.in_flight() == 0 }).await,
        "the requests in flight finish"
    );
    let billed_before_kill = billed_ids(&server.ledger());
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let events = read_events(&h.topology).await.expect("metering topic");
            let metered: HashSet<String> =
                events.into_iter().filter_map(|e| e.response_id).collect();
            billed_before_kill.is_subset(&metered)
        })
        .await,
        "every answer the provider billed reaches the metering topic"
    );
    a.kill_9();
    server.release(true);
    let done_at_kill = h.ids_on(&h.output()).await.len();
    assert!(done_at_kill < DOCS, "the kill must land mid-stream");
    let _a2 = start_worker(&path, &bootstrap, &registry);
    let finals = [h.output(), h.dlq()];
    let all_done = || async {
        let mut ids = HashSet::new();
        for t in &finals {
            ids.extend(h.ids_on(t).await.into_keys());
        }
        ids.len() == DOCS
    };
    assert!(wait_until(Duration::from_secs(120), all_done).await, "every document finishes");
    eprintln!("first pass took {:?}", started.elapsed());

    let ledger = server.ledger();
    assert!(ledger.totals("cls").errors > 0 && ledger.rate_limited() > 0, "failures were injected");
    // Events are outputs, acknowledged before offsets move; give the last ones a moment to land.
    let reconciled = wait_until(Duration::from_secs(20), || async {
        let events = dedup(read_events(&h.topology).await.expect("metering topic"));
        events.iter().map(|e| e.cost_micro_usd as u64).sum::<u64>() == ledger.billed_micro_usd()
    });
    let reconciled = reconciled.await;
    let events = dedup(read_events(&h.topology).await.expect("metering topic"));
    if !reconciled {
        let metered: HashSet<_> = events.iter().filter_map(|e| e.response_id.clone()).collect();
        let unmetered: Vec<_> = ledger
            .calls
            .iter()
            .filter(|c| c.response_id.as_ref().is_some_and(|id| !metered.contains(id)))
            .collect();
        let sum: i64 = events.iter().map(|e| e.cost_micro_usd).sum();
        panic!(
            "deduplicated cost {sum} != ledger {}; served but unmetered: {unmetered:?}",
            ledger.billed_micro_usd()
        );
    }
    let paid: Vec<_> = events.iter().filter(|e| !e.cached && e.outcome == "ok").collect();
    let served = billed_ids(&ledger);
    let metered: Vec<String> = paid.iter().map(|e| e.response_id.clone().expect("id")).collect();
    assert_eq!(metered.len(), served.len(), "one event per served call");
    assert_eq!(metered.iter().cloned().collect::<HashSet<_>>(), served);
    assert!(events.iter().any(|e| e.outcome != "ok"), "failed calls are metered too");
    assert!(events.iter().all(|e| e.tenant == "t" && e.model_requested == "m/cls"));
    let billed_calls = ledger.billed_calls();
    let billed = ledger.billed_micro_usd();
    eprintln!("{billed_calls} paid calls, {} micro-dollars, {} events", billed, events.len());
    drop((b, _a2));

    // Replay everything with a new consumer group: answered from the cache, nothing paid.
    let replay = topology(&p, &server.openai_url(), &dir.path().join("cache"), &format!("{p}-g2"));
    let replay_path = dir.path().join("replay.yaml");
    std::fs::write(&replay_path, replay).expect("write topology");
    let answered: HashSet<String> = h.ids_on(&h.output()).await.into_keys().collect();
    // Every worker of the first pass is gone: what is written from here on is the replay's.
    let output_ends = ends(&h, &h.output()).await;
    let metering_ends = ends(&h, &h.topology.metering_topic).await;
    let _r = start_worker(&replay_path, &bootstrap, &registry);
    let replayed = || async { ids_after(&h, &h.output(), &output_ends).await };
    assert!(
        wait_until(Duration::from_secs(90), || async { replayed().await.is_superset(&answered) })
            .await,
        "the replay reprocesses every answered document"
    );
    let after = server.ledger();
    assert_eq!(after.billed_calls(), billed_calls, "a replay makes zero paid calls");
    assert_eq!(replayed().await, answered, "the replay answers exactly the answered documents");
    // The replay's events: its cache hits, and the originals it re-emits from the cache.
    let (first_pass, replay_events) = events_split_at(&h, &metering_ends).await;
    let first_pass_ids: HashSet<&str> = first_pass.iter().map(|e| e.event_id.as_str()).collect();
    let (hits, reemitted): (Vec<_>, Vec<_>) = replay_events.iter().partition(|e| e.cached);
    assert!(hits.iter().all(|e| e.cost_micro_usd == 0), "cache hits cost nothing");
    let strays: Vec<_> =
        reemitted.iter().filter(|e| !first_pass_ids.contains(e.event_id.as_str())).collect();
    assert!(strays.is_empty(), "the replay's other events repeat first-pass ids: {strays:?}");
    let hit_docs: HashSet<String> = hits.iter().map(|e| e.document_id.clone()).collect();
    assert_eq!(hit_docs, answered, "every replayed document was answered from the cache");
    let events = dedup(first_pass.into_iter().chain(replay_events));
    let total: u64 = events.iter().map(|e| e.cost_micro_usd as u64).sum();
    assert_eq!(total, billed, "re-emitted originals are duplicates, removed by id");
}

/// Response ids of the calls the provider billed.
fn billed_ids(ledger: &sluice::mock_provider::Ledger) -> HashSet<String> {
    ledger
        .calls
        .iter()
        .filter(|c| (200..300).contains(&c.status))
        .map(|c| c.response_id.clone().expect("chat responses have ids"))
        .collect()
}

/// The next offset of each partition of `topic`.
async fn ends(h: &Harness, topic: &str) -> HashMap<i32, i64> {
    let mut ends = HashMap::new();
    for (partition, offset) in
        each_record(&h.topology.kafka, topic, |m| (m.partition(), m.offset())).await
    {
        let end = ends.entry(partition).or_insert(0);
        *end = (*end).max(offset + 1);
    }
    ends
}

/// Keys (document ids) of the records of `topic` written after `ends`.
async fn ids_after(h: &Harness, topic: &str, ends: &HashMap<i32, i64>) -> HashSet<String> {
    let ends = ends.clone();
    each_record(&h.topology.kafka, topic, move |m| {
        let new = m.offset() >= ends.get(&m.partition()).copied().unwrap_or(0);
        new.then(|| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
    })
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Two worker processes spend one tenant budget through the ledger topic: per budget window the
/// deduplicated spend stays within the limit (the mock's answers never cost more than their
/// reservation, so the documented overshoot is zero here), the records beyond it wait on the
/// deferred topic and are processed once the window turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_tenant_budget_and_defer_the_rest_to_the_next_window() {
    // About 12.5 micro-dollars a call: the documents need at least three windows' budget, and a
    // window's budget (about 48 calls) is spent long before the window ends even on a loaded
    // machine, so records must be deferred.
    const N: usize = 150;
    const LIMIT: u64 = 600; // micro-dollars per window
    let server =
        serve("127.0.0.1:0".parse().expect("addr"), mock_config(Duration::from_millis(10)))
            .await
            .expect("mock provider");
    let dir = tempfile::tempdir().expect("dir");
    let p = unique("budget");
    const WINDOW_MS: i64 = 8000;
    let budgets = "budgets: { window: 8s, lease: 0.0001, tenants: { t: { limit: 0.0006 } } }";
    let yaml = topology_with(
        &p,
        &server.openai_url(),
        &dir.path().join("cache"),
        &format!("{p}-g"),
        budgets,
    );
    let path = dir.path().join("budget.yaml");
    std::fs::write(&path, &yaml).expect("write topology");
    let h = Harness::start(&yaml).await;
    let (bootstrap, registry) =
        (h.topology.kafka.bootstrap_servers.clone(), h.topology.schema_registry.url.clone());
    h.produce_docs(0..N, None, |_| None).await;
    let _a = start_worker(&path, &bootstrap, &registry);
    let _b = start_worker(&path, &bootstrap, &registry);
    let deferred = h.topology.stages[0].deferred_topic.clone();
    assert!(
        wait_until(Duration::from_secs(120), || async { h.ids_on(&h.output()).await.len() == N })
            .await,
        "every document is processed, the deferred ones after their window turned"
    );
    // Both replicas spent from the one ledger.
    let claims = h.read_all(&h.topology.budgets.as_ref().expect("budgets").ledger_topic).await;
    let mut claims_by_replica: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, _, claim) in claims {
        *claims_by_replica.entry(field(&claim.expect("a claim"), "replica")).or_default() += 1;
    }
    assert_eq!(claims_by_replica.len(), 2, "each worker claimed its leases: {claims_by_replica:?}");
    // Deferred records waited for the next window: each is due when the window after the one
    // it was deferred in starts, and its document was answered only then.
    let deferrals = each_record(&h.topology.kafka, &deferred, |m| {
        let id = String::from_utf8_lossy(m.key().expect("keyed")).into_owned();
        let due = m
            .headers()
            .and_then(|hs| hs.iter().find(|h| h.key == "sluice-retry-due-ms"))
            .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
            .expect("a deferred record carries its due time");
        (id, m.timestamp().to_millis().expect("a timestamp"), due)
    })
    .await;
    assert!(!deferrals.is_empty(), "records beyond the budget were deferred");
    let mut due_of: HashMap<String, i64> = HashMap::new();
    for (id, deferred_at, due) in deferrals {
        assert_eq!(due % WINDOW_MS, 0, "{id} is due at a window boundary, not at {due}");
        assert!(
            due <= deferred_at + WINDOW_MS,
            "{id} deferred at {deferred_at} past the next window"
        );
        let d = due_of.entry(id).or_default();
        *d = (*d).max(due);
    }
    let answered_at = each_record(&h.topology.kafka, &h.output(), |m| {
        let id = String::from_utf8_lossy(m.key().expect("keyed")).into_owned();
        (id, m.timestamp().to_millis().expect("a timestamp"))
    })
    .await;
    let mut last_answer: HashMap<String, i64> = HashMap::new();
    for (id, at) in answered_at {
        let last = last_answer.entry(id).or_default();
        *last = (*last).max(at);
    }
    for (id, due) in &due_of {
        let at = last_answer[id];
        assert!(at >= *due, "{id} was answered at {at}, before its window started at {due}");
    }
    let events = dedup(read_events(&h.topology).await.expect("metering topic"));
    let mut per_window: BTreeMap<String, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| !e.cached && e.outcome == "ok") {
        let budget = e.budget.clone().expect("every paid call is charged to a budget");
        *per_window.entry(budget).or_default() += e.cost_micro_usd as u64;
    }
    eprintln!("spend per budget window: {per_window:?}");
    assert!(per_window.len() >= 3, "the run spans budget windows: {per_window:?}");
    for (window, spent) in &per_window {
        assert!(*spent <= LIMIT, "{window} spent {spent} of {LIMIT} micro-dollars");
    }
    let total: u64 = per_window.values().sum();
    assert_eq!(total, server.ledger().billed_micro_usd(), "and every paid call was metered");
}

/// The cost events written before `ends` (per partition) and those written after.
async fn events_split_at(
    h: &Harness,
    ends: &HashMap<i32, i64>,
) -> (Vec<CostEvent>, Vec<CostEvent>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (partition, offset, _, value) in h.read_all(&h.topology.metering_topic).await {
        let event = CostEvent::from_value(&value.expect("a cost event")).expect("a cost event");
        if offset < ends.get(&partition).copied().unwrap_or(0) {
            before.push(event);
        } else {
            after.push(event);
        }
    }
    (before, after)
}

/// A string field of an Avro record.
fn field(record: &Value, name: &str) -> String {
    let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
    match fields.iter().find(|(n, _)| n == name) {
        Some((_, Value::String(s))) => s.clone(),
        other => panic!("no string field '{name}': {other:?}"),
    }
}

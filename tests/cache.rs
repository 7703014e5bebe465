//! The Redis response cache against a real `redis-server`: calls cancelled mid-exchange (as a
//! stage deadline or timeout cancels them) must never leave a connection whose next answer
//! belongs to another key.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sluice::call::CostEvent;
use sluice::config::CacheSpec;
use sluice::policy::cache::{Answer, Entry, ResponseCache};

const KEYS: usize = 64;
const TASKS: usize = 32;
const ROUNDS: usize = 200;

/// An entry that names its own key in every field a reader could check.
fn entry_for(key: &str) -> Entry {
    Entry {
        answer: Answer::Chat {
            text: key.to_owned(),
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            cached_tokens: 0,
            estimated: false,
            finish_reason: "stop".into(),
        },
        served: key.to_owned(),
        provider: "p".into(),
        model_name: "m".into(),
        event: CostEvent {
            event_id: key.to_owned(),
            timestamp_ms: 0,
            tenant: format!("tenant-of-{key}"),
            pipeline: "p".into(),
            stage: "s".into(),
            document_id: key.to_owned(),
            provider: "p".into(),
            model_requested: "m".into(),
            model_served: "m".into(),
            prompt_version: None,
            input_tokens: 1,
            output_tokens: 1,
            cached_tokens: 0,
            estimated: false,
            cost_micro_usd: 1,
            latency_ms: 1,
            outcome: "ok".into(),
            trace_id: None,
            operation: "chat".into(),
            cached: false,
            attempt: 1,
            call_index: 0,
            response_id: None,
            price_set_on: None,
            budget: None,
            purpose: None,
        },
    }
}

/// Many tasks read (and some write) with deadlines short enough to cancel a good share of the
/// calls between sending the command and reading its reply; every answer that does arrive must
/// be the one stored under the key asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_cache_calls_never_answer_another_key() {
    let redis = common::redis::start();
    let spec = CacheSpec::Redis { url: redis.url.clone(), ttl: Duration::from_secs(3600) };
    let cache = Arc::new(ResponseCache::open(&spec).expect("cache"));
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i:03}")).collect();
    for k in &keys {
        cache.put(k, &entry_for(k)).await;
    }
    assert!(cache.get(&keys[0]).await.is_some(), "the cache answers before the load");

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, keys) = (cache.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let (mut answered, mut cancelled, mut wrong) = (0usize, 0usize, Vec::new());
            for round in 0..ROUNDS {
                let key = &keys[(t * 7 + round * 13) % KEYS];
                // From 0 to 999 µs: some calls finish, many are cut off mid-exchange.
                let deadline = Duration::from_micros(((t * 31 + round * 17) % 1000) as u64);
                if round % 10 == 0 {
                    // A cancelled write must not leave its reply for the next read either.
                    let _ = tokio::time::timeout(deadline, cache.put(key, &entry_for(key))).await;
                    continue;
                }
                match tokio::time::timeout(deadline, cache.get(key)).await {
                    Err(_) => cancelled += 1,
                    Ok(None) => {}
                    Ok(Some(entry)) => {
                        answered += 1;
                        if entry.served != *key || entry.event.document_id != *key {
                            wrong.push(format!("asked {key}, got {}", entry.served));
                        }
                    }
                }
            }
            (answered, cancelled, wrong)
        }));
    }
    let (mut answered, mut cancelled, mut wrong) = (0, 0, Vec::new());
    for task in tasks {
        let (a, c, w) = task.await.expect("task");
        answered += a;
        cancelled += c;
        wrong.extend(w);
    }
    assert!(cancelled > 0, "the deadlines cancelled no call: the test exercised nothing");
    assert!(answered > 0, "no call finished in time: the test checked nothing");
    assert!(wrong.is_empty(), "{} answers for another key, e.g. {:?}", wrong.len(), &wrong[..1]);

    // After the storm, every key still reads back as its own entry.
    for k in &keys {
        let entry = cache.get(k).await.expect("entry still cached");
        assert_eq!(entry.served, *k);
    }
}

/// An unreachable Redis costs money, not correctness: reads are misses, writes are dropped, and
/// the cache answers again once Redis is back.
#[tokio::test]
async fn an_unreachable_redis_is_a_miss_until_it_comes_back() {
    let redis = common::redis::start();
    let url = redis.url.clone();
    drop(redis);
    let spec = CacheSpec::Redis { url: url.clone(), ttl: Duration::from_secs(3600) };
    let cache = ResponseCache::open(&spec).expect("opening needs no connection");
    cache.put("k", &entry_for("k")).await;
    assert!(cache.get("k").await.is_none(), "nothing is reachable: a miss");

    let port = url.rsplit(':').next().expect("port");
    let _back = common::redis::start_on(port.parse().expect("port number"));
    let mut found = None;
    for _ in 0..50 {
        cache.put("k", &entry_for("k")).await;
        found = cache.get("k").await;
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.expect("the cache reconnects").served, "k");
}

//! The store on librdkafka's mock cluster: replicas share entries, a restart rebuilds them, a
//! tombstone removes them everywhere, forged records are skipped.

use rdkafka::producer::{FutureProducer, FutureRecord};

use super::*;
use crate::devstack::MockKafka;
use crate::policy::semantic::entry::test_entry;
use crate::policy::semantic::key::test_key;

const TOPIC: &str = "sluice.semantic-cache";

fn cluster() -> (MockKafka, KafkaSettings) {
    let kafka = MockKafka::start(1).expect("mock cluster");
    kafka.create_topic(TOPIC, 1).expect("topic");
    let settings = KafkaSettings::single_broker(kafka.bootstrap_servers(), 1);
    (kafka, settings)
}

async fn open(settings: &KafkaSettings) -> SemanticStore {
    SemanticStore::open(settings, TOPIC, IndexLimits::default()).await.expect("store")
}

/// An entry that lives an hour from now.
fn entry(tenant: &str, text: &str) -> SemanticEntry {
    let mut e = test_entry(tenant, text, &[1.0, 0.5, 0.0], now_ms());
    e.expires_ms = e.created_ms + 3_600_000;
    e
}

fn answers(store: &SemanticStore, tenant: &str, text: &str) -> bool {
    store.lookup(&test_key(tenant), &[1.0, 0.5, 0.0], text, 0.9).hit.is_some()
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_entries_and_a_restart_rebuilds_them() {
    let (_kafka, settings) = cluster();
    let a = open(&settings).await;
    let b = open(&settings).await;
    assert_eq!(a.rebuild().entries, 0);
    a.put(entry("acme", "How do I reset my password?")).await.expect("put");
    assert!(answers(&a, "acme", "how do I reset my password"), "at once on the writer");
    wait_until("b read a's entry", || answers(&b, "acme", "How do I reset my password?")).await;
    assert!(!answers(&b, "globex", "How do I reset my password?"), "another tenant's key");
    b.put(entry("acme", "Where is my parcel?")).await.expect("put");
    wait_until("a read b's entry", || a.size().0 == 2).await;
    drop((a, b));
    let restarted = open(&settings).await;
    let rebuild = restarted.rebuild();
    assert_eq!((rebuild.records, rebuild.entries), (2, 2));
    assert!(answers(&restarted, "acme", "Where is my parcel?"));
    assert!(restarted.size().1 > 0, "memory is accounted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_removes_the_entry_on_every_replica_and_after_a_restart() {
    let (_kafka, settings) = cluster();
    let a = open(&settings).await;
    let b = open(&settings).await;
    let wrong = entry("acme", "Cancel my subscription.");
    let record_key = wrong.record_key();
    a.put(wrong).await.expect("put");
    wait_until("b read the entry", || answers(&b, "acme", "Cancel my subscription.")).await;
    b.remove(&record_key).await.expect("tombstone");
    assert!(!answers(&b, "acme", "Cancel my subscription."), "at once on the remover");
    wait_until("a read the tombstone", || a.size().0 == 0).await;
    let restarted = open(&settings).await;
    assert_eq!(restarted.rebuild().records, 2);
    assert_eq!(restarted.size(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_records_are_skipped_and_never_answer() {
    let (_kafka, settings) = cluster();
    let producer: FutureProducer = producer_config(&settings).create().expect("producer");
    let send = |key: Option<Vec<u8>>, value: Option<Vec<u8>>| {
        let producer = producer.clone();
        async move {
            let mut record = FutureRecord::<[u8], [u8]>::to(TOPIC);
            if let Some(k) = key.as_deref() {
                record = record.key(k);
            }
            if let Some(v) = value.as_deref() {
                record = record.payload(v);
            }
            producer.send(record, Duration::from_secs(10)).await.expect("produce");
        }
    };
    let genuine = entry("acme", "Refund order 1142");
    let key = genuine.record_key().into_bytes();
    // Another tenant's entry under a key of acme's; garbage; no key; a NaN in the vector.
    let mut other = entry("globex", "Refund order 1142").encode();
    send(Some(key.clone()), Some(other.clone())).await;
    send(Some(key.clone()), Some(b"not an entry".to_vec())).await;
    send(None, Some(genuine.encode())).await;
    let at = other.len() - 4;
    other[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    send(Some(entry("globex", "Refund order 1142").record_key().into_bytes()), Some(other)).await;
    send(Some(key), Some(genuine.encode())).await;
    let store = open(&settings).await;
    assert_eq!((store.rebuild().records, store.skipped()), (5, 4));
    assert_eq!(store.size().0, 1, "only the genuine entry");
    assert!(answers(&store, "acme", "Refund order 1142"));
    assert!(!answers(&store, "globex", "Refund order 1142"));
}

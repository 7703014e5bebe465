//! The one topic reader on a topic written in Kafka transactions (an exactly-once stage's outputs,
//! a redrive batch), against Apache Kafka: it delivers the committed records only, and a read to
//! the end ends at the end — though the last offset of every partition is a commit or abort marker
//! no reader is ever given.
//!
//! Needs a real broker and is `#[ignore]`d otherwise:
//! `scripts/with-kafka cargo test --test committed_reader_real -- --include-ignored`.

use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice::config::KafkaSettings;
use sluice::kafka::reader::reader;
use sluice::kafka::{create_topics, transactional_producer_config};

fn settings(bootstrap: String) -> KafkaSettings {
    KafkaSettings::single_broker(bootstrap, 1)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real broker: scripts/with-kafka"]
async fn a_read_to_the_end_of_a_transactional_topic_gets_the_committed_records_and_ends() {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect("scripts/with-kafka");
    let kafka = settings(bootstrap);
    let topic = format!("committed-reader-{}", std::process::id());
    create_topics(&kafka, &[(topic.clone(), 2)]).await.expect("topic");

    let (k, t) = (kafka.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        let config = transactional_producer_config(&k, &format!("{t}.writer"));
        let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
        producer.init_transactions(Duration::from_secs(30)).expect("init");
        // Committed, aborted, committed: every partition ends in a marker.
        for (values, commit) in [(["a", "b"], true), (["x", "y"], false), (["c", "d"], true)] {
            producer.begin_transaction().expect("begin");
            for (p, v) in values.iter().enumerate() {
                let record = BaseRecord::<(), str>::to(&t).partition(p as i32).payload(*v);
                producer.send(record).map_err(|(e, _)| e).expect("send");
            }
            if commit {
                producer.commit_transaction(Duration::from_secs(30)).expect("commit");
            } else {
                producer.flush(Duration::from_secs(30)).expect("flush");
                producer.abort_transaction(Duration::from_secs(30)).expect("abort");
            }
        }
    })
    .await
    .expect("producer thread");

    // A reader told to wait ten minutes for the rest: it must see that it is at the end. On a
    // thread of its own, so that a reader that waits is given up on (the test then fails).
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = reader(&kafka, &[topic.as_str()], true).expect("reader");
        let mut values = Vec::new();
        r.drain(
            None,
            true,
            Duration::from_secs(600),
            || false,
            |m| {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                true
            },
        )
        .expect("drain");
        let _ = tx.send(values);
    });
    let mut values = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the read ends at the end of every partition, not after its patience");
    values.sort();
    assert_eq!(values, ["a", "b", "c", "d"], "committed records only");
    eprintln!("read to the end in {:?}", started.elapsed());
}

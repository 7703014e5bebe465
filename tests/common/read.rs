//! Reading back what a run left: records and keys of topics, committed offsets, Avro fields.

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::config::KafkaSettings;
use sluice::records_io::reader;

use super::Harness;

/// When a read of topics ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// At the end each partition had when the read began (needs ListOffsets; the embedded broker).
    End,
    /// After this long without a record: for brokers that answer ListOffsets wrongly (tansu).
    Idle(Duration),
}

/// `f` of every record of `topic` so far, read on a blocking thread.
pub async fn each_record<T: Send + 'static>(
    kafka: &KafkaSettings,
    topic: &str,
    f: impl Fn(&BorrowedMessage<'_>) -> T + Send + 'static,
) -> Vec<T> {
    each_record_of(kafka, &[topic.to_owned()], Until::End, f).await
}

/// `f` of every record of `topics`, read on a blocking thread until `until`.
pub async fn each_record_of<T: Send + 'static>(
    kafka: &KafkaSettings,
    topics: &[String],
    until: Until,
    f: impl Fn(&BorrowedMessage<'_>) -> T + Send + 'static,
) -> Vec<T> {
    let (kafka, topics) = (kafka.clone(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let r = reader(&kafka, &names, true).expect("reader");
        let (stop_at_end, idle) = match until {
            Until::End => (true, Duration::from_secs(5)),
            Until::Idle(idle) => (false, idle),
        };
        let mut out = Vec::new();
        r.drain(
            None,
            stop_at_end,
            idle,
            || false,
            |m| {
                out.push(f(m));
                true
            },
        )
        .expect("drain");
        out
    })
    .await
    .expect("reader thread")
}

/// The keys (as text; empty when absent) of every record of `topics`, with repeats.
pub async fn keys_on(kafka: &KafkaSettings, topics: &[String], until: Until) -> Vec<String> {
    each_record_of(kafka, topics, until, |m| {
        String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned()
    })
    .await
}

/// The position `group` resumes from on each partition `0..partitions` of `topic`: its committed
/// offset, or 0 where it has committed none — a group without a commit starts at the beginning
/// (`auto.offset.reset=earliest`), and every test topic starts at offset 0. So the sum over
/// partitions is the number of records the group has finished for good.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    try_committed(bootstrap, group, topic, partitions).expect("committed offsets")
}

/// [`committed`], or the broker's error (a coordinator that is still loading after a restart).
pub fn try_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> rdkafka::error::KafkaResult<Vec<i64>> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .collect())
}

/// The group's commit for each of `partitions` of the input topic: position and metadata (the
/// completed-offset map), `None` where nothing is committed.
pub fn committed_with_metadata(h: &Harness, partitions: i32) -> Vec<Option<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", h.stack.kafka.bootstrap_servers())
        .set("group.id", h.group())
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&h.input(), p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => Some((o, e.metadata().to_owned())),
            _ => None,
        })
        .collect()
}

/// Field `name` of an Avro record; the branch's value for an optional (union) field.
pub fn field<'v>(value: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = value else { panic!("not a record: {value:?}") };
    let v = &fields.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no field {name}")).1;
    match v {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// The headers of every record on `topic`, as text.
pub async fn raw_headers(h: &Harness, topic: &str) -> Vec<HashMap<String, String>> {
    each_record(&h.topology.kafka, topic, |m| {
        let mut map = HashMap::new();
        if let Some(hs) = m.headers() {
            for hd in hs.iter() {
                let v = hd.value.map(|v| String::from_utf8_lossy(v).into_owned());
                map.insert(hd.key.to_owned(), v.unwrap_or_default());
            }
        }
        map
    })
    .await
}

/// One record of a topic: key, value and headers as text.
pub type Raw = (Option<String>, Option<Vec<u8>>, Vec<(String, String)>);

pub async fn raw_records(h: &Harness, topic: &str) -> Vec<Raw> {
    each_record(&h.topology.kafka, topic, |m| {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|hd| {
                        let v = hd.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        (hd.key.to_owned(), v.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        (key, m.payload().map(<[u8]>::to_vec), headers)
    })
    .await
}

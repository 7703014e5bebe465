//! Spend today per stage and tenant, from the metering topic, kept up to date incrementally: a
//! refresh reads only the records written since the last one (per partition, from the offset
//! after the last read), so the console's pipeline page does not read the whole day again every
//! few seconds. Duplicates are removed by event id; records that are not cost events are
//! skipped and counted. At midnight UTC the tally starts over.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rdkafka::message::Message;

use super::groups::{self, GroupError};
use crate::avro::Codec;
use crate::config::Topology;
use crate::kafka::reader::{read_ranges, Range, RawRecord};
use crate::kafka::registry_settings;
use crate::metering::{decode_events, ReadError, Skipped};

const DAY_MS: i64 = 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error(transparent)]
    Group(#[from] GroupError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Metering(#[from] ReadError),
    #[error(transparent)]
    Registry(#[from] crate::avro::RegistryError),
}

/// Today's spend, and where on the metering topic the next refresh goes on from.
#[derive(Default)]
pub struct SpendToday {
    /// The start of the day counted (ms, 00:00 UTC); 0 before the first refresh.
    day_start: i64,
    /// Per partition: the next offset to read.
    next: HashMap<i32, i64>,
    /// Event ids counted today.
    seen: HashSet<String>,
    /// Stage → tenant → micro-USD.
    spend: HashMap<String, BTreeMap<String, u64>>,
    /// Records read today that are not cost events.
    pub skipped: Skipped,
    /// Records read by the last refresh (what it cost).
    pub last_read: u64,
    codec: Option<Codec>,
}

impl SpendToday {
    pub fn new() -> Self {
        Self::default()
    }

    /// Per tenant, a stage's spend today (micro-USD).
    pub fn stage(&self, stage: &str) -> BTreeMap<String, u64> {
        self.spend.get(stage).cloned().unwrap_or_default()
    }

    /// Reads what was written since the last refresh (the whole day at the first, or after
    /// midnight).
    pub async fn refresh(&mut self, t: &Topology, now_ms: i64) -> Result<(), SpendError> {
        let day = now_ms - now_ms.rem_euclid(DAY_MS);
        if day != self.day_start {
            let codec = self.codec.take();
            *self = Self { day_start: day, codec, ..Self::default() };
        }
        let (kafka, topic, next) = (t.kafka.clone(), t.metering_topic.clone(), self.next.clone());
        let (raw, next) = tokio::task::spawn_blocking(move || read_new(&kafka, &topic, next, day))
            .await
            .expect("metering thread does not panic")?;
        if self.codec.is_none() {
            self.codec = Some(Codec::connect(&registry_settings(t), &[]).await?);
        }
        let codec = self.codec.as_ref().expect("connected above");
        // Decoded before the position moves: a registry outage leaves these records to the next
        // refresh instead of losing them.
        let n = raw.len() as u64;
        let read = decode_events(codec, raw).await?;
        self.next = next;
        self.last_read = n;
        self.skipped.merge(&read.skipped);
        for e in read.events {
            if e.timestamp_ms < day || !self.seen.insert(e.event_id.clone()) {
                continue;
            }
            let by_tenant = self.spend.entry(e.stage).or_default();
            *by_tenant.entry(e.tenant).or_insert(0) += e.cost_micro_usd.max(0) as u64;
        }
        Ok(())
    }
}

/// The records of `topic` past `next` (partitions not yet in it: from the first record of the
/// day), and where each partition goes on from.
fn read_new(
    kafka: &crate::config::KafkaSettings,
    topic: &str,
    mut next: HashMap<i32, i64>,
    day: i64,
) -> Result<(Vec<RawRecord>, HashMap<i32, i64>), SpendError> {
    let marks = groups::watermarks(kafka, topic)?;
    let fresh: Vec<i32> = marks.iter().map(|m| m.0).filter(|p| !next.contains_key(p)).collect();
    if !fresh.is_empty() {
        for (p, from) in groups::offsets_at(kafka, topic, &fresh, day)? {
            let high = marks.iter().find(|m| m.0 == p).map_or(0, |m| m.2);
            next.insert(p, from.unwrap_or(high));
        }
    }
    let ranges: Vec<Range> = marks
        .iter()
        .map(|(p, _, high)| Range {
            topic: topic.to_owned(),
            partition: *p,
            from: next[p],
            to: *high,
        })
        .collect();
    let mut out = Vec::new();
    read_ranges(kafka, &ranges, Duration::from_secs(10), |m| {
        let key = m.key().map(<[u8]>::to_vec);
        out.push((m.partition(), m.offset(), key, m.payload().map(<[u8]>::to_vec)));
    })?;
    for (p, offset, _, _) in &out {
        let n = next.entry(*p).or_insert(0);
        *n = (*n).max(offset + 1);
    }
    Ok((out, next))
}

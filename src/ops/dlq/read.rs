//! Reading a stage's dead-letter topic: the envelope (`schemas/dead_letter.avsc`) decoded back
//! into a [`DeadLetter`], the filters `dlq inspect` and `dlq redrive` share, the redrive count a
//! record carries, and an original value shown decoded when it decodes, as base64 when not.

use base64::Engine;
use rdkafka::error::KafkaError;
use serde_json::{json, Value as Json};

use crate::avro::{
    avro_to_json, Codec, CodecError, DeadLetter, DeadLetterClass, Envelope, RegistryError,
    SchemaKind,
};
use crate::config::{StageSpec, Topology};

/// The header counting how often a record was redriven; carried on the republished record, so a
/// record dead-lettered again brings it back in its `original_headers`.
pub use crate::retry::state::REDRIVE_COUNT;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("no stage '{0}' in the topology")]
    UnknownStage(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry did not answer: nothing was decided about the record; run again later.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error(
        "the redrive position of group '{group}' on partition {partition} moved while this run \
         held it: is another redrive of this stage running? Stopped; run again when it is done"
    )]
    PositionMoved { group: String, partition: i32 },
    #[error(
        "another redrive or discard of stage '{stage}' took over (it fenced this run's \
         transactional producer): this run stopped, and its open batch was aborted; what it \
         committed before stands"
    )]
    TakenOver { stage: String },
    #[error(
        "the broker aborted this run's open batch ({error}) and no other redrive or discard of \
         stage '{stage}' is running: the transaction was open longer than the broker's \
         transaction.timeout.ms, or the coordinator bumped the producer's epoch. Nothing of the \
         batch was published; what was committed before stands; run again"
    )]
    TransactionAborted { stage: String, error: String },
    #[error(
        "another redrive or discard of stage '{stage}' is running ({holders}): refused; run \
         again when it is done"
    )]
    Busy { stage: String, holders: String },
    /// The stage's letters cannot be republished anywhere only it reads (see the message).
    #[error("refused: {0}")]
    Refused(String),
    #[error("cannot tell what broker this is: {0}")]
    Broker(String),
    #[error("republishing dead letter {partition}:{offset} to '{topic}' failed: {error}")]
    Produce { partition: i32, offset: i64, topic: String, error: KafkaError },
    #[error(transparent)]
    Group(#[from] crate::ops::groups::GroupError),
}

/// The stage named `name`, or [`DlqError::UnknownStage`].
pub fn stage<'t>(t: &'t Topology, name: &str) -> Result<&'t StageSpec, DlqError> {
    t.stage(name).ok_or_else(|| DlqError::UnknownStage(name.to_owned()))
}

/// One record of a dead-letter topic; `letter` is why it is not a dead letter when it is not.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub letter: Result<DeadLetter, String>,
}

/// Decodes a dead-letter record's value. The outer error is only a registry that did not answer
/// (nothing can be said about the record); the inner one is a record that is no dead letter.
pub async fn decode_letter(
    codec: &Codec,
    payload: Option<&[u8]>,
) -> Result<Result<DeadLetter, String>, DlqError> {
    match codec.decode(payload).await {
        Ok(d) if d.kind == SchemaKind::DeadLetter => Ok(DeadLetter::from_value(&d.value)),
        Ok(d) => Ok(Err(format!("not a dead letter but a {}", d.kind.full_name()))),
        Err(CodecError::RegistryUnavailable(e)) => Err(DlqError::RegistryUnavailable(e)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Every record of `topic` from the beginning to its end when the read began, decoded.
pub async fn read_all(
    t: &Topology,
    codec: &Codec,
    topic: &str,
) -> Result<Vec<DlqRecord>, DlqError> {
    let raw = crate::records_io::read_topic(&t.kafka, topic).await?;
    let mut records = Vec::with_capacity(raw.len());
    for (partition, offset, key, payload) in raw {
        let letter = decode_letter(codec, payload.as_deref()).await?;
        records.push(DlqRecord { partition, offset, key, letter });
    }
    Ok(records)
}

/// How many records `topic` holds, and the newest `per_partition` of each partition, decoded
/// (for a page that shows the newest: the read is bounded however large the topic is).
pub async fn read_newest(
    t: &Topology,
    codec: &Codec,
    topic: &str,
    per_partition: i64,
) -> Result<(i64, Vec<DlqRecord>), DlqError> {
    let (kafka, name) = (t.kafka.clone(), topic.to_owned());
    let (total, raw) = tokio::task::spawn_blocking(move || -> Result<_, DlqError> {
        let marks = crate::ops::groups::watermarks(&kafka, &name)?;
        let ranges: Vec<crate::ops::ranges::Range> = marks
            .iter()
            .map(|(partition, low, high)| crate::ops::ranges::Range {
                topic: name.clone(),
                partition: *partition,
                from: (*high - per_partition).max(*low),
                to: *high,
            })
            .collect();
        let mut raw = Vec::new();
        crate::ops::ranges::read_ranges(
            &kafka,
            &ranges,
            std::time::Duration::from_secs(10),
            |m| {
                use rdkafka::message::Message;
                raw.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                ));
            },
        )?;
        Ok((marks.iter().map(|(_, low, high)| high - low).sum(), raw))
    })
    .await
    .expect("the reader thread does not panic")?;
    let mut records = Vec::with_capacity(raw.len());
    for (partition, offset, key, payload) in raw {
        let letter = decode_letter(codec, payload.as_deref()).await?;
        records.push(DlqRecord { partition, offset, key, letter });
    }
    Ok((total, records))
}

/// Which dead letters a command looks at. Times are `failed_at_ms` (when the stage gave up).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub error_class: Option<DeadLetterClass>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Document ids: a record's key, or the `id` of its decoded original document.
    pub ids: Vec<String>,
    /// Positions (partition, offset) in the dead-letter topic: only these letters (a document
    /// failed twice has two letters; this picks one).
    pub at: Vec<(i32, i64)>,
}

impl Filter {
    /// Whether `letter` passes every filter but `ids` (which needs the codec).
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.error_class.is_none_or(|c| c == letter.error_class)
            && self.since_ms.is_none_or(|s| letter.failed_at_ms >= s)
            && self.until_ms.is_none_or(|u| letter.failed_at_ms < u)
    }

    /// Whether `letter` passes every filter.
    pub async fn selects(&self, codec: &Codec, letter: &DeadLetter) -> Result<bool, DlqError> {
        if !self.matches(letter) {
            return Ok(false);
        }
        if self.ids.is_empty() {
            return Ok(true);
        }
        let key = letter.original_key.as_deref().map(String::from_utf8_lossy);
        if key.is_some_and(|k| self.ids.iter().any(|id| *id == k)) {
            return Ok(true);
        }
        Ok(document_id(codec, letter).await?.is_some_and(|id| self.ids.contains(&id)))
    }
}

/// The id of the document a dead letter holds, when its original value decodes.
pub async fn document_id(codec: &Codec, letter: &DeadLetter) -> Result<Option<String>, DlqError> {
    match codec.decode(letter.original_value.as_deref()).await {
        Ok(d) => Ok(Envelope::from_value(d.kind, d.value).ok().map(|e| e.document.id)),
        Err(CodecError::RegistryUnavailable(e)) => Err(DlqError::RegistryUnavailable(e)),
        Err(_) => Ok(None),
    }
}

/// An error class as written on the command line: `PERMANENT`, `retries-exhausted`, …
pub fn parse_class(text: &str) -> Result<DeadLetterClass, String> {
    DeadLetterClass::parse(text)
}

/// An instant as written on the command line: a duration back from `now_ms` (`24h`, `PT2H`) or
/// a date-time (`2025-06-01T12:00:00Z`); milliseconds since the epoch.
pub use crate::time::parse_instant;

/// How often the record was redriven before: the last `sluice-redrive-count` header, 0 without.
pub fn redrive_count(headers: &[(String, Option<Vec<u8>>)]) -> Result<u32, String> {
    let Some((_, value)) = headers.iter().rev().find(|(k, _)| k == REDRIVE_COUNT) else {
        return Ok(0);
    };
    let text = value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
    text.trim()
        .parse()
        .map_err(|_| format!("header {REDRIVE_COUNT} is '{}', not a count", clip(&text, 40)))
}

/// At most `max` characters of `text` (read from a letter, so of any size), with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// The original value for people: decoded when it decodes, base64 when not, or withheld.
pub async fn original_json(codec: &Codec, value: Option<&[u8]>) -> Json {
    let Some(bytes) = value else {
        return json!({ "withheld": "the stage redacts: the value was not kept" });
    };
    match codec.decode_any(Some(bytes)).await {
        Ok((id, v)) => json!({ "schema_id": id, "decoded": avro_to_json(&v) }),
        Err(e) => json!({
            "undecodable": e.to_string(),
            "base64": base64::engine::general_purpose::STANDARD.encode(bytes),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ops::dlq::fixtures::letter;

    #[test]
    fn filters_by_class_and_failure_time() {
        let l = letter();
        let f = |error_class, since_ms, until_ms| Filter {
            error_class,
            since_ms,
            until_ms,
            ids: vec![],
            at: vec![],
        };
        assert!(f(None, None, None).matches(&l));
        assert!(f(Some(DeadLetterClass::RetriesExhausted), Some(9), Some(10)).matches(&l));
        assert!(!f(Some(DeadLetterClass::Permanent), None, None).matches(&l));
        assert!(!f(None, Some(10), None).matches(&l));
        assert!(!f(None, None, Some(9)).matches(&l), "until is exclusive");
    }

    #[test]
    fn classes_and_instants_parse_as_operators_write_them() {
        assert_eq!(parse_class("retries-exhausted"), Ok(DeadLetterClass::RetriesExhausted));
        assert!(parse_class("fatal").is_err());
        assert_eq!(parse_instant("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert!(parse_instant("yesterday", 0).is_err());
    }

    #[test]
    fn the_redrive_count_is_the_last_header_and_zero_without_one() {
        let h = |v: &str| (REDRIVE_COUNT.to_owned(), Some(v.as_bytes().to_vec()));
        assert_eq!(redrive_count(&[]), Ok(0));
        assert_eq!(redrive_count(&[h("1"), h("2")]), Ok(2));
        assert!(redrive_count(&[h("many")]).is_err());
    }
}

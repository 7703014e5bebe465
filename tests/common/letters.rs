//! Dead letters written by hand, as an operator's tools find them on a stage's dead-letter topic.

use std::time::Duration;

use sluice::avro::{DeadLetter, DeadLetterClass};

use super::harness::Harness;

/// A `PERMANENT` letter of stage `work`, naming `id` at offset 0 of the input's partition 0, with
/// `value` as the original value (`None`: withheld, as a redacting stage writes it).
pub fn letter(h: &Harness, id: &str, value: Option<Vec<u8>>) -> DeadLetter {
    DeadLetter {
        pipeline: h.topology.pipeline.clone(),
        stage: "work".into(),
        consumer_group: h.group(),
        original_topic: h.input(),
        original_partition: 0,
        original_offset: 0,
        original_timestamp_ms: None,
        original_key: Some(id.as_bytes().to_vec()),
        original_value: value,
        original_headers: vec![],
        error_class: DeadLetterClass::Permanent,
        error_message: "written by the test".into(),
        attempts: vec![],
        failed_at_ms: sluice::call::now_ms(),
        model: None,
        prompt_version: None,
        delivered_outputs: vec![],
    }
}

/// Writes `letters` to partition 0 of the dead-letter topic, keyed as each says, and flushes.
pub async fn write_letters(h: &Harness, letters: &[DeadLetter]) {
    let (codec, producer, dlq) = (h.codec().await, h.producer(), h.dlq());
    for l in letters {
        let bytes = codec.encode(&dlq, &l.to_value()).expect("encode");
        h.send_raw(&producer, &dlq, l.original_key.as_deref(), &bytes, Some(0)).await;
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).expect("flush");
}

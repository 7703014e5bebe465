//! `sluice dlq inspect`: a stage's dead-letter topic summarized — counts by error class and by
//! message with when each was first and last seen, and the newest few records decoded, with the
//! model and prompt version of the attempt that failed. Reads the whole topic; changes nothing.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use super::at::At;
use super::fate::{fates, Fate};
use super::outstanding::outstanding;
use super::read::{original_json, read_all, redrive_count, stage, DlqError, Filter};
use crate::avro::{Codec, DeadLetter};
use crate::config::Topology;
use crate::kafka::registry_settings;

/// What a dead-letter topic holds, for the dead letters the filters select.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub stage: String,
    pub dead_letter_topic: String,
    /// Records on the topic.
    pub records: usize,
    /// Dead letters the filters select.
    pub selected: usize,
    /// Records on the topic that are not dead letters.
    pub undecodable: usize,
    /// Records on the topic no redrive or discard finished ([`super::outstanding`]).
    pub outstanding: i64,
    pub by_class: Vec<ClassCount>,
    /// By error class and message, most frequent first.
    pub by_message: Vec<MessageCount>,
    /// The newest selected dead letters, newest first.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub error_class: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageCount {
    pub error_class: String,
    pub message: String,
    pub count: usize,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// One dead letter for people: where it is, where it came from, why it failed, its value.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub partition: i32,
    pub offset: i64,
    /// The original key as text (lossy when it is not UTF-8).
    pub key: Option<String>,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub error_class: String,
    pub error_message: String,
    pub attempts: usize,
    pub failed_at_ms: i64,
    /// The model the failed attempt called, and the prompt version it used.
    pub model: Option<String>,
    pub prompt_version: Option<String>,
    /// How often it had been redriven before it failed this time.
    pub redrive_count: Option<u32>,
    /// Decoded (`decoded`), as `base64` when it does not decode, or `withheld`.
    pub original_value: Json,
    /// What became of it ([`super::fate`]).
    pub fate: Option<Fate>,
}

/// Reads `stage_name`'s dead-letter topic and summarizes the dead letters `filter` selects,
/// with up to `samples` of the newest decoded.
pub async fn inspect(
    t: &Topology,
    stage_name: &str,
    filter: &Filter,
    samples: usize,
) -> Result<Inspection, DlqError> {
    let spec = stage(t, stage_name)?;
    let codec = Codec::connect(&registry_settings(t), &[]).await?;
    let records = read_all(t, &codec, &spec.dead_letter_topic).await?;
    let mut selected: Vec<(i32, i64, &DeadLetter)> = Vec::new();
    let mut undecodable = 0;
    for r in &records {
        match &r.letter {
            Ok(letter) if filter.selects(&codec, letter).await? => {
                selected.push((r.partition, r.offset, letter))
            }
            Ok(_) => {}
            Err(_) => undecodable += 1,
        }
    }
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_message: BTreeMap<(&str, &str), MessageCount> = BTreeMap::new();
    for (_, _, l) in &selected {
        let class = l.error_class.symbol();
        *by_class.entry(class).or_default() += 1;
        let at = l.failed_at_ms;
        by_message
            .entry((class, l.error_message.as_str()))
            .and_modify(|m| {
                m.count += 1;
                m.first_seen_ms = m.first_seen_ms.min(at);
                m.last_seen_ms = m.last_seen_ms.max(at);
            })
            .or_insert_with(|| MessageCount {
                error_class: class.to_owned(),
                message: l.error_message.clone(),
                count: 1,
                first_seen_ms: at,
                last_seen_ms: at,
            });
    }
    let mut by_message: Vec<MessageCount> = by_message.into_values().collect();
    by_message.sort_by_key(|m| std::cmp::Reverse(m.count));
    selected.sort_by_key(|(p, o, l)| (std::cmp::Reverse(l.failed_at_ms), *p, *o));
    let fates = fates(t, spec, &records).await?;
    let mut shown = Vec::new();
    for (partition, offset, l) in selected.iter().take(samples) {
        let mut s = sample(&codec, *partition, *offset, l).await;
        s.fate = fates.get(&At::new(*partition, *offset)).cloned();
        shown.push(s);
    }
    let (kafka, s) = (t.kafka.clone(), spec.clone());
    let [counted] = tokio::task::spawn_blocking(move || outstanding(&kafka, &s, [i64::MIN]))
        .await
        .expect("the offsets thread does not panic")?;
    Ok(Inspection {
        stage: spec.name.clone(),
        dead_letter_topic: spec.dead_letter_topic.clone(),
        records: records.len(),
        selected: selected.len(),
        undecodable,
        outstanding: counted.outstanding,
        by_class: by_class
            .into_iter()
            .map(|(c, count)| ClassCount { error_class: c.to_owned(), count })
            .collect(),
        by_message,
        samples: shown,
    })
}

async fn sample(codec: &Codec, partition: i32, offset: i64, l: &DeadLetter) -> Sample {
    Sample {
        partition,
        offset,
        key: l.original_key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        original_topic: l.original_topic.clone(),
        original_partition: l.original_partition,
        original_offset: l.original_offset,
        error_class: l.error_class.symbol().to_owned(),
        error_message: l.error_message.clone(),
        attempts: l.attempts.len(),
        failed_at_ms: l.failed_at_ms,
        model: l.model.clone(),
        prompt_version: l.prompt_version.clone(),
        redrive_count: redrive_count(&l.original_headers).ok(),
        original_value: original_json(codec, l.original_value.as_deref()).await,
        fate: None,
    }
}

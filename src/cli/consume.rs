use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use rdkafka::types::RDKafkaErrorCode;
use sluice::avro::Codec;
use sluice::config::KafkaSettings;
use sluice::kafka::registry_settings;
use sluice::records_io::{reader, record_json};

/// Prints a topic's records. Reads committed records only, whatever the topology's
/// `kafka.consumer` says: never a record of an open or aborted transaction (an exactly-once
/// stage's, a redrive batch's), as every stage and every other command reads.
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    topology: PathBuf,
    #[arg(long)]
    topic: String,
    /// Start at the earliest offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Stop at the end of every partition instead of following.
    #[arg(long)]
    exit_at_end: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let t = super::load_topology(&args.topology)?;
    let codec = Codec::connect(&registry_settings(&t), &[]).await?;
    let kafka = t.kafka.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let reading = tokio::task::spawn_blocking(move || -> Result<usize> {
        let reader = match reader(&kafka, &[args.topic.as_str()], args.from_beginning) {
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                bail!("{}", unknown_topic(&kafka, &args.topic))
            }
            other => other?,
        };
        let idle = if args.exit_at_end { Duration::from_secs(10) } else { Duration::MAX };
        Ok(reader.drain(
            args.max,
            args.exit_at_end,
            idle,
            || tx.is_closed(),
            |m| tx.blocking_send(m.detach()).is_ok(),
        )?)
    });
    while let Some(message) = rx.recv().await {
        outln!("{}", record_json(&codec, &message).await);
    }
    reading.await??;
    Ok(ExitCode::SUCCESS)
}

/// What to say about a topic the broker does not have: its name, the broker, and the existing
/// topics that look like it (a typo, a missing prefix).
fn unknown_topic(kafka: &KafkaSettings, topic: &str) -> String {
    let at = &kafka.bootstrap_servers;
    let existing = sluice::kafka::existing_topics(kafka).unwrap_or_default();
    let names: Vec<&str> = existing.iter().map(|(name, _)| name.as_str()).collect();
    let close = close_matches(topic, &names);
    match close.as_slice() {
        [] => format!("topic '{topic}' does not exist on {at}"),
        _ => format!("topic '{topic}' does not exist on {at}; did you mean {}?", close.join(", ")),
    }
}

/// Up to three of `names` within a few edits of `wanted`, closest first.
fn close_matches(wanted: &str, names: &[&str]) -> Vec<String> {
    let limit = (wanted.chars().count() / 4).max(2);
    let mut close: Vec<(usize, &str)> = names
        .iter()
        .filter(|n| !n.starts_with("__"))
        .map(|n| (edit_distance(wanted, n), *n))
        .filter(|(d, n)| *d <= limit || n.ends_with(wanted) || wanted.ends_with(n))
        .collect();
    close.sort();
    close.into_iter().take(3).map(|(_, n)| format!("'{n}'")).collect()
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_topic_is_matched_to_the_existing_ones_closest_first() {
        let names =
            ["support.documents", "support.answers", "support.answered", "__consumer_offsets"];
        assert_eq!(
            close_matches("suport.answers", &names),
            ["'support.answers'", "'support.answered'"]
        );
        assert_eq!(close_matches("documents", &names), ["'support.documents'"]);
        assert!(close_matches("metering", &names).is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

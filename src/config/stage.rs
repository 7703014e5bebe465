//! Compiles one stage entry of a topology.

use std::collections::BTreeMap;
use std::path::Path;

use super::defaults as d;
use super::delivery;
use super::kinds;
use super::model::{Concurrency, Delivery, RetryPolicy, StageSpec};
use super::policy::ModelSpec;
use super::providers::model_choice;
use super::section::Section;
use super::semantic;
use super::values::{duration, is_valid_name, is_valid_topic, limit, parse_duration};

pub const KINDS: &str = "classify, embed, retrieve, generate, review";

/// Reads a stage; `None` when it is too broken to take part in cross-checks.
pub fn parse(
    name: &str,
    pipeline: &str,
    base_dir: &Path,
    sec: &mut Section<'_>,
    implicit: &mut BTreeMap<String, ModelSpec>,
    inherited: Delivery,
) -> Option<StageSpec> {
    if !is_valid_name(name) {
        sec.error("name", "stage names may use only letters, digits, '-' and '_'");
    }
    let kind_name: Option<String> = sec.req("kind");
    let input = topic(sec, "input", true);
    let output = topic(sec, "output", true);
    let group = sec.or("group", d::group(pipeline, name));
    let model = model_choice(sec, implicit);
    let redact_input = sec.or("redact_input", false);
    let deadline = duration(sec, "deadline", d::STAGE_DEADLINE);
    let document_deadline = sec
        .peek("document_deadline")
        .is_some()
        .then(|| duration(sec, "document_deadline", d::STAGE_DEADLINE));
    let concurrency = sec.nested("concurrency", concurrency);
    let retry = sec.nested("retry", |r| retry(r, pipeline, name));
    let dead_letter_topic = topic(sec, "dead_letter_topic", false)
        .unwrap_or_else(|| d::dead_letter_topic(pipeline, name));
    let shutdown_grace = duration(sec, "shutdown_grace", d::SHUTDOWN_GRACE);
    let needs_human = topic(sec, "needs_human_output", false);
    let rejected = topic(sec, "rejected_output", false);
    let delivery = delivery::stage(sec, inherited);
    let semantic_cache =
        sec.peek("cache").is_some().then(|| sec.nested("cache", semantic::cache)).flatten();

    let kind = match kind_name.as_deref() {
        Some("classify") => sec.nested("classify", kinds::classify),
        Some("embed") => sec.nested("embed", kinds::embed),
        Some("retrieve") => sec.nested("retrieve", |s| kinds::retrieve(s, base_dir)),
        Some("generate") => sec.nested("generate", kinds::generate),
        Some("review") => {
            if needs_human.is_none() {
                sec.error(
                    "needs_human_output",
                    "review stages need a topic for answers that need a human",
                );
            }
            if rejected.is_none() {
                sec.error("rejected_output", "review stages need a topic for rejected answers");
            }
            let (h, r) =
                (needs_human.clone().unwrap_or_default(), rejected.clone().unwrap_or_default());
            sec.nested("review", |s| kinds::review(s, implicit, h, r))
        }
        Some(other) => {
            sec.error("kind", format!("unknown stage kind '{other}' (expected one of: {KINDS})"));
            None
        }
        None => None,
    };
    if kind_name.as_deref() != Some("review") {
        for (key, v) in [("needs_human_output", &needs_human), ("rejected_output", &rejected)] {
            if v.is_some() {
                sec.error(key, "only review stages have this output");
            }
        }
    }
    Some(StageSpec {
        name: name.to_owned(),
        kind: kind?,
        input: input?,
        output: output?,
        group,
        model,
        redact_input,
        deadline,
        document_deadline,
        concurrency,
        retry,
        dead_letter_topic,
        shutdown_grace,
        deferred_topic: d::deferred_topic(pipeline, name),
        delivery,
        semantic_cache,
    })
}

fn topic(sec: &mut Section<'_>, key: &str, required: bool) -> Option<String> {
    let name: String = if required { sec.req(key)? } else { sec.opt(key)? };
    if !is_valid_topic(&name) {
        sec.error(
            key,
            format!("'{name}' is not a legal Kafka topic name ([a-zA-Z0-9._-], at most 249)"),
        );
    }
    Some(name)
}

fn concurrency(sec: &mut Section<'_>) -> Concurrency {
    let max_in_flight = limit(sec, "max_in_flight", d::MAX_IN_FLIGHT, 1, 1_000_000);
    let per_partition =
        limit(sec, "per_partition", d::PER_PARTITION.min(max_in_flight), 1, 1_000_000);
    if per_partition > max_in_flight {
        sec.error("per_partition", format!("must not exceed max_in_flight ({max_in_flight})"));
    }
    let buffer_per_partition =
        limit(sec, "buffer_per_partition", d::buffer_per_partition(per_partition), 0, 1_000_000);
    let key_ordering = sec.or("key_ordering", false);
    let commit_completed = sec.or("commit_completed", true);
    Concurrency {
        max_in_flight,
        per_partition,
        buffer_per_partition,
        key_ordering,
        commit_completed,
    }
}

fn retry(sec: &mut Section<'_>, pipeline: &str, stage: &str) -> RetryPolicy {
    let attempts = limit(sec, "attempts", d::RETRY_ATTEMPTS as usize, 1, 100) as u32;
    let initial_backoff = duration(sec, "initial_backoff", d::RETRY_INITIAL_BACKOFF);
    let max_backoff = duration(sec, "max_backoff", d::RETRY_MAX_BACKOFF);
    if max_backoff < initial_backoff {
        sec.error("max_backoff", "must not be shorter than initial_backoff");
    }
    let mut ladder = Vec::new();
    for (i, text) in sec.or("ladder", Vec::<String>::new()).iter().enumerate() {
        match parse_duration(text) {
            Ok(delay) => ladder.push(delay),
            Err(msg) => sec.error(&format!("ladder[{i}]"), msg),
        }
    }
    let max_inline_wait = duration(sec, "max_inline_wait", d::MAX_INLINE_WAIT);
    let topic_prefix = sec.or("topic_prefix", d::retry_topic_prefix(pipeline, stage));
    RetryPolicy { attempts, initial_backoff, max_backoff, ladder, max_inline_wait, topic_prefix }
}

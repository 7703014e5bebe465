//! A stage's delivery guarantee: `delivery: at_least_once` (the default) or `exactly_once`, set
//! for the whole topology at its top level and overridden per stage, with the transaction
//! settings of exactly-once stages (`transaction_interval`, `transaction_max_records`). Phase one
//! reads them ([`topology_wide`], [`stage`]); phase two ([`check`]) refuses the Kafka settings
//! an exactly-once stage cannot work with, each at the setting, saying why and what to do.
//! docs/TOPOLOGY.md, "Delivery: exactly once", lists the rules.

use std::time::Duration;

use super::defaults as d;
use super::errors::Errors;
use super::model::{Delivery, KafkaSettings, Topology, Transactions};
use super::section::Section;
use super::values::{duration, limit};

const DELIVERY: &str = "delivery";
const INTERVAL: &str = "transaction_interval";
const MAX_RECORDS: &str = "transaction_max_records";

/// Bounds of `transaction_interval`: below 10 ms the commits (a broker round trip each, and the
/// markers the broker writes to every partition of the transaction) would cost more than the
/// work; above a minute readers wait a minute for every result.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
const MAX_RECORDS_LIMIT: usize = 100_000;

/// Apache Kafka's broker default `transaction.max.timeout.ms` (15 min): a producer asking for a
/// longer `transaction.timeout.ms` is refused when it starts (INVALID_TRANSACTION_TIMEOUT, fatal).
const BROKER_MAX_TRANSACTION_TIMEOUT_MS: u64 = 900_000;
/// librdkafka's lower bound of `transaction.timeout.ms`.
const LIBRDKAFKA_MIN_TRANSACTION_TIMEOUT_MS: u64 = 1_000;

/// The topology-wide `delivery` and its transaction settings: what every stage inherits.
pub fn topology_wide(root: &mut Section<'_>) -> Delivery {
    read(root, Delivery::AtLeastOnce, "the topology's")
}

/// A stage's `delivery` and transaction settings; what it does not set it inherits.
pub fn stage(sec: &mut Section<'_>, inherited: Delivery) -> Delivery {
    read(sec, inherited, "this stage's")
}

fn read(sec: &mut Section<'_>, inherited: Delivery, whose: &str) -> Delivery {
    let exactly_once = match sec.opt::<String>(DELIVERY).as_deref() {
        None => inherited.transactions().is_some(),
        Some("at_least_once") => false,
        Some("exactly_once") => true,
        Some(other) => {
            let msg = format!("unknown delivery '{other}' (expected at_least_once, exactly_once)");
            sec.error(DELIVERY, msg);
            // Read the transaction settings for their own errors, and keep what was inherited.
            transactions(sec, inherited);
            return inherited;
        }
    };
    if !exactly_once {
        for key in [INTERVAL, MAX_RECORDS] {
            if sec.peek(key).is_some() {
                sec.opt::<serde_yaml_ng::Value>(key);
                let msg = format!(
                    "applies only to `delivery: exactly_once`, and {whose} delivery is \
                     at_least_once — remove it, or set `delivery: exactly_once` beside it"
                );
                sec.error(key, msg);
            }
        }
        return Delivery::AtLeastOnce;
    }
    Delivery::ExactlyOnce(transactions(sec, inherited))
}

/// The transaction settings of `sec`, each defaulting to the inherited one (else sluice's).
fn transactions(sec: &mut Section<'_>, inherited: Delivery) -> Transactions {
    let base = inherited.transactions().unwrap_or(Transactions {
        interval: d::TRANSACTION_INTERVAL,
        max_records: d::TRANSACTION_MAX_RECORDS,
    });
    let mut interval = duration(sec, INTERVAL, base.interval);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        let msg = format!(
            "must be between {MIN_INTERVAL:?} and {MAX_INTERVAL:?}, got {interval:?}: each \
             commit is a broker round trip plus a marker on every partition written, and \
             readers see a record only once its transaction commits"
        );
        sec.error(INTERVAL, msg);
        interval = base.interval;
    }
    let max_records = limit(sec, MAX_RECORDS, base.max_records, 1, MAX_RECORDS_LIMIT);
    Transactions { interval, max_records }
}

/// One producer setting as sluice's producers get it (`kafka.producer` wins over
/// `kafka.properties`, as in the client), with the field that holds it.
struct Setting<'a> {
    value: &'a str,
    field: String,
}

fn producer_setting<'a>(k: &'a KafkaSettings, key: &str) -> Option<Setting<'a>> {
    let (block, value) = match k.producer.get(key) {
        Some(v) => ("producer", v),
        None => ("properties", k.properties.get(key)?),
    };
    Some(Setting { value, field: format!("kafka.{block}.{key}") })
}

/// The first of `keys` (a setting and its librdkafka aliases) the producers get.
fn first_setting<'a>(k: &'a KafkaSettings, keys: &[&str]) -> Option<Setting<'a>> {
    keys.iter().find_map(|key| producer_setting(k, key))
}

/// A whole number of milliseconds, reported at its field if not.
fn millis(s: &Setting<'_>, errors: &mut Errors) -> Option<u64> {
    let parsed = s.value.trim().parse::<u64>();
    if parsed.is_err() {
        let msg =
            format!("'{}' is not a whole number of milliseconds (write e.g. \"10000\")", s.value);
        errors.push(None, &s.field, msg);
    }
    parsed.ok()
}

/// Phase two: the Kafka settings of a topology with exactly-once stages.
pub fn check(t: &Topology, errors: &mut Errors) {
    let k = &t.kafka;
    if let Some(s) = producer_setting(k, "transactional.id") {
        let msg = "sluice gives each worker's producer its own transactional id \
                   (`<group>.<instance>`, stable across restarts with `sluice run \
                   --instance-id`); one id in the topology would be shared by every producer \
                   of every worker, each fencing the others, and would make the producers of \
                   at-least-once stages transactional (every write refused) — remove it";
        errors.push(None, s.field, msg);
    }
    let stages: Vec<(&str, Transactions)> = t
        .stages
        .iter()
        .filter_map(|s| s.delivery.transactions().map(|tx| (s.name.as_str(), tx)))
        .collect();
    if stages.is_empty() {
        return;
    }
    let names = stages.iter().map(|(n, _)| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let why = format!("exactly-once stages ({names})");
    if let Some(s) = first_setting(k, &["enable.idempotence"]) {
        if !matches!(s.value.trim(), "true" | "t" | "1") {
            let msg = format!(
                "{why} need an idempotent producer: Kafka transactions build on it, and \
                 librdkafka refuses a transactional producer without it — remove the setting \
                 (sluice turns idempotence on)"
            );
            errors.push(None, s.field, msg);
        }
    }
    if let Some(s) = first_setting(k, &["acks", "request.required.acks"]) {
        if !matches!(s.value.trim(), "all" | "-1") {
            let msg = format!(
                "'{}': {why} need acks from every in-sync replica (all, or -1), as every \
                 idempotent producer does — remove the setting (sluice sets acks=all)",
                s.value
            );
            errors.push(None, s.field, msg);
        }
    }
    transaction_timeout(k, &stages, &why, errors);
}

/// `transaction.timeout.ms` (sluice's default unless set) against each stage's interval and the
/// broker's limit, and the producer timeouts librdkafka requires to fit inside it.
fn transaction_timeout(
    k: &KafkaSettings,
    stages: &[(&str, Transactions)],
    why: &str,
    errors: &mut Errors,
) {
    let set = producer_setting(k, "transaction.timeout.ms");
    let timeout = match &set {
        None => d::TRANSACTION_TIMEOUT_MS,
        Some(s) => {
            let Some(ms) = millis(s, errors) else { return };
            let range = LIBRDKAFKA_MIN_TRANSACTION_TIMEOUT_MS..=BROKER_MAX_TRANSACTION_TIMEOUT_MS;
            if !range.contains(&ms) {
                let msg = format!(
                    "{ms} ms is outside {}..={} ms: librdkafka refuses less than a second, and \
                     Apache Kafka's brokers refuse a producer asking for more than their \
                     transaction.max.timeout.ms (15 min by default) when it starts. A crashed \
                     worker's open transaction holds back readers of its outputs this long \
                     (sluice's default is {} ms)",
                    range.start(),
                    range.end(),
                    d::TRANSACTION_TIMEOUT_MS
                );
                errors.push(None, &s.field, msg);
                return;
            }
            ms
        }
    };
    let named = match &set {
        Some(s) => format!("{} ({timeout} ms)", s.field),
        None => format!("kafka.producer.transaction.timeout.ms (sluice's default, {timeout} ms)"),
    };
    for (stage, tx) in stages {
        if tx.interval.as_millis().saturating_mul(2) > u128::from(timeout) {
            let msg = format!(
                "{:?} is more than half of {named}: a transaction stays open for the interval \
                 and its commit, and the broker aborts one open longer than the timeout (the \
                 worker's producer is then fenced) — shorten transaction_interval, or raise \
                 transaction.timeout.ms to at least twice it",
                tx.interval
            );
            errors.push(Some(stage), INTERVAL, msg);
        }
    }
    if let Some(s) = first_setting(k, &["message.timeout.ms", "delivery.timeout.ms"]) {
        if millis(&s, errors).is_some_and(|ms| ms > timeout) {
            let msg = format!(
                "longer than {named}: librdkafka refuses a transactional producer whose \
                 messages may outlive its transaction ({why}) — remove it (it then follows \
                 transaction.timeout.ms) or lower it"
            );
            errors.push(None, s.field, msg);
        }
    }
    if let Some(s) = first_setting(k, &["socket.timeout.ms"]) {
        if millis(&s, errors).is_some_and(|ms| ms > timeout + 100) {
            let msg = format!(
                "longer than {named} + 100 ms: librdkafka refuses such a transactional \
                 producer ({why}) — remove it (it then follows transaction.timeout.ms) or lower it"
            );
            errors.push(None, s.field, msg);
        }
    }
}

#[cfg(test)]
#[path = "delivery_tests.rs"]
mod tests;

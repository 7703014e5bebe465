//! Phase two's checks of the stage consumers' group settings (`kafka.properties` and
//! `kafka.consumer`, the consumer's value winning as it does in the client). Each rule refuses a
//! setting that librdkafka or Apache Kafka's default broker would refuse only later — at start or
//! at join time — or one that makes scaling a stage stall; the message says why and what to do.
//! docs/TOPOLOGY.md, "Consumer groups", lists the rules with their reasons.

use super::defaults as d;
use super::errors::Errors;
use super::model::{KafkaSettings, Topology, CLASSIC_ONLY_SETTINGS};

/// Apache Kafka's broker defaults `group.min.session.timeout.ms` and
/// `group.max.session.timeout.ms` (GroupCoordinatorConfig, 4.1.1): a classic JoinGroup with a
/// session timeout outside them is refused with INVALID_SESSION_TIMEOUT.
const BROKER_MIN_SESSION_MS: u64 = 6_000;
const BROKER_MAX_SESSION_MS: u64 = 1_800_000;

/// librdkafka's default `max.poll.interval.ms` (sluice does not set it), and its allowed range.
const LIBRDKAFKA_MAX_POLL_INTERVAL_MS: u64 = 300_000;
const LIBRDKAFKA_MAX_POLL_INTERVAL_MAX_MS: u64 = 86_400_000;

/// Assignors librdkafka offers for the classic protocol: the eager two, then the cooperative one.
const EAGER_ASSIGNORS: &[&str] = &["range", "roundrobin"];
const COOPERATIVE_ASSIGNOR: &str = "cooperative-sticky";

/// One setting as the stage consumers get it, with the field that holds it.
struct Setting<'a> {
    value: &'a str,
    field: String,
}

fn setting<'a>(k: &'a KafkaSettings, key: &'static str) -> Option<Setting<'a>> {
    let (block, value) = match k.consumer.get(key) {
        Some(v) => ("consumer", v),
        None => ("properties", k.properties.get(key)?),
    };
    Some(Setting { value, field: format!("kafka.{block}.{key}") })
}

/// A whole number of milliseconds in `min..=max`; reported (with `why` for the range) if not.
fn millis(s: &Setting<'_>, min: u64, max: u64, why: &str, errors: &mut Errors) -> Option<u64> {
    let Ok(ms) = s.value.parse::<u64>() else {
        let msg =
            format!("'{}' is not a whole number of milliseconds (write e.g. \"10000\")", s.value);
        errors.push(None, &s.field, msg);
        return None;
    };
    if !(min..=max).contains(&ms) {
        errors.push(None, &s.field, format!("{ms} ms is outside {min}..={max} ms: {why}"));
        return None;
    }
    Some(ms)
}

/// Every group rule; called from the compiler's second phase.
pub fn check(t: &Topology, errors: &mut Errors) {
    let k = &t.kafka;
    if let Some(p) = setting(k, "group.protocol") {
        if p.value != "classic" && p.value != "consumer" {
            let msg = format!(
                "unknown group protocol '{}': write 'consumer' (KIP-848, Apache Kafka 4.0 and \
                 later), 'classic', or leave it out to use KIP-848 where the broker offers it",
                p.value
            );
            errors.push(None, p.field, msg);
        }
    }
    if let Some(id) = setting(k, "group.instance.id") {
        errors.push(
            None,
            id.field,
            "every worker of every stage would join with this one id, and a group admits one \
             member per id: each worker that starts fences the previous one out (a fatal error \
             for it), so a stage never runs on more than one worker — give each worker its own \
             id with `sluice run --instance-id ID` or SLUICE_GROUP_INSTANCE_ID (e.g. the pod \
             name of a StatefulSet), and remove it here",
        );
    }
    let session = if k.uses_consumer_group_protocol() {
        kip848_has_no_classic_settings(k, errors);
        None
    } else {
        classic(k, errors)
    };
    max_poll_interval(t, session, errors);
}

/// With `group.protocol: consumer` the broker owns what these settings set; librdkafka refuses a
/// consumer that sets them.
fn kip848_has_no_classic_settings(k: &KafkaSettings, errors: &mut Errors) {
    for key in CLASSIC_ONLY_SETTINGS {
        if let Some(s) = setting(k, key) {
            let msg = format!(
                "'{key}' belongs to the classic group protocol; with 'group.protocol: consumer' \
                 (KIP-848) the broker decides it (group.consumer.* broker settings) and librdkafka \
                 refuses a consumer that sets it — remove it, or remove group.protocol to use \
                 the classic protocol"
            );
            errors.push(None, s.field, msg);
        }
    }
}

/// The classic protocol's settings; returns the session timeout the consumers will have, when
/// it is valid (sluice's default when not set).
fn classic(k: &KafkaSettings, errors: &mut Errors) -> Option<u64> {
    let session = match setting(k, "session.timeout.ms") {
        None => Some(d::CLASSIC_SESSION_TIMEOUT_MS),
        Some(s) => {
            let why = format!(
                "Apache Kafka's brokers refuse it by default (group.min.session.timeout.ms = \
                 {BROKER_MIN_SESSION_MS}, group.max.session.timeout.ms = \
                 {BROKER_MAX_SESSION_MS}), and they refuse it only when a worker joins the \
                 group, not at start. A crashed worker's partitions wait this long, so keep it \
                 short (sluice's default is {})",
                d::CLASSIC_SESSION_TIMEOUT_MS
            );
            millis(&s, BROKER_MIN_SESSION_MS, BROKER_MAX_SESSION_MS, &why, errors)
        }
    };
    let heartbeat = setting(k, "heartbeat.interval.ms");
    let heartbeat_ms = heartbeat
        .as_ref()
        .and_then(|h| millis(h, 1, BROKER_MAX_SESSION_MS, "it must fit in a session", errors));
    if let (Some(h), Some(ms), Some(session)) = (&heartbeat, heartbeat_ms, session) {
        if ms.saturating_mul(3) > session {
            let msg = format!(
                "{ms} ms leaves fewer than three heartbeats per session timeout ({session} ms): \
                 one heartbeat delayed by a busy broker or the network would evict a healthy \
                 worker: its partitions move, and the records it had not committed are \
                 processed (and paid for) again — use at most a third of session.timeout.ms \
                 (sluice's defaults: {} of {})",
                d::CLASSIC_HEARTBEAT_INTERVAL_MS,
                d::CLASSIC_SESSION_TIMEOUT_MS
            );
            errors.push(None, &h.field, msg);
        }
    }
    if let Some(s) = setting(k, "partition.assignment.strategy") {
        assignment_strategy(&s, errors);
    }
    session
}

fn assignment_strategy(s: &Setting<'_>, errors: &mut Errors) {
    let names: Vec<&str> = s.value.split(',').map(str::trim).collect();
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| *n != COOPERATIVE_ASSIGNOR && !EAGER_ASSIGNORS.contains(n))
        .collect();
    let eager = names.iter().any(|n| EAGER_ASSIGNORS.contains(n));
    let msg = if !unknown.is_empty() {
        format!(
            "unknown assignor(s) {}: librdkafka offers range, roundrobin and \
             cooperative-sticky, and sluice accepts only cooperative-sticky (its default)",
            unknown.join(", ")
        )
    } else if eager && names.contains(&COOPERATIVE_ASSIGNOR) {
        "mixes cooperative-sticky with an eager assignor (range, roundrobin): librdkafka \
         refuses to start a consumer whose assignors use different rebalance protocols — \
         write only cooperative-sticky, or remove the setting"
            .to_owned()
    } else if eager {
        format!(
            "'{}' is an eager assignor: every worker joining or leaving makes every worker of \
             the stage give up every partition, and each gives them up only after draining its \
             in-flight model calls (up to the stage's shutdown_grace), so a routine scale event \
             stops the whole stage; cooperative-sticky (sluice's default) moves only the \
             partitions that change owner — write cooperative-sticky, or remove the setting",
            s.value
        )
    } else {
        return;
    };
    errors.push(None, &s.field, msg);
}

/// `max.poll.interval.ms` is also the rebalance timeout librdkafka sends to the coordinator:
/// how long a worker may take to give up revoked partitions (KIP-848) or to rejoin (classic)
/// before it is removed from the group. A revocation drains in-flight records for up to the
/// stage's `shutdown_grace`. `classic_session` is the classic session timeout when the group
/// may speak the classic protocol (librdkafka checks the two only then).
fn max_poll_interval(t: &Topology, classic_session: Option<u64>, errors: &mut Errors) {
    let set = setting(&t.kafka, "max.poll.interval.ms");
    let interval = match &set {
        None => LIBRDKAFKA_MAX_POLL_INTERVAL_MS,
        Some(s) => {
            let why = "librdkafka refuses it";
            match millis(s, 1, LIBRDKAFKA_MAX_POLL_INTERVAL_MAX_MS, why, errors) {
                Some(ms) => ms,
                None => return,
            }
        }
    };
    let named = match &set {
        Some(s) => format!("{} ({interval} ms)", s.field),
        None => format!("max.poll.interval.ms (librdkafka's default, {interval} ms)"),
    };
    if let Some(session) = classic_session.filter(|s| interval < *s) {
        // The setting the operator wrote: max.poll.interval.ms, else the session timeout.
        let field = set
            .as_ref()
            .map(|s| s.field.clone())
            .or_else(|| setting(&t.kafka, "session.timeout.ms").map(|s| s.field))
            .unwrap_or_else(|| "kafka.consumer.max.poll.interval.ms".to_owned());
        let msg = format!(
            "{named} is shorter than session.timeout.ms ({session} ms): librdkafka refuses to \
             start such a consumer in a classic group — raise max.poll.interval.ms or lower \
             session.timeout.ms"
        );
        errors.push(None, field, msg);
    }
    for stage in &t.stages {
        let grace = stage.shutdown_grace;
        if grace.as_millis() >= u128::from(interval) {
            let msg = format!(
                "{grace:?} is not shorter than {named}: a revocation drains in-flight records \
                 for up to shutdown_grace, and a worker that has not given its partitions up \
                 within max.poll.interval.ms (the group's rebalance timeout) is removed from the \
                 group mid-drain, its partitions moving again — shorten shutdown_grace or raise \
                 max.poll.interval.ms above it"
            );
            errors.push(Some(&stage.name), "shutdown_grace", msg);
        }
    }
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;

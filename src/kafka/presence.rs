//! Presence of clients that never join the group they commit for: the console's review queue and
//! `sluice dlq redrive` are assigned their partitions and commit without a member, so
//! DescribeGroups cannot see them, and a replay of their group would be undone by their next
//! commit. Each such client therefore also joins a second, classic consumer group,
//! `<group>.present`, for as long as it runs: the group coordinator keeps that membership alive
//! while the client polls and drops it a session timeout after a crash, which makes it a lease
//! held in Kafka without a topic of its own. [`present`] lists the holders.
//!
//! The membership consumes nothing: it subscribes to a topic the client reads anyway, starts at
//! the end and pauses whatever it is assigned. librdkafka's mock cluster implements no
//! DescribeGroups, so [`present`] answers [`PresenceError::Unsupported`] there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::{admin_config, BrokerKind, ProbeError};
use crate::config::defaults as d;
use crate::config::KafkaSettings;

/// How long joining may take: a classic group's first join waits for the broker's
/// `group.initial.rebalance.delay.ms` (3 s by default) before it completes.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Client ids of holders start with this, followed by the role.
const CLIENT_PREFIX: &str = "sluice-present-";

/// The group whose members are the holders of `group`.
pub fn presence_group(group: &str) -> String {
    format!("{group}.present")
}

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("did not join group '{0}' within {JOIN_TIMEOUT:?}")]
    JoinTimeout(String),
    #[error("{0}")]
    Probe(String),
    #[error("the broker cannot describe groups (librdkafka's mock cluster), so who else is present is unknown")]
    Unsupported,
}

/// A client that holds `<group>.present`, one member of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub client_id: String,
    pub host: String,
    /// What the client is: `console`, `redrive`, … (from its client id).
    pub role: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.role, self.host)
    }
}

/// This process's membership of `<group>.present`, kept by a thread until [`Presence::leave`]
/// or drop (a clean leave: the group sees it go at once, not a session timeout later).
pub struct Presence {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Joined(Arc<AtomicBool>);

impl ClientContext for Joined {}

impl ConsumerContext for Joined {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assigned) = rebalance {
            let _ = consumer.pause(assigned);
            self.0.store(true, Ordering::Release);
        }
    }
}

impl Presence {
    /// Joins `<group>.present`, subscribed to `topic`, and returns once the membership is
    /// granted. Blocks: call it from `spawn_blocking`.
    pub fn announce(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
        role: &str,
    ) -> Result<Self, PresenceError> {
        let name = presence_group(group);
        let mut config = admin_config(settings);
        config.remove("group.protocol");
        config.set("group.id", &name);
        config.set("client.id", format!("{CLIENT_PREFIX}{role}"));
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        config.set("auto.offset.reset", "latest");
        config.set("enable.partition.eof", "false");
        // The lease is a classic membership: librdkafka's 45 s session would hold a crashed
        // holder's lease that long, and hold up the join of the next console or redrive (the
        // group waits for its members to rejoin) for as long after a crash.
        config.set("session.timeout.ms", d::CLASSIC_SESSION_TIMEOUT_MS.to_string());
        config.set("heartbeat.interval.ms", d::CLASSIC_HEARTBEAT_INTERVAL_MS.to_string());
        let joined = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer<Joined> = config.create_with_context(Joined(joined.clone()))?;
        consumer.subscribe(&[topic])?;
        let started = Instant::now();
        while !joined.load(Ordering::Acquire) {
            if started.elapsed() > JOIN_TIMEOUT {
                return Err(PresenceError::JoinTimeout(name));
            }
            if let Some(Err(e)) = consumer.poll(POLL) {
                if is_fatal(&e) {
                    return Err(e.into());
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-presence".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    // Records cannot arrive (every assignment is paused); errors are the
                    // client's own to retry.
                    let _ = consumer.poll(POLL);
                }
                consumer.unsubscribe();
                let _ = consumer.poll(Duration::ZERO);
            })
            .expect("a thread can be spawned");
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Leaves the group and waits until the membership is gone.
    pub fn leave(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.end();
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::GroupAuthorizationFailed | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

/// The holders of `group`: the members of `<group>.present`. Blocks.
pub fn present(settings: &KafkaSettings, group: &str) -> Result<Vec<Holder>, PresenceError> {
    match super::broker_kind(settings) {
        Ok(BrokerKind::Kafka) => {}
        Ok(BrokerKind::Embedded) => return Err(PresenceError::Unsupported),
        Err(ProbeError::Kafka(e)) => return Err(e.into()),
        Err(e) => return Err(PresenceError::Probe(e.to_string())),
    }
    let client: BaseConsumer = admin_config(settings).create()?;
    let name = presence_group(group);
    let list = client.fetch_group_list(Some(&name), TIMEOUT)?;
    let holders = list
        .groups()
        .iter()
        .filter(|g| g.name() == name)
        .flat_map(|g| g.members())
        .map(|m| Holder {
            client_id: m.client_id().to_owned(),
            host: m.client_host().to_owned(),
            role: m.client_id().strip_prefix(CLIENT_PREFIX).unwrap_or("unknown").to_owned(),
        })
        .collect();
    Ok(holders)
}

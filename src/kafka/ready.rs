//! A broker still coming up, told apart from one that is not there. A fresh broker — a KRaft node
//! seconds after its start, a topic just created — answers some requests with errors that only
//! mean "not yet": a partition's leader is being elected, a group coordinator is loading. The
//! first contacts of every start path (`sluice dev`, `run`, `console`), of the one reader and of
//! the log-ordered ledgers go through [`retry`], which waits such errors out (the backoff of
//! [`crate::retry`], a progress line every few seconds) for up to [`COMING_UP_WAIT`]. Anything
//! else fails at once — above all a broker that does not answer at all: a command that cannot
//! work says so at once, not after a timeout. [`wait_ready`] is the gate a start path passes
//! before it starts anything.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as Code;

use super::admin_config;
use crate::config::KafkaSettings;
use crate::retry::infrastructure_backoff;
use crate::telemetry::BrokerComingUp;

/// How long a broker may keep answering "not yet" before a start gives up on it.
pub const COMING_UP_WAIT: Duration = Duration::from_secs(120);
/// How long the first contact waits for any answer at all.
const FIRST_CONTACT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one metadata or offsets request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress line repeats while one request is waited out.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error(
        "no Kafka broker answered at {bootstrap} within {timeout:?}: is it running, and do \
         KAFKA_BOOTSTRAP_SERVERS or the topology's kafka.bootstrap_servers name it?"
    )]
    Unreachable { bootstrap: String, timeout: Duration },
    #[error(
        "topic '{topic}' does not exist on {bootstrap}: create the topology's topics \
         (`sluice topics create`; `sluice dev` creates them)"
    )]
    MissingTopic { topic: String, bootstrap: String },
    #[error("the broker at {bootstrap}: {what}: {error}")]
    Kafka { bootstrap: String, what: String, error: Box<KafkaError> },
}

/// Whether `e` only means that the broker is still coming up: a leader being elected, a
/// coordinator loading, a replica not yet in sync. Worth asking again shortly.
pub fn coming_up(e: &KafkaError) -> bool {
    // rdkafka gives no code for an admin request's error; its code is the broker's all the same.
    let code = match e {
        KafkaError::AdminOp(code) => Some(*code),
        e => e.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(
            Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::NotCoordinator
                | Code::CoordinatorNotAvailable
                | Code::CoordinatorLoadInProgress
                | Code::NotController
                | Code::BrokerNotAvailable
                | Code::ReplicaNotAvailable
                | Code::NotEnoughReplicas
                | Code::OffsetNotAvailable
                | Code::FencedLeaderEpoch
                | Code::UnknownLeaderEpoch
                | Code::KafkaStorageError
        )
    )
}

/// Runs `attempt` (blocking: call from a blocking thread) until it succeeds, waiting out the
/// errors of a broker still [`coming_up`] for up to [`COMING_UP_WAIT`] with a progress line
/// ("waiting for the broker: …"); any other error, or the last one at the limit, is returned.
pub fn retry<T>(
    what: &str,
    mut attempt: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let mut waiter = Waiter::new(what, COMING_UP_WAIT, infrastructure_backoff());
    loop {
        match attempt() {
            Err(e) => match waiter.wait_after(&e) {
                Some(pause) => std::thread::sleep(pause),
                None => return Err(e),
            },
            done => return done,
        }
    }
}

/// [`retry`] for an asynchronous `attempt` (admin requests).
pub async fn retry_async<T, F: std::future::Future<Output = Result<T, KafkaError>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, KafkaError> {
    let mut waiter = Waiter::new(what, COMING_UP_WAIT, infrastructure_backoff());
    loop {
        match attempt().await {
            Err(e) => match waiter.wait_after(&e) {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Err(e),
            },
            done => return done,
        }
    }
}

/// The patience of one request: how long it has waited, when it last said so, the next pause.
struct Waiter<'a, D> {
    what: &'a str,
    limit: Duration,
    delays: D,
    started: Instant,
    told: Option<Instant>,
}

impl<'a, D: Iterator<Item = Duration>> Waiter<'a, D> {
    fn new(what: &'a str, limit: Duration, delays: D) -> Self {
        Self { what, limit, delays, started: Instant::now(), told: None }
    }

    /// The pause before asking again after `e`, with the progress line when it is due; `None`
    /// when `e` is not worth waiting out or the limit is reached.
    fn wait_after(&mut self, e: &KafkaError) -> Option<Duration> {
        let waited = self.started.elapsed();
        if !coming_up(e) || waited >= self.limit {
            return None;
        }
        if self.told.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            BrokerComingUp { what: self.what, error: e, waited, limit: self.limit }.emit();
            self.told = Some(Instant::now());
        }
        Some(self.delays.next().unwrap_or(Duration::from_secs(1)))
    }
}

/// Whether anything answers at the bootstrap address (blocking): a metadata request for the
/// brokers only, within [`FIRST_CONTACT_TIMEOUT`]. No answer is [`ReadyError::Unreachable`].
pub fn first_contact(settings: &KafkaSettings) -> Result<(), ReadyError> {
    let bootstrap = settings.bootstrap_servers.clone();
    let client: BaseConsumer = admin_config(settings).create().map_err(|error| {
        let error = Box::new(error);
        ReadyError::Kafka { bootstrap: bootstrap.clone(), what: "a client".into(), error }
    })?;
    match client.client().fetch_cluster_id(FIRST_CONTACT_TIMEOUT) {
        Some(_) => Ok(()),
        None => Err(ReadyError::Unreachable { bootstrap, timeout: FIRST_CONTACT_TIMEOUT }),
    }
}

/// Which topics [`wait_ready`] requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A missing topic is [`ReadyError::MissingTopic`].
    Refuse,
    /// Missing topics are left out (the caller shows what is missing its own way).
    Skip,
}

/// The gate of a start path (blocking): the broker answers (else [`ReadyError::Unreachable`] at
/// once), and every partition of `topics` has a leader that answers for its offsets — the
/// requests a fresh broker refuses while it elects leaders, waited out with [`retry`].
pub fn topics_ready(
    settings: &KafkaSettings,
    topics: &[String],
    missing: Missing,
) -> Result<(), ReadyError> {
    first_contact(settings)?;
    let bootstrap = &settings.bootstrap_servers;
    let failed = |what: String| {
        let bootstrap = bootstrap.clone();
        move |error| ReadyError::Kafka { bootstrap, what, error: Box::new(error) }
    };
    let client: BaseConsumer =
        admin_config(settings).create().map_err(failed("a client".into()))?;
    for topic in topics {
        let what = format!("the partitions of {topic}");
        let partitions = retry(&what, || {
            let metadata = client.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
            let Some(t) = metadata.topics().first() else { return Ok(0) };
            match t.error().map(Code::from) {
                None | Some(Code::UnknownTopicOrPartition) => {}
                Some(code) => return Err(KafkaError::MetadataFetch(code)),
            }
            // A partition error alone (ReplicaNotAvailable: one follower down) leaves it usable;
            // no leader does not, and the offsets request below is the test that counts.
            if t.partitions().iter().any(|p| p.leader() < 0) {
                return Err(KafkaError::MetadataFetch(Code::LeaderNotAvailable));
            }
            Ok(t.partitions().len() as i32)
        })
        .map_err(failed(what))?;
        if partitions == 0 {
            match missing {
                Missing::Refuse => {
                    return Err(ReadyError::MissingTopic {
                        topic: topic.clone(),
                        bootstrap: bootstrap.clone(),
                    })
                }
                Missing::Skip => continue,
            }
        }
        for p in 0..partitions {
            let what = format!("the offsets of {topic} partition {p}");
            retry(&what, || client.fetch_watermarks(topic, p, REQUEST_TIMEOUT))
                .map_err(failed(what))?;
        }
    }
    Ok(())
}

/// [`topics_ready`] on a blocking thread.
pub async fn wait_ready(
    settings: &KafkaSettings,
    topics: Vec<String>,
    missing: Missing,
) -> Result<(), ReadyError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || topics_ready(&settings, &topics, missing))
        .await
        .expect("the readiness thread does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(limit: Duration) -> Waiter<'static, impl Iterator<Item = Duration>> {
        Waiter::new("x", limit, std::iter::repeat(Duration::ZERO))
    }

    #[test]
    fn a_broker_electing_leaders_or_loading_coordinators_is_waited_out() {
        let mut w = waiter(Duration::from_secs(60));
        for code in
            [Code::NotLeaderForPartition, Code::CoordinatorLoadInProgress, Code::NotController]
        {
            assert!(w.wait_after(&KafkaError::MetadataFetch(code)).is_some(), "{code:?}");
        }
        assert!(w.wait_after(&KafkaError::AdminOp(Code::NotController)).is_some());
    }

    #[test]
    fn anything_else_fails_at_once() {
        let mut w = waiter(Duration::from_secs(60));
        for code in
            [Code::BrokerTransportFailure, Code::UnknownTopicOrPartition, Code::OperationTimedOut]
        {
            assert!(w.wait_after(&KafkaError::MetadataFetch(code)).is_none(), "{code:?}");
        }
    }

    #[test]
    fn the_wait_ends_at_its_limit() {
        let mut w = waiter(Duration::ZERO);
        assert!(w.wait_after(&KafkaError::MetadataFetch(Code::LeaderNotAvailable)).is_none());
    }
}

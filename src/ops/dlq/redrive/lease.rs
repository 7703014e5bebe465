//! One executing redrive or discard per stage, as far as Kafka can tell: a run announces itself
//! through [`crate::kafka::presence`] in `<redrive group>.present` and refuses to start while
//! another holder is there, naming it. Two runs starting in the same instant can both pass this
//! check; the transactional producer ([`super::sink`]) then fences the older one. The embedded
//! broker cannot describe groups, so there no lease is taken (and none is checked).

use crate::config::{KafkaSettings, StageSpec};
use crate::kafka::presence::{present, Presence, PresenceError};
use crate::kafka::BrokerKind;
use crate::ops::dlq::read::DlqError;

/// A held lease. [`Lease::release`] ends it on a blocking thread and waits; dropped without
/// that (an error path, a cancelled run), it is ended on a blocking thread in the background —
/// never on the async thread dropping it (leaving joins the presence thread and closes a group
/// consumer: a LeaveGroup round trip).
pub struct Lease(Option<Presence>);

impl Lease {
    pub async fn release(mut self) {
        if let Some(p) = self.0.take() {
            let _ = tokio::task::spawn_blocking(move || p.leave()).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || p.leave())),
                Err(_) => p.leave(),
            }
        }
    }
}

/// Takes the lease of `spec`'s redrive `group` for a run doing `role`, or says who holds it.
pub async fn take(
    kafka: &KafkaSettings,
    kind: BrokerKind,
    spec: &StageSpec,
    group: &str,
    role: &str,
) -> Result<Lease, DlqError> {
    if kind == BrokerKind::Embedded {
        return Ok(Lease(None));
    }
    let (settings, g) = (kafka.clone(), group.to_owned());
    let holders = tokio::task::spawn_blocking(move || present(&settings, &g))
        .await
        .expect("the presence thread does not panic")
        .map_err(lease_error)?;
    if !holders.is_empty() {
        let named: Vec<String> = holders.iter().map(ToString::to_string).collect();
        return Err(DlqError::Busy { stage: spec.name.clone(), holders: named.join(", ") });
    }
    let (settings, g, topic, role) =
        (kafka.clone(), group.to_owned(), spec.dead_letter_topic.clone(), role.to_owned());
    let presence =
        tokio::task::spawn_blocking(move || Presence::announce(&settings, &g, &topic, &role))
            .await
            .expect("the presence thread does not panic")
            .map_err(lease_error)?;
    Ok(Lease(Some(presence)))
}

fn lease_error(e: PresenceError) -> DlqError {
    DlqError::Broker(format!("cannot take the redrive lease: {e}"))
}

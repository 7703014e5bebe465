//! One executing redrive or discard per stage, as far as Kafka can tell: a run announces itself
//! through [`crate::kafka::presence`] in `<redrive group>.present` and refuses to start while
//! another holder is there, naming it. Two runs starting in the same instant can both pass this
//! check; the transactional producer ([`super::sink`]) then fences the older one. The embedded
//! broker cannot describe groups, so there no lease is taken (and none is checked).

use crate::config::{KafkaSettings, StageSpec};
use crate::kafka::presence::{present, Presence, PresenceError};
use crate::kafka::BrokerKind;
use crate::ops::dlq::read::DlqError;

/// Takes the lease of `spec`'s redrive `group` for a run doing `role`, or says who holds it.
pub async fn take(
    kafka: &KafkaSettings,
    kind: BrokerKind,
    spec: &StageSpec,
    group: &str,
    role: &str,
) -> Result<Option<Presence>, DlqError> {
    if kind == BrokerKind::Embedded {
        return Ok(None);
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
    Ok(Some(presence))
}

fn lease_error(e: PresenceError) -> DlqError {
    DlqError::Broker(format!("cannot take the redrive lease: {e}"))
}

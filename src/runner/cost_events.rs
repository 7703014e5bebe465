//! The cost events of a record's model calls as records for the metering topic. They are
//! outputs like any other — the offset waits for their acknowledgement — and a record that will
//! not finish here still has its billed calls metered (see `Worker::meter_anyway`).

use super::disposition::OutRecord;
use super::inbound::Inbound;
use crate::avro::Codec;
use crate::call::CallLog;
use crate::retry::state::HeaderPair;
use crate::telemetry::CostEventUnencodable;

/// Every event in `log` (taken from it), encoded for `topic`; `Err` (logged) if one cannot be
/// encoded: the record must then not finish, or a billed call would go unmetered.
pub(super) fn records(
    codec: &Codec,
    topic: &str,
    stage: &str,
    inbound: &Inbound,
    log: &CallLog,
) -> Result<Vec<OutRecord>, String> {
    let trace: Vec<HeaderPair> = inbound
        .traceparent()
        .map(|v| ("traceparent".to_owned(), Some(v.to_vec())))
        .into_iter()
        .collect();
    log.take()
        .into_iter()
        .map(|event| {
            let payload = event
                .to_value()
                .map_err(|e| e.to_string())
                .and_then(|v| codec.encode(topic, &v).map_err(|e| e.to_string()))
                .map_err(|error| {
                    CostEventUnencodable { stage, error: &error }.emit();
                    format!("cannot encode a cost event: {error}")
                })?;
            Ok(OutRecord {
                topic: topic.to_owned(),
                key: Some(event.event_id.into_bytes()),
                payload,
                headers: trace.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};
    use schema_registry_converter::async_impl::schema_registry::SrSettings;

    use super::*;
    use crate::call::{CostEvent, Origin};
    use crate::runner::inbound::Topics;

    /// A cost event that cannot be encoded (here: a codec with no schema for the metering topic)
    /// is an error naming it — the worker then stops with the record unfinished — never a
    /// silently shorter list of events.
    #[tokio::test]
    async fn an_unencodable_cost_event_is_an_error_not_a_dropped_event() {
        let settings = SrSettings::new("http://127.0.0.1:9".into());
        let codec = Codec::connect(&settings, &[]).await.expect("nothing to look up");
        let origin = Origin { topic: "in".into(), partition: 0, offset: 1, timestamp_ms: None };
        let log = CallLog::new("p", "s", origin);
        log.push(CostEvent::sample());
        let m = OwnedMessage::new(None, None, "in".into(), Timestamp::NotAvailable, 0, 1, None);
        let inbound = Inbound::from_parts(m, Vec::new(), &Topics::ladder("in", 0), 0);
        let error = records(&codec, "p.metering", "s", &inbound, &log).expect_err("unencodable");
        assert!(error.contains("cannot encode a cost event"), "{error}");
    }
}
